"""Thread limits, the BLAS report of ``fc2conv info``, and atomic directory writes."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from fc2conv import _atomic, _blas, _threads


def test_fft_workers_follow_threadpoolctl_limits_and_stay_single_off_the_main_thread():
    assert 1 <= _threads.fft_workers() <= _threads.usable_cores()
    with threadpool_limits(1):
        assert _threads.fft_workers() == 1
    seen = []
    worker = threading.Thread(target=lambda: seen.append(_threads.fft_workers()))
    worker.start()
    worker.join()
    assert seen == [1]


def test_blas_serial_sets_one_thread_and_restores_the_count():
    before = _threads._blas_threads()
    with pytest.raises(RuntimeError), _threads.blas_serial():
        assert _threads._blas_threads() in (1, None)
        raise RuntimeError  # restored on errors too
    assert _threads._blas_threads() == before


def test_own_threads_keeps_the_worker_count_and_serialises_blas():
    outer, blas = _threads.fft_workers(), _threads._blas_threads()
    x = np.zeros(3)
    with _threads.own_threads(x):
        assert _threads.fft_workers() == outer
        if outer > 1:
            assert _threads._blas_threads() in (1, None)
        with _threads.own_threads(x):  # nested: no change
            assert _threads.fft_workers() == outer
    assert _threads.fft_workers() == outer and _threads._blas_threads() == blas
    with threadpool_limits(1), _threads.own_threads(x):  # a caller's limit is kept
        assert _threads.fft_workers() == 1


def test_kernel_hint_only_when_avx512_is_left_unused():
    assert "OPENBLAS_CORETYPE=SkylakeX" in _blas.kernel_hint("Zen", {"avx2", "avx512f"})
    assert _blas.kernel_hint("SapphireRapids", {"avx512f"}) is None
    assert _blas.kernel_hint("Haswell", {"avx2"}) is None
    assert _blas.kernel_hint(None, {"avx512f"}) is None


def test_report_names_the_blas_and_its_threads():
    lines = _blas.report()
    assert lines[0].startswith("CPU:")
    assert any("threads, kernel" in line for line in lines[1:])


def test_atomic_path_replaces_a_directory_whole_or_not_at_all(tmp_path):
    target = tmp_path / "store"
    target.mkdir()
    (target / "old").write_text("old")
    with pytest.raises(RuntimeError), _atomic.atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "new").write_text("half")
        raise RuntimeError("crash while writing")
    assert os.listdir(target) == ["old"] and os.listdir(tmp_path) == ["store"]
    with _atomic.atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "new").write_text("whole")
    assert os.listdir(target) == ["new"] and os.listdir(tmp_path) == ["store"]
