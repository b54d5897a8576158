"""The NumPy fast path of pooling (``fc2conv.functional.pool`` on the flat-window engine).

``test_vs_reference.py`` and ``test_vs_torch.py`` check pooling values and gradients against
oracles on random inputs, where ties and NaN are rare. Here the NumPy path is checked
*bitwise* against the whole-array path the other array-API namespaces take (array_api_strict
runs it on the same NumPy numbers), on inputs made of ties: integer values, runs of equal
values, ``-inf`` (which also fills the padding), NaN (several per window), signed zeros, and
non-finite upstream gradients. Max-pool gradients must go to the same element as the
whole-array path picks (the first maximum of a window; its last NaN if it has one), and sums
must be added in the same order. Also: large and global windows, overlapping and disjoint
windows, many small blocks (slabs of rows, several threads).
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fc2conv.functional as F
from fc2conv.algorithms import direct

xps = pytest.importorskip("array_api_strict")


def _strict(a):
    return xps.asarray(np.ascontiguousarray(a))


def _numpy(a):
    return np.asarray(a)


@contextlib.contextmanager
def small_blocks(block_bytes: int):
    saved = (direct.BLOCK_BYTES, direct.MIN_GRID, direct.MIN_BLOCKS_PER_THREAD)
    direct.BLOCK_BYTES, direct.MIN_GRID, direct.MIN_BLOCKS_PER_THREAD = block_bytes, 1, 1
    try:
        yield
    finally:
        direct.BLOCK_BYTES, direct.MIN_GRID, direct.MIN_BLOCKS_PER_THREAD = saved


@st.composite
def tie_cases(draw, kind: str, max_kernel: int = 4):
    """A pooling configuration within PyTorch's limits and an input full of ties."""
    d = draw(st.integers(1, 3))
    kernel = tuple(draw(st.integers(1, max_kernel)) for _ in range(d))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(d)) if kind == "max" else (1,) * d
    stride = tuple(draw(st.integers(1, 4)) for _ in range(d))
    padding = tuple(draw(st.integers(0, k // 2)) for k in kernel)
    top = {1: 14, 2: 9, 3: 6}[d]
    size = tuple(max(1, dl * (k - 1) + 1 - 2 * p) + draw(st.integers(0, top))
                 for k, dl, p in zip(kernel, dilation, padding))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), *size)
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.integers(-2, 3, shape).astype(dtype)  # many ties
    special = draw(st.sampled_from(["none", "nan", "-inf", "zeros", "mixed"]))
    if special in ("nan", "mixed"):
        x[rng.random(shape) < 0.25] = np.nan
    if special in ("-inf", "mixed"):
        x[rng.random(shape) < 0.25] = -np.inf
    if special == "zeros":
        x = np.where(rng.random(shape) < 0.5, -0.0, 0.0).astype(dtype)
    kwargs = {"stride": stride if draw(st.booleans()) else None, "padding": padding,
              "ceil_mode": draw(st.booleans())}
    if kind == "max":
        kwargs["dilation"] = dilation
    else:
        kwargs["count_include_pad"] = draw(st.booleans())
    return x, kernel, kwargs, rng


def _assert_same(fast, whole, what):
    whole = _numpy(whole)
    assert fast.shape == whole.shape and fast.dtype == whole.dtype, what
    np.testing.assert_array_equal(fast, whole, err_msg=what)  # NaN == NaN here


def _check(kind, case, grad_special=None, exact=True):
    x, kernel, kwargs, rng = case
    op, vjp = getattr(F, f"{kind}_pool"), getattr(F, f"{kind}_pool_vjp")
    y = op(x, kernel, **kwargs)
    _assert_same(y, op(_strict(x), kernel, **kwargs), f"{kind}_pool")
    gy = rng.standard_normal(y.shape).astype(x.dtype)
    if grad_special is not None:
        gy[rng.random(y.shape) < 0.2] = grad_special
    (gx,) = vjp(gy, x, kernel, **kwargs)
    (gx_whole,) = vjp(_strict(gy), _strict(x), kernel, **kwargs)
    if exact:
        _assert_same(gx, gx_whole, f"{kind}_pool_vjp")
    else:  # blocks of rows add a cell's terms in another order: equal to rounding
        gx_whole = _numpy(gx_whole)
        np.testing.assert_array_equal(np.isnan(gx), np.isnan(gx_whole))
        np.testing.assert_allclose(gx, gx_whole, rtol=1e-5, atol=1e-5)


@given(case=tie_cases("max"))
def test_max_pool_ties_and_specials_pick_the_same_element(case) -> None:
    _check("max", case)


@given(case=tie_cases("max"), special=st.sampled_from([np.inf, -np.inf, np.nan]))
def test_max_pool_vjp_with_non_finite_grad_out(case, special) -> None:
    """A non-finite upstream gradient takes the masked route (no ``inf * 0``)."""
    with np.errstate(invalid="ignore"):
        _check("max", case, grad_special=special)


@given(case=tie_cases("avg"))
def test_avg_pool_adds_in_the_same_order(case) -> None:
    _check("avg", case)


@pytest.mark.parametrize("kind", ["max", "avg"])
@given(data=st.data())
def test_many_small_blocks(kind, data) -> None:
    """Slabs of one or two rows, groups of one image, several threads."""
    case = data.draw(tie_cases(kind))
    block_bytes = data.draw(st.sampled_from([16, 200, 2000]))
    with small_blocks(block_bytes):
        _check(kind, case, exact=False)


@pytest.mark.parametrize(
    "shape,kernel,kwargs",
    [
        ((2, 3, 20, 20), 20, {}),  # global pooling: one window per channel
        ((2, 3, 9, 10), (9, 10), {"stride": 1}),
        ((1, 2, 16, 15), 7, {"stride": 1, "padding": 3}),  # 49 overlapping offsets
        ((2, 2, 17, 16), 6, {"stride": 5, "padding": 3, "ceil_mode": True}),
        ((1, 2, 6, 7, 8), (6, 7, 8), {}),
        ((3, 2, 40), 13, {"stride": 2, "padding": 6}),
    ],
)
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_large_windows(kind, shape, kernel, kwargs) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(-3, 4, shape).astype(np.float32)
    _check(kind, (x, kernel, kwargs, rng))


def test_first_maximum_and_last_nan_take_the_gradient() -> None:
    """The documented routing, by hand: ties to the first maximum, NaN windows to their last
    NaN (also in a ceil_mode window cut short by the end of the input)."""
    x = np.array([[[3.0, 3.0, 1.0, np.nan, 2.0, np.nan, 5.0, 5.0]]])
    (gx,) = F.max_pool_vjp(np.array([[[1.0, 10.0, 100.0, 1000.0]]]), x, 2)
    np.testing.assert_array_equal(gx, [[[1.0, 0.0, 0.0, 10.0, 0.0, 100.0, 1000.0, 0.0]]])
    (gx,) = F.max_pool_vjp(np.array([[[1.0, 10.0]]]), x[..., :5], 3, stride=3, ceil_mode=True)
    np.testing.assert_array_equal(gx, [[[1.0, 0.0, 0.0, 10.0, 0.0]]])
    np.testing.assert_array_equal(F.max_pool_vjp(np.array([[[1.0, 10.0]]]),
                                                 np.array([[[4.0, 4.0, 4.0, 4.0]]]), 3,
                                                 stride=1)[0], [[[1.0, 10.0, 0.0, 0.0]]])


@pytest.mark.slow
@given(case=tie_cases("max", max_kernel=7), kind=st.sampled_from(["max", "avg"]))
def test_wider_windows_slow(case, kind) -> None:
    x, kernel, kwargs, rng = case
    if kind == "avg":
        kwargs = {k: v for k, v in kwargs.items() if k != "dilation"}
    _check(kind, (x, kernel, kwargs, rng))


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("kwargs", [{"stride": 1}, {"stride": 2, "padding": 1}, {}])
def test_strided_views_in_and_out(kind, kwargs) -> None:
    """Non-contiguous inputs and upstream gradients (transposed, sliced) work as copies do."""
    rng = np.random.default_rng(3)
    x = rng.integers(-3, 4, (9, 2, 3, 14)).astype(np.float64).transpose(1, 2, 0, 3)[..., ::2]
    op, vjp = getattr(F, f"{kind}_pool"), getattr(F, f"{kind}_pool_vjp")
    y = op(x, 3, **kwargs)
    np.testing.assert_array_equal(y, op(np.ascontiguousarray(x), 3, **kwargs))
    gy = np.asfortranarray(rng.standard_normal(y.shape))
    np.testing.assert_array_equal(vjp(gy, x, 3, **kwargs)[0],
                                  vjp(np.ascontiguousarray(gy), np.ascontiguousarray(x), 3,
                                      **kwargs)[0])
