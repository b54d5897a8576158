"""How many threads fc2conv's own parallel work may use, without oversubscribing.

BLAS threads are OpenBLAS's business (and threadpoolctl's, when a caller limits them). The
threads fc2conv starts itself (FFT workers) follow the same limit: they never exceed the
BLAS pool's current size, so ``threadpoolctl.threadpool_limits(1)`` (what Dask workers and
scikit-learn's joblib set) makes fc2conv single-threaded too, and inside a Dask task or any
thread other than the main one fc2conv uses one thread, because the caller already
parallelises.
"""

from __future__ import annotations

import functools
import os
import threading

__all__ = ["fft_workers", "usable_cores"]


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS / Windows
        return max(1, os.cpu_count() or 1)


def fft_workers() -> int:
    """Workers for ``scipy.fft``: the BLAS pool's current size, 1 off the main thread."""
    if threading.current_thread() is not threading.main_thread():
        return 1
    limit = _blas_threads()
    return max(1, min(usable_cores(), limit if limit else usable_cores()))


def _blas_threads() -> int | None:
    """Threads of NumPy's BLAS right now (honours threadpoolctl limits); None if unknown."""
    pools = _blas_pools()
    return min(pool.num_threads for pool in pools) if pools else None


@functools.cache
def _blas_pools() -> tuple:  # type: ignore[type-arg]
    # Finding the loaded BLAS libraries takes ~1.5 ms; asking one its thread count ~2 us.
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return ()
    return tuple(ThreadpoolController().select(user_api="blas").lib_controllers)
