"""Reading and writing arrays with bounded memory: Zarr, ``.npy``, ``.png`` and ``.tif``.

Zarr stores (a directory ending in ``.zarr``) are read and written chunk by chunk, by the Dask
scheduler in use, distributed included. ``.npy`` files are memory-mapped and read lazily, chunk
by chunk, and written through a memory map from this process. Image files are small inputs:
read and written whole. Arrays come back as stored (no axes added, dtype kept).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np

from .._atomic import atomic_path
from .._errors import ArgumentError

__all__ = ["read", "write"]

_IMAGE = (".png", ".tif", ".tiff")
_FORMATS = ".zarr, .npy, .png, .tif or .tiff"


def read(path: str | os.PathLike[str], *, chunks: Any = "auto") -> da.Array:
    """A lazy Dask array of the file's array, as stored (shape and dtype kept).

    Args:
        path: ``*.zarr`` (a Zarr array at the store's root), ``*.npy``, ``*.png``,
            ``*.tif``/``*.tiff`` (a PNG reads ``(H, W)`` or ``(H, W, C)``).
        chunks: Dask chunks; ``"auto"`` keeps a Zarr store's own chunks.

    >>> import numpy as np, tempfile, os
    >>> from fc2conv.scale import read, write
    >>> folder = tempfile.mkdtemp()
    >>> np.save(os.path.join(folder, "a.npy"), np.arange(12.0).reshape(3, 4))
    >>> a = read(os.path.join(folder, "a.npy"), chunks=2)
    >>> a.chunks, a.sum().compute()
    (((2, 1), (2, 2)), np.float64(66.0))
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".zarr":
        return da.from_zarr(str(path), chunks=None if chunks == "auto" else chunks)
    if suffix == ".npy":
        return da.from_array(_NpyFile(path), chunks=chunks, asarray=True, fancy=False)
    if suffix == ".png":
        from PIL import Image

        with Image.open(path) as image:
            return da.from_array(np.asarray(image), chunks=chunks)
    if suffix in (".tif", ".tiff"):
        import tifffile

        return da.from_array(tifffile.imread(path), chunks=chunks)
    raise ArgumentError(f"cannot read {str(path)!r}: the name must end in {_FORMATS}")


def write(x: Any, path: str | os.PathLike[str], *, overwrite: bool = False) -> None:
    """Compute ``x`` (Dask or NumPy) into a file chosen by its suffix.

    The file (or Zarr directory) is written beside ``path`` and renamed over it when complete,
so a failed run never leaves a partial output. Zarr is written chunk by chunk (irregular
chunks are first made regular, as Zarr needs);
    ``.npy`` through a memory map; ``.png`` takes ``(H, W)`` or ``(H, W, C)`` and stores
    floats clipped and rounded to 0..255 (uint8); ``.tif`` keeps the dtype.

    >>> import numpy as np, dask.array as da, tempfile, os
    >>> from fc2conv.scale import read, write
    >>> target = os.path.join(tempfile.mkdtemp(), "b.zarr")
    >>> write(da.ones((5, 6), chunks=(2, 6)), target)
    >>> read(target).chunks
    ((2, 2, 1), (6,))
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".zarr", ".npy", *_IMAGE):
        raise ArgumentError(f"cannot write {str(path)!r}: the name must end in {_FORMATS}")
    if path.exists() and not overwrite:
        raise ArgumentError(f"{str(path)!r} exists; pass overwrite=True to replace it")
    x = x if isinstance(x, da.Array) else da.from_array(np.asarray(x))
    # Written beside the target and renamed over it: a crash never leaves half a file.
    with atomic_path(path) as tmp:
        if suffix == ".zarr":
            da.to_zarr(_regular(x), str(tmp))
        elif suffix == ".npy":
            target = np.lib.format.open_memmap(tmp, mode="w+", dtype=x.dtype, shape=x.shape)
            # The memory map lives in this process: run the writes here, whatever the scheduler.
            da.store(x, target, lock=False, scheduler="threads")
            target.flush()
            del target
        else:
            _write_image(np.asarray(x.compute()), tmp, suffix)


class _NpyFile:
    """A ``.npy`` file as an array-like that opens a memory map per read: lazy, bounded memory,
    and cheap to send to distributed workers (only the path travels)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        header = np.load(self.path, mmap_mode="r")
        self.shape, self.dtype, self.ndim = header.shape, header.dtype, header.ndim

    def __getitem__(self, index: Any) -> np.ndarray:
        return np.array(np.load(self.path, mmap_mode="r")[index])


def _regular(x: da.Array) -> da.Array:
    """Zarr needs equal chunks (the last may be shorter): rechunk to the largest if not."""
    def regular(chunks: tuple[int, ...]) -> bool:
        return len(set(chunks[:-1])) <= 1 and chunks[-1] <= chunks[0]

    if all(regular(c) for c in x.chunks):
        return x
    return x.rechunk(tuple(max(c) for c in x.chunks))


def _write_image(a: np.ndarray, path: Path, suffix: str) -> None:
    if suffix == ".png":
        from PIL import Image

        if a.ndim not in (2, 3):
            raise ArgumentError(f"a PNG holds (H, W) or (H, W, C); got shape {a.shape}")
        if a.dtype != np.uint8:
            a = np.clip(np.rint(a), 0, 255).astype(np.uint8)
        Image.fromarray(a).save(path, format="PNG")
    else:
        import tifffile

        tifffile.imwrite(path, a)
