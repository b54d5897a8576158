"""The experiments behind ``fc2conv tour``: the MNIST-1D table, sample efficiency, and how
shift equivariant the trained models are.

Settings follow Greydanus & Kobak's reference code: Adam with learning rate 1e-2, batches of
100, 6,000 steps, the 4,000 / 1,000 split of :func:`fc2conv.data.mnist1d`. The published test
accuracies are in :data:`PUBLISHED_MNIST1D`.

>>> from fc2conv.data import mnist1d
>>> from fc2conv.experiments import train_mnist1d
>>> run = train_mnist1d("cnn", mnist1d(num_samples=500, cache=False), steps=50, progress=False)
>>> run.params, 0.0 <= run.test_acc <= 1.0
(5210, True)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import nn
from ._errors import ArgumentError
from .analysis import count_params, shift, shift_error
from .data import Dataset, stratified_split
from .models import MNIST1D_MODELS, mnist1d_model
from .train import Adam, History, fit

__all__ = [
    "MODEL_LABELS",
    "PUBLISHED_MNIST1D",
    "Run",
    "feature_extractor",
    "mnist1d_table",
    "sample_efficiency",
    "shift_report",
    "subset",
    "summarize",
    "train_mnist1d",
]

# Greydanus & Kobak (ICML 2024), table 1: test accuracy on MNIST-1D, 4,000 training examples.
PUBLISHED_MNIST1D: dict[str, dict[str, float]] = {
    "normal": {"logistic": 0.32, "mlp": 0.68, "cnn": 0.94, "gru": 0.91},
    "shuffled": {"logistic": 0.32, "mlp": 0.68, "cnn": 0.56},
}
MODEL_LABELS = {
    "logistic": "logistic regression",
    "mlp": "MLP (residual, width 100)",
    "cnn": "CNN (paper's ConvBase)",
    "lc": "locally connected (CNN untied)",
    "dense": "dense-on-grid (CNN, no locality)",
}


@dataclass
class Run:
    """One trained model: its name, variant, seed, history and final numbers."""

    name: str
    variant: str
    seed: int
    train_size: int
    model: nn.Module
    history: History
    params: int
    test_acc: float
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        """The JSON-ready summary (no arrays, no model)."""
        return {"model": self.name, "variant": self.variant, "seed": self.seed,
                "train_size": self.train_size, "params": self.params,
                "test_acc": self.test_acc, "seconds": self.seconds,
                "steps": self.history.steps,
                "curve": [{"step": r["step"], "test_acc": r.get("test_acc")}
                          for r in self.history.records], **self.extra}


def subset(dataset: Dataset, size: int, seed: int = 0) -> Dataset:
    """A class-balanced subset of ``size`` training examples of ``dataset`` (test set kept).

    >>> from fc2conv.data import mnist1d
    >>> from fc2conv.experiments import subset
    >>> small = subset(mnist1d(num_samples=500, cache=False), 100)
    >>> small.x_train.shape, sorted(set(map(int, small.y_train)))[:3]
    ((100, 1, 40), [0, 1, 2])
    """
    n = len(dataset.y_train)
    if isinstance(size, bool) or not isinstance(size, int) or not 0 < size <= n:
        raise ArgumentError(f"size must be an int in [1, {n}]; got {size!r}")
    if size == n:
        return dataset
    keep, _ = stratified_split(dataset.y_train, 1.0 - size / n, seed=seed)
    keep = np.sort(keep)
    return Dataset(dataset.x_train[keep], dataset.y_train[keep], dataset.x_test,
                   dataset.y_test, name=f"{dataset.name}[:{size}]", classes=dataset.classes,
                   meta=dict(dataset.meta))


def train_mnist1d(name: str, dataset: Dataset, *, seed: int = 0, steps: int = 6000,
                  lr: float = 1e-2, batch_size: int = 100, variant: str = "normal",
                  eval_every: int = 250, progress: bool | str = True) -> Run:
    """Train one :func:`~fc2conv.models.mnist1d_model` with the paper's settings.

    ``seed`` seeds both the initialisation and the batch order, so a run is reproducible.
    ``dataset``: ``x: (N, 1, 40)``; the test accuracy is the one after the last step.
    """
    model = mnist1d_model(name, rng=seed)
    history = fit(model, Adam(model, lr=lr), dataset.x_train, dataset.y_train, steps=steps,
                  batch_size=batch_size, seed=seed, x_test=dataset.x_test,
                  y_test=dataset.y_test, eval_every=min(eval_every, max(steps, 1)),
                  progress=progress)
    return Run(name, variant, seed, len(dataset.y_train), model, history,
               count_params(model), float(history.final.get("test_acc", math.nan)),
               history.seconds)


def summarize(values: Iterable[float]) -> tuple[float, float]:
    """Mean and (population) standard deviation; std is 0 for a single value.

    >>> from fc2conv.experiments import summarize
    >>> summarize([0.9, 0.92, 0.94])
    (0.92, 0.0163)
    """
    array = np.asarray(list(values), dtype=np.float64)
    if array.size == 0:
        raise ArgumentError("summarize needs at least one value")
    return float(array.mean()), float(array.std())


def mnist1d_table(datasets: dict[str, Dataset], *, models: Sequence[str] = MNIST1D_MODELS,
                  seeds: Sequence[int] = (0,), steps: int = 6000,
                  on_run: Callable[[Run], None] | None = None,
                  progress: bool = True) -> list[Run]:
    """Train every model on every dataset variant (e.g. ``{"normal": ..., "shuffled": ...}``)
    for every seed. ``on_run`` sees each finished :class:`Run` (to print or save as you go).
    """
    _check_models(models)
    runs = []
    for variant, dataset in datasets.items():
        for name in models:
            for seed in seeds:
                label = f"{name:8} {variant:8} seed {seed}" if progress else False
                run = train_mnist1d(name, dataset, seed=seed, steps=steps, variant=variant,
                                    progress=label)
                runs.append(run)
                if on_run is not None:
                    on_run(run)
    return runs


def sample_efficiency(dataset: Dataset, sizes: Sequence[int], *,
                      models: Sequence[str] = ("mlp", "lc", "cnn"), seeds: Sequence[int] = (0,),
                      steps: int = 6000, reuse: Sequence[Run] = (),
                      progress: bool = True) -> list[Run]:
    """Test accuracy vs number of training examples: each model trained on a class-balanced
    subset of each size, same steps. Runs in ``reuse`` with a matching (model, seed, size,
    steps) on the "normal" variant are taken instead of training again.
    """
    _check_models(models)
    done = {(r.name, r.seed, r.train_size, r.history.steps): r for r in reuse
            if r.variant == "normal"}
    runs = []
    for size in sizes:
        small = subset(dataset, size)
        for name in models:
            for seed in seeds:
                run = done.get((name, seed, len(small.y_train), steps))
                if run is None:
                    label = f"{name:8} n={size:<6} seed {seed}" if progress else False
                    run = train_mnist1d(name, small, seed=seed, steps=steps, progress=label)
                runs.append(run)
    return runs


def feature_extractor(model: nn.Sequential) -> nn.Sequential | None:
    """The layers of ``model`` before its first ``Flatten``: the spatial feature maps
    ``(N, C, *S)``; ``None`` when the model flattens first (logistic, MLP)."""
    layers = list(model)
    cut = next((i for i, layer in enumerate(layers) if isinstance(layer, nn.Flatten)), 0)
    return nn.Sequential(*layers[:cut]) if cut else None


def shift_report(model: nn.Sequential, x: np.ndarray, y: np.ndarray, *,
                 shifts: Sequence[int] = (1, 2, 4, 8)) -> dict[str, Any]:
    """How a trained model responds to translating its input (``x: (N, C, L)``).

    - ``acc_shifted[s]``: test accuracy with every input slid by ``s`` positions (content
      moved right, zeros moved in: the signal seen through a window);
    - ``agreement[s]``: fraction of predictions unchanged by that shift;
    - ``feature_shift_error``: :func:`~fc2conv.analysis.shift_error` of the feature
      extractor for a shift by the total stride ``T`` (one cell of the last feature map), the
      equivariance the derivation asks for; ``None`` for models that flatten first.
    """
    base = model(x).argmax(axis=1)
    report: dict[str, Any] = {"acc": float(np.mean(base == y)), "acc_shifted": {},
                              "agreement": {}}
    for s in shifts:
        pred = model(shift(x, s, axes=-1, mode="zeros")).argmax(axis=1)
        report["acc_shifted"][str(s)] = float(np.mean(pred == y))
        report["agreement"][str(s)] = float(np.mean(pred == base))
    features = feature_extractor(model)
    report["feature_shift_error"] = None
    if features is not None:
        total_stride = x.shape[-1] // features(x[:1]).shape[-1]
        report["feature_shift_error"] = shift_error(features, x, total_stride, axes=-1,
                                                    mode="zeros", output_shift=1)
        report["feature_shift"] = total_stride
    model.forget_inputs()
    return report


def _check_models(models: Sequence[str]) -> None:
    unknown = [m for m in models if m not in MNIST1D_MODELS]
    if unknown:
        raise ArgumentError(f"models must be among {MNIST1D_MODELS}; got {unknown}")

