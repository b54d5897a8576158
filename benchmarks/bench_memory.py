"""Peak extra memory of one forward+backward, fc2conv vs PyTorch, each in a fresh process.

For each case a child process makes the inputs (x, w, b, the output gradient), runs both on one
example to load code and thread pools, notes its resident set size, runs one forward and one backward (fc2conv: ``correlate`` then
``correlate_vjp`` with ``method="auto"`` or ``--method``; torch: ``conv2d`` then
``autograd.grad``), and reports the peak RSS above that baseline (``getrusage``) together with
the size of the results (y, grad_x, grad_w, grad_b) that any implementation must hold. For
fc2conv it also reports tracemalloc's peak of NumPy allocations, which has no sampling error.
"Workspace" is the peak minus the results: memory an implementation needs on the side.

    python benchmarks/bench_memory.py                      # resnet-mid, large-kernel
    python benchmarks/bench_memory.py --cases resnet-mid lenet2 image-filter-101 --json m.json

Figures are in MiB and in multiples of the forward output's size.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, math, resource, sys, tracemalloc
import numpy as np
sys.path.insert(0, {bench_dir!r})
from bench_conv import SUITE, _arrays
case = next(c for c in SUITE if c.name == {case!r})
who, method = {who!r}, {method!r}
x, w, b = _arrays(case)
kw = dict(stride=case.stride, padding=case.padding, groups=case.groups)
nd = len(case.size)
if who == "torch":
    import torch, torch.nn.functional as F
    torch.set_num_threads({threads})
    conv = {{1: F.conv1d, 2: F.conv2d, 3: F.conv3d}}[nd]
    xt, wt, bt = (torch.from_numpy(a).requires_grad_(True) for a in (x, w, b))
    with torch.no_grad():
        shape = conv(xt, wt, bt, **kw).shape
else:
    import fc2conv
    from fc2conv import _validate
    from fc2conv.functional import correlate_vjp
    shape = _validate.conv_spec(x, w, b, dilation=1, padding_mode="zeros", **kw).output_shape
gy = np.random.default_rng(1).standard_normal(shape, dtype=np.float32)
# Warm up on one example first: the first call loads code (oneDNN's JIT kernels, thread pools)
# that is not the convolution's memory.
if who == "torch":
    torch.autograd.grad(conv(xt[:1], wt, bt, **kw).sum(), (xt, wt, bt))
else:
    y1 = fc2conv.correlate(x[:1], w, b, method=method, **kw)
    correlate_vjp(np.ones_like(y1), x[:1], w, b, method=method, **kw)
    del y1
def rss():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize()
base, before_max = rss(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
traced = None
if who == "torch":
    y = conv(xt, wt, bt, **kw)
    grads = torch.autograd.grad(y, (xt, wt, bt), torch.from_numpy(gy))
else:
    tracemalloc.start()
    y = fc2conv.correlate(x, w, b, method=method, **kw)
    grads = correlate_vjp(gy, x, w, b, method=method, **kw)
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
results = 4 * (math.prod(shape) + x.size + w.size + b.size)
print(json.dumps({{"peak_extra": peak - base, "baseline_max_above_base": before_max - base,
                  "results": results, "output": 4 * math.prod(shape), "traced": traced}}))
"""

MIB = 1 << 20


def measure(case: str, who: str, method: str, threads: int) -> dict:
    from pathlib import Path

    code = CHILD.format(bench_dir=str(Path(__file__).parent), case=case, who=who,
                        method=method, threads=threads)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="*", default=["resnet-mid", "large-kernel"])
    parser.add_argument("--method", default="auto")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    print(f"peak extra memory of one forward+backward (fc2conv method={args.method}); "
          "x out = multiples of the forward output")
    print(f"{'case':17} {'who':8} {'output':>8} {'results':>8} {'peak extra':>11} "
          f"{'x out':>6} {'workspace':>10} {'x out':>6} {'traced':>8}")
    rows = []
    for case in args.cases:
        for who in ("fc2conv", "torch"):
            m = measure(case, who, args.method, args.threads)
            m.update(case=case, who=who)
            rows.append(m)
            work = max(m["peak_extra"] - m["results"], 0)
            traced = "-" if m["traced"] is None else f"{m['traced'] / MIB:7.1f}M"
            print(f"{case:17} {who:8} {m['output'] / MIB:7.1f}M {m['results'] / MIB:7.1f}M "
                  f"{m['peak_extra'] / MIB:10.1f}M {m['peak_extra'] / m['output']:6.2f} "
                  f"{work / MIB:9.1f}M {work / m['output']:6.2f} {traced:>8}", flush=True)
    if args.json:
        from fc2conv._atomic import atomic_open

        with atomic_open(args.json) as fh:
            fh.write(json.dumps(rows, indent=1).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
