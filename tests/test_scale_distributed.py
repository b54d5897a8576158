"""fc2conv.scale on dask.distributed: a LocalCluster of 2 worker processes (1 thread each).

The second test kills a worker process while tiles are being computed; Dask's scheduler
recomputes the lost tasks on the surviving (and the restarted) worker, and the result must not
change.
"""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import fc2conv
from fc2conv import scale

TIMEOUT = 120  # seconds; a healthy run takes a few


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None, silence_logs=50)
    with cluster, distributed.Client(cluster, timeout=TIMEOUT) as connected:
        connected.wait_for_workers(2, timeout=TIMEOUT)
        yield connected


def _image():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 1, 96, 80))
    w = rng.standard_normal((3, 1, 7, 5))
    return x, w, fc2conv.correlate(x, w, padding="same", padding_mode="reflect", dilation=2)


def _lazy(x, w):
    return scale.correlate(da.from_array(x, chunks=(1, 1, 24, 20)), w, padding="same",
                           padding_mode="reflect", dilation=2)


def test_local_cluster_gives_the_in_memory_result(client):
    x, w, expected = _image()
    result = client.compute(_lazy(x, w)).result(timeout=TIMEOUT)
    np.testing.assert_allclose(result, expected, rtol=1e-12, atol=1e-12)


def test_killing_a_worker_mid_computation_does_not_change_the_result(client):
    x, w, expected = _image()

    def slowly(block):  # local function: pickled by value, so workers need not import tests/
        time.sleep(0.2)
        return block

    lazy = _lazy(x, w).map_blocks(slowly, dtype=x.dtype)  # 32 tiles, ~3 s on 2 workers
    pids = client.run(os.getpid)
    future = client.compute(lazy)
    victim = _busy_worker(client, deadline=time.monotonic() + TIMEOUT)
    assert not future.done(), "the computation ended before a worker could be killed"
    os.kill(pids[victim], signal.SIGKILL)

    result = future.result(timeout=TIMEOUT)
    np.testing.assert_allclose(result, expected, rtol=1e-12, atol=1e-12)
    # The nanny restarted the killed worker: a new process took its place.
    client.wait_for_workers(2, timeout=TIMEOUT)
    assert pids[victim] not in client.run(os.getpid).values()


def _busy_worker(client, deadline):
    """A worker that is running tasks, once some tile has already been computed."""
    while time.monotonic() < deadline:
        processing = client.processing()
        busy = [worker for worker, tasks in processing.items() if tasks]
        if len(busy) == 2 and any(key for key in client.who_has().values()):
            return min(busy)
        time.sleep(0.05)
    raise TimeoutError("no worker started processing")
