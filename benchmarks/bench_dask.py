"""fc2conv.scale against dask-image on the same chunked image, and the 4 GiB out-of-core run.

Comparison (default): one float32 image held as a chunked Dask array, filtered with a
k x k Gaussian (k = 3, 31, 101; "same" size, mirrored border: fc2conv's ``symmetric`` is
SciPy's ``reflect``) by ``fc2conv.scale.correlate`` and by ``dask_image.ndfilters.correlate``
on the threaded scheduler. Reports the wall time (median of ``--repeat``), the peak resident
memory above the baseline (sampled from /proc every 5 ms), and the max abs difference.

    python benchmarks/bench_dask.py --quick              # 1024^2 image, 256^2 chunks, ~1 min
    python benchmarks/bench_dask.py                      # 2048^2 image, 512^2 chunks
    python benchmarks/bench_dask.py --json out.json
    nice python benchmarks/bench_dask.py --big           # 32768^2 float32 Zarr (4 GiB), 31x31

``--big`` writes a random 32768 x 32768 float32 Zarr array (2048^2 chunks) under a temporary
folder in /tmp, then filters it with a 31x31 Gaussian through the ``fc2conv filter`` code path
in a fresh process whose peak RSS (``getrusage``) is the figure to read, checks sampled tiles
against the in-memory op, and deletes the folder. It needs about 9 GB of free disk and, on 2
cores, 10 to 20 minutes. The machines are shared: read ratios, not absolute times.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Self

import numpy as np

KERNEL_SIZES = (3, 31, 101)
BIG_SIZE, BIG_CHUNK, BIG_KERNEL = 32768, 2048, 31


# ---------------------------------------------------------------------------------------------
# measuring


class PeakMemory:
    """Peak resident set size of this process above the value at entry, sampled in a thread."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval, self.peak, self._running = interval, 0, False

    def __enter__(self) -> Self:
        self.baseline = self.peak = _rss()
        self._running = True
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._running = False
        self._thread.join()

    def _sample(self) -> None:
        while self._running:
            self.peak = max(self.peak, _rss())
            time.sleep(self.interval)

    @property
    def extra_mib(self) -> float:
        return (self.peak - self.baseline) / 2**20


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _timed(run, repeat: int):
    times, peaks, result = [], [], None
    for _ in range(repeat):
        result = None
        with PeakMemory() as memory:
            start = time.perf_counter()
            result = run()
            times.append(time.perf_counter() - start)
        peaks.append(memory.extra_mib)
    return statistics.median(times), max(peaks), result


# ---------------------------------------------------------------------------------------------
# fc2conv.scale vs dask-image


def compare(size: int, chunk: int, kernel_sizes: tuple[int, ...], repeat: int) -> list[dict]:
    import dask
    import dask.array as da
    from dask_image import ndfilters

    from fc2conv import scale

    dask.config.set(scheduler="threads")
    image = da.random.default_rng(0).standard_normal((size, size), chunks=chunk,
                                                     dtype=np.float32).persist()
    rows = []
    for k in kernel_sizes:
        w = scale.named_kernel("gaussian", size=k).astype(np.float32)
        ours = scale.correlate(image[None, None], w[None, None], padding="same",
                               padding_mode="symmetric")[0, 0]
        theirs = ndfilters.correlate(image, w, mode="reflect")
        t_ours, m_ours, y_ours = _timed(ours.compute, repeat)
        t_theirs, m_theirs, y_theirs = _timed(theirs.compute, repeat)
        rows.append({
            "k": k, "size": size, "chunk": chunk,
            "fc2conv_s": t_ours, "dask_image_s": t_theirs, "ratio": t_ours / t_theirs,
            "fc2conv_peak_mib": m_ours, "dask_image_peak_mib": m_theirs,
            "max_abs_diff": float(np.abs(y_ours - y_theirs).max()),
            "max_abs_value": float(np.abs(y_theirs).max()),
        })
        print(_row(rows[-1]), flush=True)
    return rows


def _row(r: dict) -> str:
    return (f"{r['k']:>4} {r['size']:>6} {r['chunk']:>6} {r['fc2conv_s']:>10.3f} "
            f"{r['dask_image_s']:>12.3f} {r['ratio']:>6.2f} {r['fc2conv_peak_mib']:>10.0f} "
            f"{r['dask_image_peak_mib']:>12.0f} {r['max_abs_diff']:>10.2e}")


HEADER = (f"{'k':>4} {'size':>6} {'chunk':>6} {'fc2conv s':>10} {'dask-image s':>12} "
          f"{'ratio':>6} {'fc2 MiB':>10} {'d-image MiB':>12} {'max|diff|':>10}")


# ---------------------------------------------------------------------------------------------
# the 4 GiB run


def big(keep: bool, size: int) -> dict:
    folder = tempfile.mkdtemp(prefix="fc2conv-big-", dir="/tmp")
    source, target = os.path.join(folder, "in.zarr"), os.path.join(folder, "out.zarr")
    try:
        made = _child(["--make-big", source, str(size)])
        print(f"wrote {source}: {made['seconds']:.0f} s, peak RSS {made['peak_rss_mib']:.0f} MiB",
              flush=True)
        run = _child(["--filter-big", source, target])
        print(f"filtered {size}^2 float32 with {BIG_KERNEL}x{BIG_KERNEL}: "
              f"{run['seconds']:.0f} s, peak RSS {run['peak_rss_mib']:.0f} MiB", flush=True)
        check = _child(["--check-big", source, target, str(size)])
        print(f"sampled tiles vs in-memory fc2conv.correlate: max abs diff "
              f"{check['max_abs_diff']:.2e}", flush=True)
        return {"size": size, "chunk": BIG_CHUNK, "kernel": BIG_KERNEL,
                "make": made, "filter": run, "check": check, "cpus": os.cpu_count()}
    finally:
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)


def _child(args: list[str]) -> dict:
    """Run a phase in a fresh process, so its peak RSS is its own."""
    out = subprocess.run([sys.executable, __file__, *args], check=True, capture_output=True,
                         text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _report(seconds: float, **extra: object) -> None:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"seconds": seconds, "peak_rss_mib": peak, **extra}))


def _make_big(source: str, size: str) -> None:
    import dask.array as da

    from fc2conv import scale

    start = time.perf_counter()
    image = da.random.default_rng(0).standard_normal((int(size),) * 2, chunks=BIG_CHUNK,
                                                     dtype=np.float32)
    scale.write(image, source)
    _report(time.perf_counter() - start)


def _filter_big(source: str, target: str) -> None:
    from fc2conv import cli

    start = time.perf_counter()
    status = cli.main(["filter", source, target, "--kernel", "gaussian", "--size",
                       str(BIG_KERNEL), "--quiet"])
    _report(time.perf_counter() - start, status=status)


def _check_big(source: str, target: str, size: str) -> None:
    """Recompute a corner tile and an interior tile in memory, from the input plus halo."""
    import fc2conv
    from fc2conv import scale

    x, y = scale.read(source), scale.read(target)
    w = scale.named_kernel("gaussian", size=BIG_KERNEL).astype(np.float32)[None, None]
    h, tile, worst = BIG_KERNEL // 2, 512, 0.0
    # The corner needs the border's mirror padding; the interior one only the halo.
    corner = fc2conv.correlate(x[:tile + h, :tile + h].compute()[None, None], w,
                               padding=((h, 0), (h, 0)), padding_mode="symmetric")[0, 0]
    worst = max(worst, float(np.abs(corner[:tile, :tile] - y[:tile, :tile].compute()).max()))
    a = int(size) // 2 - 300
    inner = fc2conv.correlate(x[a - h:a + tile + h, a - h:a + tile + h].compute()[None, None],
                              w)[0, 0]
    worst = max(worst, float(np.abs(inner - y[a:a + tile, a:a + tile].compute()).max()))
    _report(0.0, max_abs_diff=worst)


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1024^2 image, 256^2 chunks")
    parser.add_argument("--size", type=int,
                        help="image side (default 2048, quick 1024, big 32768)")
    parser.add_argument("--chunk", type=int, help="chunk side (default 512, quick 256)")
    parser.add_argument("--kernels", type=int, nargs="+", default=list(KERNEL_SIZES))
    parser.add_argument("--repeat", type=int, default=1, help="runs per case (median)")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--big", action="store_true", help="the 32768^2 float32 Zarr run")
    parser.add_argument("--keep", action="store_true", help="keep the --big files")
    parser.add_argument("--make-big", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--filter-big", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--check-big", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.make_big:
        _make_big(*args.make_big)
        return 0
    if args.filter_big:
        _filter_big(*args.filter_big)
        return 0
    if args.check_big:
        _check_big(*args.check_big)
        return 0
    if args.big:
        results: dict = {"big": big(args.keep, args.size or BIG_SIZE)}
    else:
        size = args.size or (1024 if args.quick else 2048)
        chunk = args.chunk or (256 if args.quick else 512)
        print(f"{size}x{size} float32, {chunk}^2 chunks, threaded scheduler, "
              f"{os.cpu_count()} CPUs; gaussian k x k, 'same', mirrored border")
        print(HEADER, flush=True)
        results = {"compare": compare(size, chunk, tuple(args.kernels), args.repeat)}
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
