"""Time fc2conv's correlation against PyTorch's CPU convolution and SciPy, one process.

The standard layer suite of DESIGN.md, float32, forward and forward+backward (input, weight
and bias gradients), median of ``--repeat`` runs after a warm-up; GFLOP/s counts a multiply-add
as 2 FLOPs. Peers: ``torch.nn.functional.conv{1,2,3}d`` on every case and, on single-channel
images, ``scipy.ndimage.correlate``, ``scipy.signal.fftconvolve`` and ``oaconvolve`` (forward
only: SciPy has no gradients). ``--methods`` also times fc2conv's own methods one by one, so the
table says whether ``auto`` picked the fastest (within 10 %).

    python benchmarks/bench_conv.py                        # the whole suite, auto only
    python benchmarks/bench_conv.py --quick                # 3 runs per timing, no image filters
    python benchmarks/bench_conv.py --methods auto im2col shift fft winograd winograd2 direct jit
    python benchmarks/bench_conv.py --cases image-filter-5 image-filter-31 image-filter-101
    python benchmarks/bench_conv.py --sweep docs/figures/image_filter.png   # time vs k
    python benchmarks/bench_conv.py --json out.json
    python benchmarks/bench_conv.py --peer-process 3       # peers timed in 3 fresh processes

``--peer-process [P]`` times the peers of each case in P (default 3) fresh Python processes
(this script with ``--peers-only``), away from fc2conv's thread pool, OpenBLAS's spinning
threads and the workspaces this process holds, and keeps each timing's fastest median (the
peer's best showing). PyTorch's times are erratic on the 2-core test machine, in one shared
process and alone: its depthwise forward took 1.6-22 ms in this process and 7.5-69 ms in
fresh ones, its forward+backward 5.8-22 ms.

A peer slower than ``--slow`` seconds per call (PyTorch's 101 x 101 filter: oneDNN falls back
to a reference kernel) is timed once instead of ``--repeat`` times. The machines are shared and
noisy: read the ratios, not the absolute times, and rerun.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np

import fc2conv
from fc2conv import _blas
from fc2conv.functional import correlate_vjp


@dataclass(frozen=True)
class Case:
    name: str
    n: int
    c_in: int
    size: tuple[int, ...]
    c_out: int
    k: int
    stride: int = 1
    padding: object = 0
    groups: int = 1
    dilation: int = 1

    @property
    def single_channel(self) -> bool:
        return self.n == self.c_in == self.c_out == 1


# (N, C_in, H=W, C_out, k, stride, padding, groups) from ../shared/DESIGN.md
SUITE = [
    Case("lenet1", 64, 1, (28, 28), 6, 5, 1, 2),
    Case("lenet2", 64, 6, (14, 14), 16, 5, 1, 0),
    Case("resnet-mid", 8, 64, (56, 56), 64, 3, 1, 1),
    Case("resnet-deep", 8, 256, (14, 14), 256, 3, 1, 1),
    Case("pointwise", 8, 256, (28, 28), 512, 1, 1, 0),
    Case("depthwise", 8, 128, (56, 56), 128, 3, 1, 1, groups=128),
    Case("strided", 8, 128, (56, 56), 256, 3, 2, 1),
    Case("large-kernel", 1, 16, (64, 64), 16, 31, 1, 15),
    Case("conv1d", 64, 32, (1024,), 64, 9, 1, 0),
    Case("conv3d", 2, 16, (32, 32, 32), 32, 3, 1, 1),
    Case("image-filter-5", 1, 1, (2048, 2048), 1, 5, 1, "same"),
    Case("image-filter-31", 1, 1, (2048, 2048), 1, 31, 1, "same"),
    Case("image-filter-101", 1, 1, (2048, 2048), 1, 101, 1, "same"),
]
LAYERS = [c.name for c in SUITE if not c.name.startswith("image-filter")]
METHODS = ("auto", "im2col", "shift", "fft", "winograd", "winograd2", "direct")
SWEEP_K = (3, 5, 9, 15, 21, 31, 51, 71, 101)


def median_time(fn, repeat: int, slow: float = 5.0) -> tuple[float, int]:
    """``(median seconds, runs)``: a warm-up call, then ``repeat`` timed calls back to back;
    a call slower than ``slow`` seconds is timed once (the warm-up is the measurement)."""
    # OpenBLAS's and torch's worker threads spin for a while after a call; on 2 cores one
    # library's spinning pool steals the other's cores. A pause before each block lets the
    # other library's pool go idle; within the block calls run back to back, as in a training
    # loop (a pause between calls would time the pool waking up instead).
    time.sleep(0.3)
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    if first > slow:
        return first, 1
    fn()  # a second warm-up: workspaces, caches and thread pools are now in steady state
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), repeat


def _arrays(case: Case, k: int | None = None):
    k = case.k if k is None else k
    rng = np.random.default_rng(0)
    nd = len(case.size)
    x = rng.standard_normal((case.n, case.c_in, *case.size), dtype=np.float32)
    w = rng.standard_normal((case.c_out, case.c_in // case.groups) + (k,) * nd,
                            dtype=np.float32)
    b = rng.standard_normal(case.c_out, dtype=np.float32)
    return x, w, b


def _supported(x, w, kw, method: str) -> bool:
    try:
        fc2conv.correlate(x[:1], w, method=method, **kw)
    except fc2conv.ArgumentError:
        return False
    return True


def run_case(case: Case, repeat: int, methods: tuple[str, ...], slow: float,
             k: int | None = None, backward: bool = True, peers: bool = True) -> dict:
    """One case's timings: fc2conv's ``methods`` and (``peers``) PyTorch and SciPy."""
    import torch
    import torch.nn.functional as F

    x, w, b = _arrays(case, k)
    k = w.shape[-1]
    nd = len(case.size)
    kw = {"stride": case.stride, "padding": case.padding, "groups": case.groups,
          "dilation": case.dilation}
    y = fc2conv.correlate(x, w, b, **kw)
    gy = np.random.default_rng(1).standard_normal(y.shape, dtype=np.float32)
    flops = 2 * math.prod(y.shape) * (case.c_in // case.groups) * k**nd

    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[nd]
    xt, wt, bt, gyt = (torch.from_numpy(a) for a in (x, w, b, gy))
    for t in (xt, wt, bt):
        t.requires_grad_(True)

    def torch_forward():
        with torch.no_grad():
            conv(xt, wt, bt, **kw)

    def torch_both():
        out = conv(xt, wt, bt, **kw)
        torch.autograd.grad(out, (xt, wt, bt), gyt)

    timings = {}  # label -> (ms, runs)

    def time_it(label, fn):
        seconds, runs = median_time(fn, repeat, slow)
        timings[label] = (1e3 * seconds, runs)

    for method in methods:
        if not _supported(x, w, kw, method):
            continue
        time_it(f"{method}_fwd", lambda m=method: fc2conv.correlate(x, w, b, method=m, **kw))
        if backward:
            def both(m=method):
                fc2conv.correlate(x, w, b, method=m, **kw)
                correlate_vjp(gy, x, w, b, method=m, **kw)

            time_it(f"{method}_fwdbwd", both)
    if peers:
        time_it("torch_fwd", torch_forward)
    if peers and backward:
        time_it("torch_fwdbwd", torch_both)
    if peers and case.single_channel:
        from scipy import ndimage, signal

        image, kernel = x[0, 0], w[0, 0]
        flipped = kernel[(slice(None, None, -1),) * nd]
        time_it("ndimage_fwd", lambda: ndimage.correlate(image, kernel, mode="constant"))
        time_it("fftconvolve_fwd", lambda: signal.fftconvolve(image, flipped, mode="same"))
        time_it("oaconvolve_fwd", lambda: signal.oaconvolve(image, flipped, mode="same"))

    row = {"case": case.name, "config": {**asdict(case), "k": k}, "gflop": flops / 1e9,
           "ms": {label: ms for label, (ms, _) in timings.items()},
           "runs": {label: runs for label, (_, runs) in timings.items()},
           "auto_picks": {step: fc2conv.algorithms.choose(_spec(x, w, b, kw), step)
                          for step in ("correlate", "input_grad", "weight_grad")}}
    return row


def peers_apart(case: Case, args) -> dict:
    """:func:`run_case`'s peer timings for ``case`` from ``args.peer_process`` fresh Python
    processes: per timing the fastest of their medians (the peer's best showing)."""
    import subprocess
    import tempfile

    best: dict = {"ms": {}, "runs": {}}
    for _ in range(args.peer_process):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "peers.json")
            command = [sys.executable, os.path.abspath(__file__), "--peers-only", "--cases",
                       case.name, "--repeat", str(args.repeat if not args.quick else 3),
                       "--slow", str(args.slow), "--threads", str(args.threads), "--json",
                       path]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode:
                raise RuntimeError(f"peer process for {case.name} failed:\n{done.stderr}")
            with open(path) as fh:
                row = json.load(fh)["rows"][0]
        for label, ms in row["ms"].items():
            if ms < best["ms"].get(label, math.inf):
                best["ms"][label], best["runs"][label] = ms, row["runs"][label]
    return best


def _spec(x, w, b, kw):
    from fc2conv import _validate

    return _validate.conv_spec(x, w, b, padding_mode="zeros", **kw)


def _ratio(row, ours, peer):
    ms = row["ms"]
    return ms[ours] / ms[peer] if ours in ms and peer in ms else None


def _gflops(row, label):
    return row["gflop"] / row["ms"][label] * 1e3 if label in row["ms"] else None


def _fmt(value, width=7, digits=2):
    return f"{'-':>{width}}" if value is None else f"{value:{width}.{digits}f}"


def print_table(rows: list[dict], methods: tuple[str, ...]) -> dict:
    """The table (ms, GFLOP/s, ratios); returns the summary figures."""
    print(f"\n{'case':17} {'GFLOP':>7} {'auto fwd':>9} {'torch':>9} {'ratio':>7} "
          f"{'auto f+b':>9} {'torch':>9} {'ratio':>7} {'auto GF/s':>9} {'torch GF/s':>10} "
          f"{'best peer fwd':>15}")
    for row in rows:
        ms = row["ms"]
        peers = {p: ms[f"{p}_fwd"] for p in ("torch", "ndimage", "fftconvolve", "oaconvolve")
                 if f"{p}_fwd" in ms}
        best_peer = min(peers, key=peers.get)
        print(f"{row['case']:17} {row['gflop']:7.3f} {_fmt(ms.get('auto_fwd'), 9)} "
              f"{_fmt(ms.get('torch_fwd'), 9)} {_fmt(_ratio(row, 'auto_fwd', 'torch_fwd'))} "
              f"{_fmt(ms.get('auto_fwdbwd'), 9)} {_fmt(ms.get('torch_fwdbwd'), 9)} "
              f"{_fmt(_ratio(row, 'auto_fwdbwd', 'torch_fwdbwd'))} "
              f"{_fmt(_gflops(row, 'auto_fwd'), 9, 1)} {_fmt(_gflops(row, 'torch_fwd'), 10, 1)} "
              f"{best_peer:>8} {_fmt(ms['auto_fwd'] / peers[best_peer], 6)}")
    summary = {}
    for step in ("fwd", "fwdbwd"):
        ratios = [r for r in (_ratio(row, f"auto_{step}", f"torch_{step}") for row in rows)
                  if r is not None]
        if ratios:
            summary[f"geomean_vs_torch_{step}"] = math.exp(statistics.mean(map(math.log, ratios)))
            summary[f"worst_vs_torch_{step}"] = max(ratios)
    if summary:
        print("\nfc2conv auto / torch, geometric mean: "
              + ", ".join(f"{s} {summary[f'geomean_vs_torch_{s}']:.2f} (worst "
                          f"{summary[f'worst_vs_torch_{s}']:.2f})"
                          for s in ("fwd", "fwdbwd") if f"geomean_vs_torch_{s}" in summary))
    own = [m for m in methods if m != "auto"]
    if own:
        print("\nfc2conv's own methods, ms (fwd / fwd+bwd); * = fastest; auto within 10 %?")
        print(f"{'case':17} " + " ".join(f"{m:>17}" for m in methods) + "  auto ok")
        misses = []
        for row in rows:
            ms = row["ms"]
            cells, verdict = [], []
            for step in ("fwd", "fwdbwd"):
                timed = {m: ms[f"{m}_{step}"] for m in own if f"{m}_{step}" in ms}
                if timed and f"auto_{step}" in ms:
                    best = min(timed.values())
                    ok = ms[f"auto_{step}"] <= 1.10 * best
                    verdict.append("yes" if ok else f"no ({ms[f'auto_{step}'] / best:.2f}x)")
                    if not ok:
                        misses.append((row["case"], step))
            for m in methods:
                parts = []
                for step in ("fwd", "fwdbwd"):
                    value = ms.get(f"{m}_{step}")
                    timed = [ms[f"{o}_{step}"] for o in own if f"{o}_{step}" in ms]
                    star = "*" if value is not None and timed and value == min(timed) else ""
                    parts.append("-" if value is None else f"{value:.1f}{star}")
                cells.append(f"{' / '.join(parts):>17}")
            print(f"{row['case']:17} " + " ".join(cells) + "  " + ", ".join(verdict))
        summary["auto_misses"] = misses
    return summary


def sweep(path: str, repeat: int, slow: float, methods: tuple[str, ...],
          sizes: tuple[int, ...] = SWEEP_K) -> list[dict]:
    """Image filter (1 x 1 x 2048^2, "same") forward time vs kernel size, as a PNG figure."""
    from matplotlib.figure import Figure

    from fc2conv.viz import save_figure

    base = next(c for c in SUITE if c.name == "image-filter-5")
    rows = []
    for k in sizes:
        row = run_case(base, repeat, methods, slow, k=k, backward=False)
        rows.append(row)
        print(f"k={k:4d} " + " ".join(f"{label[:-4]} {ms:.1f}" for label, ms in
                                      sorted(row["ms"].items(), key=lambda kv: kv[1])),
              flush=True)
    figure = Figure(figsize=(7, 4.5))
    ax = figure.add_subplot()
    labels = sorted({label for row in rows for label in row["ms"]})
    for label in labels:
        ks = [row["config"]["k"] for row in rows if label in row["ms"]]
        ts = [row["ms"][label] for row in rows if label in row["ms"]]
        style = "-o" if label.startswith("auto") else "--."
        ax.plot(ks, ts, style, label=label.removesuffix("_fwd"), linewidth=2 if
                label.startswith("auto") else 1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("kernel size k (k x k)")
    ax.set_ylabel("forward time (ms)")
    ax.set_title("2048 x 2048 single-channel image, 'same', float32")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    save_figure(figure, path)
    print(f"wrote {path}")
    return rows


def machine() -> dict:
    import scipy
    import torch

    model = "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            model = next(line.split(":", 1)[1].strip() for line in fh
                         if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": model, "cores": os.cpu_count(), "blas": _blas.report(),
            "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
            "python": platform.python_version(), "numpy": np.__version__,
            "scipy": scipy.__version__, "torch": torch.__version__,
            "fc2conv": fc2conv.__version__}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="*", default=None,
                        help=f"case names (default: all; --quick: the layers). Known: "
                             f"{' '.join(c.name for c in SUITE)}")
    parser.add_argument("--methods", nargs="*", default=["auto"], choices=METHODS,
                        help="fc2conv methods to time (default: auto)")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="3 runs, layer cases only")
    parser.add_argument("--slow", type=float, default=5.0,
                        help="time a call slower than this (s) once (default 5)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--sweep", metavar="PNG", help="image filter time vs k, as a figure")
    parser.add_argument("--sweep-k", type=int, nargs="*", default=list(SWEEP_K),
                        help=f"kernel sizes of --sweep (default: {SWEEP_K})")
    parser.add_argument("--json", help="write the rows to this file")
    parser.add_argument("--peer-process", type=int, nargs="?", const=3, default=0,
                        metavar="P", help="time PyTorch and SciPy in P fresh processes per "
                                          "case (default 3) and keep their fastest medians")
    parser.add_argument("--peers-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.peer_process < 0:
        parser.error(f"--peer-process takes a number of processes >= 1; got {args.peer_process}")
    if args.peer_process and (args.sweep or args.peers_only):
        parser.error("--peer-process times the suite's cases, not --sweep or --peers-only")
    methods = () if args.peers_only else tuple(dict.fromkeys(["auto", *args.methods]))
    repeat = 3 if args.quick else args.repeat
    names = args.cases if args.cases is not None else (LAYERS if args.quick else
                                                       [c.name for c in SUITE])

    import torch

    torch.set_num_threads(args.threads)
    by_name = {c.name: c for c in SUITE}
    unknown = [c for c in names if c not in by_name]
    if unknown:
        parser.error(f"unknown case(s) {unknown}; known: {list(by_name)}")
    info = machine()
    print(f"fc2conv {fc2conv.__version__} vs torch {torch.__version__}, float32, "
          f"{args.threads} threads, median of {repeat}\n{info['cpu']}; " + "; ".join(info["blas"]))
    result = {"machine": info, "threads": args.threads, "repeat": repeat}
    if args.sweep:
        result["sweep"] = sweep(args.sweep, repeat, args.slow, methods, tuple(args.sweep_k))
    else:
        rows = []
        for name in names:
            row = run_case(by_name[name], repeat, methods, args.slow,
                           peers=not args.peer_process)
            if args.peer_process:
                apart = peers_apart(by_name[name], args)
                row["ms"].update(apart["ms"])
                row["runs"].update(apart["runs"])
            rows.append(row)
            print(f"  {name}: " + ", ".join(f"{label} {ms:.2f} ms" for label, ms in
                                            row["ms"].items()), flush=True)
        result["rows"] = rows
        result["peer_process"] = args.peer_process
        if not args.peers_only:
            result["summary"] = print_table(rows, methods)
    if args.json:
        from fc2conv._atomic import atomic_open

        with atomic_open(args.json) as fh:
            fh.write(json.dumps(result, indent=1).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
