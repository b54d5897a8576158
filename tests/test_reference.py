"""Sanity checks of the float64 oracle (``fc2conv.functional.reference``) against independent facts.

The oracle is what every fast code path is measured against, so it is itself checked here,
without the fast implementation: padding modes against ``numpy.pad``, single-channel
correlation and convolution against ``scipy.signal``, and channels / groups / stride /
dilation / transposed convolution / pooling against ``torch.nn.functional`` in float64 on
fixed small configurations, plus the adjoint identity between correlate and conv_transpose.
"""

from __future__ import annotations

import itertools
import zlib

import numpy as np
import pytest
import scipy.signal
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from fc2conv._errors import ArgumentError, ShapeError
from fc2conv.functional import reference as ref

NUMPY_MODE = {
    "zeros": "constant",
    "reflect": "reflect",
    "symmetric": "symmetric",
    "replicate": "edge",
    "circular": "wrap",
}
TORCH_MODE = {"reflect": "reflect", "replicate": "replicate", "circular": "circular"}


def rng_for(*key: object) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))


def assert_close(actual: np.ndarray, desired: np.ndarray) -> None:
    assert actual.dtype == np.float64
    np.testing.assert_allclose(actual, desired, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# padding modes vs numpy.pad
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ref.PADDING_MODES)
@pytest.mark.parametrize("n", [1, 2, 3, 5])
@pytest.mark.parametrize("width", [(0, 0), (1, 0), (0, 2), (2, 3), (7, 4), (11, 13)])
def test_pad_1d_matches_numpy(mode: str, n: int, width: tuple[int, int]) -> None:
    x = np.arange(1.0, n + 1.0)
    expected = np.pad(x, [width], mode=NUMPY_MODE[mode])
    assert_close(ref.pad(x, [width], mode), expected)


@given(
    mode=st.sampled_from(ref.PADDING_MODES),
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=3),
    data=st.data(),
)
def test_pad_nd_matches_numpy(mode: str, shape: list[int], data: st.DataObject) -> None:
    pairs = [
        (data.draw(st.integers(0, 9)), data.draw(st.integers(0, 9))) for _ in shape
    ]
    x = rng_for(mode, shape).standard_normal((2, *shape))
    expected = np.pad(x, [(0, 0)] + pairs, mode=NUMPY_MODE[mode])
    assert_close(ref.pad(x, pairs, mode), expected)


def test_pad_reflect_single_element_reads_element_zero() -> None:
    assert ref.pad([7.0], [(4, 5)], "reflect").tolist() == [7.0] * 10


# ---------------------------------------------------------------------------------------------
# single channel vs scipy.signal
# ---------------------------------------------------------------------------------------------


def _scipy_cases():
    for shape, kshape in [((9,), (1,)), ((9,), (3,)), ((10,), (4,)), ((7,), (7,)),
                          ((6, 7), (3, 3)), ((6, 5), (2, 3)), ((5, 8), (3, 5)), ((4, 4), (1, 4))]:
        for mode in ("valid", "full", "same"):
            if mode == "same" and any(k % 2 == 0 for k in kshape):
                continue  # scipy centres even kernels differently from our "same"
            yield shape, kshape, mode


@pytest.mark.parametrize("shape,kshape,mode", list(_scipy_cases()))
@pytest.mark.parametrize("flip", [False, True])
def test_single_channel_matches_scipy_signal(shape, kshape, mode, flip) -> None:
    rng = rng_for(shape, kshape, mode)
    x = rng.standard_normal(shape)
    k = rng.standard_normal(kshape)
    ours = (ref.convolve if flip else ref.correlate)(x[None, None], k[None, None], padding=mode)
    theirs = (scipy.signal.convolve if flip else scipy.signal.correlate)(x, k, mode=mode,
                                                                        method="direct")
    assert_close(ours[0, 0], theirs)


def test_d2l_corr2d_example() -> None:
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    k = np.array([[0.0, 1.0], [2.0, 3.0]]).reshape(1, 1, 2, 2)
    assert ref.correlate(x, k)[0, 0].tolist() == [[19.0, 25.0], [37.0, 43.0]]


def test_d2l_edge_detector() -> None:
    x = np.ones((6, 8))
    x[:, 2:6] = 0
    k = np.array([[1.0, -1.0]])
    y = ref.correlate(x[None, None], k[None, None])[0, 0]
    expected = np.zeros((6, 7))
    expected[:, 1] = 1
    expected[:, 5] = -1
    assert_close(y, expected)


# ---------------------------------------------------------------------------------------------
# channels, groups, stride, dilation, padding modes vs torch
# ---------------------------------------------------------------------------------------------

TORCH_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
TORCH_CONVT = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
TORCH_MAX = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
TORCH_AVG = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}

# (N, C_in, S, C_out, K, stride, padding, dilation, groups)
CONV_CASES = [
    (2, 3, (11,), 4, (3,), 1, 1, 1, 1),
    (1, 4, (12,), 4, (2,), 2, 0, 2, 4),
    (2, 2, (9,), 6, (4,), 3, 2, 1, 2),
    (2, 3, (7, 6), 2, (3, 2), (2, 1), (1, 0), (1, 2), 1),
    (1, 4, (8, 8), 6, (3, 3), 1, 2, 2, 2),
    (2, 3, (5, 7), 3, (1, 3), 2, (0, 1), 1, 3),
    (1, 2, (5, 4, 6), 4, (2, 3, 2), (1, 2, 3), (1, 1, 0), (2, 1, 1), 2),
    (2, 2, (4, 4, 4), 3, (3, 3, 3), 1, 1, 1, 1),
]


def _conv_case(case):
    n, c_in, shape, c_out, kshape, stride, padding, dilation, groups = case
    rng = rng_for(case)
    x = rng.standard_normal((n, c_in, *shape))
    w = rng.standard_normal((c_out, c_in // groups, *kshape))
    b = rng.standard_normal(c_out)
    return x, w, b, {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("with_bias", [True, False])
def test_correlate_matches_torch_zeros(case, with_bias) -> None:
    x, w, b, kw = _conv_case(case)
    b = b if with_bias else None
    ours = ref.correlate(x, w, b, **kw)
    theirs = TORCH_CONV[x.ndim - 2](t(x), t(w), None if b is None else t(b), **kw).numpy()
    assert_close(ours, theirs)


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("mode", sorted(TORCH_MODE))
def test_correlate_matches_torch_padding_modes(case, mode) -> None:
    x, w, b, kw = _conv_case(case)
    d = x.ndim - 2
    pads = kw["padding"]
    pads = (pads,) * d if isinstance(pads, int) else pads
    # asymmetric pairs, kept below the input size as torch's reflect requires
    pairs = tuple((p, min(p + 1, n - 1)) for p, n in zip(pads, x.shape[2:]))
    flat = [v for pair in reversed(pairs) for v in pair]  # F.pad wants last dim first
    xp = F.pad(t(x), flat, mode=TORCH_MODE[mode])
    theirs = TORCH_CONV[d](xp, t(w), t(b), **{**kw, "padding": 0}).numpy()
    ours = ref.correlate(x, w, b, **{**kw, "padding": pairs}, padding_mode=mode)
    assert_close(ours, theirs)


@pytest.mark.parametrize("case", CONV_CASES)
def test_convolve_is_correlate_with_flipped_kernel_torch(case) -> None:
    x, w, b, kw = _conv_case(case)
    d = x.ndim - 2
    flipped = np.flip(w, axis=tuple(range(2, 2 + d)))
    theirs = TORCH_CONV[d](t(x), t(flipped), t(b), **kw).numpy()
    assert_close(ref.convolve(x, w, b, **kw), theirs)


@pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")
@pytest.mark.parametrize("d", [1, 2, 3])
@pytest.mark.parametrize("dilation", [1, 2])
def test_same_padding_matches_torch_stride_one(d, dilation) -> None:
    rng = rng_for("same", d, dilation)
    shape = (7, 6, 5)[:d]
    kshape = (3, 4, 2)[:d]  # even kernels: torch also puts the extra padding after
    x = rng.standard_normal((2, 2, *shape))
    w = rng.standard_normal((3, 2, *kshape))
    ours = ref.correlate(x, w, padding="same", dilation=dilation)
    theirs = TORCH_CONV[d](t(x), t(w), padding="same", dilation=dilation).numpy()
    assert ours.shape[2:] == shape
    assert_close(ours, theirs)


@pytest.mark.parametrize(
    "n,k,s,dl", list(itertools.product([1, 5, 8, 9], [1, 2, 3], [1, 2, 3], [1, 2]))
)
def test_same_padding_output_size_and_placement(n, k, s, dl) -> None:
    """'same' gives ceil(n/s) outputs; extra padding goes after, per the contract formula."""
    rng = rng_for("same-size", n, k, s, dl)
    x = rng.standard_normal((1, 1, n))
    w = rng.standard_normal((1, 1, k))
    out = -(-n // s)
    total = max((out - 1) * s + dl * (k - 1) + 1 - n, 0)
    explicit = ((total // 2, total - total // 2),)
    y = ref.correlate(x, w, padding="same", stride=s, dilation=dl)
    assert y.shape == (1, 1, out)
    assert_close(y, ref.correlate(x, w, padding=explicit, stride=s, dilation=dl))


def test_full_padding_is_dilated_kernel_minus_one() -> None:
    rng = rng_for("full")
    x = rng.standard_normal((1, 2, 6, 5))
    w = rng.standard_normal((3, 2, 3, 2))
    y = ref.correlate(x, w, padding="full", dilation=2)
    theirs = F.conv2d(t(x), t(w), padding=(4, 2), dilation=2).numpy()
    assert_close(y, theirs)


def test_padding_forms_agree() -> None:
    rng = rng_for("forms")
    x = rng.standard_normal((1, 2, 6, 5))
    w = rng.standard_normal((2, 2, 3, 3))
    a = ref.correlate(x, w, padding=1)
    b = ref.correlate(x, w, padding=(1, 1))
    c = ref.correlate(x, w, padding=((1, 1), (1, 1)))
    assert_close(a, b)
    assert_close(a, c)
    assert_close(ref.correlate(x, w, padding="valid"), ref.correlate(x, w, padding=0))


# ---------------------------------------------------------------------------------------------
# conv_transpose vs torch, and the adjoint identity
# ---------------------------------------------------------------------------------------------

# (N, C_in, M, C_out, K, stride, padding, output_padding, dilation, groups)
CONVT_CASES = [
    (2, 3, (5,), 4, (3,), 2, 1, 1, 1, 1),
    (1, 4, (6,), 4, (2,), 3, 0, 2, 1, 4),
    (2, 2, (4,), 6, (3,), 1, 2, 1, 2, 2),
    (2, 2, (4, 3), 3, (3, 2), (2, 1), (1, 0), (1, 0), (1, 2), 1),
    (1, 4, (3, 3), 2, (3, 3), 2, 1, 0, 1, 2),
    (1, 2, (3, 2, 3), 4, (2, 3, 2), (2, 1, 2), (0, 1, 1), (1, 0, 0), (1, 1, 2), 2),
]


def _convt_case(case):
    n, c_in, shape, c_out, kshape, stride, padding, output_padding, dilation, groups = case
    rng = rng_for(case)
    x = rng.standard_normal((n, c_in, *shape))
    w = rng.standard_normal((c_in, c_out // groups, *kshape))
    b = rng.standard_normal(c_out)
    kw = {
        "stride": stride,
        "padding": padding,
        "output_padding": output_padding,
        "dilation": dilation,
        "groups": groups,
    }
    return x, w, b, kw


@pytest.mark.parametrize("case", CONVT_CASES)
@pytest.mark.parametrize("with_bias", [True, False])
def test_conv_transpose_matches_torch(case, with_bias) -> None:
    x, w, b, kw = _convt_case(case)
    b = b if with_bias else None
    ours = ref.conv_transpose(x, w, b, **kw)
    theirs = TORCH_CONVT[x.ndim - 2](t(x), t(w), None if b is None else t(b), **kw).numpy()
    assert_close(ours, theirs)


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_transpose_is_adjoint_of_correlate(case) -> None:
    """<correlate(x, w), y> == <x, conv_transpose(y, w)> with the output size matched."""
    x, w, _, kw = _conv_case(case)
    d = x.ndim - 2
    y = ref.correlate(x, w, **kw)
    g = rng_for("adjoint", case).standard_normal(y.shape)
    stride = kw["stride"] if not isinstance(kw["stride"], int) else (kw["stride"],) * d
    padding = kw["padding"] if not isinstance(kw["padding"], int) else (kw["padding"],) * d
    dil = kw["dilation"] if not isinstance(kw["dilation"], int) else (kw["dilation"],) * d
    kshape = w.shape[2:]
    # input positions dropped by the floor of the output size come back as output_padding
    op = tuple(
        n - ((m - 1) * s - 2 * p + dl * (k - 1) + 1)
        for n, m, s, p, dl, k in zip(x.shape[2:], y.shape[2:], stride, padding, dil, kshape)
    )
    gx = ref.conv_transpose(g, w, stride=kw["stride"], padding=kw["padding"],
                            output_padding=op, dilation=kw["dilation"], groups=kw["groups"])
    assert gx.shape == x.shape
    np.testing.assert_allclose(np.vdot(y, g), np.vdot(x, gx), rtol=1e-11)


def test_conv_transpose_pairs_padding_crops_each_side() -> None:
    rng = rng_for("convt-pairs")
    x = rng.standard_normal((1, 2, 4))
    w = rng.standard_normal((2, 3, 3))
    full = ref.conv_transpose(x, w, stride=2)
    assert_close(ref.conv_transpose(x, w, stride=2, padding=((1, 2),)), full[:, :, 1:-2])


# ---------------------------------------------------------------------------------------------
# pooling vs torch
# ---------------------------------------------------------------------------------------------

# (shape, kernel, stride, padding, dilation)
MAX_CASES = [
    ((10,), 3, None, 1, 1),
    ((10,), 3, 2, 1, 2),
    ((11,), 2, 3, 1, 1),
    ((7, 8), (2, 3), None, (1, 1), 1),
    ((7, 8), 3, (2, 1), (1, 0), (2, 1)),
    ((5, 6), (3, 2), 2, 1, 1),
    ((5, 4, 6), (2, 3, 2), (2, 1, 3), (1, 1, 0), (1, 1, 2)),
    ((4, 5, 4), 2, None, 0, 1),
]


@pytest.mark.parametrize("case", MAX_CASES)
@pytest.mark.parametrize("ceil_mode", [False, True])
def test_max_pool_matches_torch(case, ceil_mode) -> None:
    shape, k, s, p, dl = case
    x = rng_for("max", case).standard_normal((2, 3, *shape))
    ours = ref.max_pool(x, k, stride=s, padding=p, dilation=dl, ceil_mode=ceil_mode)
    theirs = TORCH_MAX[len(shape)](t(x), k, stride=s, padding=p, dilation=dl,
                                   ceil_mode=ceil_mode).numpy()
    assert_close(ours, theirs)


# (shape, kernel, stride, padding)
AVG_CASES = [
    ((10,), 3, None, 1),
    ((10,), 3, 2, 1),
    ((11,), 4, 3, 2),
    ((7, 8), (2, 3), None, (1, 1)),
    ((7, 8), 3, (2, 1), (1, 0)),
    ((5, 6), (3, 2), 2, 1),
    ((5, 4, 6), (2, 3, 2), (2, 1, 3), (1, 1, 0)),
    ((4, 5, 4), 3, 2, 1),
]


@pytest.mark.parametrize("case", AVG_CASES)
@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("count_include_pad", [True, False])
def test_avg_pool_matches_torch(case, ceil_mode, count_include_pad) -> None:
    shape, k, s, p = case
    x = rng_for("avg", case).standard_normal((2, 3, *shape))
    ours = ref.avg_pool(x, k, stride=s, padding=p, ceil_mode=ceil_mode,
                        count_include_pad=count_include_pad)
    theirs = TORCH_AVG[len(shape)](t(x), k, stride=s, padding=p, ceil_mode=ceil_mode,
                                   count_include_pad=count_include_pad).numpy()
    assert_close(ours, theirs)


def test_max_pool_propagates_nan() -> None:
    x = np.array([[[1.0, np.nan, 3.0, 4.0]]])
    y = ref.max_pool(x, 2)
    assert np.isnan(y[0, 0, 0]) and y[0, 0, 1] == 4.0


def test_max_pool_pads_with_minus_infinity() -> None:
    x = -np.ones((1, 1, 3)) * 5
    assert ref.max_pool(x, 2, stride=1, padding=1).tolist() == [[[-5.0] * 4]]


# ---------------------------------------------------------------------------------------------
# dtype handling and errors
# ---------------------------------------------------------------------------------------------


def test_float32_input_is_computed_in_float64() -> None:
    rng = rng_for("f32")
    x = rng.standard_normal((1, 2, 5)).astype(np.float32)
    w = rng.standard_normal((1, 2, 3)).astype(np.float32)
    y = ref.correlate(x, w)
    assert y.dtype == np.float64
    assert_close(y, ref.correlate(x.astype(np.float64), w.astype(np.float64)))
    for f in (ref.max_pool, ref.avg_pool):
        assert f(x, 2).dtype == np.float64


@pytest.mark.parametrize(
    "call,error",
    [
        (lambda: ref.correlate(np.ones((2, 3)), np.ones((1, 1, 1))), ShapeError),
        (lambda: ref.correlate(np.ones((1, 3, 5)), np.ones((1, 2, 1)), groups=2), ShapeError),
        (lambda: ref.correlate(np.ones((1, 1, 2)), np.ones((1, 1, 3))), ShapeError),
        (lambda: ref.correlate(np.ones((1, 1, 5)), np.ones((1, 1, 3)), stride=0), ArgumentError),
        (lambda: ref.correlate(np.ones((1, 1, 5)), np.ones((1, 1, 3)), padding="huge"),
         ArgumentError),
        (lambda: ref.correlate(np.ones((1, 1, 5)), np.ones((1, 1, 3)), padding_mode="wrap"),
         ArgumentError),
        (lambda: ref.correlate(np.ones((1, 1, 5)), np.ones((2, 1, 3)), np.ones(3)), ShapeError),
        (lambda: ref.max_pool(np.ones((1, 1, 2)), 5), ShapeError),
    ],
)
def test_errors(call, error) -> None:
    with pytest.raises(error):
        call()


# ---------------------------------------------------------------------------------------------
# untied layers: local_correlate and dense_grid vs correlate, einsum and torch unfold
# ---------------------------------------------------------------------------------------------

# (N, C_in, S, C_out, K, stride, padding, dilation)
LOCAL_CASES = [
    (2, 2, (7,), 3, (3,), 1, 1, 1),
    (1, 3, (9,), 2, (2,), 2, "same", 2),
    (2, 1, (5,), 2, (3,), 1, "full", 1),
    (1, 2, (6,), 1, (4,), 3, ((2, 1),), 1),
    (2, 2, (5, 6), 3, (3, 2), (2, 1), (1, 0), (1, 2)),
    (1, 2, (6, 5), 2, (2, 3), 1, "same", 1),
    (1, 1, (4, 5), 2, (3, 3), (1, 2), ((2, 0), (1, 3)), 1),
    (2, 2, (5, 4), 1, (2, 2), 1, "valid", 1),
    (1, 2, (4, 3, 4), 2, (2, 2, 3), (1, 2, 1), (1, 1, 0), (2, 1, 1)),
    (1, 1, (3, 4, 3), 2, (2, 3, 2), 1, "full", 1),
]


def _local_case(case):
    n, c_in, shape, c_out, kshape, stride, padding, dilation = case
    rng = rng_for("local", case)
    x = rng.standard_normal((n, c_in, *shape))
    k = rng.standard_normal((c_out, c_in, *kshape))
    return rng, x, k, {"stride": stride, "padding": padding, "dilation": dilation}


def _tied(k: np.ndarray, out_shape: tuple[int, ...]) -> np.ndarray:
    """The same kernel ``(C_out, C_in, *K)`` at every output position."""
    return np.broadcast_to(k, (*out_shape, *k.shape)).copy()


def _channels_first(b: np.ndarray) -> np.ndarray:
    """A per-position bias ``(*S_out, C_out)`` laid out like an output ``(1, C_out, *S_out)``."""
    return np.moveaxis(b, -1, 0)[None]


@pytest.mark.parametrize("case", LOCAL_CASES)
@pytest.mark.parametrize("mode", ref.PADDING_MODES)
@pytest.mark.parametrize("bias", ["none", "shared", "per-position"])
def test_local_correlate_tied_is_correlate(case, mode, bias) -> None:
    rng, x, k, kw = _local_case(case)
    expected = ref.correlate(x, k, padding_mode=mode, **kw)
    out_shape = expected.shape[2:]
    c_out = k.shape[0]
    if bias == "shared":
        b = rng.standard_normal(c_out)
        expected = ref.correlate(x, k, b, padding_mode=mode, **kw)
    elif bias == "per-position":
        b = rng.standard_normal((*out_shape, c_out))
        expected = expected + _channels_first(b)
    else:
        b = None
    assert_close(ref.local_correlate(x, _tied(k, out_shape), b, padding_mode=mode, **kw),
                 expected)


@given(
    d=st.integers(1, 3),
    mode=st.sampled_from(ref.PADDING_MODES),
    data=st.data(),
)
def test_local_correlate_tied_is_correlate_random(d, mode, data) -> None:
    shape = tuple(data.draw(st.lists(st.integers(1, 5), min_size=d, max_size=d)))
    kshape = tuple(data.draw(st.lists(st.integers(1, 3), min_size=d, max_size=d)))
    stride = tuple(data.draw(st.lists(st.integers(1, 3), min_size=d, max_size=d)))
    dilation = tuple(data.draw(st.lists(st.integers(1, 2), min_size=d, max_size=d)))
    padding = data.draw(
        st.one_of(
            st.sampled_from(["valid", "same", "full"]),
            st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=d, max_size=d),
        )
    )
    kw = {"stride": stride, "padding": padding, "dilation": dilation, "padding_mode": mode}
    rng = rng_for("local-random", shape, kshape, stride, dilation, padding, mode)
    x = rng.standard_normal((1, 2, *shape))
    k = rng.standard_normal((2, 2, *kshape))
    try:
        expected = ref.correlate(x, k, **kw)
    except ShapeError:  # the dilated kernel does not fit: local_correlate refuses it too
        with pytest.raises(ShapeError):
            ref.local_correlate(x, np.ones((*(1,) * d, 2, 2, *kshape)), **kw)
        return
    assert_close(ref.local_correlate(x, _tied(k, expected.shape[2:]), **kw), expected)


EINSUM_DENSE = {1: "aocx,ncx->noa", 2: "abocxy,ncxy->noab", 3: "abeocxyz,ncxyz->noabe"}


@pytest.mark.parametrize(
    "in_shape,out_shape",
    [((5,), (5,)), ((6,), (3,)), ((2,), (7,)), ((3, 4), (3, 4)), ((4, 3), (2, 5)),
     ((2, 3, 2), (3, 2, 2)), ((3, 2, 2), (1, 1, 1))],
)
@pytest.mark.parametrize("bias", ["none", "shared", "per-position"])
def test_dense_grid_matches_einsum_and_matmul(in_shape, out_shape, bias) -> None:
    rng = rng_for("dense", in_shape, out_shape, bias)
    n, c_in, c_out = 2, 3, 2
    x = rng.standard_normal((n, c_in, *in_shape))
    w = rng.standard_normal((*out_shape, c_out, c_in, *in_shape))
    b, b_out = None, np.zeros((1, c_out, *out_shape))  # b_out: the bias laid out as y
    if bias == "shared":
        b = rng.standard_normal(c_out)
        b_out = b_out + b.reshape((1, c_out) + (1,) * len(out_shape))
    elif bias == "per-position":
        b = rng.standard_normal((*out_shape, c_out))
        b_out = b_out + _channels_first(b)
    y = ref.dense_grid(x, w, b)
    assert y.shape == (n, c_out, *out_shape)
    assert_close(y, np.einsum(EINSUM_DENSE[len(in_shape)], w, x) + b_out)
    # a fully-connected layer on the flattened vectors: x_flat @ M + b, M[(c, q), (o, p)]
    m = w.reshape(np.prod(out_shape), c_out, -1).transpose(2, 1, 0).reshape(x[0].size, -1)
    assert_close(y.reshape(n, -1), x.reshape(n, -1) @ m + b_out.reshape(1, -1))


def _scatter_kernel(k, in_shape, stride, dilation, pairs):
    """The dense weight ``W[p, o, c, q] = k[o, c, a]`` for ``q = p*stride + a*dilation - pad``."""
    c_out, c_in, *kshape = k.shape
    out_shape = tuple(
        (n + pb + pa - dl * (kk - 1) - 1) // s + 1
        for n, kk, s, dl, (pb, pa) in zip(in_shape, kshape, stride, dilation, pairs)
    )
    w = np.zeros((*out_shape, c_out, c_in, *in_shape))
    for p in np.ndindex(*out_shape):
        for a in np.ndindex(*kshape):
            q = tuple(pp * s + aa * dl - pb
                      for pp, aa, s, dl, (pb, _) in zip(p, a, stride, dilation, pairs))
            if all(0 <= qq < n for qq, n in zip(q, in_shape)):  # else it reads zero padding
                w[(*p, slice(None), slice(None), *q)] += k[(slice(None), slice(None), *a)]
    return w


@pytest.mark.parametrize("d", [1, 2, 3])
@pytest.mark.parametrize("kshape", [(3, 3, 3), (2, 3, 2), (1, 4, 3)])
def test_dense_grid_with_scattered_kernel_is_same_correlation(d, kshape) -> None:
    kshape = kshape[:d]
    in_shape = (5, 4, 3)[:d]
    rng = rng_for("scatter-same", d, kshape)
    x = rng.standard_normal((2, 2, *in_shape))
    k = rng.standard_normal((3, 2, *kshape))
    b = rng.standard_normal(3)
    # "same" with stride 1: total padding K - 1, the extra one after
    pairs = tuple(((kk - 1) // 2, kk - 1 - (kk - 1) // 2) for kk in kshape)
    w = _scatter_kernel(k, in_shape, (1,) * d, (1,) * d, pairs)
    assert w.shape[:d] == in_shape
    assert_close(ref.dense_grid(x, w, b), ref.correlate(x, k, b, padding="same"))


@pytest.mark.parametrize("case", [c for c in LOCAL_CASES if not isinstance(c[6], str)])
def test_dense_grid_with_scattered_kernel_is_strided_correlation(case) -> None:
    _, x, k, kw = _local_case(case)
    d = x.ndim - 2
    per = [v if isinstance(v, tuple) else (v,) * d for v in (kw["stride"], kw["dilation"])]
    pads = kw["padding"] if isinstance(kw["padding"], tuple) else (kw["padding"],) * d
    pairs = tuple(p if isinstance(p, tuple) else (p, p) for p in pads)
    w = _scatter_kernel(k, x.shape[2:], per[0], per[1], pairs)
    assert_close(ref.dense_grid(x, w), ref.correlate(x, k, **kw))


# (N, C_in, (H, W), C_out, (kh, kw), stride, (before, after) pairs, dilation)
UNFOLD_CASES = [
    (2, 2, (6, 5), 3, (3, 2), 1, ((1, 1), (0, 0)), 1),
    (1, 3, (7, 7), 2, (3, 3), (2, 1), ((1, 2), (2, 1)), (1, 2)),
    (2, 1, (5, 6), 2, (2, 3), (1, 2), ((0, 1), (1, 1)), 2),
    (1, 2, (4, 4), 1, (4, 1), 1, ((0, 0), (0, 0)), 1),
]


@pytest.mark.parametrize("case", UNFOLD_CASES)
@pytest.mark.parametrize("mode", ["zeros", *sorted(TORCH_MODE)])
@pytest.mark.parametrize("bias", ["none", "shared", "per-position"])
def test_local_correlate_matches_torch_unfold(case, mode, bias) -> None:
    n, c_in, shape, c_out, kshape, stride, pairs, dilation = case
    rng = rng_for("unfold", case, mode, bias)
    x = rng.standard_normal((n, c_in, *shape))
    # torch pads first (F.pad wants the last dim first), then unfolds the padded input
    flat_pad = [v for pair in reversed(pairs) for v in pair]
    xp = F.pad(t(x), flat_pad, mode="constant" if mode == "zeros" else TORCH_MODE[mode])
    cols = F.unfold(xp, kshape, dilation=dilation, stride=stride)  # (N, C_in*kh*kw, L)
    s2 = (stride,) * 2 if isinstance(stride, int) else stride
    d2 = (dilation,) * 2 if isinstance(dilation, int) else dilation
    out_shape = tuple((m - dl * (k - 1) - 1) // s + 1
                      for m, k, s, dl in zip(xp.shape[2:], kshape, s2, d2))
    assert cols.shape[-1] == np.prod(out_shape)
    w = rng.standard_normal((*out_shape, c_out, c_in, *kshape))  # a fresh kernel per position
    wt = t(w.reshape(cols.shape[-1], c_out, -1))  # (L, C_out, C_in*kh*kw)
    theirs = torch.einsum("nkl,lok->nol", cols, wt).reshape(n, c_out, *out_shape).numpy()
    b = None
    if bias == "shared":
        b = rng.standard_normal(c_out)
        theirs = theirs + b[None, :, None, None]
    elif bias == "per-position":
        b = rng.standard_normal((*out_shape, c_out))
        theirs = theirs + _channels_first(b)
    ours = ref.local_correlate(x, w, b, stride=stride, padding=pairs, dilation=dilation,
                               padding_mode=mode)
    assert_close(ours, theirs)


def test_untied_float32_input_is_computed_in_float64() -> None:
    rng = rng_for("untied-f32")
    x = rng.standard_normal((1, 2, 5)).astype(np.float32)
    w = rng.standard_normal((3, 2, 2, 3)).astype(np.float32)
    for f in (ref.local_correlate, ref.dense_grid):
        wf = w if f is ref.local_correlate else rng.standard_normal((3, 2, 2, 5))
        y = f(x, wf)
        assert y.dtype == np.float64
        assert_close(y, f(x.astype(np.float64), np.asarray(wf, dtype=np.float64)))


@pytest.mark.parametrize(
    "call,error,match",
    [
        # dense_grid: w rank, w channels / input grid, bias
        (lambda: ref.dense_grid(np.ones((1, 2, 4)), np.ones((3, 1, 2, 4, 1))), ShapeError,
         r"^w: .*\(3, 1, 2, 4, 1\)"),
        (lambda: ref.dense_grid(np.ones((1, 2, 4)), np.ones((1, 2, 4))), ShapeError, r"^w: "),
        (lambda: ref.dense_grid(np.ones((1, 2, 4)), np.ones((3, 1, 3, 4))), ShapeError,
         r"^w: .*\(2, 4\).*\(3, 1, 3, 4\)"),
        (lambda: ref.dense_grid(np.ones((1, 2, 4, 3)), np.ones((2, 2, 1, 2, 3, 4))), ShapeError,
         r"^w: .*\(2, 4, 3\)"),
        (lambda: ref.dense_grid(np.ones((1, 2, 4)), np.ones((3, 1, 2, 4)), np.ones(2)),
         ShapeError, r"^bias: .*\(1,\).*\(3, 1\).*\(2,\)"),
        (lambda: ref.dense_grid(np.ones((1, 2, 4)), np.ones((3, 1, 2, 4)), np.ones((1, 3))),
         ShapeError, r"^bias: .*\(1, 3\)"),
        (lambda: ref.dense_grid(np.ones((2, 3)), np.ones((1, 1, 3))), ShapeError, r"^x: "),
        # local_correlate: w rank, S_out, channels, bias, arguments
        (lambda: ref.local_correlate(np.ones((1, 1, 5)), np.ones((1, 1, 3))), ShapeError,
         r"^w: .*\(1, 1, 3\)"),
        (lambda: ref.local_correlate(np.ones((1, 1, 5)), np.ones((4, 1, 1, 3))), ShapeError,
         r"^w: .*S_out = \(3,\).*\(4, 1, 1, 3\)"),
        (lambda: ref.local_correlate(np.ones((1, 1, 5, 5)), np.ones((3, 3, 1, 1, 3, 3)),
                                     padding="same"),
         ShapeError, r"^w: .*S_out = \(5, 5\)"),
        (lambda: ref.local_correlate(np.ones((1, 1, 6)), np.ones((6, 1, 1, 2)), stride=2),
         ShapeError, r"^w: .*S_out = \(3,\)"),
        (lambda: ref.local_correlate(np.ones((1, 2, 5)), np.ones((3, 1, 1, 3))), ShapeError,
         r"^w: .*C_in = 2"),
        (lambda: ref.local_correlate(np.ones((1, 1, 5)), np.ones((3, 2, 1, 3)), np.ones(3)),
         ShapeError, r"^bias: .*\(3,\)"),
        (lambda: ref.local_correlate(np.ones((1, 1, 5)), np.ones((3, 2, 1, 3)),
                                     np.ones((2, 3))),
         ShapeError, r"^bias: .*\(3, 2\).*\(2, 3\)"),
        (lambda: ref.local_correlate(np.ones((1, 1, 2)), np.ones((1, 1, 1, 3))), ShapeError,
         r"^x: "),
        (lambda: ref.local_correlate(np.ones((1, 1, 5)), np.ones((3, 1, 1, 3)), stride=0),
         ArgumentError, r"^stride: "),
        (lambda: ref.local_correlate(np.ones((1, 1, 5)), np.ones((3, 1, 1, 3)),
                                     padding="huge"),
         ArgumentError, r"^padding: "),
        (lambda: ref.local_correlate(np.ones((1, 1, 5)), np.ones((3, 1, 1, 3)),
                                     padding_mode="wrap"),
         ArgumentError, r"^padding_mode: "),
    ],
)
def test_untied_errors(call, error, match) -> None:
    with pytest.raises(error, match=match):
        call()
