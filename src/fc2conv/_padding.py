"""Padding arithmetic and the five padding modes, with the adjoint of padding.

Every non-zero mode is a gather: padded position ``j`` along an axis reads input index
``source_index(mode, n, before, after)[j]``. Writing padding as a gather keeps one code path
for all modes on any array-API namespace (``take`` is in the standard, ``pad`` is not), and its
adjoint is the matching scatter-add, which is what the input gradient of a padded convolution
needs.

| fc2conv     | picture            | SciPy ``mode`` | NumPy ``np.pad`` | PyTorch ``padding_mode`` |
|-------------|--------------------|----------------|------------------|--------------------------|
| zeros       | 0 0 0 | a b c d    | constant       | constant         | zeros                    |
| reflect     | d c b | a b c d    | mirror         | reflect          | reflect                  |
| symmetric   | c b a | a b c d    | reflect        | symmetric        | (none)                   |
| replicate   | a a a | a b c d    | nearest        | edge             | replicate                |
| circular    | b c d | a b c d    | wrap           | wrap             | circular                 |
"""

from __future__ import annotations

import functools
from typing import Any

import array_api_compat
import numpy as np

__all__ = ["NUMPY_MODE", "SCIPY_MODE", "pad", "pad_vjp", "resolve_string", "source_index"]

SCIPY_MODE = {
    "zeros": "constant",
    "reflect": "mirror",
    "symmetric": "reflect",
    "replicate": "nearest",
    "circular": "wrap",
}
NUMPY_MODE = {
    "zeros": "constant",
    "reflect": "reflect",
    "symmetric": "symmetric",
    "replicate": "edge",
    "circular": "wrap",
}


def resolve_string(
    padding: str,
    in_size: tuple[int, ...],
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    dilation: tuple[int, ...],
) -> tuple[tuple[int, int], ...]:
    """``(before, after)`` per axis for "valid", "same" and "full"."""
    pairs = []
    for n, k, s, d in zip(in_size, kernel, stride, dilation):
        span = d * (k - 1) + 1
        if padding == "valid":
            pairs.append((0, 0))
        elif padding == "full":
            pairs.append((span - 1, span - 1))
        else:  # "same": ceil(n / s) outputs; an odd total puts the extra one after
            out = -(-n // s)
            total = max((out - 1) * s + span - n, 0)
            pairs.append((total // 2, total - total // 2))
    return tuple(pairs)


@functools.lru_cache(maxsize=256)
def source_index(mode: str, n: int, before: int, after: int) -> np.ndarray:
    """Input index read by each padded position; ``-1`` marks a zero (``mode="zeros"``).

    >>> source_index("reflect", 4, 3, 3).tolist()
    [3, 2, 1, 0, 1, 2, 3, 2, 1, 0]
    >>> source_index("symmetric", 4, 3, 3).tolist()
    [2, 1, 0, 0, 1, 2, 3, 3, 2, 1]
    """
    j = np.arange(-before, n + after)
    if mode == "zeros":
        idx = np.where((j >= 0) & (j < n), j, -1)
    elif mode == "circular":
        idx = j % n
    elif mode == "replicate":
        idx = np.clip(j, 0, n - 1)
    elif mode == "symmetric":  # period 2n: a b c d d c b a
        r = j % (2 * n)
        idx = np.where(r < n, r, 2 * n - 1 - r)
    elif mode == "reflect":  # period 2n - 2: a b c d c b
        if n == 1:
            idx = np.zeros_like(j)
        else:
            r = j % (2 * n - 2)
            idx = np.where(r < n, r, 2 * n - 2 - r)
    else:  # pragma: no cover - modes are checked in _validate
        raise ValueError(mode)
    idx.setflags(write=False)
    return idx


def pad(xp: Any, x: Any, pads: tuple[tuple[int, int], ...], mode: str, *,
        fill: float = 0.0, scratch: str | None = None) -> Any:
    """Pad the trailing ``len(pads)`` axes of ``x``: ``(..., *S) -> (..., *S_padded)``.

    ``mode="zeros"`` pads with the constant ``fill`` (max pooling pads with ``-inf``). With
    ``scratch`` (a NumPy ``x``, zeros mode), the result is the calling thread's reusable
    buffer of that tag (``fc2conv.algorithms.gemm.workspace``), valid until the next call
    with the same tag: for a padded copy that lives only within one op, so that repeated ops
    reuse one buffer instead of allocating a fresh one each call.
    """
    first_axis = x.ndim - len(pads)
    if mode == "zeros":
        if not any(b or a for b, a in pads):
            return x
        # One buffer, its border filled and one copy into its interior: a concat per axis
        # would copy the whole array once per padded axis.
        lead = tuple(x.shape[:first_axis])
        size = tuple(n + b + a for n, (b, a) in zip(x.shape[first_axis:], pads))
        inner = tuple(slice(b, b + n) for n, (b, _) in zip(x.shape[first_axis:], pads))
        if scratch is not None and type(x) is np.ndarray:
            from .algorithms.gemm import workspace  # (gemm imports this module)

            out = workspace(scratch, lead + size, x.dtype)
            for axis, cut in enumerate(inner):
                before = (slice(None),) * (first_axis + axis)
                out[(*before, slice(0, cut.start))] = fill
                out[(*before, slice(cut.stop, None))] = fill
        else:
            out = xp.full(lead + size, fill, dtype=x.dtype, device=array_api_compat.device(x))
        out[(..., *inner)] = x
        return out
    for offset, (before, after) in enumerate(pads):
        if before == 0 and after == 0:
            continue
        axis = first_axis + offset
        n = x.shape[axis]
        # A copy: the cached index is read-only, which torch warns about.
        idx = xp.asarray(source_index(mode, n, before, after).copy(),
                         device=array_api_compat.device(x))
        x = xp.take(x, idx, axis=axis)
    return x


def pad_vjp(xp: Any, g: Any, in_size: tuple[int, ...], pads: tuple[tuple[int, int], ...],
            mode: str) -> Any:
    """Adjoint of :func:`pad`: fold the gradient of every padded cell back onto its source.

    ``g: (..., *S_padded) -> (..., *S)``. The interior is a slice; the (narrow) borders are
    multiplied by a small one-hot matrix, a scatter-add that the array API can express.
    """
    first_axis = g.ndim - len(pads)
    for offset, ((before, after), n) in enumerate(zip(pads, in_size)):
        if before == 0 and after == 0:
            continue
        axis = first_axis + offset
        inner = _slice_axis(g, axis, before, before + n)
        if mode == "zeros":
            g = inner
            continue
        src = source_index(mode, n, before, after)
        border = np.concatenate([src[:before], src[before + n:]])
        onehot = np.zeros((border.size, n))
        np.add.at(onehot, (np.arange(border.size), border), 1.0)
        parts = [p for p in (_slice_axis(g, axis, 0, before),
                             _slice_axis(g, axis, before + n, before + n + after)) if p.shape[axis]]
        edges = xp.concat(parts, axis=axis) if len(parts) > 1 else parts[0]
        edges = xp.moveaxis(edges, axis, -1)
        folded = edges @ xp.asarray(onehot, dtype=g.dtype, device=array_api_compat.device(g))
        g = inner + xp.moveaxis(folded, -1, axis)
    return g


def _slice_axis(a: Any, axis: int, start: int, stop: int) -> Any:
    index = [slice(None)] * a.ndim
    index[axis] = slice(start, stop)
    return a[tuple(index)]
