"""Forward values and gradients agree with ``torch.nn.functional`` (CPU, float64).

Torch runs in float64 on exactly the values fc2conv sees (float32 inputs are widened), so its
answers are accurate to ~1e-16 and the tolerance is fc2conv's own rounding bound (see
``_strategies.compare``). Gradients: torch autograd of ``sum(out * gy)`` for a random upstream
gradient ``gy`` against ``fc2conv.functional.*_vjp``. Padding modes reflect / replicate /
circular go through ``torch.nn.functional.pad`` before the conv; ``symmetric`` has no torch
counterpart (it is covered against NumPy and SciPy instead).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _strategies import (
    METHODS,
    as_tuple,
    compare,
    conv_cases,
    conv_terms,
    conv_transpose_cases,
    conv_transpose_terms,
    pool_cases,
)
from hypothesis import assume, given
from hypothesis import strategies as st

import fc2conv
import fc2conv.functional as ff

TORCH_MODES = ("zeros", "reflect", "replicate", "circular")
TORCH_PAD_MODE = {
    "zeros": "constant",
    "reflect": "reflect",
    "replicate": "replicate",
    "circular": "circular",
}
CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
CONVT = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
MAXP = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
AVGP = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}

seeds = st.integers(0, 2**32 - 1)


def _leaf(a):
    if a is None:
        return None
    return torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=True)


def _torch_run(fn, arrays, gy):
    """Forward and gradients of ``sum(fn(*arrays) * gy)``, all float64 NumPy."""
    leaves = [_leaf(a) for a in arrays]
    y = fn(*leaves)
    if gy is not None:
        y.backward(torch.from_numpy(np.asarray(gy, dtype=np.float64)))
    grads = [None if t is None else t.grad.numpy() for t in leaves]
    return y.detach().numpy(), grads


def _gy(seed, shape, dtype):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _abs(a):
    return None if a is None else np.abs(a)


# every (rank, method) pair gets its own sample on every run
RANK_METHOD = pytest.mark.parametrize(
    "rank,method", [(r, m) for r in (1, 2, 3) for m in METHODS]
)

# ---------------------------------------------------------------------------------------------
# correlate / convolve
# ---------------------------------------------------------------------------------------------


def _torch_conv(case, flip: bool):
    kw = case.kwargs
    d = case.x.ndim - 2
    pairs = case.extra["pairs"]
    padding = kw["padding"]
    symmetric = isinstance(padding, int) or (
        isinstance(padding, tuple) and all(isinstance(p, int) for p in padding)
    )

    def fn(x, w, b):
        if kw["padding_mode"] == "zeros" and symmetric:
            conv_padding = padding
        else:
            flat = [v for pair in reversed(pairs) for v in pair]  # last dim first
            x = F.pad(x, flat, mode=TORCH_PAD_MODE[kw["padding_mode"]])
            conv_padding = 0
        if flip:
            w = torch.flip(w, dims=tuple(range(2, 2 + d)))
        return CONV[d](x, w, b, stride=kw["stride"], padding=conv_padding,
                       dilation=kw["dilation"], groups=kw["groups"])

    return fn


def _check_conv(case, method, seed, flip: bool):
    op = fc2conv.convolve if flip else fc2conv.correlate
    vjp = ff.convolve_vjp if flip else ff.correlate_vjp
    name = "convolve" if flip else "correlate"
    fn = _torch_conv(case, flip)
    y = op(case.x, case.w, case.b, **case.kwargs, method=method)
    gy = _gy(seed, np.shape(y), case.dtype)
    y_t, (gx_t, gw_t, gb_t) = _torch_run(fn, (case.x, case.w, case.b), gy)
    b_abs, (gxb, gwb, gbb) = _torch_run(fn, (_abs(case.x), _abs(case.w), _abs(case.b)),
                                        np.abs(gy))
    terms = conv_terms(case, y_t.shape)
    compare("torch", y, y_t, b_abs, terms, case.dtype, what=f"{name} {method} forward")
    gx, gw, gb = vjp(gy, case.x, case.w, case.b, **case.kwargs, method=method)
    compare("torch", gx, gx_t, gxb, terms, case.dtype, what=f"{name}_vjp {method} gx")
    compare("torch", gw, gw_t, gwb, terms, case.dtype, what=f"{name}_vjp {method} gw")
    if case.b is None:
        assert gb is None
    else:
        compare("torch", gb, gb_t, gbb, terms, case.dtype, what=f"{name}_vjp {method} gb")


@RANK_METHOD
@given(data=st.data(), seed=seeds)
def test_correlate_and_vjp_match_torch(rank, method, data, seed) -> None:
    case = data.draw(conv_cases(ranks=(rank,), modes=TORCH_MODES, torch_limits=True),
                     label="case")
    _check_conv(case, method, seed, flip=False)


@RANK_METHOD
@given(data=st.data(), seed=seeds)
def test_convolve_and_vjp_match_torch_flipped_kernel(rank, method, data, seed) -> None:
    case = data.draw(conv_cases(ranks=(rank,), modes=TORCH_MODES, torch_limits=True),
                     label="case")
    _check_conv(case, method, seed, flip=True)


# ---------------------------------------------------------------------------------------------
# conv_transpose
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rank", [1, 2, 3])
@given(data=st.data(), seed=seeds)
def test_conv_transpose_and_vjp_match_torch(rank, data, seed) -> None:
    case = data.draw(conv_transpose_cases(ranks=(rank,), pairs_padding=False), label="case")
    kw = case.kwargs
    d = case.x.ndim - 2

    def fn(x, w, b):
        return CONVT[d](x, w, b, **kw)

    y = fc2conv.conv_transpose(case.x, case.w, case.b, **kw)
    gy = _gy(seed, np.shape(y), case.dtype)
    y_t, (gx_t, gw_t, gb_t) = _torch_run(fn, (case.x, case.w, case.b), gy)
    b_abs, (gxb, gwb, gbb) = _torch_run(fn, (_abs(case.x), _abs(case.w), _abs(case.b)),
                                        np.abs(gy))
    terms = conv_transpose_terms(case, y_t.shape)
    compare("torch", y, y_t, b_abs, terms, case.dtype, what="conv_transpose forward")
    gx, gw, gb = ff.conv_transpose_vjp(gy, case.x, case.w, case.b, **kw)
    compare("torch", gx, gx_t, gxb, terms, case.dtype, what="conv_transpose_vjp gx")
    compare("torch", gw, gw_t, gwb, terms, case.dtype, what="conv_transpose_vjp gw")
    if case.b is None:
        assert gb is None
    else:
        compare("torch", gb, gb_t, gbb, terms, case.dtype, what="conv_transpose_vjp gb")


# ---------------------------------------------------------------------------------------------
# pooling
# ---------------------------------------------------------------------------------------------


def _every_window_sees_input(sizes, out_sizes, kernel_size, kw) -> bool:
    d = len(sizes)
    kernel = as_tuple(kernel_size, d)
    stride = kernel if kw["stride"] is None else as_tuple(kw["stride"], d)
    padding = as_tuple(kw["padding"], d)
    dilation = as_tuple(kw.get("dilation", 1), d)
    return all(
        any(0 <= i * s - p + a * dl < n for a in range(k))
        for n, m, k, s, p, dl in zip(sizes, out_sizes, kernel, stride, padding, dilation)
        for i in range(m)
    )


def _check_pool(case, seed, kind):
    k = case.extra["kernel_size"]
    kw = case.kwargs
    d = case.x.ndim - 2
    table, op, vjp = (
        (MAXP, fc2conv.max_pool, ff.max_pool_vjp)
        if kind == "max"
        else (AVGP, fc2conv.avg_pool, ff.avg_pool_vjp)
    )

    def fn(x):
        return table[d](x, k, **kw)

    if kind == "avg" and d == 3:
        # torch's avg_pool3d (only) rejects inputs smaller than the kernel, padding or not
        assume(all(n >= kk for n, kk in zip(case.x.shape[2:], as_tuple(k, d))))
    y = op(case.x, k, **kw)
    if kind == "max":
        # torch routes the gradient of a window that sees only padding (output -inf) to an
        # out-of-range index, writing into a neighbouring sample or crashing: not comparable
        assume(_every_window_sees_input(case.x.shape[2:], np.shape(y)[2:], k, kw))
    gy = _gy(seed, np.shape(y), case.dtype)
    y_t, (gx_t,) = _torch_run(fn, (case.x,), gy)
    # absolute bounds: same windows (and, for max, the same argmax since x is unchanged)
    y_abs, (gxb,) = _torch_run(fn, (case.x if kind == "max" else np.abs(case.x),), np.abs(gy))
    terms = math.prod((k,) * d if isinstance(k, int) else k) + 1
    fwd_bound = np.zeros_like(y_t) if kind == "max" else y_abs  # the max is exact
    compare("torch", y, y_t, fwd_bound, terms, case.dtype, what=f"{kind}_pool forward")
    (gx,) = vjp(gy, case.x, k, **kw)
    compare("torch", gx, gx_t, gxb, terms, case.dtype, what=f"{kind}_pool_vjp gx")


@pytest.mark.parametrize("rank", [1, 2, 3])
@given(data=st.data(), seed=seeds)
def test_max_pool_and_vjp_match_torch(rank, data, seed) -> None:
    case = data.draw(pool_cases("max", ranks=(rank,)), label="case")
    _check_pool(case, seed, "max")


@pytest.mark.parametrize("rank", [1, 2, 3])
@given(data=st.data(), seed=seeds)
def test_avg_pool_and_vjp_match_torch(rank, data, seed) -> None:
    case = data.draw(pool_cases("avg", ranks=(rank,)), label="case")
    _check_pool(case, seed, "avg")
