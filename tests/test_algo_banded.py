"""The banded method (``fc2conv.algorithms.banded``, ``method="banded"``): one matrix product
per input row against every kernel row.

Forward values and both gradients against the float64 oracle ``fc2conv.functional.reference``
over random layers (ranks 1-3, groups, stride, dilation, every padding form and mode, float32
and float64) through ``fc2conv.correlate`` / ``convolve`` and their VJPs; module level on the
unpadded input (the padding read by the row loops) elementwise against the oracle, with blocks
of one row and of many (a short last block included); the padded input equal to the unpadded;
the weight gradient's strided view and in-place reordering; non-finite values; the memory
(tracemalloc) of DESIGN.md's large-kernel layer shape; and ``auto``'s workspace limit.
"""

from __future__ import annotations

import contextlib
import math
import tracemalloc

import numpy as np
import pytest
from _strategies import (
    DTYPES,
    check_unpadded_steps,
    check_vjp_by_probes,
    compare,
    conv_cases,
)
from hypothesis import given, settings
from hypothesis import strategies as st

import fc2conv
import fc2conv.functional as ff
from fc2conv import _padding, _validate
from fc2conv.algorithms import banded, fft, select
from fc2conv.functional import reference as ref

ORACLE = "reference (banded)"
PLAIN = {"stride": 1, "dilation": 1, "groups": 1, "padding_mode": "zeros"}
STEPS = ("correlate", "input_grad", "weight_grad")


def _abs(a):
    return None if a is None else np.abs(a)


@contextlib.contextmanager
def block_bytes(size: int):
    """Blocks of rows sized by ``size`` bytes (1: one row per product)."""
    saved = banded.CACHE_BYTES
    banded.CACHE_BYTES = size
    try:
        yield
    finally:
        banded.CACHE_BYTES = saved


# ---------------------------------------------------------------------------------------------
# through the public API


@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("op", ["correlate", "convolve"])
@settings(max_examples=30)
@given(data=st.data())
def test_forward_matches_reference(rank, op, data) -> None:
    case = data.draw(conv_cases(ranks=(rank,)), label="case")
    y = getattr(fc2conv, op)(case.x, case.w, case.b, **case.kwargs, method="banded")
    y_ref = getattr(ref, op)(case.x, case.w, case.b, **case.kwargs)
    bound = getattr(ref, op)(_abs(case.x), _abs(case.w), _abs(case.b), **case.kwargs)
    compare(ORACLE, y, y_ref, bound, math.prod(case.w.shape[1:]) + 1, case.dtype,
            what=f"{op} banded")


@pytest.mark.parametrize("rank", [1, 2, 3])
@settings(max_examples=30)
@given(data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_vjp_matches_reference(rank, data, seed) -> None:
    """Both gradients by exact random-probe identities with the oracle."""
    check_vjp_by_probes(ORACLE, data.draw(conv_cases(ranks=(rank,)), label="case"), "banded",
                        seed)


# ---------------------------------------------------------------------------------------------
# module level


@pytest.mark.parametrize(("cache", "budget"), [(1, None), (1 << 20, None), (1 << 20, 1)])
@settings(max_examples=40)
@given(case=conv_cases(modes=("zeros",)), seed=st.integers(0, 2**32 - 1))
def test_module_steps_on_the_unpadded_input(cache, budget, case, seed) -> None:
    """``padded=False`` (what the ops call): forward, input gradient (to the unpadded input)
    and weight gradient elementwise, one row per product and many, and with a budget of one
    element (rows run one column at a time)."""
    x, w = case.x, case.w
    spec = _validate.conv_spec(x, w, None, method="banded", **case.kwargs)
    gy = np.random.default_rng(seed).standard_normal(spec.output_shape).astype(case.dtype)
    saved = banded.gemm.COLUMN_BUDGET
    banded.gemm.COLUMN_BUDGET = budget
    try:
        with block_bytes(cache):
            y = banded.correlate(np, x, w, spec, "banded", padded=False)
            gx = banded.input_grad(np, gy, w, spec, "banded", padded=False)
            gw = banded.weight_grad(np, gy, x, spec, "banded", padded=False)
    finally:
        banded.gemm.COLUMN_BUDGET = saved
    assert y.dtype == gx.dtype == gw.dtype == case.dtype
    check_unpadded_steps(ORACLE, spec, x, w, gy, y, gx, gw, case.dtype)


@given(case=conv_cases(modes=("zeros",)), seed=st.integers(0, 2**32 - 1))
def test_module_steps_on_a_padded_input_equal_the_unpadded(case, seed) -> None:
    """``padded=True`` (the input padded by the caller, as conv_transpose calls it) gives the
    same numbers: the same products, the zeros read from the array instead of the buffer."""
    x, w = case.x, case.w
    spec = _validate.conv_spec(x, w, None, method="banded", **case.kwargs)
    gy = np.random.default_rng(seed).standard_normal(spec.output_shape).astype(case.dtype)
    x_pad = _padding.pad(np, x, spec.pads, "zeros")
    tol = 1e-5 if case.dtype == np.float32 else 1e-12
    np.testing.assert_allclose(banded.correlate(np, x_pad, w, spec, "banded"),
                               banded.correlate(np, x, w, spec, "banded", padded=False),
                               rtol=tol, atol=tol)
    np.testing.assert_allclose(
        _padding.pad_vjp(np, banded.input_grad(np, gy, w, spec, "banded"), spec.in_size,
                         spec.pads, "zeros"),
        banded.input_grad(np, gy, w, spec, "banded", padded=False), rtol=tol, atol=tol)
    np.testing.assert_allclose(banded.weight_grad(np, gy, x_pad, spec, "banded"),
                               banded.weight_grad(np, gy, x, spec, "banded", padded=False),
                               rtol=tol, atol=tol * max(1.0, float(np.abs(gy).sum())))


@pytest.mark.parametrize("groups", [1, 3])
@pytest.mark.parametrize("budget", [10, 10**9])
def test_weight_grad_layout(groups, budget, monkeypatch) -> None:
    """Accumulated in place by BLAS in ``(K_lead, C_out, Cg, K_band)`` order: returned as a
    strided view (one group, larger than the budget) or reordered, in place group by group,
    into ``(C_out, Cg, *K)``; the values are the same either way."""
    monkeypatch.setattr(banded.gemm, "COLUMN_BUDGET", budget)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3 * groups, 11, 10), dtype=np.float32)
    w = rng.standard_normal((2 * groups, 3, 5, 4), dtype=np.float32)
    kw = {"padding": (2, 1), "groups": groups, "dilation": (1, 2)}
    gy = rng.standard_normal(fc2conv.correlate(x, w, **kw).shape, dtype=np.float32)
    gw = ff.correlate_vjp(gy, x, w, **kw, method="banded")[1]
    want = ff.correlate_vjp(gy, x, w, **kw, method="im2col")[1]
    np.testing.assert_allclose(gw, want, rtol=1e-4, atol=1e-4)
    assert gw.flags.c_contiguous == (groups > 1 or budget > w.size)


def test_non_finite_values() -> None:
    """A NaN or inf in the input stays with the outputs that read it; a non-finite weight
    gives the reference's NaNs on the padding (forward) and the input gradient from
    ``direct``; a weight gradient that meets one is recomputed by ``direct``."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 2, 9, 8))
    x[0, 1, 4, 3], x[0, 0, 0, 0] = np.nan, np.inf
    w = rng.standard_normal((3, 2, 3, 3))
    kw = {"padding": 1, "stride": (1, 2)}
    with np.errstate(invalid="ignore", over="ignore"):
        for wt in (w, np.where(np.arange(w.size).reshape(w.shape) == 7, np.inf, w)):
            got = fc2conv.correlate(x, wt, **kw, method="banded")
            want = ref.correlate(x, wt, **kw)
            np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
            np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
            gy = np.ones_like(want)
            got = ff.correlate_vjp(gy, x, wt, **kw, method="banded")[:2]
            want = ff.correlate_vjp(gy, x, wt, **kw, method="direct")[:2]
            for a, b in zip(got, want):
                np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
                finite = np.isfinite(b)
                np.testing.assert_allclose(a[finite], b[finite], rtol=1e-10)


def test_refuses_other_namespaces() -> None:
    torch = pytest.importorskip("torch")
    x, w = torch.zeros(1, 2, 8, 8), torch.zeros(3, 2, 3, 3)
    with pytest.raises(fc2conv.ArgumentError, match="NumPy arrays only"):
        fc2conv.correlate(x, w, method="banded")


# ---------------------------------------------------------------------------------------------
# memory and auto


LARGE_KERNEL = ((1, 16, 32, 32), (16, 16, 15, 15), 7)  # DESIGN.md's shape, halved


def test_scratch_of_a_large_kernel_layer() -> None:
    """The steps of the large-kernel shape, module level (tracemalloc): the forward and the
    input gradient hold one reordered copy of the weights (the weight gradient, as large, is
    not yet there in a training step) plus blocks of rows, a few outputs' size; the weight
    gradient accumulates in place, in its result, so its scratch is the blocks only: no
    accumulator the size of the weights."""
    xs, ws, pad = LARGE_KERNEL
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal(xs, dtype=np.float32), rng.standard_normal(ws, dtype=np.float32)
    spec = _validate.conv_spec(x, w, None, padding=pad, **PLAIN)
    gy = rng.standard_normal(spec.output_shape, dtype=np.float32)
    out = gy.nbytes
    steps = {"correlate": lambda: banded.correlate(np, x, w, spec, "banded", padded=False),
             "input_grad": lambda: banded.input_grad(np, gy, w, spec, "banded", padded=False),
             "weight_grad": lambda: banded.weight_grad(np, gy, x, spec, "banded",
                                                       padded=False)}
    for step, run in steps.items():
        run()  # (imports)
        tracemalloc.start()
        kept = run()
        current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        del kept
        scratch = peak - current
        if step == "weight_grad":
            assert scratch <= 1.5 * out < w.nbytes / 2, (step, scratch / out)
        else:
            assert scratch <= w.nbytes + 4 * out, (step, scratch / out)


def test_auto_keeps_the_large_kernel_off_fft_under_the_workspace_limit(monkeypatch) -> None:
    """FFT's channel-pair spectra for the large-kernel layer are many times its output:
    ``auto`` picks a method within :data:`select.WORKSPACE_LIMIT` (``banded``), and FFT again
    without the limit."""
    x = np.zeros((1, 16, 64, 64), np.float32)
    w = np.zeros((16, 16, 31, 31), np.float32)
    spec = _validate.conv_spec(x, w, None, padding=15, **PLAIN)
    for step in STEPS:
        assert fft.fixed_workspace(spec, "fft", step) > 10 * math.prod(spec.output_shape)
        assert not select.fits(spec, "fft", step)
        assert select.choose(spec, step) == "banded"
    monkeypatch.setattr(select, "WORKSPACE_LIMIT", None)
    assert all(select.choose(spec, step) == "fft" for step in STEPS)
    image = _validate.conv_spec(np.zeros((1, 1, 2048, 2048), np.float32),
                                np.zeros((1, 1, 101, 101), np.float32), None, padding="same",
                                **PLAIN)
    monkeypatch.setattr(select, "WORKSPACE_LIMIT", 2.0)
    assert select.fits(image, "fft", "correlate")  # one channel pair: a small spectrum
    assert select.choose(image, "correlate") == "fft"


@settings(max_examples=20)
@given(case=conv_cases(modes=("zeros",), dtypes=DTYPES))
def test_cost_is_positive(case) -> None:
    spec = _validate.conv_spec(case.x, case.w, None, **case.kwargs)
    for step in STEPS:
        parts = banded.terms(spec, "banded", step)
        assert set(parts) == {"products", "passes", "calls"}
        assert all(v >= 0 for v in parts.values()) and banded.cost(spec, step=step) > 0
