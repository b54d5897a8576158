"""The direct algorithm (``fc2conv.algorithms.direct``, ``method="direct"``).

Forward values and both gradients against the float64 oracle ``fc2conv.functional.reference``
over random depthwise and narrow grouped layers (ranks 1-3, channel multipliers, stride,
dilation, every padding form and mode, float32 and float64), through ``fc2conv.correlate`` /
``convolve`` and their VJPs with ``method="direct"``, and module-level (forward: ``correlate``;
input gradient: ``conv_transpose``, its adjoint; weight gradient: the defining sum over
windows). The block machinery is forced to cut layers into many blocks (slabs of rows, groups
of one image, several threads). Also: the portable path on array_api_strict and torch,
non-finite inputs, :func:`cost` and the layers it refuses.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import pytest
from _strategies import DTYPES, check_vjp_by_probes, compare, conv_cases
from hypothesis import given, settings
from hypothesis import strategies as st

import fc2conv
import fc2conv.functional as ff
from fc2conv import _buffering, _validate
from fc2conv.algorithms import direct, implementation
from fc2conv.functional import reference as ref

ORACLE = "reference (direct)"


@contextlib.contextmanager
def small_blocks(block_bytes: int, threads: int = 2):
    """Tiny blocks (``MIN_GRID`` off) so one layer becomes many blocks, slabs included, run
    on ``threads`` threads whatever the size of their products."""
    saved = (direct.BLOCK_BYTES, direct.MIN_GRID, direct.MIN_BLOCKS_PER_THREAD,
             direct.THREADED_PRODUCT, direct.fft_workers)
    direct.BLOCK_BYTES, direct.MIN_GRID, direct.MIN_BLOCKS_PER_THREAD = block_bytes, 1, 1
    direct.THREADED_PRODUCT = 0
    direct.fft_workers = lambda: threads
    try:
        yield
    finally:
        (direct.BLOCK_BYTES, direct.MIN_GRID, direct.MIN_BLOCKS_PER_THREAD,
         direct.THREADED_PRODUCT, direct.fft_workers) = saved


def _abs(a):
    return None if a is None else np.abs(a)


@st.composite
def narrow_cases(draw, ranks=(1, 2, 3), modes=("zeros", "reflect", "symmetric", "replicate",
                                                 "circular")):
    """conv_cases whose layers direct runs (C_in/G <= 4 here; depthwise half the time)."""
    return draw(conv_cases(ranks=ranks, modes=modes, max_channels=4))


# ---------------------------------------------------------------------------------------------
# through the public API


@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("op", ["correlate", "convolve"])
@settings(max_examples=40)
@given(data=st.data())
def test_forward_matches_reference(rank, op, data) -> None:
    case = data.draw(narrow_cases(ranks=(rank,)), label="case")
    y = getattr(fc2conv, op)(case.x, case.w, case.b, **case.kwargs, method="direct")
    y_ref = getattr(ref, op)(case.x, case.w, case.b, **case.kwargs)
    bound = getattr(ref, op)(_abs(case.x), _abs(case.w), _abs(case.b), **case.kwargs)
    terms = math.prod(case.w.shape[1:]) + 1
    compare(ORACLE, y, y_ref, bound, terms, case.dtype, what=f"{op} direct")


@pytest.mark.parametrize("rank", [1, 2, 3])
@given(data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_vjp_matches_reference(rank, data, seed) -> None:
    """Both gradients by exact random-probe identities with the oracle; the bias gradient
    against its sum."""
    case = data.draw(narrow_cases(ranks=(rank,)), label="case")
    gy, _, _, gb = check_vjp_by_probes(ORACLE, case, "direct", seed)
    if case.b is not None:
        np.testing.assert_allclose(gb, gy.astype(np.float64).sum(axis=(0, *range(2, gy.ndim))),
                                   rtol=1e-4 if case.dtype == np.float32 else 1e-12, atol=1e-4)


@settings(max_examples=40)
@given(case=narrow_cases(ranks=(2,), modes=("zeros", "circular")),
       seed=st.integers(0, 2**32 - 1))
def test_convolve_vjp_equals_shift(case, seed) -> None:
    """The flipped kernel (convolve) through direct's gradients equals the GEMM method's."""
    gy = np.random.default_rng(seed).standard_normal(
        fc2conv.convolve(case.x, case.w, **case.kwargs).shape).astype(case.dtype)
    got = ff.convolve_vjp(gy, case.x, case.w, case.b, **case.kwargs, method="direct")
    want = ff.convolve_vjp(gy, case.x, case.w, case.b, **case.kwargs, method="shift")
    tol = 1e-4 if case.dtype == np.float32 else 1e-11
    for a, b in zip(got, want):
        if b is None:
            assert a is None
        else:
            np.testing.assert_allclose(a, b, rtol=tol, atol=tol * max(1.0, np.abs(b).max()))


# ---------------------------------------------------------------------------------------------
# module level, on a padded input, with many blocks


@st.composite
def padded_layers(draw):
    """(x_pad, w, spec) of a narrow layer on an already padded input."""
    d = draw(st.integers(1, 3))
    groups = draw(st.integers(1, 3))
    cg, og = draw(st.sampled_from([1, 1, 2, 3])), draw(st.integers(1, 3))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(d))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(d))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(d))
    size = tuple(dl * (k - 1) + 1 + draw(st.integers(0, {1: 12, 2: 7, 3: 4}[d]))
                 for k, dl in zip(kernel, dilation))
    batch = draw(st.integers(1, 3))
    dtype = draw(st.sampled_from(DTYPES))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x_pad = rng.standard_normal((batch, groups * cg, *size)).astype(dtype)
    w = rng.standard_normal((groups * og, cg, *kernel)).astype(dtype)
    spec = _validate.conv_spec(x_pad, w, None, stride=stride, padding=0, dilation=dilation,
                               groups=groups, padding_mode="zeros", method="direct")
    return x_pad, w, spec


def _weight_grad_ref(gy, x_pad, spec):
    """gw[o, c, a] = sum_{n, i} gy[n, o, i] * x_pad[n, g*cg + c, i*s + a*d], in float64."""
    cg, og = spec.in_channels // spec.groups, spec.out_channels // spec.groups
    gw = np.zeros((spec.out_channels, cg, *spec.kernel))
    for a in np.ndindex(*spec.kernel):
        index = (Ellipsis, *(slice(o * dl, o * dl + s * (m - 1) + 1, s) for o, s, dl, m in
                             zip(a, spec.stride, spec.dilation, spec.out_size)))
        part = x_pad[index].astype(np.float64)
        for o in range(spec.out_channels):
            for c in range(cg):
                gw[(o, c, *a)] = np.sum(gy[:, o] * part[:, (o // og) * cg + c])
    return gw


@pytest.mark.parametrize("block_bytes", [None, 64, 3000])
@settings(max_examples=60)
@given(layer=padded_layers(), seed=st.integers(0, 2**32 - 1))
def test_module_steps_match_reference(block_bytes, layer, seed) -> None:
    """Forward, input gradient (w.r.t. the padded input) and weight gradient, with the
    default blocks, with slabs of a row or two, and with groups of one image per block."""
    x_pad, w, spec = layer
    gy = np.random.default_rng(seed).standard_normal(spec.output_shape).astype(x_pad.dtype)
    with small_blocks(block_bytes) if block_bytes else contextlib.nullcontext():
        y = direct.correlate(spec.xp, x_pad, w, spec, "direct")
        gx = direct.input_grad(spec.xp, gy, w, spec, "direct")
        gw = direct.weight_grad(spec.xp, gy, x_pad, spec, "direct")
    kw = {"stride": spec.stride, "dilation": spec.dilation, "groups": spec.groups}
    terms = math.prod(w.shape[1:]) + 1
    compare(ORACLE, y, ref.correlate(x_pad, w, **kw),
            ref.correlate(np.abs(x_pad), np.abs(w), **kw), terms, x_pad.dtype, what="forward")
    # the input gradient is the adjoint: a transposed convolution back to the padded size
    out_pad = tuple(n - ((m - 1) * s + dl * (k - 1) + 1) for n, m, s, dl, k in
                    zip(spec.padded_size, spec.out_size, spec.stride, spec.dilation,
                        spec.kernel))
    tkw = {**kw, "output_padding": out_pad}
    if all(op < max(s, dl) for op, s, dl in zip(out_pad, spec.stride, spec.dilation)):
        terms_x = (spec.out_channels // spec.groups) * math.prod(spec.kernel) + 1
        compare(ORACLE, gx, ref.conv_transpose(gy, w, **tkw),
                ref.conv_transpose(np.abs(gy), np.abs(w), **tkw), terms_x, x_pad.dtype,
                what="input_grad")
    else:  # outside conv_transpose's output_padding range: against the GEMM method
        np.testing.assert_allclose(gx, implementation(spec, "shift").input_grad(
            spec.xp, gy, w, spec, "shift"), rtol=1e-4, atol=1e-4)
    terms_w = spec.batch * math.prod(spec.out_size) + 1
    compare(ORACLE, gw, _weight_grad_ref(gy, x_pad, spec),
            _weight_grad_ref(np.abs(gy), np.abs(x_pad), spec), terms_w, x_pad.dtype,
            what="weight_grad")


@pytest.mark.parametrize("block_bytes", [None, 64, 3000])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize(("size", "kernel", "dilation"), [
    ((30,), (5,), (2,)), ((9, 11), (3, 3), (1, 1)), ((10, 9), (3, 2), (2, 1)),
    ((6, 5, 7), (2, 3, 1), (1, 1, 2))])
def test_depthwise_weight_grad_dots(block_bytes, stride, size, kernel, dilation,
                                    monkeypatch) -> None:
    """Depthwise: the weight gradient is made of vecdot calls and no matrix products, at
    stride 1 one per block over a view of every offset's run, else one per offset (the
    path is taken, and matches the float64 oracle)."""
    taken, calls = [], []
    windows, vecdot, matmul = direct._offset_windows, np.vecdot, np.matmul
    monkeypatch.setattr(direct, "_offset_windows",
                        lambda *args: taken.append(1) or windows(*args))
    monkeypatch.setattr(direct.np, "vecdot", lambda *a, **k: calls.append(1) or vecdot(*a, **k))
    monkeypatch.setattr(direct.np, "matmul", lambda *a, **k: pytest.fail("a matrix product"))
    rng = np.random.default_rng(11)
    x_pad = rng.standard_normal((3, 5, *size))
    w = rng.standard_normal((5, 1, *kernel))
    spec = _validate.conv_spec(x_pad, w, None, stride=stride, padding=0, dilation=dilation,
                               groups=5, padding_mode="zeros", method="direct")
    gy = rng.standard_normal(spec.output_shape)
    with small_blocks(block_bytes) if block_bytes else contextlib.nullcontext():
        gw = direct.weight_grad(np, gy, x_pad, spec, "direct")
    monkeypatch.setattr(direct.np, "matmul", matmul)
    assert bool(taken) == (stride == 1) and calls
    np.testing.assert_allclose(gw, _weight_grad_ref(gy, x_pad, spec), rtol=1e-12, atol=1e-12)


def _input_grad_ref(gy, w, spec):
    """gx_pad[n, g*cg + c, i*s + a*d] += sum_o gy[n, g*og + o, i] * w[g*og + o, c, a], in
    float64."""
    cg, og = spec.in_channels // spec.groups, spec.out_channels // spec.groups
    gx = np.zeros((spec.batch, spec.in_channels, *spec.padded_size))
    for a in np.ndindex(*spec.kernel):
        index = (Ellipsis, *(slice(o * dl, o * dl + s * (m - 1) + 1, s) for o, s, dl, m in
                             zip(a, spec.stride, spec.dilation, spec.out_size)))
        for o in range(spec.out_channels):
            for c in range(cg):
                target = gx[:, (o // og) * cg + c][index]
                target += gy[:, o].astype(np.float64) * float(w[(o, c, *a)])
    return gx


@pytest.mark.parametrize(("size", "kernel", "stride", "padding", "dilation"), [
    ((14, 14), (5, 5), 1, 0, 1), ((9, 11), (3, 3), 2, 1, 1), ((7, 6, 5), (3, 2, 3), 1, 1, 1),
    ((40,), (5,), 1, 2, 2)])
@pytest.mark.parametrize("block_bytes", [None, 64])
@pytest.mark.parametrize("in_channels", [4, 2])
def test_flat_adds_and_staged_rows_match_reference(size, kernel, stride, padding, dilation,
                                                   block_bytes, in_channels,
                                                   monkeypatch) -> None:
    """Forward and input gradient add each offset's product with one flat ``np.add`` over a
    contiguous accumulator (zero tails spill into the next item), and fall back to the
    strided add on a slab of a larger image; at stride 1 the forward and weight gradient
    run on staged rows (one product per row of the kernel), and with one input channel per
    group so does the input gradient (products per row, written offset-major): all agree
    with the float64 oracle."""
    taken, staged, staged_grad = [], [], []
    pair, stage, stage_grad = direct._flat_pair, direct._stage_rows, direct._staged_input_grad
    monkeypatch.setattr(direct, "_flat_pair",
                        lambda *a, **k: taken.append((r := pair(*a, **k)) is not None) or r)
    monkeypatch.setattr(direct, "_stage_rows", lambda *a: staged.append(1) or stage(*a))
    monkeypatch.setattr(direct, "_staged_input_grad",
                        lambda *a: staged_grad.append(1) or stage_grad(*a))
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, in_channels, *size))
    x_pad = np.pad(x, ((0, 0), (0, 0)) + ((padding, padding),) * len(size))
    w = rng.standard_normal((6, in_channels // 2, *kernel))
    spec = _validate.conv_spec(x_pad, w, None, stride=stride, padding=0, dilation=dilation,
                               groups=2, padding_mode="zeros", method="direct")
    gy = rng.standard_normal(spec.output_shape)
    with small_blocks(block_bytes) if block_bytes else contextlib.nullcontext():
        y = direct.correlate(np, x_pad, w, spec, "direct")
        gx = direct.input_grad(np, gy, w, spec, "direct")
        gw = direct.weight_grad(np, gy, x_pad, spec, "direct")
    kw = {"stride": stride, "dilation": dilation, "groups": 2}
    np.testing.assert_allclose(y, ref.correlate(x_pad, w, **kw), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(gx, _input_grad_ref(gy, w, spec), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(gw, _weight_grad_ref(gy, x_pad, spec), rtol=1e-10, atol=1e-10)
    assert bool(staged) == (stride == 1 and len(size) > 1)  # (1-D: never staged)
    assert bool(staged_grad) == (bool(staged) and in_channels == 2)
    if block_bytes is None and not staged_grad:
        assert all(taken)  # blocks of whole images
    elif block_bytes and stride == 1 and not staged_grad:
        assert not all(taken)  # slabs of one image's rows: strided adds


@pytest.mark.parametrize(("size", "kernel", "stride", "pads", "groups", "c_out"), [
    ((12, 11), (3, 3), (1, 1), ((1, 1), (1, 1)), 4, 4),
    ((12, 11), (3, 3), (1, 1), ((1, 1), (1, 1)), 4, 8),  # one channel in, two out: staged
    ((9, 10), (5, 3), (2, 1), ((2, 1), (0, 3)), 2, 4),
    ((7, 6, 5), (3, 2, 3), (1, 1, 1), ((1, 1), (0, 1), (2, 2)), 1, 4),
    ((30,), (4,), (3,), ((2, 5),), 4, 4)])
@pytest.mark.parametrize("block_bytes", [None, 64])
def test_unpadded_input_matches_padded(size, kernel, stride, pads, groups, c_out,
                                       block_bytes) -> None:
    """``padded=False``: the steps take the unpadded input and fill the zero padding in their
    gathers; the forward, the input gradient (to the unpadded input) and the weight gradient
    equal the padded path's, cropped (the staged input gradient included: one channel in,
    two out)."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 4, *size))
    w = rng.standard_normal((c_out, 4 // groups, *kernel))
    spec = _validate.conv_spec(x, w, None, stride=stride, padding=pads, dilation=1,
                               groups=groups, padding_mode="zeros", method="direct")
    x_pad = np.pad(x, ((0, 0), (0, 0), *pads))
    gy = rng.standard_normal(spec.output_shape)
    inner = (Ellipsis, *(slice(b, b + n) for (b, _), n in zip(pads, size)))
    with small_blocks(block_bytes) if block_bytes else contextlib.nullcontext():
        np.testing.assert_allclose(direct.correlate(np, x, w, spec, "direct", padded=False),
                                   direct.correlate(np, x_pad, w, spec, "direct"), atol=1e-12)
        np.testing.assert_allclose(direct.input_grad(np, gy, w, spec, "direct", padded=False),
                                   direct.input_grad(np, gy, w, spec, "direct")[inner],
                                   atol=1e-12)
        np.testing.assert_allclose(direct.weight_grad(np, gy, x, spec, "direct", padded=False),
                                   _weight_grad_ref(gy, x_pad, spec), atol=1e-10)


@pytest.mark.parametrize(("size", "kernel", "dilation", "pads", "as_forward"), [
    ((12, 11), (3, 3), (1, 1), ((1, 1), (1, 1)), True),  # "same"
    ((12, 11), (3, 2), (2, 1), ((0, 0), (0, 0)), True),  # "valid": a full correlation
    ((12, 11), (3, 3), (1, 1), ((2, 2), (2, 2)), True),  # "full": grad_out read in place
    ((12, 11), (3, 3), (1, 1), ((3, 0), (1, 1)), False),  # more padding than the reach
    ((40,), (5,), (3,), ((2, 7),), True)])
def test_depthwise_input_grad_runs_as_a_forward(size, kernel, dilation, pads, as_forward,
                                                monkeypatch) -> None:
    """One channel in and out per group at stride 1: the gradient to the unpadded input is
    the forward step on ``grad_out`` with the flipped kernel (where the layer's padding is
    within the kernel's reach), equal to the float64 oracle's."""
    calls = []
    forward = direct._forward
    monkeypatch.setattr(direct, "_forward", lambda *a, **k: calls.append(1) or forward(*a, **k))
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, *size))
    w = rng.standard_normal((3, 1, *kernel))
    spec = _validate.conv_spec(x, w, None, stride=1, padding=pads, dilation=dilation,
                               groups=3, padding_mode="zeros", method="direct")
    gy = rng.standard_normal(spec.output_shape)
    gx = direct.input_grad(np, gy, w, spec, "direct", padded=False)
    assert bool(calls) == as_forward
    np.testing.assert_array_equal(  # (grad_out in any memory order)
        gx, direct.input_grad(np, np.asfortranarray(gy), w, spec, "direct", padded=False))
    inner = (Ellipsis, *(slice(b, b + n) for (b, _), n in zip(pads, size)))
    np.testing.assert_allclose(gx, _input_grad_ref(gy, w, spec)[inner], rtol=1e-12, atol=1e-12)


def test_small_products_stay_on_one_thread(monkeypatch) -> None:
    """Steps made of small BLAS products run their blocks on the calling thread, and so do
    broadcast multiplies (depthwise) over blocks of several (image, group) items; broadcast
    multiplies over slabs of one large image and large products may use the worker
    threads."""
    asked = []
    run = direct.Engine.run
    monkeypatch.setattr(direct.Engine, "run",
                        lambda self, work, blocks=None, threads=True:
                        asked.append(threads) or run(self, work, blocks, threads))
    rng = np.random.default_rng(3)
    for x_shape, c_out, groups, threshold, expected in [
            ((64, 6, 14, 14), 16, 1, None, False),  # small products
            ((64, 8, 14, 14), 8, 8, None, False),  # depthwise, blocks of many groups
            ((1, 1, 700, 700), 1, 1, None, True),  # one image: slabs of rows
            ((64, 6, 14, 14), 16, 1, 1 << 10, True)]:  # 16 x 30 x 136: "large" above 2^10
        if threshold:
            monkeypatch.setattr(direct, "THREADED_PRODUCT", threshold)
        x = rng.standard_normal(x_shape).astype(np.float32)
        w = rng.standard_normal((c_out, x_shape[1] // groups, 5, 5)).astype(np.float32)
        spec = _validate.conv_spec(x, w, None, stride=1, padding=0, dilation=1,
                                   groups=groups, padding_mode="zeros", method="direct")
        gy = np.ones(spec.output_shape, np.float32)
        asked.clear()
        direct.correlate(np, x, w, spec, "direct")
        direct.input_grad(np, gy, w, spec, "direct")
        direct.weight_grad(np, gy, x, spec, "direct")
        assert asked == [expected] * 3, (x_shape, groups, threshold)


def test_threads_give_the_same_numbers() -> None:
    """Blocks on 1 or 3 threads: identical forward and input gradient (each cell is computed
    by one thread in the same order), weight gradients equal to rounding."""
    rng = np.random.default_rng(0)
    x_pad = rng.standard_normal((3, 6, 11, 9)).astype(np.float32)
    w = rng.standard_normal((12, 1, 3, 2)).astype(np.float32)
    spec = _validate.conv_spec(x_pad, w, None, stride=(2, 1), padding=0, dilation=1,
                               groups=6, padding_mode="zeros", method="direct")
    gy = rng.standard_normal(spec.output_shape).astype(np.float32)
    results = []
    for threads in (1, 3):
        with small_blocks(300, threads):
            results.append((direct.correlate(spec.xp, x_pad, w, spec, "direct"),
                            direct.input_grad(spec.xp, gy, w, spec, "direct"),
                            direct.weight_grad(spec.xp, gy, x_pad, spec, "direct")))
    (y1, gx1, gw1), (y3, gx3, gw3) = results
    np.testing.assert_array_equal(y1, y3)
    np.testing.assert_array_equal(gx1, gx3)
    np.testing.assert_allclose(gw1, gw3, rtol=1e-5, atol=1e-5)


def test_engine_blocks_cover_the_layer_once() -> None:
    """Every (image, group, output row) lies in exactly one block, whatever the budget."""
    layer = direct.Layer(5, 7, 1, 2, (40, 9), ((0, 0), (0, 0)), (3, 3), (1, 1), (1, 1),
                         (38, 7))
    for block_bytes in (50, 2000, 30000, 1 << 20):
        with small_blocks(block_bytes):
            blocks = direct.Engine(layer, np.float32).blocks
        seen = np.zeros((5, 7, 38), dtype=int)
        for b in blocks:
            seen[b.n0:b.n1, b.g0:b.g1, b.i0:b.i1] += 1
        assert (seen == 1).all(), block_bytes


# ---------------------------------------------------------------------------------------------
# other namespaces, special values


@pytest.mark.parametrize("backend", ["array_api_strict", "torch"])
def test_portable_path_matches_numpy(backend) -> None:
    mod = pytest.importorskip(backend)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 4, 7, 6))
    w = rng.standard_normal((8, 2, 3, 2))
    kw = {"stride": (2, 1), "padding": 1, "dilation": (1, 2), "groups": 2, "method": "direct"}
    y = fc2conv.correlate(x, w, **kw)
    gy = rng.standard_normal(y.shape)
    grads = ff.correlate_vjp(gy, x, w, **kw)
    wrap = (lambda a: mod.asarray(a)) if backend == "array_api_strict" else mod.from_numpy
    y2 = fc2conv.correlate(wrap(x), wrap(w), **kw)
    grads2 = ff.correlate_vjp(wrap(gy), wrap(x), wrap(w), **kw)
    assert type(y2) is type(wrap(x))
    for a, b in zip((y, *grads[:2]), (y2, *grads2[:2])):
        np.testing.assert_allclose(np.asarray(b), a, rtol=1e-12, atol=1e-12)


def test_non_finite_values_stay_where_they_belong() -> None:
    """The grid's junk points never spread an inf or NaN to cells that do not read it."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 6, 7))
    w = rng.standard_normal((3, 1, 3, 3))
    gy = rng.standard_normal((2, 3, 6, 7))
    kw = {"padding": 1, "groups": 3}
    x_bad = x.copy()
    x_bad[0, 1, 2, 6] = np.inf
    x_bad[1, 2, 0, 0] = np.nan
    w_bad = w.copy()
    w_bad[1, 0, 0, 2] = np.inf
    with np.errstate(invalid="ignore", over="ignore"):
        for xx, ww in ((x_bad, w), (x, w_bad)):
            got = ff.correlate_vjp(gy, xx, ww, **kw, method="direct")
            want = ff.correlate_vjp(gy, xx, ww, **kw, method="shift")
            for a, b in zip(got[:2], want[:2]):
                np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
                np.testing.assert_array_equal(np.isinf(a), np.isinf(b))
                ok = np.isfinite(b)
                np.testing.assert_allclose(a[ok], b[ok], rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# what it refuses, and its cost


def test_wide_groups_are_refused() -> None:
    cg = direct.MAX_GROUP_CHANNELS * 2
    x = np.zeros((1, 2 * cg, 5, 5))
    w = np.zeros((2, cg, 3, 3))
    with pytest.raises(fc2conv.ArgumentError, match="C_in/groups"):
        fc2conv.correlate(x, w, groups=2, method="direct")
    with pytest.raises(fc2conv.ArgumentError, match="C_in/groups"):
        ff.correlate_vjp(np.zeros((1, 2, 3, 3)), x, w, groups=2, method="direct")
    spec = _validate.conv_spec(x, w, None, stride=1, padding=0, dilation=1, groups=2,
                               padding_mode="zeros", method="direct")
    assert direct.unsupported(spec, "direct") is not None
    with pytest.raises(fc2conv.ArgumentError):
        implementation(spec, "direct")


def test_cost_is_finite_positive_and_grows_with_the_layer() -> None:
    def spec_of(n, c, s, k, stride=1, groups=None):
        x, w = np.zeros((n, c, s, s), np.float32), np.zeros((c, 1, k, k), np.float32)
        return _validate.conv_spec(x, w, None, stride=stride, padding=k // 2, dilation=1,
                                   groups=c if groups is None else groups,
                                   padding_mode="zeros", method="auto")

    base = spec_of(8, 128, 56, 3)
    for step in ("correlate", "input_grad", "weight_grad"):
        c = direct.cost(base, method="direct", step=step)
        assert 0 < c < math.inf
        assert direct.cost(spec_of(16, 128, 56, 3), step=step) > 1.8 * c
        assert direct.cost(spec_of(8, 128, 56, 5), step=step) > c
    assert direct.cost(base) == direct.cost(base, "direct", "correlate")
    # a multiply-add per offset and grid point: the same order as the layer's GEMM flops
    flops = 2 * 8 * 128 * 56 * 56 * 9
    assert flops < direct.cost(base) < 100 * flops


def test_strided_views_in_and_out() -> None:
    rng = np.random.default_rng(4)
    x = rng.standard_normal((7, 2, 4, 12)).transpose(1, 2, 0, 3)[..., ::2]  # (2, 4, 7, 6)
    w = rng.standard_normal((3, 3, 8, 1)).transpose(2, 3, 0, 1)  # (8, 1, 3, 3)
    kw = {"padding": (1, 0), "groups": 4, "method": "direct"}
    y = fc2conv.correlate(x, w, **kw)
    gy = np.asfortranarray(rng.standard_normal(y.shape))
    copies = [np.ascontiguousarray(a) for a in (gy, x, w)]
    np.testing.assert_array_equal(y, fc2conv.correlate(*copies[1:], **kw))
    for a, b in zip(ff.correlate_vjp(gy, x, w, **kw), ff.correlate_vjp(*copies, **kw)):
        if a is not None:
            np.testing.assert_array_equal(a, b)


def test_broadcast_multiplies_run_unbuffered(monkeypatch) -> None:
    """Depthwise forward and input gradient (broadcast multiplies over runs of the grid) run
    with NumPy's ufunc buffering off in every thread that does the work, and restore it."""
    seen = []
    multiply = np.multiply

    def spy(*args, **kwargs):
        seen.append(np.getbufsize())
        return multiply(*args, **kwargs)

    monkeypatch.setattr(direct.np, "multiply", spy)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 8, 40, 40)).astype(np.float32)
    w = rng.standard_normal((8, 1, 3, 3)).astype(np.float32)
    spec = _validate.conv_spec(x, w, None, stride=1, padding=0, dilation=1, groups=8,
                               padding_mode="zeros", method="direct")
    gy = rng.standard_normal(spec.output_shape).astype(np.float32)
    before = np.getbufsize()
    y = direct.correlate(np, x, w, spec, "direct")
    gx = direct.input_grad(np, gy, w, spec, "direct")
    monkeypatch.setattr(direct.np, "multiply", multiply)
    assert seen and max(seen) < before and np.getbufsize() == before
    np.testing.assert_allclose(y, ref.correlate(x.astype(np.float64), w, groups=8), rtol=1e-4,
                               atol=1e-4)
    np.testing.assert_allclose(gx, _input_grad_ref(gy, w, spec), rtol=1e-4, atol=1e-4)


def test_unbuffered_keeps_short_runs_buffered() -> None:
    """Runs shorter than ``LONG_RUN`` (``STRIDED_RUN`` for strided operands) keep NumPy's
    buffering (it wins there); the size is restored after the work, also when the work
    raises."""
    work = np.getbufsize
    assert _buffering.unbuffered(work, _buffering.LONG_RUN - 1) is work
    strided = _buffering.STRIDED_RUN
    assert _buffering.unbuffered(work, strided - 1, strided) is work
    before = np.getbufsize()
    assert _buffering.unbuffered(work, _buffering.LONG_RUN)() < before
    assert _buffering.unbuffered(work, strided, strided)() < before

    def fails():
        raise ValueError("inside")

    with pytest.raises(ValueError, match="inside"):
        _buffering.unbuffered(fails, 10 ** 6)()
    assert np.getbufsize() == before
