"""The FFT algorithm (``fc2conv.algorithms.fft``, ``method="fft"``) against the float64 oracle.

Module-level checks call ``correlate`` / ``input_grad`` / ``weight_grad`` on a padded input and
compare every element with ``fc2conv.functional.reference`` (forward: ``correlate``; input
gradient: ``conv_transpose``, its adjoint; weight gradient: the defining sum over windows), with
the error bound of ``_strategies.compare``, each element's bound raised to the largest one the
op can have on the data (FFT rounding is spread over a whole tile, see ``_compare``). The
public entry points (``fc2conv.correlate``, ``convolve``, ``conv_transpose`` and their VJPs
with ``method="fft"``) are checked the same way, gradients through exact random-probe
identities. Large cases check the overlap-save blocks: no seams at block boundaries, agreement
with ``scipy.signal``, and peak memory a small multiple of the output.
"""

from __future__ import annotations

import dataclasses
import math
import tracemalloc
import types

import numpy as np
import pytest
import scipy.signal
from _strategies import (
    DTYPES,
    compare,
    conv_cases,
    conv_terms,
    conv_transpose_cases,
    conv_transpose_terms,
    groups_and_channels,
    weight_grad_oracle,
)
from hypothesis import given
from hypothesis import strategies as st

import fc2conv
import fc2conv.functional as F
from fc2conv import _validate
from fc2conv.algorithms import fft, implementation
from fc2conv.functional import conv as conv_module
from fc2conv.functional import reference as ref

ORACLE = "reference (fft)"


def _compare(actual, desired, bound, floor, terms, dtype, what, check_dtype=True):
    """``compare`` with every element's bound raised to ``floor``, the largest bound any
    output of the op can have on this data (max |input| times the largest kernel sum): the
    FFT spreads a tile's rounding over all its outputs, also those that read only zeros.
    The tally records the error relative to that scale."""
    return compare(ORACLE, actual, desired, np.maximum(bound, floor), terms, dtype, what=what,
                   check_dtype=check_dtype, relative_to="bound")


def _kernel_sum(w, axes):
    return float(np.abs(w.astype(np.float64)).sum(axis=axes).max())


def _spec(x_pad, w, stride=1, dilation=1, groups=1):
    """The spec of a correlation of an already padded input."""
    return _validate.conv_spec(x_pad, w, None, stride=stride, padding=0, dilation=dilation,
                               groups=groups, padding_mode="zeros", method="fft")


@st.composite
def padded_cases(draw, rank):
    """A correlation on an already padded input: (x_pad, w, stride, dilation, groups, dtype)."""
    c_in, c_out, groups = draw(groups_and_channels())
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(rank))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(rank))
    largest = {1: 24, 2: 10, 3: 6}[rank]
    size = tuple(draw(st.integers(d * (k - 1) + 1, max(largest, d * (k - 1) + 1)))
                 for k, d in zip(kernel, dilation))
    dtype = draw(st.sampled_from(DTYPES))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x_pad = rng.standard_normal((draw(st.integers(1, 2)), c_in, *size)).astype(dtype)
    w = rng.standard_normal((c_out, c_in // groups, *kernel)).astype(dtype)
    return x_pad, w, stride, dilation, groups, dtype


def _check_module(x_pad, w, stride, dilation, groups, dtype, seed=0):
    """Forward, input gradient and weight gradient of the module against the oracle."""
    spec = _spec(x_pad, w, stride, dilation, groups)
    xp, kernel, axes = spec.xp, spec.kernel, tuple(range(2, x_pad.ndim))
    kw = {"stride": stride, "dilation": dilation, "groups": groups}
    y = fft.correlate(xp, x_pad, w, spec, "fft")
    _compare(y, ref.correlate(x_pad, w, **kw), ref.correlate(np.abs(x_pad), np.abs(w), **kw),
             np.abs(x_pad).max() * _kernel_sum(w, (1, *axes)), math.prod(w.shape[1:]) + 1,
             dtype, "fft.correlate")

    gy = np.random.default_rng(seed).standard_normal(y.shape).astype(dtype)
    # conv_transpose stops at the last sample an output reads; the rest of x_pad gets zero.
    covered = tuple((m - 1) * s + d * (k - 1) + 1
                    for m, s, d, k in zip(spec.out_size, stride, dilation, kernel))
    leftover = tuple(p - n for p, n in zip(spec.padded_size, covered))
    tkw = {**kw, "output_padding": leftover}
    og = w.shape[0] // groups
    w_t = np.swapaxes(w.reshape(groups, og, *w.shape[1:]), 1, 2)  # (G, Cg, Og, *K)
    _compare(fft.input_grad(xp, gy, w, spec, "fft"), ref.conv_transpose(gy, w, **tkw),
             ref.conv_transpose(np.abs(gy), np.abs(w), **tkw),
             np.abs(gy).max() * _kernel_sum(w_t, (2, *(a + 1 for a in axes))),
             og * math.prod(kernel) + 1, dtype, "fft.input_grad")

    terms = y.shape[0] * math.prod(y.shape[2:]) + 1
    _compare(fft.weight_grad(xp, gy, x_pad, spec, "fft"),
             weight_grad_oracle(gy, x_pad, kernel, stride, dilation, groups),
             weight_grad_oracle(np.abs(gy), np.abs(x_pad), kernel, stride, dilation, groups),
             np.abs(x_pad).max() * _kernel_sum(np.swapaxes(gy, 0, 1), (1, *axes)), terms,
             dtype, "fft.weight_grad")


# ---------------------------------------------------------------------------------------------
# random small configurations


@pytest.mark.parametrize("rank", [1, 2, 3])
@given(data=st.data())
def test_module_matches_reference(rank, data) -> None:
    """Ranks 1-3, groups (depthwise included), stride, dilation, float32 and float64."""
    _check_module(*data.draw(padded_cases(rank), label="case"))


@pytest.mark.parametrize("rank", [1, 2, 3])
@given(data=st.data(), op=st.sampled_from(["correlate", "convolve"]),
       seed=st.integers(0, 2**32 - 1))
def test_public_api_matches_reference(rank, data, op, seed) -> None:
    """``method="fft"`` through the public ops: every padding form and mode, bias; gradients
    by the exact probe identities ``<gx, v> = <gy, f(v, w)>``, ``<gw, u> = <gy, f(x, u)>``."""
    case = data.draw(conv_cases(ranks=(rank,)), label="case")
    forward, ref_op, vjp = getattr(fc2conv, op), getattr(ref, op), getattr(F, f"{op}_vjp")
    x, w, b, kw = case.x, case.w, case.b, case.kwargs
    y_ref = ref_op(x, w, b, **kw)
    bound = ref_op(np.abs(x), np.abs(w), None if b is None else np.abs(b), **kw)
    floor = np.abs(x).max() * _kernel_sum(w, tuple(range(1, w.ndim)))
    _compare(forward(x, w, b, **kw, method="fft"), y_ref, bound,
             floor + (0 if b is None else np.abs(b).max()), math.prod(w.shape[1:]) + 1,
             case.dtype, f"{op} fft")

    rng = np.random.default_rng(seed)
    gy = rng.standard_normal(y_ref.shape).astype(case.dtype)
    v, u = rng.standard_normal(x.shape), rng.standard_normal(w.shape)
    gx, gw, gb = vjp(gy, x, w, b, **kw, method="fft")
    assert gx.dtype == gw.dtype == case.dtype and gx.shape == x.shape and gw.shape == w.shape
    terms, ag = conv_terms(case, y_ref.shape), np.abs(gy)
    # floors: sum|probe| times the largest error scale of one gradient entry
    gx_floor = np.abs(v).sum() * ag.max() * _kernel_sum(w, (0, *range(2, w.ndim)))
    gw_floor = np.abs(u).sum() * np.abs(x).max() * _kernel_sum(gy, (0, *range(2, gy.ndim)))
    _compare(np.vdot(gx, v), np.vdot(gy, ref_op(v, w, **kw)),
             np.vdot(ag, ref_op(np.abs(v), np.abs(w), **kw)), gx_floor, terms,
             case.dtype, f"{op}_vjp fft gx", check_dtype=False)
    _compare(np.vdot(gw, u), np.vdot(gy, ref_op(x, u, **kw)),
             np.vdot(ag, ref_op(np.abs(x), np.abs(u), **kw)), gw_floor, terms,
             case.dtype, f"{op}_vjp fft gw", check_dtype=False)
    if b is not None:
        np.testing.assert_allclose(gb, gy.sum(axis=(0, *range(2, gy.ndim))), rtol=1e-4,
                                   atol=1e-4 * ag.sum())


@pytest.mark.parametrize("rank", [1, 2, 3])
@given(data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_conv_transpose_through_fft(rank, data, seed) -> None:
    """conv_transpose and its VJP run the same three steps on a transposed spec: with the
    selector answering "fft" they match the oracle too."""
    case = data.draw(conv_transpose_cases(ranks=(rank,)), label="case")
    x, w, b, kw = case.x, case.w, case.b, case.kwargs
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(conv_module, "choose", lambda spec, step="correlate": "fft")
        y = fc2conv.conv_transpose(x, w, b, **kw)
        gy = np.random.default_rng(seed).standard_normal(y.shape).astype(case.dtype)
        gx, gw, _ = F.conv_transpose_vjp(gy, x, w, b, **kw)
    y_ref = ref.conv_transpose(x, w, b, **kw)
    terms = conv_transpose_terms(case, y_ref.shape)
    floor = np.abs(x).max() * _kernel_sum(w, (1, *range(2, w.ndim))) + (
        0 if b is None else np.abs(b).max())
    _compare(y, y_ref, ref.conv_transpose(np.abs(x), np.abs(w), None if b is None else
                                          np.abs(b), **kw), floor, terms, case.dtype,
             "conv_transpose fft")
    v, u = np.random.default_rng(seed + 1).standard_normal((2, x.size + w.size))
    v, u = v[:x.size].reshape(x.shape), u[:w.size].reshape(w.shape)
    ag = np.abs(gy)
    gx_floor = np.abs(v).sum() * ag.max() * _kernel_sum(w, (0, *range(2, w.ndim)))
    gw_floor = np.abs(u).sum() * np.abs(x).max() * _kernel_sum(gy, (0, *range(2, gy.ndim)))
    _compare(np.vdot(gx, v), np.vdot(gy, ref.conv_transpose(v, w, **kw)),
             np.vdot(ag, ref.conv_transpose(np.abs(v), np.abs(w), **kw)), gx_floor, terms,
             case.dtype, "conv_transpose_vjp fft gx", check_dtype=False)
    _compare(np.vdot(gw, u), np.vdot(gy, ref.conv_transpose(x, u, **kw)),
             np.vdot(ag, ref.conv_transpose(np.abs(x), np.abs(u), **kw)), gw_floor, terms,
             case.dtype, "conv_transpose_vjp fft gw", check_dtype=False)


# ---------------------------------------------------------------------------------------------
# overlap-save blocks


BLOCK_CASES = [
    # (x_pad shape, w shape, stride, dilation, groups)
    ((2, 4, 3000), (6, 2, 9), (2,), (3,), 2),
    ((1, 2, 300, 260), (2, 2, 7, 5), (1, 1), (1, 2), 1),
    ((1, 2, 48, 48, 48), (2, 1, 3, 3, 3), (1, 1, 1), (1, 1, 1), 2),
]


@pytest.mark.parametrize("shape_x,shape_w,stride,dilation,groups", BLOCK_CASES)
def test_block_boundaries_are_exact(shape_x, shape_w, stride, dilation, groups) -> None:
    """Images many blocks long: in float64 every output, input-gradient and weight-gradient
    entry agrees with a direct float64 sum to ~1e-13 of the largest, seams included."""
    rng = np.random.default_rng(1)
    x_pad, w = rng.standard_normal(shape_x), rng.standard_normal(shape_w)
    spec = _spec(x_pad, w, stride, dilation, groups)
    plan = fft._plan(fft._dense(spec), fft._span(spec), spec.batch, spec.in_channels,
                     spec.out_channels, spec.in_channels // groups)
    assert all(tiles >= 2 for tiles, _, _ in plan), plan  # really several blocks per axis

    y = fft.correlate(spec.xp, x_pad, w, spec, "fft")
    y_direct = fc2conv.correlate(x_pad, w, stride=stride, dilation=dilation, groups=groups,
                                 method="shift")
    np.testing.assert_allclose(y, y_direct, rtol=0, atol=1e-13 * np.abs(y_direct).max())

    gy = rng.standard_normal(y.shape)
    gx, gw, _ = F.correlate_vjp(gy, x_pad, w, stride=stride, dilation=dilation, groups=groups,
                                method="fft")
    gx_d, gw_d, _ = F.correlate_vjp(gy, x_pad, w, stride=stride, dilation=dilation,
                                    groups=groups, method="shift")
    np.testing.assert_allclose(gx, gx_d, rtol=0, atol=1e-13 * np.abs(gx_d).max())
    np.testing.assert_allclose(gw, gw_d, rtol=0, atol=1e-13 * np.abs(gw_d).max())


def test_tiled_float32_matches_reference() -> None:
    """A blocked 1-D case in float32 against the loop oracle, under the usual bound."""
    rng = np.random.default_rng(2)
    x_pad = rng.standard_normal((2, 2, 700)).astype(np.float32)
    w = rng.standard_normal((4, 1, 5)).astype(np.float32)
    spec = _spec(x_pad, w, 1, 2, 2)
    assert fft._plan(fft._dense(spec), fft._span(spec), 2, 2, 4, 1)[0][0] > 1
    _check_module(x_pad, w, (1,), (2,), 2, np.float32)


@pytest.mark.parametrize("k", [9, 31])
def test_single_channel_matches_scipy(k) -> None:
    """One channel, ``convolve`` with "full" and ``correlate`` with "valid" against SciPy."""
    rng = np.random.default_rng(k)
    x, w = rng.standard_normal((300, 280)), rng.standard_normal((k, k - 4))
    full = fc2conv.convolve(x[None, None], w[None, None], padding="full", method="fft")[0, 0]
    np.testing.assert_allclose(full, scipy.signal.fftconvolve(x, w, mode="full"),
                               rtol=0, atol=1e-12 * np.abs(full).max())
    valid = fc2conv.correlate(x[None, None], w[None, None], method="fft")[0, 0]
    np.testing.assert_allclose(valid, scipy.signal.correlate(x, w, mode="valid"),
                               rtol=0, atol=1e-12 * np.abs(valid).max())
    x32, w32 = x.astype(np.float32)[None, None], w.astype(np.float32)[None, None]
    y32 = fc2conv.convolve(x32, w32, padding="full", method="fft")
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32[0, 0], full, rtol=0, atol=2e-6 * np.abs(full).max())


@pytest.mark.slow
def test_large_image_float32_error() -> None:
    """2048x2048, 101x101 kernel, float32: forward and both gradients within 1e-6 of the
    largest value of a float64 computation (SciPy for the forward)."""
    rng = np.random.default_rng(6)
    x, w = rng.standard_normal((2048, 2048)), rng.standard_normal((101, 101))
    x32, w32 = x.astype(np.float32)[None, None], w.astype(np.float32)[None, None]
    y = fc2conv.correlate(x32, w32, padding="same", method="fft")
    y64 = scipy.signal.fftconvolve(x, w[::-1, ::-1], mode="same")
    assert y.dtype == np.float32
    assert np.abs(y[0, 0] - y64).max() <= 1e-6 * np.abs(y64).max()
    gy = rng.standard_normal(y.shape)
    grads = F.correlate_vjp(gy.astype(np.float32), x32, w32, padding="same", method="fft")
    grads64 = F.correlate_vjp(gy, x[None, None], w[None, None], padding="same", method="fft")
    for g, g64 in zip(grads[:2], grads64[:2]):
        assert g.dtype == np.float32
        assert np.abs(g - g64).max() <= 1e-6 * np.abs(g64).max()


def test_block_memory_is_a_small_multiple_of_the_output() -> None:
    """A 1024^2 image with a 31^2 kernel: the blocked path's peak allocation (tracemalloc sees
    NumPy's and SciPy's arrays) stays within 6x the output, for each of the three steps."""
    rng = np.random.default_rng(3)
    x_pad = rng.standard_normal((1, 1, 1054, 1054)).astype(np.float32)
    w = rng.standard_normal((1, 1, 31, 31)).astype(np.float32)
    spec = _spec(x_pad, w)
    assert all(t > 1 for t, _, _ in fft._plan(fft._dense(spec), fft._span(spec), 1, 1, 1, 1))
    gy = rng.standard_normal(spec.output_shape).astype(np.float32)
    out_bytes = gy.nbytes
    steps = {
        "correlate": lambda: fft.correlate(spec.xp, x_pad, w, spec, "fft"),
        "input_grad": lambda: fft.input_grad(spec.xp, gy, w, spec, "fft"),
        "weight_grad": lambda: fft.weight_grad(spec.xp, gy, x_pad, spec, "fft"),
    }
    for name, step in steps.items():
        step()  # plans and imports outside the measurement
        tracemalloc.start()
        try:
            step()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 6 * out_bytes, (name, peak / out_bytes)


# ---------------------------------------------------------------------------------------------
# namespaces, dtypes, cost, registry


@pytest.mark.parametrize("library", ["torch", "array_api_strict"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_other_namespaces(library, dtype) -> None:
    """Torch tensors and array_api_strict arrays go through their own ``xp.fft``: same
    numbers, same array kind and dtype, blocked plan included."""
    lib = pytest.importorskip(library)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 4, 150, 9)).astype(dtype)
    w = rng.standard_normal((6, 2, 5, 3)).astype(dtype)
    kw = {"stride": (2, 1), "dilation": (1, 2), "groups": 2, "padding": 1}
    gy = rng.standard_normal(fc2conv.correlate(x, w, **kw).shape).astype(dtype)
    want = [fc2conv.correlate(x, w, **kw, method="fft"),
            *F.correlate_vjp(gy, x, w, **kw, method="fft")[:2]]
    args = [lib.asarray(np.ascontiguousarray(a)) for a in (x, w, gy)]
    got = [fc2conv.correlate(args[0], args[1], **kw, method="fft"),
           *F.correlate_vjp(args[2], args[0], args[1], **kw, method="fft")[:2]]
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for g, e in zip(got, want):
        assert type(g) is type(args[0]) and g.dtype == args[0].dtype
        np.testing.assert_allclose(np.asarray(g), e, rtol=0, atol=tol * np.abs(e).max())


def test_unsupported_and_registry() -> None:
    x, w = np.zeros((1, 1, 8)), np.zeros((1, 1, 3))
    spec = _spec(x, w)
    assert fft.unsupported(spec, "fft") is None
    assert implementation(spec, "fft") is fft
    no_fft = types.ModuleType("no_fft_namespace")
    assert "fft" in fft.unsupported(dataclasses.replace(spec, xp=no_fft), "fft")


def test_cost_prefers_fft_only_for_large_kernels() -> None:
    """The cost is in GEMM-flop equivalents: far below a GEMM's flops for big kernels, above
    them for 3x3 layers with many channels."""

    def gemm_flops(spec):
        return (2 * spec.batch * math.prod(spec.out_size) * spec.out_channels
                * spec.in_channels // spec.groups * math.prod(spec.kernel))

    big = _spec(np.zeros((1, 16, 94, 94)), np.zeros((16, 16, 31, 31)))
    image = _spec(np.zeros((1, 1, 2148, 2148)), np.zeros((1, 1, 101, 101)))
    small = _spec(np.zeros((8, 64, 34, 34)), np.zeros((64, 64, 3, 3)))
    for spec in (big, image):
        assert fft.cost(spec) < gemm_flops(spec) / 4
    assert fft.cost(small) > gemm_flops(small)
    for step in fft.STEPS:
        assert 0 < fft.cost(big, "fft", step) < gemm_flops(big)
        assert fft.cost(big, step=step) == fft.cost(big, step, "fft") == fft.cost(big, step)
    bigger = _spec(np.zeros((2, 16, 94, 94)), np.zeros((16, 16, 31, 31)))
    assert fft.cost(bigger) > fft.cost(big)


def test_float32_stays_float32_in_every_step() -> None:
    rng = np.random.default_rng(5)
    x_pad = rng.standard_normal((2, 2, 12, 10)).astype(np.float32)
    w = rng.standard_normal((2, 2, 3, 3)).astype(np.float32)
    spec = _spec(x_pad, w)
    gy = np.ones(spec.output_shape, np.float32)
    for out in (fft.correlate(spec.xp, x_pad, w, spec, "fft"),
                fft.input_grad(spec.xp, gy, w, spec, "fft"),
                fft.weight_grad(spec.xp, gy, x_pad, spec, "fft")):
        assert out.dtype == np.float32
