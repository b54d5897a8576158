"""The classic image filters, by name, for ``fc2conv filter`` and :func:`fc2conv.scale.correlate`.

All are 2-D kernels for *correlation* (what ``scipy.ndimage.correlate`` and the seed's
``H[i,j] = sum_{a,b} V[a,b] X[i+a, j+b]`` compute): ``sobel-x`` is positive where the image
gets brighter to the right. ``edge-x``/``edge-y`` are the seed's edge detectors, d2l's
``K = [[1, -1]]`` and its transpose.
"""

from __future__ import annotations

import math

import numpy as np

from .._errors import ArgumentError

__all__ = ["KERNELS", "named_kernel"]

_FIXED = {
    "sharpen": [[0, -1, 0], [-1, 5, -1], [0, -1, 0]],
    "sobel-x": [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]],
    "sobel-y": [[-1, -2, -1], [0, 0, 0], [1, 2, 1]],
    "laplacian": [[0, 1, 0], [1, -4, 1], [0, 1, 0]],
    "edge-x": [[1, -1]],
    "edge-y": [[1], [-1]],
}
#: Every name :func:`named_kernel` knows; ``box`` and ``gaussian`` take a size.
KERNELS = ("box", "gaussian", *_FIXED)


def named_kernel(name: str, *, size: int | None = None, sigma: float | None = None) -> np.ndarray:
    """A classic filter as a float64 ``(KH, KW)`` array.

    Args:
        name: one of :data:`KERNELS`.
        size: odd width of ``box`` (default 3) or ``gaussian`` (default ``2*ceil(3*sigma)+1``).
        sigma: standard deviation of ``gaussian`` in pixels (default ``(size - 1) / 6``, or 1).

    Blurs sum to 1; the derivative filters sum to 0.

    >>> from fc2conv.scale import named_kernel
    >>> named_kernel("box").sum(), named_kernel("gaussian", size=31).shape
    (np.float64(1.0), (31, 31))
    >>> named_kernel("edge-x").tolist()
    [[1.0, -1.0]]
    """
    if name not in KERNELS:
        raise ArgumentError(f"kernel must be one of {', '.join(KERNELS)}; got {name!r}")
    if name in _FIXED:
        if size is not None or sigma is not None:
            raise ArgumentError(f"the {name!r} kernel has a fixed size; size and sigma apply "
                                "to 'box' and 'gaussian' only")
        return np.array(_FIXED[name], dtype=np.float64)
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1
                             or size % 2 == 0):
        raise ArgumentError(f"size must be an odd positive int; got {size!r}")
    if name == "box":
        if sigma is not None:
            raise ArgumentError("sigma applies to the 'gaussian' kernel only")
        width = 3 if size is None else size
        return np.full((width, width), 1.0 / (width * width))
    if sigma is not None and not sigma > 0:
        raise ArgumentError(f"sigma must be positive; got {sigma!r}")
    if sigma is None:
        sigma = 1.0 if size is None else max((size - 1) / 6, 1e-3)
    width = 2 * math.ceil(3 * sigma) + 1 if size is None else size
    r = np.arange(width) - (width - 1) / 2
    profile = np.exp(-0.5 * (r / sigma) ** 2)
    kernel = np.outer(profile, profile)
    return kernel / kernel.sum()
