"""Strided windows: the one indexing trick behind correlation, pooling and their gradients.

For a kernel offset ``a`` the values every output position reads form a strided slice of the
padded input, ``x_pad[..., a*d : a*d + s*(m-1) + 1 : s]`` per axis. Looping over the (few)
kernel offsets and doing whole-array work per offset is what keeps every op free of loops over
output pixels.
"""

from __future__ import annotations

import itertools

__all__ = ["offsets", "window"]


def offsets(kernel: tuple[int, ...]) -> list[tuple[int, ...]]:
    """All kernel offsets in C order (the order of ``w.reshape(..., prod(K))``)."""
    return list(itertools.product(*(range(k) for k in kernel)))


def window(
    offset: tuple[int, ...],
    stride: tuple[int, ...],
    dilation: tuple[int, ...],
    out_size: tuple[int, ...],
) -> tuple[object, ...]:
    """Index selecting, on the trailing axes, what each output position reads at ``offset``."""
    return (Ellipsis, *(
        slice(o * d, o * d + s * (m - 1) + 1, s)
        for o, s, d, m in zip(offset, stride, dilation, out_size)
    ))
