"""A reader for the IDX format of MNIST and Fashion-MNIST, raw or gzip-compressed.

An IDX file is a 4-byte magic number ``00 00 TT DD`` (``TT`` the element type, ``DD`` the
number of dimensions), ``DD`` big-endian uint32 sizes, then the elements in C order,
big-endian. Nothing else: the file size is fixed by the header, which lets the reader tell a
truncated or foreign file from a good one.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np

from .._errors import ArgumentError
from ._exceptions import DataFormatError

__all__ = ["IDX_DTYPES", "read_idx"]

#: element type code -> big-endian dtype
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: Path) -> bytes:
    with open(path, "rb") as file:
        data = file.read()
    if not data.startswith(_GZIP_MAGIC):
        return data
    try:
        return gzip.decompress(data)
    except (EOFError, OSError, zlib.error) as exc:
        raise DataFormatError(
            f"{path}: gzip data is truncated or corrupted ({exc}); expected a complete "
            f"gzip-compressed IDX file"
        ) from exc


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one IDX file (raw, or gzip-compressed: detected from its first bytes) into an array.

    Returns an array of the header's shape ``(d_1, ..., d_D)`` in native byte order: uint8 for
    MNIST-style images ``(N, H, W)`` and labels ``(N,)``. Raises
    :class:`~fc2conv.data.DataFormatError` for a wrong magic number, an unknown element type,
    or a size that disagrees with the header (truncated or trailing data).

    >>> import gzip, struct, tempfile
    >>> from pathlib import Path
    >>> from fc2conv.data import read_idx
    >>> header = bytes([0, 0, 0x08, 2]) + struct.pack(">II", 2, 3)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = (Path(tmp) / "a-idx2-ubyte.gz").write_bytes(gzip.compress(header + bytes(range(6))))
    ...     read_idx(Path(tmp) / "a-idx2-ubyte.gz")
    array([[0, 1, 2],
           [3, 4, 5]], dtype=uint8)
    """
    if not isinstance(path, (str, os.PathLike)):
        raise ArgumentError(f"path must be a str or os.PathLike; got {type(path).__name__}")
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise DataFormatError(
            f"{path}: {len(data)} bytes is too short for an IDX file; expected at least the "
            f"4-byte magic number 00 00 TT DD"
        )
    zero, code, ndim = int.from_bytes(data[:2], "big"), data[2], data[3]
    if zero != 0 or code not in IDX_DTYPES or ndim == 0:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise DataFormatError(
            f"{path}: not an IDX file: magic number {data[:4].hex(' ')}; expected 00 00 TT DD "
            f"with the type TT one of {known} and DD >= 1 dimensions"
        )
    dtype = IDX_DTYPES[code]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataFormatError(
            f"{path}: truncated IDX header: {len(data)} bytes; expected {header} for "
            f"{ndim} dimensions"
        )
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = header + math.prod(shape) * dtype.itemsize
    if len(data) != expected:
        problem = "truncated" if len(data) < expected else "has trailing bytes"
        raise DataFormatError(
            f"{path}: IDX file {problem}: {len(data)} bytes; the header (shape {shape}, "
            f"{dtype.name}) needs exactly {expected}"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))
