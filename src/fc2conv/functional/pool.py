"""Max and average pooling in 1, 2 or 3 spatial dims, with their VJPs.

Like correlation, pooling loops over the few window offsets and reduces whole strided views
(see ``fc2conv._windows``): a pooling is a depthwise correlation whose "multiply-add" is a max
or a mean.
"""

from __future__ import annotations

import math
from typing import Any

import array_api_compat
import numpy as np

from .. import _padding, _validate
from .._windows import offsets, window

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
