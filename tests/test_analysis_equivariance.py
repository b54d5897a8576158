"""Shift equivariance and invariance, measured: the seed's "a shift in the input X should simply
lead to a shift in the hidden representation H".

The claims checked here, each against the layer that makes it true and the one that breaks it:
a circular-padded convolution commutes with circular shifts (to rounding) for every shift;
zero padding breaks this only in a border band of width ``|shift| + kernel radius``; untied
weights (locally connected, dense-on-grid) break it everywhere; global pooling after a
convolution turns equivariance into invariance; a stride-``s`` layer is equivariant to shifts
by ``s`` with the output shifted by 1.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fc2conv
from fc2conv import ArgumentError, DTypeError, ShapeError
from fc2conv.analysis._equivariance import invariance_error, shift, shift_error

RNG = np.random.default_rng(20240512)


def normal(*shape: int) -> np.ndarray:
    return RNG.normal(size=shape)


def circular_conv(w, **kw):
    return lambda a: fc2conv.correlate(a, w, padding="same", padding_mode="circular", **kw)


# ---------------------------------------------------------------------------------------------
# shift itself


@given(
    size=st.integers(1, 7),
    s=st.integers(-10, 10),
)
def test_circular_shift_is_np_roll(size, s):
    x = np.arange(2 * 3 * size * (size + 1), dtype=float).reshape(2, 3, size, size + 1)
    np.testing.assert_array_equal(shift(x, s), np.roll(x, (s, s), axis=(2, 3)))
    np.testing.assert_array_equal(shift(x, (s, -s)), np.roll(x, (s, -s), axis=(2, 3)))
    np.testing.assert_array_equal(shift(x, s, axes=1), np.roll(x, s, axis=1))


@given(size=st.integers(1, 8), s=st.integers(-10, 10))
def test_zero_shift_matches_definition(size, s):
    x = np.arange(1.0, size + 1).reshape(1, 1, size)
    # y[i + s] = x[i] where both indices are in range, zero elsewhere.
    expected = np.zeros_like(x)
    for i in range(size):
        if 0 <= i + s < size:
            expected[0, 0, i + s] = x[0, 0, i]
    np.testing.assert_array_equal(shift(x, s, mode="zeros"), expected)


def test_shift_defaults_and_axes():
    x = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)  # ints are fine: shift moves, no maths
    # A tuple shifts the trailing axes, an int shifts every spatial axis.
    np.testing.assert_array_equal(shift(x, (1,)), np.roll(x, 1, axis=3))
    np.testing.assert_array_equal(shift(x, (1, 2, 3)), np.roll(x, (1, 2, 3), axis=(1, 2, 3)))
    np.testing.assert_array_equal(shift(x, 1), np.roll(x, 1, axis=(2, 3)))
    np.testing.assert_array_equal(shift(x, (1, 2), axes=(-1, 0)), np.roll(x, (1, 2), (3, 0)))
    np.testing.assert_array_equal(shift(x, 2, axes=(2, 3)), shift(x, 2))
    # Shifting by the length is the identity when circular and clears the array with zeros.
    np.testing.assert_array_equal(shift(x, 4, axes=2), x)
    assert not shift(x, (4,), axes=(2,), mode="zeros").any()
    assert shift(x, 1, mode="zeros").dtype == x.dtype
    # Zero-filled shifts compose like translations as long as nothing falls off the edge.
    y = np.pad(np.ones((1, 1, 2, 2)), ((0, 0), (0, 0), (3, 3), (3, 3)))
    np.testing.assert_array_equal(
        shift(shift(y, (2, -1), mode="zeros"), (-2, 1), mode="zeros"), y
    )


def test_shift_torch_tensor_stays_torch():
    torch = pytest.importorskip("torch")
    x = torch.arange(12.0).reshape(1, 1, 3, 4)
    for mode in ("circular", "zeros"):
        y = shift(x, (1, -2), mode=mode)
        assert isinstance(y, torch.Tensor)
        np.testing.assert_array_equal(y.numpy(), shift(x.numpy(), (1, -2), mode=mode))


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "words"),
    [
        ((np.zeros((2, 3)), 1), {}, ShapeError, ["at least 3 axes", "(2, 3)", "axes="]),
        ((np.zeros((1, 1, 4)), 1), {"mode": "wrap"}, ArgumentError,
         ["mode", "'wrap'", "circular"]),
        ((np.zeros((1, 1, 4)), (1, 2, 3, 4)), {}, ArgumentError, ["shift", "1 to 3 entries"]),
        ((np.zeros((1, 1, 4)), 1.5), {}, ArgumentError, ["shift", "1.5", "integer"]),
        ((np.zeros((1, 1, 4)), True), {}, ArgumentError, ["shift", "True"]),
        ((np.zeros((1, 1, 4)), (1, 2)), {"axes": 2}, ArgumentError, ["shift", "1 int (one"]),
        ((np.zeros((1, 1, 4)), 1), {"axes": 3}, ArgumentError, ["axes", "[-3, 3)", "3"]),
        ((np.zeros((1, 1, 4)), 1), {"axes": (2, -1)}, ArgumentError, ["axes", "distinct"]),
        ((np.zeros((1, 1, 4)), 1), {"axes": ()}, ArgumentError, ["axes", "at least one"]),
        (([1.0, 2.0], 1), {}, DTypeError, ["x must be an array", "list"]),
    ],
)
def test_shift_errors_name_the_argument(args, kwargs, error, words):
    with pytest.raises(error) as info:
        shift(*args, **kwargs)
    for word in words:
        assert word in str(info.value)


# ---------------------------------------------------------------------------------------------
# equivariance of convolution, and its failures


@given(
    d=st.sampled_from([1, 2]),
    k=st.integers(1, 5),
    shifts=st.lists(st.integers(-12, 12), min_size=2, max_size=2),
    c=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    seed=st.integers(0, 2**16),
)
def test_circular_conv_is_shift_equivariant(d, k, shifts, c, seed):
    rng = np.random.default_rng(seed)
    size = (9, 6)[:d]
    x = rng.normal(size=(2, c[0], *size))
    w = rng.normal(size=(c[1], c[0], *(k,) * d))
    s = tuple(shifts[:d])
    # Even kernels included: "same" then pads one more cell after, still a circular shift.
    assert shift_error(circular_conv(w), x, s) < 1e-12
    w32 = w.astype(np.float32)
    assert shift_error(circular_conv(w32), x.astype(np.float32), s) < 1e-6


@given(
    d=st.sampled_from([1, 2]),
    k=st.sampled_from([3, 5]),
    shifts=st.lists(st.integers(-3, 3).filter(bool), min_size=2, max_size=2),
    seed=st.integers(0, 2**16),
)
def test_zero_padded_conv_differs_only_in_a_border_band(d, k, shifts, seed):
    rng = np.random.default_rng(seed)
    size = (16, 14)[:d]
    x = rng.normal(size=(1, 2, *size))
    w = rng.normal(size=(3, 2, *(k,) * d))
    s = tuple(shifts[:d])

    def conv(a):
        return fc2conv.correlate(a, w, padding="same")

    after = conv(shift(x, s, mode="zeros"))  # f(S x)
    before = shift(conv(x), s, mode="zeros")  # S f(x)
    assert shift_error(conv, x, s, mode="zeros") > 1e-3  # not equivariant ...
    band = [abs(t) + k // 2 for t in s]
    interior = (..., *(slice(b, n - b) for b, n in zip(band, size)))
    # ... but only through the border: away from it the two agree to rounding.
    np.testing.assert_allclose(after[interior], before[interior], rtol=0, atol=1e-12)
    assert np.abs(after - before).max() > 1e-3


def test_zero_padded_conv_band_is_tight_in_1d():
    # For a shift s > 0 the difference sits in the first s outputs (f(S x) sees data that S f(x)
    # had zeroed) and the last k // 2 (S f(x) sees data that S pushed off the edge); test both
    # ends with a random signal where every output depends on the data.
    x, w, s, k = normal(1, 1, 20), normal(1, 1, 5), 3, 5

    def conv(a):
        return fc2conv.correlate(a, w, padding="same")

    diff = np.abs(conv(shift(x, s, mode="zeros")) - shift(conv(x), s, mode="zeros"))[0, 0]
    assert (diff[s:20 - k // 2] < 1e-12).all()
    assert (diff[s - 1] > 0) and (diff[20 - k // 2] > 0)


@pytest.mark.parametrize("size", [(12,), (6, 5)])
def test_untied_layers_are_not_equivariant(size):
    d, k = len(size), 3
    x = normal(2, 2, *size)
    s = (2, -1)[:d]
    w_local = normal(*size, 3, 2, *(k,) * d)
    w_dense = normal(*size, 3, 2, *size)

    def local(a, w=w_local):
        return fc2conv.local_correlate(a, w, padding=1, padding_mode="circular")

    def dense(a):
        return fc2conv.dense_grid(a, w_dense)

    assert shift_error(local, x, s) > 1e-2
    assert shift_error(dense, x, s) > 1e-2
    # Tying the local layer's weights (every position gets one kernel) restores equivariance:
    # the difference between the two is exactly the seed's V[i,j,a,b] = V[a,b].
    tied = np.broadcast_to(w_local[(0,) * d], w_local.shape)
    assert shift_error(lambda a: local(a, tied), x, s) < 1e-12
    # And a dense layer whose W[i, k] depends only on k - i (circularly) is a circular
    # convolution, hence equivariant: the seed's re-indexing k = i + a.
    v = normal(3, 2, *size)
    grids = np.indices(size).reshape(d, -1).T
    w_circ = np.empty_like(w_dense)
    for i in grids:
        w_circ[tuple(i)] = np.roll(v, tuple(i), axis=tuple(range(2, 2 + d)))
    assert shift_error(lambda a: fc2conv.dense_grid(a, w_circ), x, s) < 1e-12


def test_global_pooling_after_a_conv_is_invariant():
    x, w = normal(2, 3, 8, 8), normal(4, 3, 3, 3)
    conv = circular_conv(w)
    for s in [(1, 0), (3, -2), (7, 5)]:
        assert invariance_error(lambda a: conv(a).mean(axis=(2, 3)), x, s) < 1e-12
        assert invariance_error(lambda a: conv(a).max(axis=(2, 3)), x, s) < 1e-12
        assert invariance_error(lambda a: fc2conv.max_pool(conv(a), 8), x, s) < 1e-12
        assert invariance_error(conv, x, s) > 0.5  # equivariant, not invariant
        assert shift_error(conv, x, s) < 1e-12


def test_strided_conv_is_equivariant_to_multiples_of_the_stride():
    x, w = normal(2, 3, 8, 8), normal(4, 3, 3, 3)
    conv = circular_conv(w, stride=2)
    assert conv(x).shape == (2, 4, 4, 4)
    assert shift_error(conv, x, 2, output_shift=1) < 1e-12
    assert shift_error(conv, x, (2, -4), output_shift=(1, -2)) < 1e-12
    # An odd shift lands between output samples: no output shift makes it commute.
    for out in (0, 1):
        assert shift_error(conv, x, 1, output_shift=out) > 0.1
    # A 2 x 2 max pooling with stride 2 behaves the same way.
    def pool(a):
        return fc2conv.max_pool(a, 2)

    assert shift_error(pool, x, (2, 4), output_shift=(1, 2)) == 0.0
    assert shift_error(pool, x, (1, 0), output_shift=(0, 0)) > 0.1


def test_torch_layer_through_the_array_api():
    torch = pytest.importorskip("torch")
    x = torch.from_numpy(normal(1, 2, 7, 6))
    w = torch.from_numpy(normal(3, 2, 3, 3))
    conv = circular_conv(w)
    assert isinstance(conv(x), torch.Tensor)
    err = shift_error(conv, x, (3, -2))
    assert isinstance(err, float) and err < 1e-12
    assert invariance_error(lambda a: conv(a).mean(axis=(2, 3)), x, (3, -2)) < 1e-12


# ---------------------------------------------------------------------------------------------
# the measure itself


def test_error_is_relative_and_falls_back_to_absolute():
    x = normal(1, 1, 6)

    def f(a):  # f(x) = x + 1 but f(S x) = S x + 2: the error is ||1|| / ||x + 1|| ...
        return a + (1.0 if a is x else 2.0)

    assert shift_error(lambda a: 5.0 * a, x, 2) < 1e-15
    expected = np.linalg.norm(np.ones(6)) / np.linalg.norm(x + 1.0)
    assert shift_error(f, x, 2) == pytest.approx(expected)
    # ... and when f(x) == 0 the absolute error is returned.
    def zero_then_one(a):
        return np.zeros_like(a) if a is x else np.ones_like(a)

    assert shift_error(zero_then_one, x, 1) == pytest.approx(np.sqrt(6))
    assert invariance_error(zero_then_one, x, 1) == pytest.approx(np.sqrt(6))
    assert shift_error(lambda a: np.zeros_like(a), x, 1) == 0.0
    # Large values do not overflow the squares.
    assert shift_error(lambda a: a * 1e300, x, 1) < 1e-15


def test_shift_error_argument_errors():
    x, w = normal(1, 2, 8), normal(3, 2, 3)
    strided = circular_conv(w, stride=2)
    with pytest.raises(ArgumentError, match=r"axis 2 from 8 to 4.*output_shift"):
        shift_error(strided, x, 2)
    with pytest.raises(ArgumentError, match=r"output_shift.*1 int \(one.*\(1, 1\)"):
        shift_error(strided, x, 2, output_shift=(1, 1))
    with pytest.raises(ArgumentError, match=r"number of axes.*invariance_error"):
        shift_error(lambda a: a.mean(axis=2), x, 2)
    with pytest.raises(ShapeError, match=r"one shape"):
        shift_error(lambda a: a if a is x else a[..., 1:], x, 1)
    with pytest.raises(ArgumentError, match="mode"):
        invariance_error(lambda a: a, x, 1, mode="reflect")


def test_strict_array_api_arrays():
    xp = pytest.importorskip("array_api_strict")
    x = xp.asarray(normal(1, 2, 6, 5))
    w = xp.asarray(normal(3, 2, 3, 3))
    conv = circular_conv(w)
    y = shift(x, (1, -2), mode="zeros")
    assert type(y) is type(x)
    np.testing.assert_array_equal(np.asarray(y), shift(np.asarray(x), (1, -2), mode="zeros"))
    assert shift_error(conv, x, (2, 3)) < 1e-12
    assert invariance_error(lambda a: xp.mean(conv(a), axis=(2, 3)), x, (2, 3)) < 1e-12
