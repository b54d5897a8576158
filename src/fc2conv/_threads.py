"""How many threads fc2conv's own parallel work may use, without oversubscribing.

BLAS threads are OpenBLAS's business (and threadpoolctl's, when a caller limits them). The
threads fc2conv starts itself (FFT workers) follow the same limit: they never exceed the
BLAS pool's current size, so ``threadpoolctl.threadpool_limits(1)`` (what Dask workers and
scikit-learn's joblib set) makes fc2conv single-threaded too, and inside a Dask task or any
thread other than the main one fc2conv uses one thread, because the caller already
parallelises.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

__all__ = ["blas_serial", "fft_workers", "own_threads", "pool", "usable_cores"]


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS / Windows
        return max(1, os.cpu_count() or 1)


def fft_workers() -> int:
    """Workers for ``scipy.fft``: the BLAS pool's current size, 1 off the main thread (inside
    :func:`own_threads`: the size before it set BLAS to one thread)."""
    if threading.current_thread() is not threading.main_thread():
        return 1
    own = _OWN.get()
    if own:
        return own
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
    # SciPy's own BLAS (the banded method's in-place gemm) must be loaded to be found, or
    # it would keep its threads inside an op and spin against fc2conv's (~30 ms import).
    import scipy.linalg.blas  # noqa: F401
    return tuple(ThreadpoolController().select(user_api="blas").lib_controllers)


@contextlib.contextmanager
def blas_serial() -> Iterator[None]:
    """NumPy's BLAS on one thread within the block, restored after.

    For fc2conv's own worker threads that each make BLAS calls: cutting the work into blocks
    and running one single-threaded BLAS call per core also spreads the NumPy copies and
    adds around the calls over the cores, where a two-thread BLAS call leaves them on one.
    The setting is process-wide (OpenBLAS has no per-thread one): other threads calling BLAS
    meanwhile also get one thread.
    """
    pools = _blas_pools()
    before = [pool.num_threads for pool in pools]
    try:
        for pool in pools:
            pool.set_num_threads(1)
        yield
    finally:
        for pool, threads in zip(pools, before):
            pool.set_num_threads(threads)


@contextlib.contextmanager
def own_threads(array: object) -> Iterator[None]:
    """Around one fc2conv op on a NumPy array: BLAS single-threaded (:func:`blas_serial`)
    when fc2conv may use several threads of its own, which its steps then do."""
    workers = fft_workers()
    if type(array).__module__ != "numpy" or workers <= 1 or _OWN.get():
        yield
        return
    token = _OWN.set(workers)
    try:
        with blas_serial():
            yield
    finally:
        _OWN.reset(token)


_OWN: contextvars.ContextVar[int] = contextvars.ContextVar("fc2conv_own_threads", default=0)
_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def pool() -> ThreadPoolExecutor:
    """fc2conv's worker threads (one per usable core, at least 2), made on first use."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max(2, usable_cores()), thread_name_prefix="fc2conv")
        return _POOL
