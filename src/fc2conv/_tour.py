"""``fc2conv tour``: the derivation, run end to end on a laptop-sized budget.

1. the seed's parameter table (1000 x 1000 image, Delta = 5);
2. the ladder checked: dense -> locally connected -> conv (projections) and back (exact);
3. d2l's "learning a kernel": the edge detector [1, -1] learnt from X and Y;
4. MNIST-1D: logistic regression, MLP, CNN, and the CNN's locally connected and
   dense-on-grid rungs, normal and positions shuffled, beside the published table;
5. shift equivariance and invariance of the trained models;
6. sample efficiency: accuracy vs number of training examples;
and writes ``results.json``, the figures and the trained weights to the output directory.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__, nn, train
from ._atomic import atomic_open
from .data import mnist1d
from .experiments import (
    MODEL_LABELS,
    PUBLISHED_MNIST1D,
    Run,
    mnist1d_table,
    sample_efficiency,
    shift_report,
    summarize,
)
from .ladder import walk
from .models import MNIST1D_MODELS

__all__ = ["TourSettings", "edge_kernel_example", "run_tour"]


@dataclass(frozen=True)
class TourSettings:
    """How much the tour trains. The full tour uses the paper's 6,000 steps."""

    steps: int = 6000
    seeds: tuple[int, ...] = (0,)
    sizes: tuple[int, ...] = (250, 500, 1000, 2000, 4000)
    size_models: tuple[str, ...] = ("mlp", "lc", "cnn")
    quick: bool = False

    @classmethod
    def make(cls, *, quick: bool = False, seeds: int = 1, steps: int | None = None) -> TourSettings:
        if quick:
            return cls(steps=steps or 300, seeds=tuple(range(seeds)), sizes=(250, 1000, 4000),
                       quick=True)
        return cls(steps=steps or 6000, seeds=tuple(range(seeds)))


def edge_kernel_example(steps: int = 10, lr: float = 3e-2) -> dict[str, Any]:
    """d2l 7.2.4: learn ``K = [1, -1]`` from ``X`` (a 6 x 8 image with a dark band) and
    ``Y = X * K`` with ``Conv2d(1, 1, (1, 2), bias=False)`` from zero weights, plain gradient
    descent on the summed squared error. Each step shrinks the error by ``0.64``, so after
    ``steps`` steps the weights are ``+-(1 - 0.64**steps)``.

    >>> from fc2conv._tour import edge_kernel_example
    >>> [round(w, 5) for w in edge_kernel_example()["learned"]]
    [0.98847, -0.98847]
    """
    x = np.ones((1, 1, 6, 8))
    x[..., 2:6] = 0.0
    target = np.array([[[[1.0, -1.0]]]])
    teacher = nn.Conv2d(1, 1, (1, 2), bias=False, dtype=np.float64, rng=0)
    teacher.weight[...] = target
    y = teacher(x)
    conv = nn.Conv2d(1, 1, (1, 2), bias=False, dtype=np.float64, rng=0)
    conv.weight[...] = 0.0
    optimizer = train.SGD(conv, lr=lr)
    losses = []
    for _ in range(steps):
        value, grad = train.mse(conv(x), y, reduction="sum")
        losses.append(float(value))
        optimizer.zero_grad()
        conv.backward(grad)
        optimizer.step()
    expected = 1 - 0.64 ** steps
    return {"learned": conv.weight.ravel().tolist(), "expected": [expected, -expected],
            "losses": losses, "steps": steps, "lr": lr}


def run_tour(out: str | Path = "fc2conv-tour", *, settings: TourSettings = TourSettings(),
             progress: bool = True, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the tour, print as it goes, write ``out/results.json`` and the figures; return the
    results dict (the same as the JSON)."""
    from .analysis import parameter_table

    began = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "fc2conv": __version__,
        "machine": {"python": platform.python_version(), "numpy": np.__version__,
                    "processor": platform.processor() or platform.machine()},
        "settings": {"steps": settings.steps, "seeds": list(settings.seeds), "lr": 1e-2,
                     "batch_size": 100, "optimizer": "Adam", "quick": settings.quick,
                     "sizes": list(settings.sizes)},
    }
    _heading(echo, "1. From a fully-connected layer to a convolution: the parameter count")
    table = parameter_table((1000, 1000), 5)
    echo(str(table))
    results["parameter_table"] = table.to_dict()

    _heading(echo, "2. The ladder, checked on a random 12 x 12 image (float64)")
    results["ladder"] = _ladder(walk((12, 12), 1), echo)

    _heading(echo, "3. Learning a kernel (d2l 7.2.4): the edge detector from X and Y")
    edge = edge_kernel_example()
    echo(f"   learned K after {edge['steps']} steps of lr {edge['lr']}: "
         f"[{edge['learned'][0]:+.5f}, {edge['learned'][1]:+.5f}]   expected "
         f"+-(1 - 0.64^10) = +-{edge['expected'][0]:.5f}")
    echo(f"   squared error per step: {' '.join(f'{v:.3g}' for v in edge['losses'])}")
    results["edge_kernel"] = edge

    _heading(echo, f"4. MNIST-1D (Greydanus & Kobak 2024): {settings.steps} steps of Adam, "
                   f"lr 1e-2, batch 100, seeds {list(settings.seeds)}")
    datasets = {"normal": mnist1d(), "shuffled": mnist1d(shuffle_positions=True)}
    plain = datasets["normal"]
    echo(f"   data: {len(plain.y_train)} train / {len(plain.y_test)} test signals of length "
         f"{plain.x_train.shape[-1]}; shuffled: one fixed permutation of the positions")
    runs = mnist1d_table(datasets, seeds=settings.seeds, steps=settings.steps,
                         progress=progress)
    results["mnist1d"] = {"runs": [r.record() for r in runs], "table": _table(runs),
                          "published": PUBLISHED_MNIST1D}
    echo(_format_table(results["mnist1d"]["table"], settings))

    _heading(echo, "5. Shift equivariance of the trained models (normal variant, seed "
                   f"{settings.seeds[0]})")
    first = {r.name: r for r in runs if r.variant == "normal" and r.seed == settings.seeds[0]}
    shifts = (1, 2, 4, 8)
    results["shift"] = {name: shift_report(run.model, plain.x_test, plain.y_test,
                                           shifts=shifts) for name, run in first.items()}
    echo(_format_shift(results["shift"], shifts))

    _heading(echo, f"6. Sample efficiency: {', '.join(settings.size_models)} on "
                   f"{', '.join(map(str, settings.sizes))} training examples")
    size_runs = sample_efficiency(plain, settings.sizes, models=settings.size_models,
                                  seeds=settings.seeds, steps=settings.steps, reuse=runs,
                                  progress=progress)
    results["sample_efficiency"] = [r.record() for r in size_runs]
    echo(_format_sizes(size_runs, settings))

    _heading(echo, f"7. Files in {out}/")
    results["figures"] = _figures(out, first, plain, results)
    results["weights"] = _weights(out, first)
    results["seconds"] = time.perf_counter() - began
    with atomic_open(out / "results.json") as file:
        file.write(json.dumps(results, indent=1).encode())
    for path in [*results["figures"].values(), *results["weights"].values()]:
        echo(f"   {path}")
    echo(f"   {out / 'results.json'}")
    echo(f"\nTour finished in {results['seconds']:.0f} s.")
    return results


def _heading(echo: Callable[[str], None], title: str) -> None:
    echo(f"\n{title}\n{'-' * len(title)}")


def _ladder(rows: dict[str, list[dict]], echo: Callable[[str], None]) -> dict[str, Any]:
    for row in rows["down"]:
        above = "" if row["vs_above"] is None else f", output moved {row['vs_above']:.2f}"
        echo(f"   {row['rung']:44} {row['params']:>7,} params, shift error "
             f"{row['shift_error_interior']:.1e} inside{above}")
    exact = max(row["vs_above"] for row in rows["up"] if row["vs_above"] is not None)
    equivariant = max(row["shift_error"] for row in rows["up"])
    echo(f"   back up (untie, to_dense of a circular conv): outputs agree to {exact:.1e}, "
         f"shift error {equivariant:.1e}: exact embeddings")
    return {"down": rows["down"], "up": rows["up"], "max_up_change": exact,
            "exact": bool(exact < 1e-12)}


def _table(runs: Sequence[Run]) -> list[dict[str, Any]]:
    rows = []
    for variant in dict.fromkeys(r.variant for r in runs):
        for name in MNIST1D_MODELS:
            mine = [r for r in runs if r.variant == variant and r.name == name]
            if not mine:
                continue
            mean, std = summarize(r.test_acc for r in mine)
            rows.append({"model": name, "variant": variant, "params": mine[0].params,
                         "test_acc_mean": mean, "test_acc_std": std,
                         "test_acc": [r.test_acc for r in mine], "seeds": [r.seed for r in mine],
                         "seconds_mean": summarize(r.seconds for r in mine)[0],
                         "published": PUBLISHED_MNIST1D.get(variant, {}).get(name)})
    return rows


def _format_table(rows: list[dict[str, Any]], settings: TourSettings) -> str:
    def cell(row: dict[str, Any] | None) -> str:
        if row is None:
            return f"{'-':>24}"
        acc = f"{100 * row['test_acc_mean']:.1f} +- {100 * row['test_acc_std']:.1f}"
        paper = "-" if row["published"] is None else f"{100 * row['published']:.0f}"
        return f"{acc:>13} {paper:>4} {row['seconds_mean']:>5.1f}"

    by_key = {(r["model"], r["variant"]): r for r in rows}
    lines = [f"   {'':34} {'':>8}  {'normal':^24}  {'positions shuffled':^24}",
             (f"   {'model':34} {'params':>8}  {'acc %':>13} {'pub':>4} {'sec':>5}  "
              f"{'acc %':>13} {'pub':>4} {'sec':>5}")]
    for name in MNIST1D_MODELS:
        normal, shuffled = by_key.get((name, "normal")), by_key.get((name, "shuffled"))
        params = (normal or shuffled or {}).get("params", 0)
        lines.append(f"   {MODEL_LABELS[name]:34} {params:>8,}  {cell(normal)}  {cell(shuffled)}")
    lines.append(f"   {'GRU (published only)':34} {'':>8}  {'-':>13} {'91':>4} {'':>5}")
    count = len(settings.seeds)
    lines.append(f"   acc: final test accuracy, mean +- std over {count} seed"
                 f"{'s' if count > 1 else ''}; pub: Greydanus & Kobak (2024); sec: train time")
    if settings.quick:
        lines.append(f"   (--quick: {settings.steps} steps instead of 6000; accuracies are "
                     "not comparable to the paper's)")
    return "\n".join(lines)


def _format_shift(reports: dict[str, dict[str, Any]], shifts: Sequence[int]) -> str:
    slid = " ".join(f"{f'+{s}':>6}" for s in shifts)
    lines = [(f"   {'':10} {'test':>6}  {'accuracy, input slid by':^{7 * len(shifts) - 1}}  "
             f"{'same':>6}  {'feature':>8}"),
             f"   {'model':10} {'acc %':>6}  {slid}  {'@+1 %':>6}  {'shift err':>9}"]
    for name, rep in reports.items():
        accs = " ".join(f"{100 * rep['acc_shifted'][str(s)]:>6.1f}" for s in shifts)
        err = "-" if rep["feature_shift_error"] is None else f"{rep['feature_shift_error']:.3f}"
        lines.append(f"   {name:10} {100 * rep['acc']:>6.1f}  {accs}  "
                     f"{100 * rep['agreement'][str(shifts[0])]:>6.1f}  {err:>9}")
    lines.append("   slid: content moved right, zeros in; same @+1: predictions unchanged by a "
                 "shift of 1.\n   feature shift err: ||f(S x) - S' f(x)|| / ||f(x)|| of the "
                 "layers before Flatten, input\n   slid by their total stride (8), output by one "
                 "cell: 0 = equivariant; zero padding leaves\n   a border error even for the "
                 "CNN.")
    return "\n".join(lines)


def _format_sizes(runs: Sequence[Run], settings: TourSettings) -> str:
    lines = [f"   {'model':10} " + " ".join(f"{f'n={n}':>9}" for n in settings.sizes)]
    for name in settings.size_models:
        cells = []
        for n in settings.sizes:
            accs = [r.test_acc for r in runs if r.name == name and r.train_size == n]
            cells.append(f"{100 * np.mean(accs):>8.1f}%")
        lines.append(f"   {name:10} " + " ".join(cells))
    return "\n".join(lines)


def _figures(out: Path, models: dict[str, Run], plain: Any,
             results: dict[str, Any]) -> dict[str, str]:
    from . import viz

    spatial = {name: models[name].model for name in ("cnn", "lc", "dense") if name in models}
    example = int(np.flatnonzero(plain.y_test == plain.y_test[0])[0])
    records = results["sample_efficiency"]
    published = {"mlp": PUBLISHED_MNIST1D["normal"]["mlp"],
                 "cnn": PUBLISHED_MNIST1D["normal"]["cnn"]}
    figures = {
        "first_layers": viz.plot_first_layers(spatial),
        "feature_maps": viz.plot_feature_maps(spatial, plain.x_test[example],
                                              label=int(plain.y_test[example])),
        "sample_efficiency": viz.plot_sample_efficiency(records, published=published),
        "training_curves": viz.plot_training_curves(
            [r for r in results["mnist1d"]["runs"]
             if r["seed"] == results["settings"]["seeds"][0]]),
    }
    return {name: str(viz.save_figure(fig, out / f"{name}.png")) for name, fig in figures.items()}


def _weights(out: Path, models: dict[str, Run]) -> dict[str, str]:
    paths = {}
    for name, run in models.items():
        path = out / "weights" / f"mnist1d-{name}-seed{run.seed}.safetensors"
        train.save_checkpoint(path, run.model, meta={"model": name, "seed": run.seed,
                                                     "test_acc": run.test_acc})
        paths[name] = str(path)
    return paths
