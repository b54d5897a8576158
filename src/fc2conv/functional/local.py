"""The two lower rungs of the ladder: dense-on-grid and locally connected (untied) layers.

``dense_grid`` is the seed's first formula, ``H[i,j] = U[i,j] + sum_{k,l} W[i,j,k,l] X[k,l]``,
with channels: a fully-connected layer whose inputs and outputs keep their grid shape.
``local_correlate`` keeps only a window around each output position (locality) but lets every
position have its own kernel (no weight sharing): ``correlate`` with untied weights.

The locally connected layer costs what the sparse layer costs, ``O(N * P * C_out * C_in * K)``
for ``P`` output positions and ``K`` kernel offsets: the ``K`` strided windows of the padded
input are gathered once per call into a ``(P, N, C_in * K)`` buffer and multiplied by the
per-position weights in one batched matrix product. No dense ``(P, Q)`` matrix is ever formed.
"""

from __future__ import annotations

import math
from typing import Any

import array_api_compat
import numpy as np

from .. import _padding, _validate
from .._windows import offsets, window

__all__ = ["dense_grid", "dense_grid_vjp", "local_correlate", "local_correlate_vjp"]


def dense_grid(x: Any, w: Any, bias: Any = None) -> Any:
    """Dense-on-grid layer: every output position sees every input position.

    ``y[n, o, *p] = bias[*p, o] + sum_{c, *q} w[*p, o, c, *q] * x[n, c, *q]``, the seed's
    ``H[i,j] = U[i,j] + sum_{k,l} W[i,j,k,l] X[k,l]`` with channels.

    Args:
        x: ``(N, C_in, *S_in)``, float32 or float64, 1 to 3 spatial dims.
        w: ``(*S_out, C_out, C_in, *S_in)``: ``w[*p]`` is the dense "kernel" of output
            position ``p``, an image the size of the input.
        bias: ``(*S_out, C_out)`` (one per output position, the seed's ``U``), ``(C_out,)``
            (shared) or None.

    Returns:
        ``(N, C_out, *S_out)``.

    >>> import numpy as np, fc2conv
    >>> x = np.arange(3.0).reshape(1, 1, 3)
    >>> w = np.zeros((2, 1, 1, 3)); w[0, 0, 0] = [1, 1, 1]; w[1, 0, 0] = [0, 0, 10]
    >>> fc2conv.dense_grid(x, w, np.array([[0.5], [0.0]])).tolist()
    [[[3.5, 20.0]]]
    """
    spec = _validate.dense_grid_spec(x, w, bias)
    xp = spec.xp
    y = _flat_inputs(xp, x, spec) @ _flat_dense_weight(xp, w, spec).mT  # (N, P * C_out)
    y = xp.reshape(y, (spec.batch, math.prod(spec.out_size), spec.out_channels))
    return _add_bias(xp, _to_channels_first(xp, y, spec.out_size), bias, spec.bias_per_position)


def dense_grid_vjp(grad_out: Any, x: Any, w: Any, bias: Any = None) -> tuple[Any, Any, Any]:
    """Gradients of ``sum(dense_grid(x, w, bias) * grad_out)`` with respect to x, w, bias.

    ``grad_out: (N, C_out, *S_out)`` -> ``(grad_x: (N, C_in, *S_in), grad_w: (*S_out, C_out,
    C_in, *S_in), grad_bias: bias.shape or None)``.

    >>> import numpy as np, fc2conv.functional as F
    >>> x, w = np.array([[[1.0, 2.0]]]), np.ones((1, 1, 1, 2))
    >>> gx, gw, gb = F.dense_grid_vjp(np.array([[[3.0]]]), x, w, np.zeros(1))
    >>> gx.tolist(), gw.tolist(), gb.tolist()
    ([[[3.0, 3.0]]], [[[[3.0, 6.0]]]], [3.0])
    """
    spec = _validate.dense_grid_spec(x, w, bias)
    xp = spec.xp
    _validate.check_grad_out(grad_out, spec.output_shape, xp, x.dtype)
    gy = _to_position_major(xp, grad_out)  # (P, N, C_out)
    gy = xp.reshape(xp.permute_dims(gy, (1, 0, 2)), (spec.batch, -1))  # (N, P * C_out)
    grad_x = xp.reshape(gy @ _flat_dense_weight(xp, w, spec), tuple(x.shape))
    grad_w = xp.reshape(gy.mT @ _flat_inputs(xp, x, spec), tuple(w.shape))
    return grad_x, grad_w, _bias_grad(xp, grad_out, bias, spec.bias_per_position)


def local_correlate(
    x: Any,
    w: Any,
    bias: Any = None,
    *,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    padding_mode: str = "zeros",
) -> Any:
    """Locally connected layer: a correlation with a different kernel at every output position.

    ``y[n, o, *p] = bias[*p, o] + sum_{c, *a} w[*p, o, c, *a] * x_pad[n, c, p*stride +
    a*dilation]``. With every ``w[*p]`` equal this is :func:`fc2conv.correlate`; tying them
    is the seed's translation invariance, the window itself is its locality.

    Args:
        x: ``(N, C_in, *S)``, float32 or float64, 1 to 3 spatial dims.
        w: ``(*S_out, C_out, C_in, *K)``: ``w[*p]`` is an ordinary conv kernel for output
            position ``p``. ``S_out`` must be the size the padding, stride and dilation give.
        bias: ``(*S_out, C_out)`` (per position), ``(C_out,)`` (shared) or None.
        stride, padding, dilation, padding_mode: as in :func:`fc2conv.correlate`.

    Returns:
        ``(N, C_out, *S_out)``.

    >>> import numpy as np, fc2conv
    >>> x = np.array([[[1.0, 2.0, 3.0, 4.0]]])
    >>> w = np.array([[[[1.0, 0.0]]], [[[0.0, 1.0]]], [[[1.0, -1.0]]]])  # (3, 1, 1, 2)
    >>> fc2conv.local_correlate(x, w).tolist()
    [[[1.0, 3.0, -1.0]]]
    """
    spec, per_position = _validate.local_spec(
        x, w, bias, stride=stride, padding=padding, dilation=dilation,
        padding_mode=padding_mode,
    )
    xp = spec.xp
    cols = _local_columns(xp, _padding.pad(xp, x, spec.pads, spec.padding_mode), spec)
    y = cols @ _flat_local_weight(xp, w, spec).mT  # (P, N, C_out)
    y = xp.permute_dims(y, (1, 0, 2))
    return _add_bias(xp, _to_channels_first(xp, y, spec.out_size), bias, per_position)


def local_correlate_vjp(
    grad_out: Any,
    x: Any,
    w: Any,
    bias: Any = None,
    *,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    padding_mode: str = "zeros",
) -> tuple[Any, Any, Any]:
    """Gradients of ``sum(local_correlate(x, w, bias, ...) * grad_out)`` w.r.t. x, w, bias.

    ``grad_out: (N, C_out, *S_out)`` -> ``(grad_x: (N, C_in, *S), grad_w: (*S_out, C_out,
    C_in, *K), grad_bias: bias.shape or None)``. The input gradient scatters each position's
    ``w^T grad_out`` back through the same windows and folds the padding back.

    >>> import numpy as np, fc2conv.functional as F
    >>> x = np.array([[[1.0, 2.0, 3.0]]])
    >>> w = np.array([[[[1.0, 10.0]]], [[[100.0, 1000.0]]]])  # (2, 1, 1, 2)
    >>> gx, gw, gb = F.local_correlate_vjp(np.ones((1, 1, 2)), x, w)
    >>> gx.tolist(), gw[:, 0, 0].tolist(), gb
    ([[[1.0, 110.0, 1000.0]]], [[1.0, 2.0], [2.0, 3.0]], None)
    """
    spec, per_position = _validate.local_spec(
        x, w, bias, stride=stride, padding=padding, dilation=dilation,
        padding_mode=padding_mode,
    )
    xp = spec.xp
    _validate.check_grad_out(grad_out, spec.output_shape, xp, x.dtype)
    gy = _to_position_major(xp, grad_out)  # (P, N, C_out)
    cols = _local_columns(xp, _padding.pad(xp, x, spec.pads, spec.padding_mode), spec)
    grad_w = xp.reshape(gy.mT @ cols, tuple(w.shape))  # (P, C_out, C_in * K)
    grad_cols = gy @ _flat_local_weight(xp, w, spec)  # (P, N, C_in * K)
    grad_x_pad = _scatter_columns(xp, grad_cols, spec)
    grad_x = _padding.pad_vjp(xp, grad_x_pad, spec.in_size, spec.pads, spec.padding_mode)
    return grad_x, grad_w, _bias_grad(xp, grad_out, bias, per_position)


# ---------------------------------------------------------------------------------------------


def _flat_inputs(xp: Any, x: Any, spec: _validate.DenseGridSpec) -> Any:
    return xp.reshape(x, (spec.batch, -1))


def _flat_dense_weight(xp: Any, w: Any, spec: _validate.DenseGridSpec) -> Any:
    """``(*S_out, C_out, C_in, *S_in) -> (P * C_out, C_in * Q)``."""
    return xp.reshape(w, (math.prod(spec.out_size) * spec.out_channels, -1))


def _flat_local_weight(xp: Any, w: Any, spec: _validate.ConvSpec) -> Any:
    """``(*S_out, C_out, C_in, *K) -> (P, C_out, C_in * K)``."""
    return xp.reshape(w, (math.prod(spec.out_size), spec.out_channels, -1))


def _local_columns(xp: Any, x_pad: Any, spec: _validate.ConvSpec) -> Any:
    """Position-major windows ``(P, N, C_in * K)``: row ``p`` holds what output ``p`` reads."""
    d = spec.ndim
    kk = math.prod(spec.kernel)
    cols = xp.empty((*spec.out_size, spec.batch, spec.in_channels, kk), dtype=x_pad.dtype,
                    device=array_api_compat.device(x_pad))
    spatial_first = (*range(2, d + 2), 0, 1)  # (N, C, *S_out) -> (*S_out, N, C)
    for k, offset in enumerate(offsets(spec.kernel)):
        part = x_pad[window(offset, spec.stride, spec.dilation, spec.out_size)]
        cols[..., k] = xp.permute_dims(part, spatial_first)
    return xp.reshape(cols, (math.prod(spec.out_size), spec.batch, -1))


def _scatter_columns(xp: Any, grad_cols: Any, spec: _validate.ConvSpec) -> Any:
    """Adjoint of :func:`_local_columns`: ``(P, N, C_in * K) -> (N, C_in, *S_pad)``."""
    d = spec.ndim
    grad_cols = xp.reshape(grad_cols, (*spec.out_size, spec.batch, spec.in_channels, -1))
    grad_x = xp.zeros((spec.batch, spec.in_channels, *spec.padded_size), dtype=grad_cols.dtype,
                      device=array_api_compat.device(grad_cols))
    channels_first = (d, d + 1, *range(d))  # (*S_out, N, C) -> (N, C, *S_out)
    for k, offset in enumerate(offsets(spec.kernel)):
        index = window(offset, spec.stride, spec.dilation, spec.out_size)
        grad_x[index] += xp.permute_dims(grad_cols[..., k], channels_first)
    return grad_x


def _to_position_major(xp: Any, a: Any) -> Any:
    """``(N, C, *S) -> (P, N, C)``."""
    n, c = a.shape[:2]
    return xp.permute_dims(xp.reshape(a, (n, c, -1)), (2, 0, 1))


def _to_channels_first(xp: Any, y: Any, out_size: tuple[int, ...]) -> Any:
    """``(N, P, C) -> (N, C, *S_out)``."""
    n, _, c = y.shape
    return xp.reshape(xp.permute_dims(y, (0, 2, 1)), (n, c, *out_size))


def _add_bias(xp: Any, y: Any, bias: Any, per_position: bool) -> Any:
    """``y`` (a permuted view of the product) plus the bias, as a C-ordered NumPy array:
    NumPy keeps an operand's memory order in its result, and the layers after a locally
    connected or dense-on-grid one (a ReLU, its gradient, the next convolution) then ran
    2-4x slower on the permuted layout (the MNIST-1D tour's ReLU gradient: 255 us on a
    100 x 25 x 19 output laid out positions-first, 73 us on a C-ordered one)."""
    numpy = isinstance(y, np.ndarray)
    if bias is None:
        return np.ascontiguousarray(y) if numpy else y
    d = y.ndim - 2
    if per_position:  # (*S_out, C_out) -> (C_out, *S_out)
        bias = xp.permute_dims(bias, (d, *range(d)))
    else:
        bias = xp.reshape(bias, (1, -1) + (1,) * d)
    return np.add(y, bias, order="C") if numpy else y + bias


def _bias_grad(xp: Any, grad_out: Any, bias: Any, per_position: bool) -> Any:
    if bias is None:
        return None
    d = grad_out.ndim - 2
    if per_position:
        return xp.permute_dims(xp.sum(grad_out, axis=0), (*range(1, d + 1), 0))
    return xp.sum(grad_out, axis=(0, *range(2, grad_out.ndim)))
