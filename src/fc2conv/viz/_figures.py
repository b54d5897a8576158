"""Figures for the tour: what the rungs learn, what they compute, how they scale with data.

Matplotlib is imported when a figure is drawn, never at ``import fc2conv``. Figures are built
with :class:`matplotlib.figure.Figure` directly (no pyplot, no global state, no GUI backend),
so they are safe in scripts, tests and threads.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import atomic_open
from .._errors import ArgumentError, require

__all__ = [
    "plot_feature_maps",
    "plot_first_layers",
    "plot_sample_efficiency",
    "plot_training_curves",
    "save_figure",
]

_COLORS = {"logistic": "#7f7f7f", "mlp": "#d62728", "cnn": "#1f77b4", "lc": "#2ca02c",
           "dense": "#9467bd"}


def _figure(**kwargs: Any) -> Any:
    figure = require("matplotlib.figure", package="matplotlib", purpose="fc2conv.viz",
                     extra="viz")
    return figure.Figure(**kwargs)


def save_figure(figure: Any, path: str | os.PathLike[str], *, dpi: int = 120) -> Path:
    """Write ``figure`` as a PNG at ``path`` atomically (a reader never sees half a file).

    >>> import os, tempfile
    >>> from fc2conv.viz import plot_sample_efficiency, save_figure
    >>> fig = plot_sample_efficiency([{"model": "cnn", "train_size": 250, "test_acc": 0.5},
    ...                               {"model": "cnn", "train_size": 500, "test_acc": 0.7}])
    >>> path = save_figure(fig, os.path.join(tempfile.mkdtemp(), "acc.png"))
    >>> open(path, "rb").read(4)
    b'\\x89PNG'
    """
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    target = Path(path)
    with atomic_open(target) as file:
        file.write(buffer.getvalue())
    return target


def _weights_2d(layer: Any, channel: int) -> tuple[np.ndarray, str, str]:
    """One picture per rung of the first layer's weights for input channel 0."""
    w = np.asarray(layer.weight)
    kind = type(layer).__name__
    if kind.startswith("Conv"):  # (C_out, C_in, K)
        return w[:, 0, :], "kernel tap a", "output channel"
    if kind.startswith("LocallyConnected"):  # (S_out, C_out, C_in, K)
        return w[:, channel, 0, :], "kernel tap a", "output position i"
    if kind.startswith("DenseGrid"):  # (S_out, C_out, C_in, S_in)
        return w[:, channel, 0, :], "input position k", "output position i"
    raise ArgumentError(f"plot_first_layers: no picture for a first layer of type {kind}")


def plot_first_layers(models: Mapping[str, Any], *, channel: int = 0) -> Any:
    """The first layer's weights of each trained spatial model, side by side.

    ``models``: name -> ``nn.Sequential`` whose first layer is a ``Conv1d`` (shown as all
    kernels, ``(C_out, K)``), a ``LocallyConnected1d`` (output channel ``channel``'s kernel at
    every position, ``(S_out, K)``: the untied weights) or a ``DenseGrid1d`` (its
    ``W[i, k]``, ``(S_out, S_in)``: locality shows as a band, if it was learned).

    >>> from fc2conv.models import mnist1d_model
    >>> from fc2conv.viz import plot_first_layers
    >>> fig = plot_first_layers({n: mnist1d_model(n, rng=0) for n in ("cnn", "lc", "dense")})
    >>> len(fig.axes)
    6
    """
    if not models:
        raise ArgumentError("plot_first_layers needs at least one model")
    fig = _figure(figsize=(4.2 * len(models), 4.0), layout="constrained")
    axes = fig.subplots(1, len(models), squeeze=False)[0]
    for ax, (name, model) in zip(axes, models.items()):
        image, xlabel, ylabel = _weights_2d(model[0], channel)
        limit = float(np.abs(image).max()) or 1.0
        shown = ax.imshow(image, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto",
                          interpolation="nearest")
        ax.set(title=f"{name}: first layer {image.shape[0]} x {image.shape[1]}",
               xlabel=xlabel, ylabel=ylabel)
        ax.yaxis.get_major_locator().set_params(integer=True)
        fig.colorbar(shown, ax=ax, shrink=0.8)
    fig.suptitle("Learned first-layer weights (channel-0 input)")
    return fig


def plot_feature_maps(models: Mapping[str, Any], x: np.ndarray, *, label: Any = None) -> Any:
    """One input signal ``x: (1, L)`` and each model's first feature map ``(C_out, S_out)``
    (after the first ReLU), one panel per model.

    >>> import numpy as np
    >>> from fc2conv.models import mnist1d_model
    >>> from fc2conv.viz import plot_feature_maps
    >>> fig = plot_feature_maps({"cnn": mnist1d_model("cnn", rng=0)}, np.zeros((1, 40)))
    >>> len(fig.axes)
    3
    """
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] != 1:
        raise ArgumentError(f"plot_feature_maps takes one example x of shape (1, L); got "
                            f"shape {x.shape}")
    fig = _figure(figsize=(4.2 * max(1, len(models)), 5.5), layout="constrained")
    grid = fig.add_gridspec(2, max(1, len(models)), height_ratios=(1, 2.2))
    top = fig.add_subplot(grid[0, :])
    top.plot(x[0], color="k", lw=1.5)
    top.set(title=f"input signal (label {label})" if label is not None else "input signal",
            xlabel="position", xlim=(-0.5, x.shape[1] - 0.5))
    for column, (name, model) in enumerate(models.items()):
        maps = model[1](model[0](x[None].astype(model[0].weight.dtype)))[0]
        model.forget_inputs()
        ax = fig.add_subplot(grid[1, column])
        shown = ax.imshow(maps, cmap="magma", aspect="auto", interpolation="nearest")
        ax.set(title=f"{name}: ReLU(first layer) {maps.shape[0]} x {maps.shape[1]}",
               xlabel="output position", ylabel="channel")
        ax.yaxis.get_major_locator().set_params(integer=True)
        fig.colorbar(shown, ax=ax, shrink=0.8)
    return fig


def plot_sample_efficiency(records: Sequence[Mapping[str, Any]], *,
                           published: Mapping[str, float] | None = None) -> Any:
    """Test accuracy vs training-set size, one line per model (mean and std over seeds).

    ``records``: dicts with ``model``, ``train_size`` and ``test_acc`` (e.g.
    :meth:`fc2conv.experiments.Run.record`). ``published``: model -> accuracy at the full
    size, drawn as crosses.
    """
    if not records:
        raise ArgumentError("plot_sample_efficiency needs at least one record")
    fig = _figure(figsize=(6.0, 4.2), layout="constrained")
    ax = fig.add_subplot()
    for name in dict.fromkeys(r["model"] for r in records):
        sizes = sorted({r["train_size"] for r in records if r["model"] == name})
        accs = [[r["test_acc"] for r in records if r["model"] == name and r["train_size"] == n]
                for n in sizes]
        means = [float(np.mean(a)) for a in accs]
        stds = [float(np.std(a)) for a in accs]
        ax.errorbar(sizes, means, yerr=stds, marker="o", capsize=3, label=name,
                    color=_COLORS.get(name))
        if published and name in published:
            ax.plot([max(sizes)], [published[name]], marker="x", ms=9, color=_COLORS.get(name),
                    ls="none")
    ax.set_xscale("log", base=2)
    ax.set(xlabel="training examples", ylabel="test accuracy", ylim=(0, 1),
           title="MNIST-1D: accuracy vs training-set size" +
                 (" (x: published)" if published else ""))
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def plot_training_curves(records: Sequence[Mapping[str, Any]]) -> Any:
    """Test accuracy during training, one line per record (``model``, ``variant`` and its
    ``curve`` of ``{"step", "test_acc"}``)."""
    if not records:
        raise ArgumentError("plot_training_curves needs at least one record")
    fig = _figure(figsize=(6.5, 4.2), layout="constrained")
    ax = fig.add_subplot()
    for r in records:
        steps = [point["step"] for point in r["curve"]]
        accs = [point["test_acc"] for point in r["curve"]]
        ax.plot(steps, accs, color=_COLORS.get(r["model"]),
                ls="-" if r.get("variant", "normal") == "normal" else "--",
                label=f"{r['model']} ({r.get('variant', 'normal')})")
    ax.set(xlabel="step", ylabel="test accuracy", ylim=(0, 1),
           title="MNIST-1D test accuracy during training (dashed: positions shuffled)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncols=2)
    return fig
