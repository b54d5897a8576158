"""Out-of-core and distributed convolution on Dask arrays: ``pip install 'fc2conv[scale]'``.

An output tile of a convolution needs only its input tile plus a halo as wide as the window
reaches. :mod:`fc2conv.scale` runs the in-memory ops of :mod:`fc2conv` over a chunked
``dask.array`` tile by tile, with exactly that halo, so the result equals the whole-array op
(to float rounding) for any chunking, stride, dilation and padding mode, and runs on the
threaded scheduler or on ``dask.distributed`` alike.

- :func:`correlate`, :func:`convolve`, :func:`max_pool`, :func:`avg_pool`: the ops, on
  ``x: (N, C, *S)`` chunked along N and S.
- :func:`apply`: a trained :mod:`fc2conv.nn` model, tile by tile with its receptive field as
  the halo, or batch-parallel over N.
- :func:`read`, :func:`write`: Zarr (any size), ``.npy`` (memory-mapped), ``.png``/``.tif``.
- :data:`KERNELS`, :func:`named_kernel`: the classic image filters of ``fc2conv filter``.

>>> import numpy as np, dask.array as da, fc2conv, fc2conv.scale
>>> image = da.random.default_rng(0).standard_normal((1, 1, 500, 400), chunks=(1, 1, 128, 128))
>>> blur = fc2conv.scale.named_kernel("gaussian", sigma=2.0)[None, None]
>>> smooth = fc2conv.scale.correlate(image, blur, padding="same", padding_mode="symmetric")
>>> smooth.shape, smooth.chunks[2]
((1, 1, 500, 400), (128, 128, 128, 116))
>>> whole = fc2conv.correlate(image.compute(), blur, padding="same", padding_mode="symmetric")
>>> float(abs(smooth.compute() - whole).max()) < 1e-12
True
"""

try:
    import dask.array  # noqa: F401  (checked here so the error names the extra to install)
except ImportError as exc:  # pragma: no cover - exercised without the extra installed
    raise ImportError(
        "fc2conv.scale needs Dask (and Zarr for .zarr files): pip install 'fc2conv[scale]'"
    ) from exc

from ._io import read, write
from ._kernels import KERNELS, named_kernel
from ._model import apply
from ._ops import avg_pool, convolve, correlate, max_pool

__all__ = [
    "KERNELS",
    "apply",
    "avg_pool",
    "convolve",
    "correlate",
    "max_pool",
    "named_kernel",
    "read",
    "write",
]
