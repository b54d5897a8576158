"""Max and average pooling in 1, 2 or 3 spatial dims, with their VJPs.

Like correlation, pooling loops over the few window offsets and reduces whole strided views
(see ``fc2conv._windows``): a pooling is a depthwise correlation whose "multiply-add" is a max
or a mean.

NumPy arrays take a fast path with the same results (bit for bit with one block per
(image, channel); to rounding when a huge image is cut into slabs of rows). Overlapping windows
run on the flat-window engine of :mod:`fc2conv.algorithms.direct`: per cache-sized block of
(image, channel) rows the input is gathered once into its stride phases (the padding filled in
on the way, so no padded copy of the whole input is made), each window offset is then one
contiguous run, and every offset costs one ``np.maximum`` / ``np.add`` with ``out=`` into a
preallocated accumulator. Disjoint windows (stride >= window, e.g. 2x2 stride 2) read each
input once anyway, so they reduce the strided windows of blocks of whole images directly. The
max-pool VJP recomputes the maxima and routes each window's gradient to the winner of
:func:`_max_forward` with plain ufuncs (masked ``where=`` ufuncs are ~30x slower): per offset
``hit = (run == max)``, ``grad += rest * hit``, ``rest -= rest * hit``, where ``rest``, the
gradient still to route, starts as ``grad_out``. Other array-API namespaces take the
whole-array path below.
"""

from __future__ import annotations

import math
from typing import Any

import array_api_compat
import numpy as np

from .. import _padding, _validate
from .._windows import offsets, window
from ..algorithms import direct as _direct
from ..algorithms.direct import Block, Engine, Layer, scratch_buffer

__all__ = ["avg_pool", "avg_pool_vjp", "max_pool", "max_pool_vjp"]


def max_pool(
    x: Any,
    kernel_size: Any,
    *,
    stride: Any = None,
    padding: Any = 0,
    dilation: Any = 1,
    ceil_mode: bool = False,
) -> Any:
    """Max pooling: ``y[n, c, i] = max_a x_pad[n, c, i*stride + a*dilation]``.

    Padding never wins (it is ``-inf``); a NaN in a window gives NaN.

    Args:
        x: ``(N, C, *S)``, 1 to 3 spatial dims.
        kernel_size, stride (default ``kernel_size``), dilation: an int or one per dim.
        padding: symmetric, at most ``kernel_size // 2`` per dim.
        ceil_mode: round the output size up, keeping windows that start inside the input
            or its left padding.

    Returns:
        ``(N, C, *S_out)``, ``S_out = floor_or_ceil((S + 2*padding - dilation*(K-1) - 1)
        / stride) + 1``.

    >>> import numpy as np, fc2conv
    >>> x = np.arange(16.0).reshape(1, 1, 4, 4)
    >>> fc2conv.max_pool(x, 3, padding=1, stride=2)[0, 0].tolist()
    [[5.0, 7.0], [13.0, 15.0]]
    """
    spec = _validate.pool_spec(x, kernel_size, stride=stride, padding=padding,
                               dilation=dilation, ceil_mode=ceil_mode)
    if _is_numpy(spec.xp, x):
        return _fast_max(spec, x)
    return _max_forward(spec, x)[0]


def avg_pool(
    x: Any,
    kernel_size: Any,
    *,
    stride: Any = None,
    padding: Any = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
) -> Any:
    """Average pooling: the mean of each window of ``x``.

    With ``count_include_pad`` the zero padding counts in the divisor (PyTorch's default);
    cells a ``ceil_mode`` window reaches beyond the padding never count.

    Args:
        x: ``(N, C, *S)``.
        kernel_size, stride (default ``kernel_size``): an int or one per dim.
        padding: symmetric zeros, at most ``kernel_size // 2`` per dim.

    Returns:
        ``(N, C, *S_out)`` as in :func:`max_pool` with dilation 1.

    >>> import numpy as np, fc2conv
    >>> x = np.arange(9.0).reshape(1, 1, 3, 3)
    >>> fc2conv.avg_pool(x, 2, stride=1)[0, 0].tolist()
    [[2.0, 3.0], [5.0, 6.0]]
    """
    spec = _validate.pool_spec(x, kernel_size, stride=stride, padding=padding, dilation=1,
                               ceil_mode=ceil_mode)
    xp = spec.xp
    if _is_numpy(xp, x):
        return _fast_avg(spec, x, _divisor(xp, spec, count_include_pad, x))
    x_pad = _padding.pad(xp, x, spec.pads, "zeros")
    total = None
    for offset in offsets(spec.kernel):
        part = x_pad[window(offset, spec.stride, spec.dilation, spec.out_size)]
        total = part if total is None else total + part
    return total / _divisor(xp, spec, count_include_pad, x)


def max_pool_vjp(
    grad_out: Any,
    x: Any,
    kernel_size: Any,
    *,
    stride: Any = None,
    padding: Any = 0,
    dilation: Any = 1,
    ceil_mode: bool = False,
) -> tuple[Any]:
    """Gradient of ``sum(max_pool(x, ...) * grad_out)`` with respect to ``x``.

    Each window's gradient goes to its first maximal element (PyTorch's choice for ties).
    ``grad_out: (N, C, *S_out)`` -> ``(grad_x: (N, C, *S),)``.

    >>> import numpy as np, fc2conv.functional as F
    >>> x = np.array([[[1.0, 3.0, 2.0, 0.0]]])
    >>> F.max_pool_vjp(np.array([[[10.0, 20.0]]]), x, 2)[0].tolist()
    [[[0.0, 10.0, 20.0, 0.0]]]
    """
    spec = _validate.pool_spec(x, kernel_size, stride=stride, padding=padding,
                               dilation=dilation, ceil_mode=ceil_mode)
    xp = spec.xp
    _validate.check_grad_out(grad_out, spec.output_shape(tuple(x.shape)), xp, x.dtype)
    if _is_numpy(xp, x, grad_out):
        return (_fast_max_vjp(spec, grad_out, x),)
    _, winner = _max_forward(spec, x)
    grad_pad = xp.zeros((*x.shape[:2], *spec.padded_size), dtype=x.dtype,
                        device=array_api_compat.device(x))
    zero = xp.zeros_like(grad_out)
    for k, offset in enumerate(offsets(spec.kernel)):
        index = window(offset, spec.stride, spec.dilation, spec.out_size)
        grad_pad[index] += xp.where(winner == k, grad_out, zero)
    return (_padding.pad_vjp(xp, grad_pad, spec.in_size, spec.pads, "zeros"),)


def avg_pool_vjp(
    grad_out: Any,
    x: Any,
    kernel_size: Any,
    *,
    stride: Any = None,
    padding: Any = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
) -> tuple[Any]:
    """Gradient of ``sum(avg_pool(x, ...) * grad_out)`` with respect to ``x``.

    ``grad_out: (N, C, *S_out)`` -> ``(grad_x: (N, C, *S),)``: each window spreads its
    gradient evenly over the cells it averaged.

    >>> import numpy as np, fc2conv.functional as F
    >>> F.avg_pool_vjp(np.array([[[4.0, 8.0]]]), np.zeros((1, 1, 4)), 2)[0].tolist()
    [[[2.0, 2.0, 4.0, 4.0]]]
    """
    spec = _validate.pool_spec(x, kernel_size, stride=stride, padding=padding, dilation=1,
                               ceil_mode=ceil_mode)
    xp = spec.xp
    _validate.check_grad_out(grad_out, spec.output_shape(tuple(x.shape)), xp, x.dtype)
    if _is_numpy(xp, x, grad_out):
        return (_fast_avg_vjp(spec, grad_out, x, _divisor(xp, spec, count_include_pad, x)),)
    share = grad_out / _divisor(xp, spec, count_include_pad, x)
    grad_pad = xp.zeros((*x.shape[:2], *spec.padded_size), dtype=x.dtype,
                        device=array_api_compat.device(x))
    for offset in offsets(spec.kernel):
        grad_pad[window(offset, spec.stride, spec.dilation, spec.out_size)] += share
    return (_padding.pad_vjp(xp, grad_pad, spec.in_size, spec.pads, "zeros"),)


# ---------------------------------------------------------------------------------------------


def _max_forward(spec: _validate.PoolSpec, x: Any) -> tuple[Any, Any]:
    """The pooled maxima and, per output, the index of the offset that won."""
    xp = spec.xp
    x_pad = _padding.pad(xp, x, spec.pads, "zeros", fill=-math.inf)
    best = winner = None
    for k, offset in enumerate(offsets(spec.kernel)):
        part = x_pad[window(offset, spec.stride, spec.dilation, spec.out_size)]
        if best is None:
            best = part
            winner = xp.zeros(part.shape, dtype=xp.int64, device=array_api_compat.device(x))
            continue
        # Strictly greater keeps the first maximum; a NaN always takes over (and stays NaN).
        better = (part > best) | xp.isnan(part)
        best = xp.where(better, part, best)
        winner = xp.where(better, xp.asarray(k, dtype=xp.int64), winner)
    return best, winner


def _divisor(xp: Any, spec: _validate.PoolSpec, count_include_pad: bool, x: Any) -> Any:
    """How many cells each average divides by, ``(*S_out)`` broadcast over N and C."""
    total = np.ones(spec.out_size)
    for axis, (n, k, s, p, m) in enumerate(
        zip(spec.in_size, spec.kernel, spec.stride, spec.padding, spec.out_size)
    ):
        start = np.arange(m) * s - p
        stop = np.minimum(start + k, n + p)  # ceil-mode overflow past the padding never counts
        if not count_include_pad:
            start, stop = np.maximum(start, 0), np.minimum(stop, n)
        shape = [1] * spec.ndim
        shape[axis] = m
        total = total * (stop - start).reshape(shape)
    return xp.asarray(total, dtype=x.dtype, device=array_api_compat.device(x))


# ---------------------------------------------------------------------------------------------
# NumPy: the flat-window engine


def _is_numpy(xp: Any, *arrays: Any) -> bool:
    return array_api_compat.is_numpy_namespace(xp) and all(
        isinstance(a, np.ndarray) for a in arrays)


def _engine(spec: _validate.PoolSpec, x: np.ndarray) -> Engine:
    """Pooling as a depthwise layer: one group per channel."""
    n, c = x.shape[:2]
    layer = Layer(n, c, 1, 1, spec.in_size, spec.pads, spec.kernel, spec.stride,
                  spec.dilation, spec.out_size)
    return Engine(layer, x.dtype)


def _disjoint(spec: _validate.PoolSpec) -> bool:
    """Windows that never overlap (stride >= dilated window on every axis): each input is
    read once, so strided windows of the input beat gathering it into phases first."""
    return all(s >= d * (k - 1) + 1 for s, d, k in zip(spec.stride, spec.dilation, spec.kernel))


def _image_blocks(eng: Engine, x: np.ndarray, spec: _validate.PoolSpec) -> list[Block]:
    """Blocks of whole images whose outputs (and the VJP's four output-sized buffers) fit in
    the cache budget: for :func:`_disjoint` windows, read straight from the input."""
    n, c = x.shape[:2]
    per_image = 4 * c * math.prod(spec.out_size) * x.dtype.itemsize
    nb = max(1, _direct.BLOCK_BYTES // per_image)
    return [Block(n0, min(n, n0 + nb), 0, c, 0, spec.out_size[0]) for n0 in range(0, n, nb)]


def _windows(spec: _validate.PoolSpec, a: np.ndarray) -> list[np.ndarray]:
    """The strided window of every offset of a padded block, in C order."""
    return [a[window(offset, spec.stride, spec.dilation, spec.out_size)]
            for offset in offsets(spec.kernel)]


def _fast_max(spec: _validate.PoolSpec, x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x)
    eng = _engine(spec, x)
    y = np.empty(spec.output_shape(x.shape), dtype=x.dtype)
    if _disjoint(spec):
        x_pad = _padding.pad(np, x, spec.pads, "zeros", fill=-math.inf)

        def strided(blocks: list[Block]) -> None:
            for b in blocks:
                _maxima(_windows(spec, x_pad[b.n0:b.n1]), y[b.n0:b.n1])

        eng.run(strided, _image_blocks(eng, x, spec))
        return y

    def work(blocks: list[Block]) -> None:
        scratch: dict = {}
        for b in blocks:
            plan = eng.plan(b)
            src = eng.source(x, b, plan, scratch, fill=-math.inf)
            full = eng.output(y, b, plan, scratch)
            _maxima(_runs(src, plan), full[..., :plan.length])
            eng.store(y, b, plan, full)

    eng.run(work)
    return y


def _runs(a: np.ndarray, plan: Any) -> list[np.ndarray]:
    """The run of every offset in a ``(nb, gb, 1, phases, prod(q))`` engine array."""
    return [a[:, :, :, p, shift:shift + plan.length] for p, shift in plan.taps]


def _maxima(runs: list[np.ndarray], best: np.ndarray) -> None:
    """The window maxima into ``best`` (NaN wins, as in :func:`_max_forward`)."""
    np.copyto(best, runs[0])
    for run in runs[1:]:
        np.maximum(best, run, out=best)


def _route(runs: list[np.ndarray], intos: list[np.ndarray], best: np.ndarray, gy: np.ndarray,
           scratch: dict, exact: bool) -> None:
    """Add each window's gradient ``gy`` into ``intos[k]`` of its winning offset ``k``: the
    first maximal element, or the last NaN if the window has any (the winner of
    :func:`_max_forward`). Destroys ``best``.

    Masked ufuncs (``where=``) are ~30x slower than plain ones, so with a finite ``gy`` the
    gradient still to route, ``rem``, is multiplied by the hit mask, added and subtracted:
    a window's first hit takes all of it, later ties take zero. ``exact`` (a non-finite
    ``gy``, where ``inf * 0`` would spread NaN) uses the masked ufuncs.
    """
    hit = scratch_buffer(scratch, "hit", gy.shape, np.bool_)
    last_nan = None
    if np.isnan(best).any():  # a NaN window's winner is its last NaN (never "equal")
        last_nan = np.full(gy.shape, -1, dtype=np.intp)
        for k, run in enumerate(runs):
            np.isnan(run, out=hit)
            np.copyto(last_nan, k, where=hit)
    if not exact:
        rem = scratch_buffer(scratch, "rem", gy.shape, gy.dtype)
        tmp = scratch_buffer(scratch, "tmp", gy.shape, gy.dtype)
        np.copyto(rem, gy)
    final = len(runs) - 1
    for k, (run, into) in enumerate(zip(runs, intos)):
        np.equal(run, best, out=hit)
        if last_nan is not None:
            hit |= last_nan == k
        if exact:
            np.add(into, gy, out=into, where=hit)
            if k < final:  # taken: later ties of this window compare with NaN
                np.copyto(best, np.nan, where=hit)
        else:
            np.multiply(rem, hit, out=tmp)
            np.add(into, tmp, out=into)
            if k < final:
                np.subtract(rem, tmp, out=rem)


def _fast_max_vjp(spec: _validate.PoolSpec, grad_out: np.ndarray, x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x)
    eng = _engine(spec, x)
    grad_out = np.ascontiguousarray(grad_out)
    exact = not np.isfinite(grad_out).all()
    if _disjoint(spec):
        x_pad = _padding.pad(np, x, spec.pads, "zeros", fill=-math.inf)
        gx_pad = np.zeros(x_pad.shape, dtype=x.dtype)

        def strided(blocks: list[Block]) -> None:
            scratch: dict = {}
            for b in blocks:
                gy = grad_out[b.n0:b.n1]
                best = scratch_buffer(scratch, "best", gy.shape, x.dtype)
                runs = _windows(spec, x_pad[b.n0:b.n1])
                _maxima(runs, best)
                _route(runs, _windows(spec, gx_pad[b.n0:b.n1]), best, gy, scratch, exact)

        eng.run(strided, _image_blocks(eng, x, spec))
        return _padding.pad_vjp(np, gx_pad, spec.in_size, spec.pads, "zeros")


    def route(b: Block, plan: Any, scratch: dict, acc: np.ndarray) -> None:
        src = eng.source(x, b, plan, scratch, fill=-math.inf)
        gy = eng.grid(grad_out, b, plan, scratch)  # zeros at the junk points
        best = scratch_buffer(scratch, "best", gy.shape, x.dtype)
        runs = _runs(src, plan)
        _maxima(runs, best)
        _route(runs, _runs(acc, plan), best, gy, scratch, exact)

    return _grid_gradient(eng, x, route)


def _grid_gradient(eng: Any, x: np.ndarray, add: Any) -> np.ndarray:
    """The input gradient on the flat grid: per block, ``add(block, plan, scratch, acc)``
    adds into the block's zeroed accumulator, which is then folded into the result."""
    gx = np.zeros(x.shape, dtype=x.dtype)

    def work(blocks: list[Block]) -> None:
        scratch: dict = {}
        for b in blocks:
            plan = eng.plan(b)
            acc = eng.gradient(gx, b, plan, scratch)
            add(b, plan, scratch, acc)
            eng.fold(gx, b, plan, acc)

    eng.run(work)
    return gx


def _fast_avg(spec: _validate.PoolSpec, x: np.ndarray, divisor: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x)
    eng = _engine(spec, x)
    y = np.empty(spec.output_shape(x.shape), dtype=x.dtype)
    if _disjoint(spec):
        x_pad = _padding.pad(np, x, spec.pads, "zeros")

        def strided(blocks: list[Block]) -> None:
            for b in blocks:
                _sum(_windows(spec, x_pad[b.n0:b.n1]), y[b.n0:b.n1])
                np.divide(y[b.n0:b.n1], divisor, out=y[b.n0:b.n1])

        eng.run(strided, _image_blocks(eng, x, spec))
        return y

    def work(blocks: list[Block]) -> None:
        scratch: dict = {}
        for b in blocks:
            plan = eng.plan(b)
            src = eng.source(x, b, plan, scratch)
            full = eng.output(y, b, plan, scratch)
            _sum(_runs(src, plan), full[..., :plan.length])
            eng.store(y, b, plan, full, divide=divisor)

    eng.run(work)
    return y


def _sum(runs: list[np.ndarray], total: np.ndarray) -> None:
    np.copyto(total, runs[0])
    for run in runs[1:]:
        np.add(total, run, out=total)


def _fast_avg_vjp(spec: _validate.PoolSpec, grad_out: np.ndarray, x: np.ndarray,
                  divisor: np.ndarray) -> np.ndarray:
    grad_out = np.ascontiguousarray(grad_out)
    eng = _engine(spec, x)
    if _disjoint(spec):
        share = grad_out / divisor
        gx_pad = np.zeros((*x.shape[:2], *spec.padded_size), dtype=x.dtype)

        def strided(blocks: list[Block]) -> None:
            for b in blocks:
                for into in _windows(spec, gx_pad[b.n0:b.n1]):
                    np.add(into, share[b.n0:b.n1], out=into)

        eng.run(strided, _image_blocks(eng, x, spec))
        return _padding.pad_vjp(np, gx_pad, spec.in_size, spec.pads, "zeros")


    def spread(b: Block, plan: Any, scratch: dict, acc: np.ndarray) -> None:
        share = eng.grid(grad_out, b, plan, scratch, divide=divisor)
        for into in _runs(acc, plan):
            np.add(into, share, out=into)

    return _grid_gradient(eng, x, spread)
