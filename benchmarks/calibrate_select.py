"""Measure the constants of ``method="auto"``'s cost model (fc2conv/algorithms/select.py).

Every algorithm module estimates the work of a step in parts (``terms(spec, method, step)``);
``select.SECONDS_PER_UNIT[method, step]`` turns each part into seconds. This script times
every method on every step of a set of layers (the DESIGN.md suite, smaller variants of it and
the image filters), fits the seconds per unit of each part of the estimated work
(:func:`fit`), and reports for every layer the fastest method, what ``auto`` picks with the
fitted constants, and how much slower that pick is (the target: within 10 % everywhere).

    python benchmarks/calibrate_select.py                 # fit and report, ~7-9 min on 2 cores
    python benchmarks/calibrate_select.py --check         # report with select.py's constants
    python benchmarks/calibrate_select.py --save t.json   # ... and keep the timings
    python benchmarks/calibrate_select.py --load t.json   # fit saved timings again
    python benchmarks/calibrate_select.py --check --held-out  # layers it was not fitted to

Every case is measured in a fresh process, its methods timed in interleaved rounds (the
fastest of ``--repeat`` kept). Run it on a quiet machine: the constants are ratios of times.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from scipy import optimize

sys.path.insert(0, str(Path(__file__).parent))

from bench_conv import SUITE, Case

from fc2conv import ArgumentError, _threads, _validate
from fc2conv.algorithms import METHODS, implementation, select
from fc2conv.functional import conv

STEPS = ("correlate", "input_grad", "weight_grad")
EXTRA = [
    Case("lenet2-b8", 8, 6, (14, 14), 16, 5),
    Case("resnet-small", 1, 64, (56, 56), 64, 3, 1, 1),
    Case("mid-5x5", 8, 32, (32, 32), 32, 5, 1, 2),
    Case("mid-7x7", 4, 16, (64, 64), 16, 7, 1, 3),
    Case("grouped-4", 8, 64, (28, 28), 64, 3, 1, 1, groups=16),
    Case("dw-5x5", 8, 64, (28, 28), 64, 5, 1, 2, groups=64),
    Case("conv1d-big-k", 8, 8, (4096,), 8, 65, 1, 32),
    Case("image-512-k9", 1, 1, (512, 512), 1, 9, 1, "same"),
    Case("image-512-k21", 1, 1, (512, 512), 1, 21, 1, "same"),
    Case("image-1024-k15", 1, 1, (1024, 1024), 1, 15, 1, "same"),
    Case("rgb-k15", 1, 3, (512, 512), 3, 15, 1, "same"),
    # strided layers for direct's phase gather (none of the above has one)
    Case("dw-s2-28", 8, 128, (28, 28), 128, 3, 2, 1, groups=128),
    Case("dw-5x5-s2", 8, 32, (56, 56), 32, 5, 2, 2, groups=32),
    Case("grouped-s2", 8, 64, (28, 28), 64, 3, 2, 1, groups=16),
    # strided 1-D single-channel layers with many outputs, one long, one tiny (jit's fixed
    # costs per block and tap)
    Case("conv1d-1ch-s2", 32, 1, (2048,), 16, 9, 2, 4),
    Case("tiny1d-1ch-s2", 64, 1, (64,), 32, 7, 2, 3),
]

#: Layers the constants are not fitted to (``--check --held-out``), to check that ``auto``
#: generalises: common shapes the suite lacks (a stem, dilation, strided depthwise, ResNeXt
#: groups, 1-D audio, batch 1, small images, the tour's MNIST-1D CNN).
HELD_OUT = [
    Case("stem-7x7-s2", 8, 3, (112, 112), 64, 7, 2, 3),
    Case("vgg-3x3", 4, 32, (64, 64), 64, 3, 1, 1),
    Case("dilated-3x3", 8, 64, (32, 32), 64, 3, 1, 2, dilation=2),
    Case("dw-s2", 8, 64, (56, 56), 64, 3, 2, 1, groups=64),
    Case("resnext-g32", 8, 128, (28, 28), 128, 3, 1, 1, groups=32),
    Case("audio-k80-s4", 16, 1, (4000,), 32, 80, 4, 0),
    Case("conv1d-dilated", 8, 32, (2048,), 32, 3, 1, 2, dilation=2),
    Case("conv3d-small", 4, 8, (16, 16, 16), 16, 3, 1, 1),
    Case("batch-1", 1, 128, (28, 28), 128, 3, 1, 1),
    Case("image-256-k7", 1, 1, (256, 256), 1, 7, 1, "same"),
    Case("mnist-k3", 128, 1, (28, 28), 16, 3, 1, 1),
    Case("digits-8x8", 64, 8, (8, 8), 16, 3, 1, 1),
    Case("mnist1d-conv1", 100, 1, (40,), 25, 5, 2, 1),
    Case("mnist1d-conv2", 100, 25, (19,), 25, 3, 2, 1),
]

#: A method whose first timing is this many times the fastest one's is not timed again.
HOPELESS = 3.0


def _time_together(calls: dict, repeat: int) -> dict:
    """Each call's fastest of ``repeat`` timings, the calls interleaved round by round
    (after one warm-up call each), so that a slow spell of the shared machine lands on all of
    them alike, not on whichever happened to be timed then; the fastest timing is the least
    disturbed one. A call that is :data:`HOPELESS` behind after the first round, or that
    takes over 2 s, keeps its first timing: it will not be picked anyway."""
    for fn in calls.values():
        fn()
    times: dict = {name: [] for name in calls}
    active = list(calls)
    for round_ in range(repeat):
        for name in active:
            start = time.perf_counter()
            calls[name]()
            times[name].append(time.perf_counter() - start)
        if round_ == 0:
            best = min(t[0] for t in times.values())
            active = [m for m in active if times[m][0] <= min(HOPELESS * best, 2.0)]
    return {name: min(t) for name, t in times.items()}


def _layer(case: Case):
    rng = np.random.default_rng(0)
    nd = len(case.size)
    x = rng.standard_normal((case.n, case.c_in, *case.size), dtype=np.float32)
    w = rng.standard_normal((case.c_out, case.c_in // case.groups) + (case.k,) * nd,
                            dtype=np.float32)
    spec = _validate.conv_spec(x, w, None, stride=case.stride, padding=case.padding,
                               dilation=case.dilation, groups=case.groups,
                               padding_mode="zeros")
    return rng, x, w, spec


def load(path: str, cases: list[Case]) -> list[dict]:
    """Timings saved by ``--save`` (the work's parts are recomputed: the formulas may have
    changed since)."""
    return _with_parts(json.loads(Path(path).read_text()), cases)


def _with_parts(saved: dict, cases: list[Case]) -> list[dict]:
    """``{case: {"method/step": seconds}}`` -> results with the work's parts."""
    results = []
    for case in cases:
        if case.name not in saved:
            continue
        spec = _layer(case)[3]
        found = {}
        for key, seconds in saved[case.name].items():
            method, step = key.split("/")
            found[method, step] = (seconds, select.parts(spec, method, step))
        results.append({"case": case, "spec": spec, "found": found})
    return results


def measure(case: Case, repeat: int) -> dict:
    """Every method's three steps on ``case``, as the convolution ops run them: on the
    unpadded input where the method reads the padding itself, else with the padded copy
    of the input (the crop of the input gradient) included."""
    rng, x, w, spec = _layer(case)
    gy = rng.standard_normal(spec.output_shape, dtype=np.float32)
    modules = {}
    for method in METHODS:
        try:
            modules[method] = implementation(spec, method)
        except ArgumentError:  # unsupported for this layer
            continue
    steps = {"correlate": lambda m, k: conv._on_input(m, spec, x, lambda x_in, **kw: (
                 m.correlate(np, x_in, w, spec, k, **kw))),
             "input_grad": lambda m, k: conv._input_grad(m, spec, gy, w, k),
             "weight_grad": lambda m, k: conv._on_input(m, spec, x, lambda x_in, **kw: (
                 m.weight_grad(np, gy, x_in, spec, k, **kw)))}
    found = {}
    for step, call in steps.items():
        calls = {k: functools.partial(call, m, k) for k, m in modules.items()}
        with _threads.own_threads(x):  # as inside a convolution op
            timed = _time_together(calls, repeat)
        for method, seconds in timed.items():
            found[method, step] = (seconds, select.parts(spec, method, step))
    return {"case": case, "spec": spec, "found": found}


def measure_apart(case: Case, repeat: int) -> dict:
    """:func:`measure` in a fresh Python process (this script with ``--child``): timings in a
    long-lived process depend on what ran before in it (its heap, the workspaces it holds;
    one depthwise layer's direct weight gradient measured 1.6 ms after the image filters and
    1.1 ms alone), which is noise to the cost model."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", case.name,
               "--repeat", str(repeat)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"measuring {case.name} failed:\n{done.stderr}")
    return _with_parts({case.name: json.loads(done.stdout)}, [case])[0]


def _timings(result: dict) -> dict:
    return {f"{m}/{s}": t for (m, s), (t, _) in result["found"].items()}


#: How strongly each part's constant is pulled towards the common one of its step (a
#: ridge on the ratio, in units of the relative error of one layer).
PULL = 0.02


def fit(results: list[dict]) -> dict:
    """Per ``(method, step)``: the seconds per unit of each part of the work. First one
    common constant (the geometric mean of time / total work), then a ratio ``u >= 0`` per
    part minimising ``sum_layers (predicted / measured - 1)^2 + PULL^2 * sum_parts (u - 1)^2``
    (non-negative least squares). The ``padding`` part is not fitted: its time at select.py's
    measured rate is taken off the measured one first."""
    rows: dict = {}
    for result in results:
        for key, (seconds, parts) in result["found"].items():
            if not parts or not 0 < sum(parts.values()) < math.inf:
                continue
            parts = dict(parts)
            seconds -= select.PAD_SECONDS_PER_UNIT * parts.pop("padding", 0.0)
            if seconds > 0:
                rows.setdefault(key, []).append((seconds, parts))
    constants = {}
    for key, samples in rows.items():
        common = math.exp(statistics.mean(math.log(t / sum(p.values())) for t, p in samples))
        names = sorted({name for _, p in samples for name in p})
        a = np.array([[common * p.get(name, 0.0) / t for name in names] for t, p in samples])
        a = np.vstack([a, PULL * np.eye(len(names))])
        b = np.concatenate([np.ones(len(samples)), PULL * np.ones(len(names))])
        ratios, _ = optimize.nnls(a, b)
        constants[key] = {name: common * float(u) for name, u in zip(names, ratios)}
    return constants


def report(results: list[dict], constants: dict) -> float:
    """Per step: the fastest method (of those within ``select.WORKSPACE_LIMIT``), ``auto``'s
    pick and how much slower it is; then per
    layer, forward + backward with ``auto``'s picks against the fastest method of each step.
    Returns the worst step's ratio."""
    worst, per_case = 1.0, []
    print(f"\n{'case':17} {'step':12} {'fastest':>10} {'ms':>8} {'auto':>10} {'ms':>8} "
          f"{'slower':>7}")
    for result in results:
        picked = fastest = 0.0
        for step in STEPS:
            timed = {m: t for (m, s), (t, _) in result["found"].items() if s == step}
            # (auto's rule: the methods within select.WORKSPACE_LIMIT, if any can run it)
            lean = {m: t for m, t in timed.items() if select.fits(result["spec"], m, step)}
            timed = lean or timed
            best = min(timed, key=timed.get)
            candidates = [m for m in timed if m in select.candidates(result["spec"])]
            estimates = {m: select.predict(result["spec"], m, step, constants)
                         for m in candidates}
            pick = min(estimates, key=estimates.get)
            slower = timed[pick] / timed[best]
            worst = max(worst, slower)
            picked, fastest = picked + timed[pick], fastest + timed[best]
            flag = "" if slower <= 1.10 else "  <-"
            print(f"{result['case'].name:17} {step:12} {best:>10} {1e3 * timed[best]:8.2f} "
                  f"{pick:>10} {1e3 * timed[pick]:8.2f} {slower:7.2f}{flag}")
        per_case.append((result["case"].name, picked, fastest))
    print(f"\n{'case':17} {'fwd+bwd ms':>10} {'fastest':>8} {'slower':>7}   (auto's picks vs "
          "the fastest method of each step)")
    for name, picked, fastest in per_case:
        flag = "" if picked <= 1.10 * fastest else "  <-"
        print(f"{name:17} {1e3 * picked:10.2f} {1e3 * fastest:8.2f} {picked / fastest:7.2f}{flag}")
    print(f"\nworst auto pick: {worst:.2f}x the fastest method (one step); forward+backward: "
          f"{max(p / f for _, p, f in per_case):.2f}x")
    return worst


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5,
                        help="interleaved rounds per step (the fastest of each is kept)")
    parser.add_argument("--check", action="store_true",
                        help="report with select.py's constants instead of fitting new ones")
    parser.add_argument("--cases", nargs="*", help="case names (default: all)")
    parser.add_argument("--save", help="write the timings to this JSON file")
    parser.add_argument("--load", help="fit timings saved by --save instead of measuring")
    parser.add_argument("--in-process", action="store_true",
                        help="measure every case in this process (default: a fresh one each)")
    parser.add_argument("--held-out", action="store_true",
                        help="the layers the constants are not fitted to (use with --check)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error(f"--repeat takes a number of rounds >= 1; got {args.repeat}")
    if args.held_out and not args.check:
        parser.error("--held-out checks the constants on layers they were not fitted to; "
                     "pass --check with it")
    known = {c.name: c for c in SUITE + EXTRA + HELD_OUT}
    unknown = [n for n in [args.child, *(args.cases or [])] if n and n not in known]
    if unknown:
        parser.error(f"unknown case(s) {unknown}; known: {sorted(known)}")
    if args.child:
        case = known[args.child]
        print(json.dumps(_timings(measure(case, args.repeat))))
        return 0
    pool = HELD_OUT if args.held_out else SUITE + EXTRA
    cases = [c for c in pool if not args.cases or c.name in args.cases]
    if args.load:
        results = load(args.load, cases)
    else:
        results = []
        for case in cases:
            results.append(measure(case, args.repeat) if args.in_process
                           else measure_apart(case, args.repeat))
            print(f"measured {case.name}", file=sys.stderr, flush=True)
    if args.save:
        from fc2conv._atomic import atomic_open

        timings = {r["case"].name: _timings(r) for r in results}
        with atomic_open(args.save) as fh:
            fh.write(json.dumps(timings, indent=1).encode())
    constants = dict(select.SECONDS_PER_UNIT) if args.check else fit(results)
    if not args.check:
        print("SECONDS_PER_UNIT: dict[tuple[str, str], dict[str, float]] = {")
        for (method, step), per_part in sorted(constants.items()):
            inner = ", ".join(f"{name!r}: {value:.3e}" for name, value in per_part.items())
            print(f"    ({method!r}, {step!r}): {{{inner}}},")
        print("}")
    report(results, constants)
    return 0


if __name__ == "__main__":
    sys.exit(main())
