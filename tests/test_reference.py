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
