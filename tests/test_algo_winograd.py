"""Winograd minimal filtering (``fc2conv.algorithms.winograd``: ``method="winograd"`` and
``"winograd2"``).

Random 1-D and 2-D 3-tap layers (batch, channels, groups incl. depthwise, sizes that do not
divide the tile, every padding form and mode, float32 and float64) through the public API
(``fc2conv.correlate`` / ``convolve`` / ``functional.correlate_vjp``) and through the module
functions directly. The forward is compared elementwise with ``fc2conv.functional.reference``;
the gradients elementwise with the float64 GEMM gradients (themselves checked against the
reference in test_vs_reference.py and test_algo_gemm.py) and by exact random-probe identities
with the reference.

Error measure: Winograd's rounding error is spread over a tile rather than bounded per output,
so the check is normwise, ``max|err| / scale <= ERROR_BOUND[method] * eps(dtype) /
eps(float32)`` with ``scale = max(max|ref|, max(bound) / sqrt(L))``: ``bound`` is the op on
absolute values (``sum |terms|`` per output) and ``L`` the number of terms, a floor for tiny
layers whose few outputs may cancel. The transforms spread every kernel tap over the whole
tile, so where the kernel is involved ``bound`` is taken with each kernel's taps replaced by
their mean magnitude where that is larger (``_spread``): a 1x1 image padded by 1 reads only
the centre tap, yet carries the rounding of all nine (CI found one whose centre tap was 8e-4,
relative error 9e-5 by the window's own terms, 3e-8 by the spread kernel's).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from _record import record
from _strategies import groups_and_channels
from hypothesis import assume, example, given
from hypothesis import strategies as st

import fc2conv
import fc2conv.functional as ff
from fc2conv import _padding, _validate
from fc2conv.algorithms import gemm, winograd
from fc2conv.functional import reference as ref

ORACLE = "reference (winograd)"
METHODS = ("winograd", "winograd2")
MODES = ("zeros", "reflect", "symmetric", "replicate", "circular")
MAX_SIZE = {1: 19, 2: 11}  # several tiles of 4, sizes that do not divide them


def _limit(method: str, dtype) -> float:
    return winograd.ERROR_BOUND[method] * float(np.finfo(dtype).eps / np.finfo(np.float32).eps)


def _spread(w):
    """``|w|`` with every tap of each ``(o, c)`` kernel set to their mean, in float64."""
    a = np.abs(np.asarray(w, dtype=np.float64))
    taps = tuple(range(2, a.ndim))
    return np.broadcast_to(a.mean(axis=taps, keepdims=True), a.shape).copy()


def _abs_bound(op, a, w, **kw):
    """``op(|a|, |w|)`` or ``op(|a|, _spread(w))``, whichever is larger per output."""
    a = np.abs(np.asarray(a, dtype=np.float64))
    return np.maximum(op(a, np.abs(np.asarray(w, dtype=np.float64)), **kw),
                      op(a, _spread(w), **kw))


def _check(what, method, actual, desired, bound, terms, dtype) -> None:
    actual = np.asarray(actual)
    assert actual.shape == desired.shape, f"{what}: shape {actual.shape} != {desired.shape}"
    assert actual.dtype == dtype, f"{what}: dtype {actual.dtype} != {np.dtype(dtype)}"
    err = float(np.max(np.abs(actual.astype(np.float64) - desired)))
    scale = max(float(np.max(np.abs(desired))), float(np.max(bound)) / math.sqrt(terms))
    rel = err / max(scale, np.finfo(np.float64).tiny)
    record(ORACLE, np.dtype(dtype).name, rel)
    assert rel <= _limit(method, dtype), (
        f"{what} {method}: relative error {rel:.3g} > {_limit(method, dtype):.3g}")


@st.composite
def cases(draw, ranks=(1, 2), modes=MODES):
    """``(x, w, kwargs, dtype, method)``: a stride-1, dilation-1, 3-tap layer."""
    d = draw(st.sampled_from(ranks))
    c_in, c_out, groups = draw(groups_and_channels(max_channels=5))
    form = draw(st.sampled_from(["int", "pairs", "valid", "same", "full"]))
    if form == "int":
        padding = draw(st.integers(0, 2))
    elif form == "pairs":
        padding = tuple((draw(st.integers(0, 3)), draw(st.integers(0, 3))) for _ in range(d))
    else:
        padding = form
    sizes = tuple(draw(st.integers(1, MAX_SIZE[d])) for _ in range(d))
    pairs = _validate.padding_pairs(padding, sizes, (3,) * d, (1,) * d, (1,) * d)
    assume(all(n + b + a >= 3 for n, (b, a) in zip(sizes, pairs)))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((draw(st.integers(1, 3)), c_in, *sizes)).astype(dtype)
    w = rng.standard_normal((c_out, c_in // groups, *(3,) * d)).astype(dtype)
    kwargs = {"padding": padding, "groups": groups, "padding_mode": draw(st.sampled_from(modes))}
    return x, w, kwargs, dtype, draw(st.sampled_from(METHODS))


# ---------------------------------------------------------------------------------------------
# public API


@given(case=cases(), flip=st.booleans())
def test_forward_matches_reference(case, flip) -> None:
    x, w, kw, dtype, method = case
    op, ref_op = (fc2conv.convolve, ref.convolve) if flip else (fc2conv.correlate, ref.correlate)
    y = op(x, w, **kw, method=method)
    _check("forward", method, y, ref_op(x, w, **kw), _abs_bound(ref_op, x, w, **kw),
           math.prod(w.shape[1:]), dtype)


@given(case=cases(), seed=st.integers(0, 2**32 - 1))
def test_gradients_match_reference(case, seed) -> None:
    """``correlate_vjp(method=...)`` elementwise against the float64 GEMM gradients, and by the
    probe identities ``<gx, v> = <gy, f(v, w)>``, ``<gw, u> = <gy, f(x, u)>`` against the
    reference."""
    x, w, kw, dtype, method = case
    rng = np.random.default_rng(seed)
    y_ref = ref.correlate(x, w, **kw)
    gy = rng.standard_normal(y_ref.shape).astype(dtype)
    gx, gw, _ = ff.correlate_vjp(gy, x, w, **kw, method=method)

    x64, w64, gy64 = (a.astype(np.float64) for a in (x, w, gy))
    gx_ref, gw_ref, _ = ff.correlate_vjp(gy64, x64, w64, **kw, method="shift")
    gx_bound = np.maximum(*(ff.correlate_vjp(np.abs(gy64), np.abs(x64), kernel, **kw,
                                             method="shift")[0]
                            for kernel in (np.abs(w64), _spread(w64))))
    gw_bound = ff.correlate_vjp(np.abs(gy64), np.abs(x64), np.abs(w64), **kw, method="shift")[1]
    og, positions = w.shape[0] // kw["groups"], y_ref.shape[0] * math.prod(y_ref.shape[2:])
    _check("input gradient", method, gx, gx_ref, gx_bound, og * math.prod(w.shape[2:]), dtype)
    _check("weight gradient", method, gw, gw_ref, gw_bound, positions, dtype)

    v, u = rng.standard_normal(x.shape), rng.standard_normal(w.shape)
    for got, probe, want, bound in (
        (gx, v, ref.correlate(v, w64, **kw), _abs_bound(ref.correlate, v, w64, **kw)),
        (gw, u, ref.correlate(x64, u, **kw), _abs_bound(ref.correlate, x64, u, **kw)),
    ):
        err = abs(np.vdot(got.astype(np.float64), probe) - np.vdot(gy64, want))
        assert err <= _limit(method, dtype) * np.vdot(np.abs(gy64), bound)


def test_vjp_winograd2_with_bias_and_modes() -> None:
    """``correlate_vjp(method="winograd2")`` on a fixed layer: bias gradient, grouped, reflect."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 6, 9, 10))
    w, b = rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    kw = {"padding": (2, 1), "groups": 2, "padding_mode": "reflect"}
    gy = rng.standard_normal(ref.correlate(x, w, b, **kw).shape)
    got = ff.correlate_vjp(gy, x, w, b, **kw, method="winograd2")
    want = ff.correlate_vjp(gy, x, w, b, **kw, method="shift")
    for a, e in zip(got, want):
        np.testing.assert_allclose(a, e, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# the module functions on a padded input


# CI's failure before _spread: one pixel padded by 1, centre tap 8.3e-4.
_ONE_PIXEL = (
    np.array([-1.0443633, -1.1976097, -1.3301742], np.float32).reshape(3, 1, 1, 1),
    np.array([[0.46042988, -1.9006515, -1.4458457], [-0.090290487, 8.3096267e-04, -0.22464997],
              [-1.1572295, 0.91346967, 1.9653697]], np.float32).reshape(1, 1, 3, 3),
    {"padding": 1, "groups": 1, "padding_mode": "zeros"}, np.float32, "winograd")


@pytest.mark.parametrize("method", METHODS)
@given(case=cases(modes=("zeros",)), seed=st.integers(0, 2**32 - 1))
@example(case=_ONE_PIXEL, seed=0)
def test_module_functions(method, case, seed) -> None:
    """``correlate``, ``input_grad`` (w.r.t. the padded input, ``(N, C_in, *S_pad)``) and
    ``weight_grad`` called as ``fc2conv.functional.conv`` calls them."""
    x, w, kw, dtype, _ = case
    spec = _validate.conv_spec(x, w, None, stride=1, dilation=1, method=method, **kw)
    xp = spec.xp
    x_pad = _padding.pad(xp, x, spec.pads, "zeros")
    assert winograd.unsupported(spec, method) is None
    gy = np.random.default_rng(seed).standard_normal(spec.output_shape).astype(dtype)
    got = (winograd.correlate(xp, x_pad, w, spec, method),
           winograd.input_grad(xp, gy, w, spec, method),
           winograd.weight_grad(xp, gy, x_pad, spec, method))
    args = [(x_pad, w), (gy, w), (gy, x_pad)]
    steps = (gemm.correlate, gemm.input_grad, gemm.weight_grad)
    terms = (math.prod(w.shape[1:]), w.shape[0] // spec.groups * math.prod(spec.kernel),
             math.prod(spec.output_shape) // w.shape[0])
    for name, a, step, (p, q), n_terms in zip(("correlate", "input_grad", "weight_grad"), got,
                                              steps, args, terms):
        want = step(np, p.astype(np.float64), q.astype(np.float64), spec, "shift")
        bound = step(np, np.abs(p.astype(np.float64)), np.abs(q.astype(np.float64)), spec,
                     "shift")
        if step is not gemm.weight_grad:  # q is the kernel
            bound = np.maximum(bound, step(np, np.abs(p.astype(np.float64)), _spread(q), spec,
                                           "shift"))
        _check(name, method, a, want, bound, n_terms, dtype)
    assert got[1].shape == (spec.batch, spec.in_channels, *spec.padded_size)


def test_toom_cook_matrices() -> None:
    """Exact in rational arithmetic, and Lavin & Gray's published F(4,3) for 0, +-1, +-2."""
    from fractions import Fraction

    rng = np.random.default_rng(0)
    for method, m in winograd.TILE.items():
        at, g, bt = winograd.toom_cook(winograd.POINTS[method], m)
        for _ in range(3):
            d = [Fraction(int(v)) for v in rng.integers(-9, 9, m + 2)]
            k = [Fraction(int(v)) for v in rng.integers(-9, 9, 3)]
            gk = [sum(r * v for r, v in zip(row, k)) for row in g]
            bd = [sum(r * v for r, v in zip(row, d)) for row in bt]
            y = [sum(r * a * b for r, a, b in zip(row, gk, bd)) for row in at]
            assert y == [sum(k[j] * d[i + j] for j in range(3)) for i in range(m)]
    _, g, bt = winograd.toom_cook((0, 1, -1, 2, -2), 4)
    assert [[int(v) for v in row] for row in bt] == [
        [4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
        [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]]
    assert g[0] == [Fraction(1, 4), 0, 0] and g[5] == [0, 0, 1]


# ---------------------------------------------------------------------------------------------
# what it refuses, the cost, other namespaces


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("x_shape,w_shape,kw,word", [
    ((1, 2, 9, 9), (3, 2, 5, 5), {}, "kernel (5, 5)"),
    ((1, 2, 9, 9), (3, 2, 3, 2), {}, "kernel (3, 2)"),
    ((1, 2, 9, 9), (3, 2, 3, 3), {"stride": 2}, "stride (2, 2)"),
    ((1, 2, 9, 9), (3, 2, 3, 3), {"dilation": (1, 2)}, "dilation (1, 2)"),
    ((1, 2, 9), (3, 2, 5), {}, "kernel (5,)"),
    ((1, 2, 5, 5, 5), (3, 2, 3, 3, 3), {}, "3-D"),
])
def test_unsupported_raises_argument_error(method, x_shape, w_shape, kw, word) -> None:
    x, w = np.ones(x_shape), np.ones(w_shape)
    with pytest.raises(fc2conv.ArgumentError, match="Winograd") as info:
        fc2conv.correlate(x, w, **kw, method=method)
    assert word in str(info.value)
    y = fc2conv.correlate(x, w, **kw)
    with pytest.raises(fc2conv.ArgumentError, match="Winograd"):
        ff.correlate_vjp(np.ones_like(y), x, w, **kw, method=method)
    spec = _validate.conv_spec(x, w, None, stride=kw.get("stride", 1), padding=0,
                               dilation=kw.get("dilation", 1), groups=1, padding_mode="zeros")
    assert winograd.cost(spec, method, "correlate") == math.inf


def test_cost() -> None:
    """Finite; below a 9-tap GEMM correlation's flops at the same GEMM speed on ResNet-like
    layers (where Winograd measured faster), above it for depthwise layers (where the
    transforms dominate); F(4x4) cheaper than F(2x2) on 56x56."""
    def spec(n, c, s, o, g=1):
        return _validate.conv_spec(np.empty((n, c, s, s), np.float32),
                                   np.empty((o, c // g, 3, 3), np.float32), None, stride=1,
                                   padding=1, dilation=1, groups=g, padding_mode="zeros")

    def direct_flops(s):
        per_output = 2 * s.in_channels // s.groups * 9
        return winograd.SCALE * per_output * s.batch * math.prod(s.out_size) * s.out_channels

    for layer in [(8, 64, 56, 64), (8, 256, 14, 256)]:
        s = spec(*layer)
        for step in ("correlate", "input_grad", "weight_grad"):
            assert 0 < winograd.cost(s, "winograd", step) < direct_flops(s)
            assert winograd.cost(s, step, "winograd") == winograd.cost(s, "winograd", step)
    s = spec(8, 64, 56, 64)
    assert winograd.cost(s, "winograd") < winograd.cost(s, "winograd2")
    s = spec(8, 64, 56, 64, g=64)
    assert winograd.cost(s) > direct_flops(s)


@pytest.mark.parametrize("method", METHODS)
def test_other_namespaces(method) -> None:
    """torch tensors and array_api_strict arrays in, the same kind out, same numbers."""
    torch = pytest.importorskip("torch")
    xps = pytest.importorskip("array_api_strict")
    rng = np.random.default_rng(5)
    x, w = rng.standard_normal((2, 4, 7, 9)), rng.standard_normal((6, 2, 3, 3))
    kw = {"padding": 1, "groups": 2}
    gy = rng.standard_normal((2, 6, 7, 9))
    want = [fc2conv.correlate(x, w, **kw, method="shift"),
            *ff.correlate_vjp(gy, x, w, **kw, method="shift")[:2]]
    for wrap, kind in ((torch.asarray, torch.Tensor), (xps.asarray, type(xps.asarray(0.0)))):
        got = [fc2conv.correlate(wrap(x), wrap(w), **kw, method=method),
               *ff.correlate_vjp(wrap(gy), wrap(x), wrap(w), **kw, method=method)[:2]]
        for a, e in zip(got, want):
            assert isinstance(a, kind)
            np.testing.assert_allclose(np.asarray(a), e, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("method", METHODS)
def test_nan_stays_in_its_tiles(method) -> None:
    """A NaN makes every output of the tiles that read it NaN (documented), and no other."""
    x = np.random.default_rng(6).standard_normal((1, 2, 14, 13))
    x[0, 1, 6, 6] = np.nan
    w = np.ones((3, 2, 3, 3))
    with np.errstate(invalid="ignore"):
        got = np.isnan(fc2conv.correlate(x, w, method=method))
    reads = np.isnan(fc2conv.correlate(x, w, method="shift"))
    m = winograd.TILE[method]
    tiles = np.zeros((1, 3, -(-12 // m), -(-11 // m)), dtype=bool)
    i, j = np.nonzero(reads[0, 0])
    tiles[:, :, i // m, j // m] = True
    expected = tiles.repeat(m, axis=2).repeat(m, axis=3)[:, :, :12, :11]
    np.testing.assert_array_equal(got, expected)


# ---------------------------------------------------------------------------------------------
# error bound on realistic layers


def _layer_errors(method, n, c, s, o, groups=1, seed=0):
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal((n, c, s, s)), rng.standard_normal((o, c // groups, 3, 3))
    gy = rng.standard_normal((n, o, s, s))
    kw = {"padding": 1, "groups": groups}
    want = [fc2conv.correlate(x, w, **kw, method="shift"),
            *ff.correlate_vjp(gy, x, w, **kw, method="shift")[:2]]
    f32 = [a.astype(np.float32) for a in (x, w, gy)]
    got = [fc2conv.correlate(*f32[:2], **kw, method=method),
           *ff.correlate_vjp(f32[2], *f32[:2], **kw, method=method)[:2]]
    return [float(np.max(np.abs(a - e)) / np.max(np.abs(e))) for a, e in zip(got, want)]


@pytest.mark.parametrize("method", METHODS)
def test_float32_error_on_a_layer(method) -> None:
    """32 channels, 2 tiles that do not divide 18: within the bound, and F(4x4) measurably
    less accurate than F(2x2) (the documented trade)."""
    errors = _layer_errors(method, 2, 32, 18, 16)
    assert max(errors) <= winograd.ERROR_BOUND[method], errors
    assert min(errors) > 0


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("layer", [(4, 64, 28, 64, 1), (8, 256, 14, 256, 1),
                                   (2, 32, 20, 32, 32)])
def test_float32_error_on_large_layers(method, layer) -> None:
    """The layers of the module docstring's accuracy table."""
    errors = _layer_errors(method, *layer)
    assert max(errors) <= winograd.ERROR_BOUND[method], errors


@pytest.mark.parametrize("method", METHODS)
def test_blocks_of_images(method, monkeypatch) -> None:
    """One image per block (forward, input gradient, weight-gradient sums) gives the result
    of one block holding the whole batch."""
    rng = np.random.default_rng(7)
    x, w = rng.standard_normal((3, 4, 9, 6)), rng.standard_normal((6, 2, 3, 3))
    gy = rng.standard_normal((3, 6, 9, 6))
    kw = {"padding": 1, "groups": 2, "method": method}
    want = [fc2conv.correlate(x, w, **kw), *ff.correlate_vjp(gy, x, w, **kw)[:2]]
    monkeypatch.setattr(winograd, "BLOCK_BYTES", 1)
    got = [fc2conv.correlate(x, w, **kw), *ff.correlate_vjp(gy, x, w, **kw)[:2]]
    for a, e in zip(got, want):
        np.testing.assert_allclose(a, e, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("workers", [2, 3])
@pytest.mark.parametrize(("shape", "pads", "padded"), [
    ((1, 4, 17, 6), ((1, 1), (1, 1)), True),
    ((1, 4, 17, 6), ((1, 1), (1, 1)), False),
    ((2, 3, 10, 5), ((0, 2), (3, 0)), False),
    ((1, 2, 23), ((2, 0),), False),
])
def test_bands_of_one_image(method, workers, shape, pads, padded, monkeypatch) -> None:
    """Fewer images than worker threads: each image's rows are cut into bands of whole
    tiles, one per thread (forward, input gradient, weight gradient), with the same results
    as whole images, padded or reading the zero padding itself."""
    rng = np.random.default_rng(8)
    x = rng.standard_normal(shape)
    w = rng.standard_normal((5, shape[1], *(3,) * (len(shape) - 2)))
    spec = _validate.conv_spec(x, w, None, stride=1, padding=pads, dilation=1, groups=1,
                               padding_mode="zeros")
    if padded:
        x = np.pad(x, ((0, 0), (0, 0), *pads))
    gy = rng.standard_normal(spec.output_shape)

    def steps():
        return (winograd.correlate(np, x, w, spec, method, padded=padded),
                winograd.input_grad(np, gy, w, spec, method, padded=padded),
                winograd.weight_grad(np, gy, x, spec, method, padded=padded))

    whole = steps()
    monkeypatch.setattr(winograd, "fft_workers", lambda: workers)
    monkeypatch.setattr(winograd, "BAND_MIN_BYTES", 0)
    m = winograd.TILE[method]
    parts = winograd._parts(shape[0], spec.out_size[0], m, 1, workers)
    assert len(parts) >= workers
    assert (len({rows.start for _, rows in parts}) > 1) == (shape[0] < workers)  # bands
    for got, want in zip(steps(), whole):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method", ["winograd", "winograd2"])
@pytest.mark.parametrize("pads", [((1, 1), (1, 1)), ((0, 2), (3, 0)), ((2, 0), (0, 0))])
def test_unpadded_input_reads_the_zero_padding(method, pads) -> None:
    """``padded=False``: the unpadded input with ``spec.pads`` of zeros gives what the
    padded copy gives (forward, weight gradient) and the input gradient's interior, including
    asymmetric pads and a pad wider than the kernel's reach."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 4, 9, 7))
    w = rng.standard_normal((5, 4, 3, 3))
    spec = _validate.conv_spec(x, w, None, stride=1, padding=pads, dilation=1, groups=1,
                               padding_mode="zeros")
    x_pad = np.pad(x, ((0, 0), (0, 0), *pads))
    gy = rng.standard_normal(spec.output_shape)
    np.testing.assert_allclose(winograd.correlate(np, x, w, spec, method, padded=False),
                               winograd.correlate(np, x_pad, w, spec, method), atol=1e-12)
    np.testing.assert_allclose(winograd.weight_grad(np, gy, x, spec, method, padded=False),
                               winograd.weight_grad(np, gy, x_pad, spec, method), atol=1e-12)
    inner = tuple(slice(b, b + n) for (b, _), n in zip(pads, x.shape[2:]))
    np.testing.assert_allclose(winograd.input_grad(np, gy, w, spec, method, padded=False),
                               winograd.input_grad(np, gy, w, spec, method)[(..., *inner)],
                               atol=1e-12)
    assert winograd.input_grad(np, gy, w, spec, method, padded=False).shape == x.shape
