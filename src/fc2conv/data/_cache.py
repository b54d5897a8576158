"""The on-disk cache of generated data sets: ``.npz`` files written atomically, read pickle-free.

The directory is ``$FC2CONV_CACHE`` when set, else ``$XDG_CACHE_HOME/fc2conv``, else
``~/.cache/fc2conv``. A file is written to a temporary name in the same directory and renamed
over the final name with :func:`os.replace`, so a reader sees either no file or a whole one.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .._atomic import atomic_open

__all__ = ["cache_dir", "load_npz", "save_npz_atomic"]


def cache_dir() -> Path:
    """The directory where :mod:`fc2conv.data` keeps generated data sets (not created here).

    ``$FC2CONV_CACHE`` if set and non-empty, else ``$XDG_CACHE_HOME/fc2conv``, else
    ``~/.cache/fc2conv``.

    >>> import os
    >>> from unittest import mock
    >>> from fc2conv.data import cache_dir
    >>> with mock.patch.dict(os.environ, {"FC2CONV_CACHE": "/tmp/fc2conv-example"}):
    ...     str(cache_dir())
    '/tmp/fc2conv-example'
    """
    explicit = os.environ.get("FC2CONV_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "fc2conv"


def _write_npz(file: object, arrays: Mapping[str, np.ndarray]) -> None:
    # a seam: tests replace it to simulate a failure part-way through a write
    np.savez(file, **arrays)  # type: ignore[arg-type]


def save_npz_atomic(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``path`` as ``.npz`` so that ``path`` never holds a partial file.

    Any failure removes the temporary file and re-raises.

    >>> import tempfile, numpy as np
    >>> from pathlib import Path
    >>> from fc2conv.data._cache import load_npz, save_npz_atomic
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     save_npz_atomic(Path(tmp) / "a.npz", {"x": np.arange(3)})
    ...     load_npz(Path(tmp) / "a.npz", ("x",))["x"].tolist()
    [0, 1, 2]
    """
    with atomic_open(path) as file:
        _write_npz(file, arrays)


def load_npz(path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray] | None:
    """Read ``keys`` from the ``.npz`` at ``path`` (no pickles); ``None`` if missing or unreadable.

    >>> from pathlib import Path
    >>> from fc2conv.data._cache import load_npz
    >>> load_npz(Path("/nonexistent/a.npz"), ("x",)) is None
    True
    """
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in keys}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
