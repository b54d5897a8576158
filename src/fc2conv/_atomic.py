"""Atomic file writes: a reader sees either no file or a whole one, never a partial file.

The bytes go to a temporary file in the target's directory (same file system), are flushed
and fsync'ed, and the temporary file is renamed over the target with :func:`os.replace`.
Writers that need a path rather than a file object (memory maps, Zarr directory stores written
by Dask workers) use :func:`atomic_path` the same way.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = ["atomic_open", "atomic_path"]


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], *, mode: int = 0o644) -> Iterator[IO[bytes]]:
    """Open a binary file that replaces ``path`` when the ``with`` block ends without error.

    Any exception removes the temporary file and leaves ``path`` as it was. ``mode`` sets
    the permissions (``mkstemp``'s 0600 would hide shared files from other users).

    >>> import tempfile, os
    >>> from fc2conv._atomic import atomic_open
    >>> target = os.path.join(tempfile.mkdtemp(), "out.txt")
    >>> with atomic_open(target) as f:
    ...     _ = f.write(b"whole")
    >>> open(target).read(), sorted(os.listdir(os.path.dirname(target)))
    ('whole', ['out.txt'])
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.chmod(tmp_name, mode)
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A fresh temporary path beside ``path`` (nothing exists there yet) that replaces ``path``
    when the ``with`` block ends without error: a file or a whole directory.

    An existing directory at ``path`` is moved aside first and deleted once the new one is in
    place (a directory cannot be renamed over a non-empty one). Any exception removes what was
    written and leaves ``path`` as it was.

    >>> import tempfile, os
    >>> from fc2conv._atomic import atomic_path
    >>> target = os.path.join(tempfile.mkdtemp(), "store")
    >>> with atomic_path(target) as tmp:
    ...     os.mkdir(tmp)
    ...     _ = open(os.path.join(tmp, "part"), "w").write("whole")
    >>> os.listdir(target), sorted(os.listdir(os.path.dirname(target)))
    (['part'], ['store'])
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:12]
    tmp = target.with_name(f".{target.name}.{tag}.tmp")
    try:
        yield tmp
        if tmp.is_dir() and target.is_dir():
            aside = target.with_name(f".{target.name}.{tag}.old")
            os.replace(target, aside)
            os.replace(tmp, target)
            shutil.rmtree(aside, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        _remove(tmp)
        raise


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
