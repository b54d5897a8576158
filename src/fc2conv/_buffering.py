"""NumPy's ufunc buffering, switched off around loops of long strided runs.

When a ufunc's innermost run is shorter than the buffer (``np.getbufsize()``, 8192 elements),
NumPy 2.4 copies strided or broadcast operands into buffers to iterate longer runs. For runs
of a few hundred elements and more that copy costs more than it saves. Measured on the
2-core AVX-512 test machine, float32, 2^16 elements:

- ``rows * w[:, None]`` (one scalar per row): 64 rows of 1024 took 22 us, and 8 rows of 8192
  took 6.5 us. With the buffering off, the 64 rows took 7.3 us.
- ``v += t`` with ``v`` a strided view: in runs of 1000, 24 us buffered and 9 us unbuffered.
- In runs of 10-30 the buffering wins (2-3x), and reductions never gain.

So only the loops of adds and broadcast multiplies over long runs turn it off, through
:func:`unbuffered`. ``np.setbufsize`` is local to the calling thread (its context, on
NumPy 2), so each worker thread sets its own.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

__all__ = ["LONG_RUN", "unbuffered"]

#: Runs at least this long are faster unbuffered: at 100 elements the add gained and
#: the broadcast multiply lost; from ~300 on both gained or tied.
LONG_RUN = 256

# The smallest size NumPy accepts. Our loops never cast, so no operand needs a buffer.
_NO_BUFFER = 16

_Work = TypeVar("_Work", bound=Callable[..., Any])


def unbuffered(work: _Work, run: int) -> _Work:
    """``work`` with NumPy's ufunc buffering off while it runs (the previous size is
    restored after), if its operands' innermost runs have at least :data:`LONG_RUN`
    elements; else ``work`` itself.

    >>> import numpy as np
    >>> sizes = unbuffered(lambda: np.getbufsize(), run=1000)(), np.getbufsize()
    >>> sizes[0] < sizes[1]
    True
    """
    if run < LONG_RUN:
        return work

    @functools.wraps(work)
    def run_unbuffered(*args: Any, **kwargs: Any) -> Any:
        previous = np.setbufsize(_NO_BUFFER)
        try:
            return work(*args, **kwargs)
        finally:  # (np.errstate restores it too on NumPy 2, but not on 1.26)
            np.setbufsize(previous)

    return run_unbuffered  # type: ignore[return-value]
