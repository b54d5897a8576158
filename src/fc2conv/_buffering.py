"""NumPy's ufunc buffering, switched off around loops of long strided runs.

When a ufunc's innermost run is shorter than the buffer (``np.getbufsize()``, 8192 elements),
NumPy 2.4 copies strided or broadcast operands into buffers to iterate longer runs. For runs
of a few hundred elements and more that copy costs more than it saves. Measured on the
2-core AVX-512 test machine, float32, 2^16 elements:

- ``rows * w[:, None]`` (one scalar per row): 64 rows of 1024 took 22 us, and 8 rows of 8192
  took 6.5 us. With the buffering off, the 64 rows took 7.3 us.
- ``v += t`` with ``v`` a strided view: in runs of 1000, 24 us buffered and 9 us unbuffered.
- In runs of 10-30 the buffering wins (2-3x), and reductions never gain.
- Where the crossover lies depends on the operands. A strided multiply or add (``acc[..., :L]
  += t``, ``x[..., :L] * w[:, None, None]``) in runs of 64 lost 1.1-1.3x unbuffered, in runs
  of 96-128 gained 1.2-1.3x, of 256 2x. A contiguous bias add (``y += b[:, None]``) still
  lost in runs of 144 (30 -> 38 us) and tied at 196.

So only the loops of adds and broadcast multiplies over long runs turn it off, through
:func:`unbuffered`. ``np.setbufsize`` is local to the calling thread (its context, on
NumPy 2), so each worker thread sets its own.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

__all__ = ["LONG_RUN", "STRIDED_RUN", "unbuffered"]

#: Runs at least this long are faster unbuffered, whatever the operands' layout.
LONG_RUN = 256
#: ... and at least this long where an operand is a strided view (runs of a grid's rows).
STRIDED_RUN = 128

# The smallest size NumPy accepts. Our loops never cast, so no operand needs a buffer.
_NO_BUFFER = 16

_Work = TypeVar("_Work", bound=Callable[..., Any])


def unbuffered(work: _Work, run: int, least: int = LONG_RUN) -> _Work:
    """``work`` with NumPy's ufunc buffering off while it runs (the previous size is
    restored after), if its operands' innermost runs have at least ``least`` elements
    (:data:`LONG_RUN`, or :data:`STRIDED_RUN` for loops on strided views); else ``work``
    itself.

    >>> import numpy as np
    >>> sizes = unbuffered(lambda: np.getbufsize(), run=1000)(), np.getbufsize()
    >>> sizes[0] < sizes[1]
    True
    """
    if run < least:
        return work

    @functools.wraps(work)
    def run_unbuffered(*args: Any, **kwargs: Any) -> Any:
        previous = np.setbufsize(_NO_BUFFER)
        try:
            return work(*args, **kwargs)
        finally:  # (np.errstate restores it too on NumPy 2, but not on 1.26)
            np.setbufsize(previous)

    return run_unbuffered  # type: ignore[return-value]
