"""The out-of-core ops: the in-memory ops of :mod:`fc2conv` on Dask arrays, tile by tile.

Each op checks its arguments with the in-memory validators (on a zero-memory stand-in of the
Dask array's shape and dtype, so the errors are the same), describes itself as one
:class:`~._plan.Stage` and hands it to :func:`~._engine.run_stack`. Every tile then calls the
in-memory op itself with no padding, which is why the results match the whole-array op.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import dask.array as da
import numpy as np

from .. import _validate
from .. import functional as F
from .._errors import DTypeError, ShapeError
from .._windows import offsets, window
from ._engine import run_stack
from ._plan import Stage

__all__ = ["as_dask", "avg_pool", "convolve", "correlate", "max_pool", "shape_only",
           "small_array"]


def correlate(
    x: Any,
    w: Any,
    bias: Any = None,
    *,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    method: str = "auto",
) -> da.Array:
    """:func:`fc2conv.correlate` on a Dask array, tile by tile with the exact halo.

    Args:
        x: ``(N, C_in, *S)`` Dask array (a NumPy array is wrapped), float32 or float64,
            chunked along N and S any way (chunks along C are merged).
        w: ``(C_out, C_in // groups, *K)`` NumPy array; bias ``(C_out,)`` or None.
        stride, padding, dilation, groups, padding_mode, method: as :func:`fc2conv.correlate`;
            the padding modes act at the outer border of the whole array only.

    Returns:
        Lazy ``(N, C_out, *S_out)`` Dask array equal to ``fc2conv.correlate`` on the whole
        array. Tiles follow the input's chunks (output chunk boundaries sit where the input's
        were, divided by the stride); chunks shorter than the halo are merged with a
        neighbour.

    >>> import numpy as np, dask.array as da, fc2conv, fc2conv.scale
    >>> image = np.random.default_rng(0).standard_normal((1, 1, 100, 90))
    >>> w = np.ones((1, 1, 7, 7)) / 49
    >>> y = fc2conv.scale.correlate(da.from_array(image, chunks=(1, 1, 32, 25)), w,
    ...                             padding="same", padding_mode="reflect")
    >>> y.chunks[2:]
    ((32, 32, 32, 4), (25, 25, 25, 15))
    >>> bool(np.allclose(y.compute(), fc2conv.correlate(image, w, padding="same",
    ...                                                  padding_mode="reflect")))
    True
    """
    return _conv(x, w, bias, flip=False, stride=stride, padding=padding, dilation=dilation,
                 groups=groups, padding_mode=padding_mode, method=method)


def convolve(
    x: Any,
    w: Any,
    bias: Any = None,
    *,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    method: str = "auto",
) -> da.Array:
    """:func:`fc2conv.convolve` (kernel flipped) on a Dask array; as :func:`correlate`.

    ``x: (N, C_in, *S)``, ``w: (C_out, C_in // groups, *K)`` -> ``(N, C_out, *S_out)``.

    >>> import numpy as np, dask.array as da, fc2conv.scale
    >>> x = da.arange(8.0, chunks=3).reshape(1, 1, 8)
    >>> fc2conv.scale.convolve(x, np.array([[[1.0, -1.0]]]), padding="full").compute().tolist()
    [[[0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, -7.0]]]
    """
    return _conv(x, w, bias, flip=True, stride=stride, padding=padding, dilation=dilation,
                 groups=groups, padding_mode=padding_mode, method=method)


def max_pool(
    x: Any,
    kernel_size: Any,
    *,
    stride: Any = None,
    padding: Any = 0,
    dilation: Any = 1,
    ceil_mode: bool = False,
) -> da.Array:
    """:func:`fc2conv.max_pool` on a Dask array: ``(N, C, *S) -> (N, C, *S_out)``.

    Arguments as the in-memory op (stride defaults to ``kernel_size``). With a stride, tiles
    start on whole strides, so the output chunks are about the input's divided by it.

    >>> import numpy as np, dask.array as da, fc2conv.scale
    >>> x = da.arange(16.0, chunks=5).reshape(1, 1, 16)
    >>> fc2conv.scale.max_pool(x, 3, stride=2, padding=1).compute().tolist()
    [[[1.0, 3.0, 5.0, 7.0, 9.0, 11.0, 13.0, 15.0]]]
    """
    x = as_dask(x)
    spec = _validate.pool_spec(shape_only(x), kernel_size, stride=stride, padding=padding,
                               dilation=dilation, ceil_mode=ceil_mode)
    return run_stack(x, [max_pool_stage(spec)])


def avg_pool(
    x: Any,
    kernel_size: Any,
    *,
    stride: Any = None,
    padding: Any = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
) -> da.Array:
    """:func:`fc2conv.avg_pool` on a Dask array: ``(N, C, *S) -> (N, C, *S_out)``.

    Each tile divides by the same per-position counts as the in-memory op, so windows at the
    border (``count_include_pad=False``, ``ceil_mode``) average the same cells.

    >>> import numpy as np, dask.array as da, fc2conv.scale
    >>> x = da.arange(7.0, chunks=2).reshape(1, 1, 7)
    >>> fc2conv.scale.avg_pool(x, 2, ceil_mode=True).compute().tolist()
    [[[0.5, 2.5, 4.5, 6.0]]]
    """
    x = as_dask(x)
    spec = _validate.pool_spec(shape_only(x), kernel_size, stride=stride, padding=padding,
                               dilation=1, ceil_mode=ceil_mode)
    return run_stack(x, [avg_pool_stage(spec, count_include_pad)])


# ---------------------------------------------------------------------------------------------
# stages: what a tile runs, with the arguments resolved once for the whole array


def conv_stage(spec: _validate.ConvSpec, w: Any, bias: Any, *, flip: bool) -> Stage:
    run = functools.partial(_conv_block, w=w, bias=bias, stride=spec.stride,
                            dilation=spec.dilation, groups=spec.groups, method=spec.method,
                            flip=flip)
    return Stage(spec.kernel, spec.stride, spec.dilation, spec.pads, spec.padding_mode, 0.0,
                 spec.in_size, spec.out_size, spec.out_channels, run)


def max_pool_stage(spec: _validate.PoolSpec) -> Stage:
    run = functools.partial(_max_block, kernel=spec.kernel, stride=spec.stride,
                            dilation=spec.dilation)
    # Padding never wins a max: it is -inf, as in the in-memory op.
    return Stage(spec.kernel, spec.stride, spec.dilation, spec.pads, "zeros", -math.inf,
                 spec.in_size, spec.out_size, None, run)


def avg_pool_stage(spec: _validate.PoolSpec, count_include_pad: bool) -> Stage:
    counts = tuple(_window_counts(n, k, s, p, m, count_include_pad) for n, k, s, p, m in
                   zip(spec.in_size, spec.kernel, spec.stride, spec.padding, spec.out_size))
    run = functools.partial(_avg_block, kernel=spec.kernel, stride=spec.stride, counts=counts)
    return Stage(spec.kernel, spec.stride, spec.dilation, spec.pads, "zeros", 0.0,
                 spec.in_size, spec.out_size, None, run)


def pointwise_stage(size: tuple[int, ...], run: Any) -> Stage:
    ones = (1,) * len(size)
    return Stage(ones, ones, ones, ((0, 0),) * len(size), "zeros", 0.0, size, size, None,
                 lambda block, _start: run(block))


def _conv_block(block: np.ndarray, _start: tuple[int, ...], *, w: Any, bias: Any, stride: Any,
                dilation: Any, groups: int, method: str, flip: bool) -> np.ndarray:
    op = F.convolve if flip else F.correlate
    return op(block, w, bias, stride=stride, padding=0, dilation=dilation, groups=groups,
              method=method)


def _max_block(block: np.ndarray, _start: tuple[int, ...], *, kernel: tuple[int, ...],
               stride: tuple[int, ...], dilation: tuple[int, ...]) -> np.ndarray:
    return F.max_pool(block, kernel, stride=stride, padding=0, dilation=dilation)


def _avg_block(block: np.ndarray, start: tuple[int, ...], *, kernel: tuple[int, ...],
               stride: tuple[int, ...], counts: tuple[np.ndarray, ...]) -> np.ndarray:
    """The window sums in the in-memory op's order, over the same per-position divisor."""
    ndim = len(kernel)
    size = tuple((n - k) // s + 1 for n, k, s in zip(block.shape[2:], kernel, stride))
    total = None
    for offset in offsets(kernel):
        part = block[window(offset, stride, (1,) * ndim, size)]
        total = part if total is None else total + part
    divisor = np.ones(size)
    for axis, (count, first, m) in enumerate(zip(counts, start, size)):
        shape = [1] * ndim
        shape[axis] = m
        divisor = divisor * count[first:first + m].reshape(shape)
    return total / np.asarray(divisor, dtype=block.dtype)


def _window_counts(n: int, k: int, s: int, p: int, m: int, count_include_pad: bool) -> Any:
    """Cells each average divides by along one axis (as ``fc2conv.functional.pool``)."""
    begin = np.arange(m) * s - p
    end = np.minimum(begin + k, n + p)
    if not count_include_pad:
        begin, end = np.maximum(begin, 0), np.minimum(end, n)
    return end - begin


# ---------------------------------------------------------------------------------------------
# arguments


def _conv(x: Any, w: Any, bias: Any, *, flip: bool, **options: Any) -> da.Array:
    x = as_dask(x)
    w, bias = small_array("w", w), None if bias is None else small_array("bias", bias)
    spec = _validate.conv_spec(shape_only(x), w, bias, **options)
    return run_stack(x, [conv_stage(spec, w, bias, flip=flip)])


def as_dask(x: Any, name: str = "x") -> da.Array:
    """A Dask array as is; a NumPy array wrapped in one chunk per example."""
    if isinstance(x, da.Array):
        return x
    if isinstance(x, np.ndarray):
        return da.from_array(x, chunks=(1, *x.shape[1:]) if x.ndim else ())
    raise DTypeError(
        f"{name} must be a dask.array.Array (or a NumPy array) of shape (N, C, *S); got "
        f"{type(x).__module__}.{type(x).__name__}"
    )


def small_array(name: str, a: Any) -> np.ndarray:
    """Weights are small: a Dask array is computed, anything else must be a NumPy array."""
    if isinstance(a, da.Array):
        return np.asarray(a.compute())
    if not isinstance(a, np.ndarray):
        raise DTypeError(f"{name} must be a NumPy array; got {type(a).__module__}."
                         f"{type(a).__name__}")
    return a


def shape_only(x: da.Array) -> np.ndarray:
    """A zero-memory NumPy stand-in with ``x``'s shape and dtype, for the validators."""
    if any(math.isnan(s) for s in x.shape):
        raise ShapeError(
            f"x has unknown chunk sizes (shape {x.shape}); call x.compute_chunk_sizes() first"
        )
    return np.broadcast_to(np.zeros((), dtype=x.dtype), x.shape)
