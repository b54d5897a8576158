"""The ladder's conversions are exact, and its projections are orthogonal projections.

Every conversion is checked on random layers (Hypothesis over ranks, channels, groups, stride,
dilation, padding forms and all five padding modes) in float64, against the layer's own
output and against the definitions written out independently here.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fc2conv
from fc2conv import ArgumentError, ShapeError, ladder, nn
from fc2conv.functional import reference as ref

MODES = ("zeros", "reflect", "symmetric", "replicate", "circular")
F64 = np.float64


def family(name, ndim):
    return getattr(nn, f"{name}{ndim}d")


def rel(a, b):
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / max(np.linalg.norm(b), 1e-300))


def dense_out(dense, x):
    """The dense layer's output through the float64 oracle, not the fast path."""
    return ref.dense_grid(x, dense.weight, dense.bias)


@st.composite
def conv_layers(draw, modes=MODES):
    """A random Conv layer and an input size it accepts."""
    ndim = draw(st.sampled_from((1, 1, 2, 2, 3)))
    groups = draw(st.sampled_from((1, 1, 2)))
    c_in = groups * draw(st.integers(1, 2))
    c_out = groups * draw(st.integers(1, 2))
    small = 3 if ndim == 3 else 4
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
    stride = tuple(draw(st.integers(1, 2)) for _ in range(ndim))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(ndim))
    mode = draw(st.sampled_from(modes))
    padding = draw(st.one_of(
        st.just("same"), st.just("valid"),
        st.tuples(*(st.integers(0, (k - 1) * d) for k, d in zip(kernel, dilation))),
    ))
    if padding == "same" and any(s > 1 for s in stride):
        padding = "valid"
    low = [(k - 1) * d + 1 for k, d in zip(kernel, dilation)]
    size = tuple(draw(st.integers(max(lo, 2), max(lo, 2) + small)) for lo in low)
    if mode in ("reflect",) and padding not in ("valid",):
        size = tuple(max(n, (k - 1) * d + 1) for n, k, d in zip(size, kernel, dilation))
    bias = draw(st.booleans())
    conv = family("Conv", ndim)(c_in, c_out, kernel, stride=stride, padding=padding,
                                dilation=dilation, groups=groups, bias=bias, padding_mode=mode,
                                dtype=F64, rng=draw(st.integers(0, 2**31)))
    return conv, size


def random_input(layer_in_channels, size, seed=0, batch=2):
    return np.random.default_rng(seed).standard_normal((batch, layer_in_channels, *size))


# ---------------------------------------------------------------------------------------------
# to_dense


@given(conv_layers())
def test_to_dense_of_any_conv_reproduces_it(case):
    conv, size = case
    x = random_input(conv.in_channels, size)
    dense = ladder.to_dense(conv, size)
    assert dense.weight.shape == (*conv.output_shape((conv.in_channels, *size))[1:],
                                  conv.out_channels, conv.in_channels, *size)
    assert rel(dense_out(dense, x), conv(x)) < 1e-12
    assert rel(fc2conv.dense_grid(x, dense.weight, dense.bias), conv(x)) < 1e-12


def test_to_dense_entries_are_the_kernel_written_out():
    """W[i, o, c, i*s + a*d - p] = w[o, c, a]: the matrix a textbook draws, built by hand."""
    conv = nn.Conv1d(1, 1, 3, stride=2, padding=2, dilation=2, bias=False, dtype=F64, rng=0)
    n = 9
    dense = ladder.to_dense(conv, n)
    out = dense.weight.shape[0]
    expected = np.zeros((out, n))
    for i, a in itertools.product(range(out), range(3)):
        q = 2 * i + 2 * a - 2
        if 0 <= q < n:
            expected[i, q] += conv.weight[0, 0, a]
    np.testing.assert_array_equal(dense.weight[:, 0, 0, :], expected)


@pytest.mark.parametrize("mode", MODES)
def test_to_dense_circular_and_reflect_fold_the_border(mode):
    conv = nn.Conv2d(2, 3, 3, padding=2, padding_mode=mode, dtype=F64, rng=1)
    x = random_input(2, (5, 6))
    dense = ladder.to_dense(conv, (5, 6))
    assert rel(dense_out(dense, x), conv(x)) < 1e-12


@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_to_dense_of_the_other_affine_layers(ndim):
    size = (5,) * ndim
    x = random_input(2, size)
    layers = [
        family("ConvTranspose", ndim)(2, 3, 2, stride=2, padding=1, dtype=F64, rng=0),
        family("LocallyConnected", ndim)(2, 3, 3, size, stride=2, padding=1, dtype=F64, rng=0),
        family("DenseGrid", ndim)(2, 3, size, out_size=(2,) * ndim, dtype=F64, rng=0),
        nn.Sequential(family("Conv", ndim)(2, 3, 3, padding=1, dtype=F64, rng=0),
                      family("AvgPool", ndim)(2),
                      family("Conv", ndim)(3, 1, 2, bias=False, dtype=F64, rng=1)),
    ]
    for layer in layers:
        dense = ladder.to_dense(layer, size)
        assert rel(dense_out(dense, x), layer(x)) < 1e-12, type(layer).__name__
    pool = ladder.to_dense(family("AvgPool", ndim)(2), size, in_channels=2)
    assert pool.bias is None
    assert rel(dense_out(pool, x), fc2conv.avg_pool(x, 2)) < 1e-12


def test_to_dense_refuses_what_has_no_matrix():
    with pytest.raises(ArgumentError, match="not affine"):
        ladder.to_dense(nn.Sequential(nn.Conv1d(1, 1, 3), nn.ReLU()), 8)
    with pytest.raises(ArgumentError, match="affine"):
        ladder.to_dense(nn.MaxPool1d(2), 8, in_channels=1)
    with pytest.raises(ArgumentError, match="in_size"):
        ladder.to_dense(nn.Conv1d(1, 1, 3))


# ---------------------------------------------------------------------------------------------
# relative offsets and the constraints read off W


@given(st.integers(1, 3), st.integers(1, 5), st.integers(1, 5), st.integers(1, 3),
       st.integers(0, 1000))
def test_relative_offsets_is_the_reindexing(ndim_seed, n_out, n_in, stride, seed):
    ndim = 1 + ndim_seed % 2
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((*(n_out,) * ndim, 2, 1, *(n_in,) * ndim))
    v = ladder.relative_offsets(w, stride=stride)
    base = stride * (n_out - 1)
    assert v.shape == (*(n_out,) * ndim, 2, 1, *(n_in + base,) * ndim)
    for i in itertools.product(range(n_out), repeat=ndim):
        for r in itertools.product(range(n_in + base), repeat=ndim):
            q = tuple(rr - base + stride * ii for rr, ii in zip(r, i))  # q = stride*i + a
            inside = all(0 <= qq < n_in for qq in q)
            expected = w[(*i, slice(None), slice(None), *q)] if inside else 0.0
            np.testing.assert_array_equal(v[(*i, slice(None), slice(None), *r)], expected)


@given(conv_layers(modes=("zeros", "circular")))
def test_convolutions_are_translation_invariant(case):
    conv, size = case
    dense = ladder.to_dense(conv, size)
    assert ladder.is_translation_invariant(dense.weight, stride=conv.stride)
    assert ladder.is_translation_invariant(dense, stride=conv.stride)  # bias constant too


@pytest.mark.parametrize("mode", ["reflect", "symmetric", "replicate"])
def test_border_modes_break_translation_invariance(mode):
    conv = nn.Conv2d(1, 1, 3, padding=1, padding_mode=mode, dtype=F64, rng=0)
    assert not ladder.is_translation_invariant(ladder.to_dense(conv, (6, 6)))


def test_random_untied_layers_are_not_translation_invariant():
    assert not ladder.is_translation_invariant(nn.DenseGrid2d(1, 2, (4, 5), rng=0))
    local = nn.LocallyConnected2d(1, 1, 3, (6, 6), padding=1, dtype=F64, rng=0)
    assert not ladder.is_translation_invariant(ladder.to_dense(local))
    # a translation-invariant W with a bias that varies by position is not invariant
    dense = ladder.to_dense(nn.Conv1d(1, 1, 3, padding=1, dtype=F64, rng=0), 6)
    dense.bias[2] += 1.0
    assert ladder.is_translation_invariant(dense.weight)
    assert not ladder.is_translation_invariant(dense)


@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 2), st.integers(0, 100))
def test_locality_radius_of_a_conv(ndim, delta, dilation, seed):
    if ndim == 3:  # keep to_dense's basis (S^3 images) small
        delta, dilation = 1, min(dilation, 2)
    size = (2 * delta * dilation + 3,) * ndim
    conv = family("Conv", ndim)(1, 1, 2 * delta + 1, padding="same", dilation=dilation,
                                dtype=F64, rng=seed)
    conv.weight[...] = 1.0 + np.random.default_rng(seed).random(conv.weight.shape)  # no zeros
    assert ladder.locality_radius(ladder.to_dense(conv, size)) == (delta * dilation,) * ndim


def test_locality_radius_of_random_and_circular_layers():
    assert ladder.locality_radius(nn.DenseGrid2d(1, 1, (4, 7), rng=0)) == (3, 6)
    circ = nn.Conv1d(1, 1, 3, padding=1, padding_mode="circular", dtype=F64, rng=0)
    w = ladder.to_dense(circ, 10).weight
    assert ladder.locality_radius(w) == (9,)
    assert ladder.locality_radius(w, circular=True) == (1,)
    assert ladder.locality_radius(np.zeros((3, 1, 1, 3))) == (0,)


# ---------------------------------------------------------------------------------------------
# tie / untie


@given(conv_layers())
def test_untie_keeps_the_outputs_and_tie_undoes_it(case):
    conv, size = case
    x = random_input(conv.in_channels, size)
    local = ladder.untie(conv, size)
    assert local.weight.shape[:conv.ndim] == conv.output_shape((conv.in_channels, *size))[1:]
    assert rel(local(x), conv(x)) < 1e-12
    assert rel(ref.local_correlate(x, local.weight, local.bias, stride=local.stride,
                                   padding=local.padding, dilation=local.dilation,
                                   padding_mode=local.padding_mode), conv(x)) < 1e-12
    back = ladder.tie(local)
    assert rel(back(x), conv(x)) < 1e-12


@given(st.integers(1, 2), st.sampled_from(["circular", "reflect"]), st.integers(0, 1000))
def test_tie_is_the_orthogonal_projection(ndim, mode, seed):
    """With every tap reading a real pixel, tie is the plain mean over positions: idempotent,
    and what it removes is orthogonal to every tied (untied-conv) weight."""
    size = (5,) * ndim
    local = family("LocallyConnected", ndim)(2, 3, 3, size, padding=1, padding_mode=mode,
                                             dtype=F64, rng=seed)
    conv = ladder.tie(local)
    np.testing.assert_allclose(conv.weight, local.weight.mean(axis=tuple(range(ndim))),
                               rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(conv.bias, local.bias.mean(axis=tuple(range(ndim))), atol=1e-15)
    again = ladder.tie(ladder.untie(conv, size))
    np.testing.assert_allclose(again.weight, conv.weight, rtol=1e-12, atol=1e-15)
    other = family("Conv", ndim)(2, 3, 3, padding=1, padding_mode=mode, dtype=F64,
                                 rng=seed + 1)
    residual = local.weight - ladder.untie(conv, size).weight
    tied = ladder.untie(other, size).weight
    assert abs(np.sum(residual * tied)) < 1e-12 * np.linalg.norm(residual) * np.linalg.norm(tied)


def test_tie_ignores_taps_in_the_zero_padding():
    """Those weights multiply zeros: any value gives the same layer, so tie must not average
    them in (localize leaves them 0)."""
    conv = nn.Conv2d(1, 2, 3, padding=1, dtype=F64, rng=3)
    local = ladder.untie(conv, (5, 5))
    local.weight[0, 0, :, :, 0, :] = 99.0  # row 0's top taps read only padding
    x = random_input(1, (5, 5))
    assert rel(local(x), conv(x)) < 1e-12
    np.testing.assert_allclose(ladder.tie(local).weight, conv.weight, rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# localize / share


def band_mask(size, delta):
    """(*S, *S) mask of |q - p| <= delta per axis."""
    axes = [np.abs(np.arange(n)[:, None] - np.arange(n)[None, :]) <= d
            for n, d in zip(size, delta)]
    mask = axes[0]
    for extra in axes[1:]:
        mask = np.einsum("ab,cd->acbd", mask, extra).reshape(
            mask.shape[0] * extra.shape[0], -1)
    return mask.reshape(*size, *size)


@given(st.integers(1, 3), st.integers(0, 3), st.integers(1, 2), st.integers(1, 2),
       st.booleans(), st.integers(0, 1000))
def test_localize_is_the_banded_dense_layer(ndim, delta, c_in, c_out, shared, seed):
    size = tuple(np.random.default_rng(seed).integers(delta + 1, delta + 4, size=ndim))
    dense = family("DenseGrid", ndim)(c_in, c_out, size, shared_bias=shared, dtype=F64,
                                      rng=seed)
    local = ladder.localize(dense, delta)
    assert local.kernel_size == (2 * delta + 1,) * ndim
    mask = band_mask(size, (delta,) * ndim)
    d = ndim
    masked = dense.weight * mask[(*(slice(None),) * d, None, None)]
    x = random_input(c_in, size, seed)
    assert rel(local(x), ref.dense_grid(x, masked, dense.bias)) < 1e-12
    np.testing.assert_allclose(ladder.to_dense(local).weight, masked, rtol=1e-12, atol=1e-15)
    full = ladder.localize(dense, tuple(n - 1 for n in size))  # nothing dropped
    assert rel(full(x), dense(x)) < 1e-12


@given(st.integers(1, 3), st.integers(0, 2), st.integers(0, 1000))
def test_the_ladder_round_trip_recovers_the_conv(ndim, delta, seed):
    """conv -> dense W -> localize(delta) -> tie gives the same kernel back (seed's story)."""
    size = (2 * delta + 2,) * ndim
    conv = family("Conv", ndim)(2, 2, 2 * delta + 1, padding=delta, dtype=F64, rng=seed)
    dense = ladder.to_dense(conv, size)
    back = ladder.tie(ladder.localize(dense, delta))
    np.testing.assert_allclose(back.weight, conv.weight, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(back.bias, conv.bias, rtol=1e-12)
    assert ladder.locality_radius(dense) == (delta,) * ndim


@given(st.integers(1, 2), st.sampled_from(["zeros", "circular"]), st.integers(0, 1000))
def test_share_gives_back_a_translation_invariant_layer(ndim, mode, seed):
    """A circulant or Toeplitz W is its own projection: share(to_dense(conv)) == conv, even
    for circular padding (the full kernel holds the wrapped offsets)."""
    size = (5,) * ndim
    conv = family("Conv", ndim)(2, 3, 3, padding=1, padding_mode=mode, dtype=F64, rng=seed)
    shared = ladder.share(ladder.to_dense(conv, size))
    assert shared.kernel_size == (9,) * ndim
    x = random_input(2, size, seed)
    assert rel(shared(x), conv(x)) < 1e-12


@given(st.integers(1, 2), st.integers(0, 1000))
def test_share_is_the_orthogonal_projection(ndim, seed):
    size = (4,) * ndim if ndim == 2 else (6,)
    dense = family("DenseGrid", ndim)(2, 2, size, dtype=F64, rng=seed)
    shared = ladder.share(dense)
    projected = ladder.to_dense(shared, size)
    assert ladder.is_translation_invariant(projected)
    again = ladder.share(projected)
    np.testing.assert_allclose(again.weight, shared.weight, rtol=1e-10, atol=1e-14)
    toeplitz = ladder.to_dense(
        family("Conv", ndim)(2, 2, tuple(2 * n - 1 for n in size), padding=tuple(
            n - 1 for n in size), dtype=F64, rng=seed + 1), size).weight
    residual = dense.weight - projected.weight
    inner = np.sum(residual * toeplitz)
    assert abs(inner) < 1e-10 * np.linalg.norm(residual) * np.linalg.norm(toeplitz)
    np.testing.assert_allclose(shared.bias, dense.bias.mean(axis=tuple(range(ndim))))


def test_conversion_errors():
    with pytest.raises(ArgumentError, match="LocallyConnected"):
        ladder.tie(nn.Conv2d(1, 1, 3))
    with pytest.raises(ArgumentError, match="Conv"):
        ladder.untie(nn.LocallyConnected1d(1, 1, 3, 8), 8)
    with pytest.raises(ArgumentError, match="DenseGrid"):
        ladder.localize(nn.Conv1d(1, 1, 3), 1)
    with pytest.raises(ShapeError, match="out_size"):
        ladder.localize(nn.DenseGrid1d(1, 1, 8, out_size=4), 1)
    with pytest.raises(ShapeError, match="out_size"):
        ladder.share(nn.DenseGrid2d(1, 1, (4, 4), out_size=(2, 2)))
    with pytest.raises(ArgumentError, match="delta"):
        ladder.localize(nn.DenseGrid1d(1, 1, 4), 4)
    with pytest.raises(ShapeError, match="W must have shape"):
        ladder.relative_offsets(np.zeros((3, 3, 3)))
    with pytest.raises(ArgumentError, match="DenseGrid"):
        ladder.is_translation_invariant(nn.Conv1d(1, 1, 3))


@settings(max_examples=10)
@given(st.integers(0, 100))
def test_float32_layers_convert_in_float32(seed):
    conv = nn.Conv2d(2, 2, 3, padding=1, rng=seed)
    dense = ladder.to_dense(conv, (5, 5))
    assert dense.weight.dtype == np.float32
    x = random_input(2, (5, 5), seed).astype(np.float32)
    np.testing.assert_allclose(dense(x), conv(x), rtol=1e-5, atol=1e-5)
