"""The compiled depthwise loops (``fc2conv.algorithms.jit``, ``method="jit"``; needs Numba).

Forward values and both gradients against the float64 oracle ``fc2conv.functional.reference``
over random depthwise layers (``C_in/groups == 1``; ranks 1-3, channel multipliers, stride,
dilation, every padding form and mode, float32 and float64) through ``fc2conv.correlate`` /
``convolve`` and their VJPs; module level on the unpadded input (the padding read in the
loops) against the oracle's weight-gradient sum and transposed convolution; the split over
threads; non-finite values staying with the outputs that read them; what it refuses.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import pytest
from _strategies import (
    DTYPES,
    PADDING_MODES,
    Case,
    _arrays,
    check_unpadded_steps,
    check_vjp_by_probes,
    compare,
    geometries,
)
from hypothesis import given, settings
from hypothesis import strategies as st

import fc2conv
import fc2conv.functional as ff
from fc2conv import _padding, _validate
from fc2conv.algorithms import jit
from fc2conv.functional import reference as ref

pytest.importorskip("numba")

ORACLE = "reference (jit)"


def _abs(a):
    return None if a is None else np.abs(a)


@st.composite
def depthwise_cases(draw, ranks=(1, 2, 3), modes=PADDING_MODES):
    """A depthwise layer: ``groups`` input channels, ``C_out/groups`` of 1-3."""
    d = draw(st.sampled_from(ranks))
    groups, og = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kernel, stride, dilation, padding, mode, sizes, pairs = draw(
        geometries(d, modes, max_kernel=4))
    batch = draw(st.integers(1, 2))
    dtype = draw(st.sampled_from(DTYPES))
    x, w, b = _arrays(draw(st.integers(0, 2**32 - 1)), dtype, (batch, groups, *sizes),
                      (groups * og, 1, *kernel), (groups * og,))
    kwargs = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups,
              "padding_mode": mode}
    return Case(x, w, b if draw(st.booleans()) else None, kwargs, dtype, {"pairs": pairs})


# ---------------------------------------------------------------------------------------------
# through the public API


@pytest.mark.parametrize("op", ["correlate", "convolve"])
@given(case=depthwise_cases())
def test_forward_matches_reference(op, case) -> None:
    y = getattr(fc2conv, op)(case.x, case.w, case.b, **case.kwargs, method="jit")
    y_ref = getattr(ref, op)(case.x, case.w, case.b, **case.kwargs)
    bound = getattr(ref, op)(_abs(case.x), _abs(case.w), _abs(case.b), **case.kwargs)
    compare(ORACLE, y, y_ref, bound, math.prod(case.w.shape[1:]) + 1, case.dtype,
            what=f"{op} jit")


@given(case=depthwise_cases(), seed=st.integers(0, 2**32 - 1))
def test_vjp_matches_reference(case, seed) -> None:
    """Both gradients by exact random-probe identities with the oracle."""
    check_vjp_by_probes(ORACLE, case, "jit", seed)


# ---------------------------------------------------------------------------------------------
# module level: the padding read in the loops, elementwise against the oracle


@contextlib.contextmanager
def threads(count: int):
    """``count`` threads for any layer, however small."""
    saved = jit.fft_workers, jit.MIN_WORK_PER_THREAD
    jit.fft_workers, jit.MIN_WORK_PER_THREAD = (lambda: count), 0
    try:
        yield
    finally:
        jit.fft_workers, jit.MIN_WORK_PER_THREAD = saved


@pytest.mark.parametrize("count", [1, 3])
@settings(max_examples=60)
@given(case=depthwise_cases(modes=("zeros",)), seed=st.integers(0, 2**32 - 1))
def test_module_steps_on_the_unpadded_input(count, case, seed) -> None:
    """``padded=False`` (what the ops call): forward, input gradient (to the unpadded input)
    and weight gradient elementwise, on one thread and split over three."""
    x, w = case.x, case.w
    spec = _validate.conv_spec(x, w, None, method="jit", **case.kwargs)
    gy = np.random.default_rng(seed).standard_normal(spec.output_shape).astype(case.dtype)
    with threads(count):
        y = jit.correlate(np, x, w, spec, "jit", padded=False)
        gx = jit.input_grad(np, gy, w, spec, "jit", padded=False)
        gw = jit.weight_grad(np, gy, x, spec, "jit", padded=False)
    check_unpadded_steps(ORACLE, spec, x, w, gy, y, gx, gw, case.dtype)


@given(case=depthwise_cases(modes=("zeros",)), seed=st.integers(0, 2**32 - 1))
def test_module_steps_on_a_padded_input_equal_the_unpadded(case, seed) -> None:
    """``padded=True`` (the input padded by the caller) gives the same numbers."""
    x, w = case.x, case.w
    spec = _validate.conv_spec(x, w, None, method="jit", **case.kwargs)
    gy = np.random.default_rng(seed).standard_normal(spec.output_shape).astype(case.dtype)
    x_pad = _padding.pad(np, x, spec.pads, "zeros")
    np.testing.assert_array_equal(jit.correlate(np, x_pad, w, spec, "jit"),
                                  jit.correlate(np, x, w, spec, "jit", padded=False))
    np.testing.assert_array_equal(
        _padding.pad_vjp(np, jit.input_grad(np, gy, w, spec, "jit"), spec.in_size, spec.pads,
                         "zeros"),
        jit.input_grad(np, gy, w, spec, "jit", padded=False))
    # (the weight gradient's sums are cut differently: equal to rounding, normwise)
    scale = float(np.abs(gy).sum() * np.abs(x).max()) * np.finfo(case.dtype).eps * 8
    np.testing.assert_allclose(jit.weight_grad(np, gy, x_pad, spec, "jit"),
                               jit.weight_grad(np, gy, x, spec, "jit", padded=False),
                               rtol=0, atol=scale)


def test_large_layer_on_threads_equals_one_thread(monkeypatch) -> None:
    """A layer big enough to be split: the same numbers as the NumPy ``direct`` method."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 16, 40, 40), dtype=np.float32)
    w = rng.standard_normal((32, 1, 3, 3), dtype=np.float32)
    gy = rng.standard_normal((2, 32, 20, 20), dtype=np.float32)
    kw = {"padding": 1, "stride": 2, "groups": 16}
    got = [fc2conv.correlate(x, w, **kw, method="jit"),
           *ff.correlate_vjp(gy, x, w, **kw, method="jit")[:2]]
    monkeypatch.setattr(jit, "fft_workers", lambda: 1)
    one = [fc2conv.correlate(x, w, **kw, method="jit"),
           *ff.correlate_vjp(gy, x, w, **kw, method="jit")[:2]]
    want = [fc2conv.correlate(x, w, **kw, method="direct"),
            *ff.correlate_vjp(gy, x, w, **kw, method="direct")[:2]]
    for a, b, c in zip(got, one, want):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(a, c, rtol=2e-5, atol=2e-5 * np.abs(c).max())


# ---------------------------------------------------------------------------------------------
# non-finite values, refusals, the cost


def test_non_finite_values_stay_with_the_outputs_that_read_them() -> None:
    x = np.random.default_rng(2).standard_normal((1, 2, 9, 8))
    x[0, 1, 4, 3] = np.nan
    x[0, 0, 0, 0] = np.inf
    w = np.ones((2, 1, 3, 3))
    with np.errstate(invalid="ignore"):
        got = fc2conv.correlate(x, w, padding=1, groups=2, method="jit")
        want = fc2conv.correlate(x, w, padding=1, groups=2, method="im2col")
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    np.testing.assert_allclose(got[np.isfinite(want)], want[np.isfinite(want)], rtol=1e-12)
    gy = np.ones_like(got)
    gw = ff.correlate_vjp(gy, x, w, padding=1, groups=2, method="jit")[1]
    assert np.isnan(gw[1]).all() and not np.isnan(gw[0]).any()  # inf*1 sums stay inf in ch 0


@pytest.mark.parametrize("stride", [1, 2])
def test_a_non_finite_weight_gives_the_reference_nans(stride) -> None:
    """0 * inf on the zero padding is NaN in the reference; so it is here (forward and input
    gradient), for the flat-grid (stride 1) and the row (strided) loops."""
    rng = np.random.default_rng(4)
    x, w = rng.standard_normal((2, 3, 9, 8)), rng.standard_normal((3, 1, 3, 3))
    w[1, 0, 0, 2] = np.inf
    kw = {"padding": 1, "groups": 3, "stride": stride}
    with np.errstate(invalid="ignore", over="ignore"):
        want = ref.correlate(x, w, **kw)
        got = fc2conv.correlate(x, w, **kw, method="jit")
        gy = np.ones_like(want)
        gx = ff.correlate_vjp(gy, x, w, **kw, method="jit")[0]
        gx_want = ff.correlate_vjp(gy, x, w, **kw, method="im2col")[0]
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isnan(gx), np.isnan(gx_want))
    np.testing.assert_array_equal(np.isinf(gx), np.isinf(gx_want))
    assert np.isnan(want).any() and np.isinf(gx_want).any()


@pytest.mark.parametrize(("x_shape", "w_shape", "groups", "word"), [
    ((1, 4, 9, 9), (4, 2, 3, 3), 2, "C_in/groups = 2"),
    ((1, 3, 9), (6, 3, 3), 1, "C_in/groups = 3"),
])
def test_refuses_layers_with_channel_mixing(x_shape, w_shape, groups, word) -> None:
    with pytest.raises(fc2conv.ArgumentError, match="depthwise") as info:
        fc2conv.correlate(np.ones(x_shape), np.ones(w_shape), groups=groups, method="jit")
    assert word in str(info.value)


def test_refuses_other_namespaces_and_missing_numba(monkeypatch) -> None:
    torch = pytest.importorskip("torch")
    x, w = torch.ones((1, 2, 6, 6)), torch.ones((2, 1, 3, 3))
    with pytest.raises(fc2conv.ArgumentError, match="NumPy arrays only"):
        fc2conv.correlate(x, w, groups=2, method="jit")
    monkeypatch.setattr(jit, "available", lambda: False)
    with pytest.raises(fc2conv.ArgumentError, match=r"needs Numba: pip install"):
        fc2conv.correlate(np.ones((1, 2, 6, 6)), np.ones((2, 1, 3, 3)), groups=2, method="jit")
    spec = _validate.conv_spec(np.ones((1, 2, 6, 6)), np.ones((2, 1, 3, 3)), None, stride=1,
                               padding=0, dilation=1, groups=2, padding_mode="zeros")
    assert fc2conv.algorithms.select.predict(spec, "jit", "correlate") == math.inf


def test_terms() -> None:
    """The parts of the work: every multiply-add (``strided`` with a stride), every element
    once, one vector loop per tap and block of rows."""
    def spec(stride):
        return _validate.conv_spec(np.ones((2, 3, 10, 12), np.float32),
                                   np.ones((6, 1, 3, 5), np.float32), None, stride=stride,
                                   padding=0, dilation=1, groups=3, padding_mode="zeros")

    for step in ("correlate", "input_grad", "weight_grad"):
        got = jit.terms(spec(1), "jit", step)
        assert got == {"macs": 2 * 6 * 8 * 8 * 15, "strided": 0,
                       "elements": 2 * 3 * 120 + 2 * 6 * 64,
                       "loops": 2 * 6 * 15}  # 8 rows 12 wide: one block
        assert jit.cost(spec(1), "jit", step) == sum(got.values())
        got = jit.terms(spec(2), "jit", step)
        assert got == {"macs": 0, "strided": 2 * 6 * 4 * 4 * 15,
                       "elements": 2 * 3 * 120 + 2 * 6 * 16, "loops": 2 * 6 * 15}


@pytest.mark.parametrize(("stride", "dilation", "og"), [(1, 1, 1), (1, 2, 2), (2, 1, 3)])
def test_wide_images_run_in_several_blocks_of_rows(stride, dilation, og) -> None:
    """Rows 2000+ wide make blocks of a few rows (the Hypothesis layers fit in one block):
    forward and both gradients equal the GEMM method's in float64."""
    rng = np.random.default_rng(8)
    x = rng.standard_normal((1, 2, 37, 2003))
    w = rng.standard_normal((2 * og, 1, 3, 5))
    kw = {"padding": ((2, 1), (3, 0)), "stride": stride, "dilation": dilation, "groups": 2}
    y = fc2conv.correlate(x, w, **kw, method="jit")
    gy = rng.standard_normal(y.shape)
    got = [y, *ff.correlate_vjp(gy, x, w, **kw, method="jit")[:2]]
    want = [fc2conv.correlate(x, w, **kw, method="im2col"),
            *ff.correlate_vjp(gy, x, w, **kw, method="im2col")[:2]]
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10 * np.abs(b).max())


def test_an_inf_no_output_reads_leaves_the_weight_gradient_finite() -> None:
    """Stride 2, 'valid', width 8: no output reads the last column, but the flat grid's junk
    column does (times a zero of grad_out: NaN). The weight gradient is recomputed by direct,
    exactly; the forward's junk is cropped."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 3, 6, 8))
    x[:, :, :, 7] = np.inf
    w = rng.standard_normal((3, 1, 3, 3))
    kw = {"stride": 2, "groups": 3}
    y = fc2conv.correlate(x, w, **kw, method="jit")
    assert np.isfinite(y).all()
    gy = rng.standard_normal(y.shape)
    gw = ff.correlate_vjp(gy, x, w, **kw, method="jit")[1]
    want = ff.correlate_vjp(gy, x, w, **kw, method="im2col")[1]
    assert np.isfinite(want).all()
    np.testing.assert_allclose(gw, want, rtol=1e-12, atol=1e-12)
