"""Time fc2conv's correlation against PyTorch's CPU convolution on DESIGN.md's layer suite.

Forward and forward+backward (input, weight and bias gradients), float32, in one process;
median of repeated runs after a warm-up; GFLOP/s counts a multiply-add as 2 FLOPs.

    python benchmarks/bench_conv.py                      # the suite minus the image filters
    python benchmarks/bench_conv.py --cases lenet2 resnet-mid --repeat 9
    python benchmarks/bench_conv.py --method im2col --json out.json

The machines are shared and noisy: read the ratios, not the absolute times, and rerun.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np

import fc2conv
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
DEFAULT = [c.name for c in SUITE if not c.name.startswith("image-filter")]


def median_time(fn, repeat: int, warmup: int = 2) -> float:
    # OpenBLAS's and torch's worker threads spin for a while after a call; on 2 cores one
    # library's spinning pool steals the other's cores. A pause before each block lets the
    # other library's pool go idle; within the block calls run back to back, as in a training
    # loop (a pause between calls would time the pool waking up instead).
    time.sleep(0.5)
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_case(case: Case, repeat: int, method: str) -> dict:
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(0)
    nd = len(case.size)
    x = rng.standard_normal((case.n, case.c_in, *case.size), dtype=np.float32)
    w = rng.standard_normal((case.c_out, case.c_in // case.groups) + (case.k,) * nd,
                            dtype=np.float32)
    b = rng.standard_normal(case.c_out, dtype=np.float32)
    kw = dict(stride=case.stride, padding=case.padding, groups=case.groups)
    y = fc2conv.correlate(x, w, b, method=method, **kw)
    gy = rng.standard_normal(y.shape, dtype=np.float32)
    flops = 2 * math.prod(y.shape) * (case.c_in // case.groups) * case.k**nd

    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[nd]
    xt, wt, bt, gyt = (torch.from_numpy(a) for a in (x, w, b, gy))
    xt.requires_grad_(True)
    wt.requires_grad_(True)
    bt.requires_grad_(True)

    def torch_forward():
        with torch.no_grad():
            conv(xt, wt, bt, **kw)

    def torch_both():
        out = conv(xt, wt, bt, **kw)
        torch.autograd.grad(out, (xt, wt, bt), gyt)

    def ours_forward():
        fc2conv.correlate(x, w, b, method=method, **kw)

    def ours_both():
        fc2conv.correlate(x, w, b, method=method, **kw)
        correlate_vjp(gy, x, w, b, method=method, **kw)

    row = {"case": case.name, "config": asdict(case), "gflop": flops / 1e9}
    for label, fn in (("fc2conv_fwd", ours_forward), ("torch_fwd", torch_forward),
                      ("fc2conv_fwdbwd", ours_both), ("torch_fwdbwd", torch_both)):
        row[label + "_ms"] = 1e3 * median_time(fn, repeat)
    row["ratio_fwd"] = row["fc2conv_fwd_ms"] / row["torch_fwd_ms"]
    row["ratio_fwdbwd"] = row["fc2conv_fwdbwd_ms"] / row["torch_fwdbwd_ms"]
    row["fc2conv_fwd_gflops"] = flops / row["fc2conv_fwd_ms"] / 1e6
    row["torch_fwd_gflops"] = flops / row["torch_fwd_ms"] / 1e6
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="*", default=DEFAULT,
                        help=f"case names (default: {' '.join(DEFAULT)}; all: "
                             f"{' '.join(c.name for c in SUITE)})")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--method", default="auto", choices=("auto", "im2col", "shift"))
    parser.add_argument("--json", help="write the rows to this file")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    by_name = {c.name: c for c in SUITE}
    unknown = [c for c in args.cases if c not in by_name]
    if unknown:
        parser.error(f"unknown case(s) {unknown}; known: {list(by_name)}")
    print(f"fc2conv {fc2conv.__version__} vs torch {torch.__version__}, float32, "
          f"{args.threads} threads, method={args.method}, median of {args.repeat}")
    header = (f"{'case':15} {'GFLOP':>7} {'ours fwd':>9} {'torch fwd':>9} {'ratio':>6} "
              f"{'ours f+b':>9} {'torch f+b':>9} {'ratio':>6} {'ours GF/s':>9} {'torch GF/s':>10}")
    print(header)
    rows = []
    for name in args.cases:
        row = run_case(by_name[name], args.repeat, args.method)
        rows.append(row)
        print(f"{name:15} {row['gflop']:7.3f} {row['fc2conv_fwd_ms']:8.2f}m "
              f"{row['torch_fwd_ms']:8.2f}m {row['ratio_fwd']:6.2f} "
              f"{row['fc2conv_fwdbwd_ms']:8.2f}m {row['torch_fwdbwd_ms']:8.2f}m "
              f"{row['ratio_fwdbwd']:6.2f} {row['fc2conv_fwd_gflops']:9.1f} "
              f"{row['torch_fwd_gflops']:10.1f}", flush=True)
    geo = lambda key: math.exp(statistics.mean(math.log(r[key]) for r in rows))
    print(f"geometric mean of fc2conv/torch: forward {geo('ratio_fwd'):.2f}, "
          f"forward+backward {geo('ratio_fwdbwd'):.2f}")
    if args.json:
        tmp = args.json + ".tmp"
        with open(tmp, "w") as fh:
            json.dump({"threads": args.threads, "method": args.method, "rows": rows}, fh,
                      indent=1)
        os.replace(tmp, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
