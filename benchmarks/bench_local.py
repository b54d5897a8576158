"""Locally connected and dense-on-grid layers: fc2conv vs a PyTorch unfold+einsum twin.

PyTorch has no locally connected layer; the usual way to write one is ``F.unfold`` (im2col)
followed by a per-position ``einsum``, which is what this compares against, forward and
forward+backward, float32, plus fc2conv's own tied convolution of the same shape (the cost of
untying). Each library is timed hot in its own block (median of ``--repeat`` runs).

    python benchmarks/bench_local.py [--repeat 7] [--json out.json]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
import torch.nn.functional as F
from bench_conv import median_time  # same timing discipline: hot blocks, pause between

import fc2conv
from fc2conv.functional import correlate_vjp, local_correlate_vjp

# name, N, C_in, spatial size, C_out, kernel, stride, padding
CASES = [
    ("mnist1d-lc1", 100, 1, (40,), 25, 5, 2, 1),
    ("mnist1d-lc2", 100, 25, (19,), 25, 3, 2, 1),
    ("lenet-lc", 64, 6, (14, 14), 16, 5, 1, 0),
    ("cifar-lc", 32, 16, (32, 32), 32, 3, 1, 1),
]


def timed(fn, repeat):
    return median_time(fn, repeat)[0]


def torch_local(x, w, stride, padding, kernel, out_size):
    """(N, C, *S) x (P, C_out, C_in*K) -> (N, C_out, *S_out) via unfold (2-D) or unfold on 1-D."""
    if x.ndim == 3:  # 1-D: treat as 2-D with height 1
        cols = F.unfold(x[:, :, None, :], (1, kernel), stride=(1, stride), padding=(0, padding))
    else:
        cols = F.unfold(x, kernel, stride=stride, padding=padding)  # (N, C*K, P)
    y = torch.einsum("ncp,poc->nop", cols, w)
    return y.reshape(y.shape[0], y.shape[1], *out_size)


def run_case(name, n, c_in, size, c_out, k, s, p, repeat):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c_in, *size)).astype(np.float32)
    conv_w = rng.standard_normal((c_out, c_in, *(k,) * len(size))).astype(np.float32)
    y = fc2conv.correlate(x, conv_w, stride=s, padding=p)
    out_size = y.shape[2:]
    w = rng.standard_normal((*out_size, c_out, c_in, *(k,) * len(size))).astype(np.float32)
    gy = np.ones_like(y)
    opts = {"stride": s, "padding": p}
    ours_f = timed(lambda: fc2conv.local_correlate(x, w, **opts), repeat)
    ours_b = timed(lambda: (fc2conv.local_correlate(x, w, **opts),
                            local_correlate_vjp(gy, x, w, **opts)), repeat)
    conv_f = timed(lambda: fc2conv.correlate(x, conv_w, **opts), repeat)
    conv_b = timed(lambda: (fc2conv.correlate(x, conv_w, **opts),
                            correlate_vjp(gy, x, conv_w, **opts)), repeat)
    xt = torch.from_numpy(x).requires_grad_(True)
    wt = torch.from_numpy(w.reshape(int(np.prod(out_size)), c_out, -1).copy())
    wt.requires_grad_(True)

    def torch_fb():
        out = torch_local(xt, wt, s, p, k, out_size)
        out.backward(torch.ones_like(out))

    with torch.no_grad():
        torch_f = timed(lambda: torch_local(xt, wt, s, p, k, out_size), repeat)
    torch_b = timed(torch_fb, repeat)
    check = torch_local(xt, wt, s, p, k, out_size).detach().numpy()
    err = float(np.abs(check - fc2conv.local_correlate(x, w, **opts)).max())
    return {"case": name, "fc2conv_fwd_ms": 1e3 * ours_f, "torch_fwd_ms": 1e3 * torch_f,
            "fc2conv_fb_ms": 1e3 * ours_b, "torch_fb_ms": 1e3 * torch_b,
            "tied_conv_fwd_ms": 1e3 * conv_f, "tied_conv_fb_ms": 1e3 * conv_b,
            "max_abs_diff": err}


def run(repeat):
    torch.set_num_threads(2)
    return [run_case(*case, repeat) for case in CASES]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json")
    args = parser.parse_args()
    rows = run(args.repeat)
    print(f"{'case':12} {'fwd ms':>8} {'torch':>8} {'ratio':>6} {'f+b ms':>8} {'torch':>8} "
          f"{'ratio':>6} {'conv fwd':>9} {'conv f+b':>9} {'max diff':>9}")
    for r in rows:
        print(f"{r['case']:12} {r['fc2conv_fwd_ms']:8.2f} {r['torch_fwd_ms']:8.2f} "
              f"{r['fc2conv_fwd_ms'] / r['torch_fwd_ms']:6.2f} {r['fc2conv_fb_ms']:8.2f} "
              f"{r['torch_fb_ms']:8.2f} {r['fc2conv_fb_ms'] / r['torch_fb_ms']:6.2f} "
              f"{r['tied_conv_fwd_ms']:9.2f} {r['tied_conv_fb_ms']:9.2f} {r['max_abs_diff']:9.1e}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
