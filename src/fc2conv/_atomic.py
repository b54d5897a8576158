"""Atomic file writes: a reader sees either no file or a whole one, never a partial file.

The bytes go to a temporary file in the target's directory (same file system), are flushed
and fsync'ed, and the temporary file is renamed over the target with :func:`os.replace`.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = ["atomic_open"]


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
