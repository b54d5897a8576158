"""The training loop: mini-batches, a progress bar, evaluation, checkpoints and exact resume.

Batch order is a pure function of ``(seed, epoch)``: epoch ``e`` visits the training set in
the order ``default_rng([seed, e]).permutation(N)``. So a run resumed from a checkpoint at
step ``k`` draws exactly the batches the uninterrupted run would have drawn, and (with the
optimiser state restored) reaches bit-identical parameters.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import ArgumentError, ShapeError
from ._checkpoint import load_checkpoint, save_checkpoint
from ._losses import accuracy, cross_entropy

__all__ = ["History", "evaluate", "fit"]


@dataclass
class History:
    """What :func:`fit` measured: one record per evaluation, and the wall time."""

    records: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    steps: int = 0

    @property
    def final(self) -> dict[str, float]:
        return self.records[-1] if self.records else {}


def evaluate(model: Any, x: np.ndarray, y: np.ndarray, *,
             loss: Callable[..., tuple[Any, Any]] = cross_entropy,
             batch_size: int = 1000) -> tuple[float, float]:
    """Mean loss and accuracy of ``model`` on ``(x, y)``, in batches, without training state.

    ``x: (N, *example_shape)``, ``y: (N,)`` class indices -> ``(loss, accuracy)``.

    >>> import numpy as np
    >>> from fc2conv import nn
    >>> from fc2conv.train import evaluate
    >>> model = nn.Linear(2, 2, rng=0)
    >>> model.weight[...] = [[1, 0], [0, 1]]; model.bias[...] = 0
    >>> x = np.array([[3.0, 0.0], [0.0, 3.0], [3.0, 0.0]], np.float32)
    >>> evaluate(model, x, np.array([0, 1, 1]))[1]
    0.6666666666666666
    """
    _check_data(x, y, "x", "y")
    total_loss, correct = 0.0, 0.0
    for start in range(0, len(x), batch_size):
        xb, yb = x[start:start + batch_size], y[start:start + batch_size]
        logits = model(xb)
        value, _ = loss(logits, yb)
        total_loss += float(value) * len(xb)
        correct += accuracy(logits, yb) * len(xb)
    model.forget_inputs()
    return total_loss / len(x), correct / len(x)


def fit(
    model: Any,
    optimizer: Any,
    x: np.ndarray,
    y: np.ndarray,
    *,
    steps: int,
    batch_size: int = 100,
    loss: Callable[..., tuple[Any, Any]] = cross_entropy,
    seed: int = 0,
    x_test: np.ndarray | None = None,
    y_test: np.ndarray | None = None,
    eval_every: int | None = None,
    checkpoint: str | Path | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    progress: bool | str = True,
) -> History:
    """Train ``model`` for ``steps`` mini-batch steps of ``optimizer``.

    Each step: a batch of ``batch_size`` examples (reshuffled every epoch, seeded), forward,
    ``loss`` (a function ``(output, y) -> (value, d value / d output)``), backward, update.
    The progress bar (tqdm) shows the running training loss and accuracy and the latest test
    accuracy; pass ``progress="Name"`` to label it, ``False`` to hide it.

    Args:
        model: an :mod:`fc2conv.nn` layer, ``x: (N, *example_shape)`` -> ``(N, K)`` logits.
        optimizer: e.g. ``train.Adam(model, lr=1e-2)``.
        x, y: training data ``(N, ...)`` and integer labels ``(N,)``.
        steps: number of updates.
        x_test, y_test: evaluated every ``eval_every`` steps (default: 10 times per run) and
            at the end.
        checkpoint: path of a safetensors checkpoint written every ``checkpoint_every``
            steps and at the end (model, optimiser, step, seed).
        resume: continue from ``checkpoint`` if it exists; the result is the one an
            uninterrupted run gives.

    Returns:
        a :class:`History` with ``records`` (step, train_loss, train_acc, and test_loss /
        test_acc when test data is given), ``seconds`` and ``steps``.

    >>> import numpy as np
    >>> from fc2conv import nn, train
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((200, 2)).astype(np.float32); y = (x[:, 0] > 0).astype(np.int64)
    >>> model = nn.Linear(2, 2, rng=0)
    >>> history = train.fit(model, train.SGD(model, lr=0.5), x, y, steps=100, batch_size=20,
    ...                     x_test=x, y_test=y, progress=False)
    >>> history.final["test_acc"] > 0.95
    True
    """
    _check_data(x, y, "x", "y")
    if (x_test is None) != (y_test is None):
        raise ArgumentError("pass both x_test and y_test, or neither")
    if x_test is not None:
        _check_data(x_test, y_test, "x_test", "y_test")
    if not isinstance(steps, int) or steps < 0:
        raise ArgumentError(f"steps must be a non-negative int; got {steps!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ArgumentError(f"batch_size must be a positive int; got {batch_size!r}")
    batch_size = min(batch_size, len(x))
    eval_every = eval_every or max(1, steps // 10)
    checkpoint_every = checkpoint_every or eval_every
    if resume and checkpoint is None:
        raise ArgumentError("resume=True needs a checkpoint path")

    history, start_step = History(), 0
    if resume and Path(checkpoint).is_file():
        meta = load_checkpoint(checkpoint, model, optimizer)
        if meta.get("seed") != seed or meta.get("batch_size") != batch_size:
            raise ArgumentError(
                f"checkpoint {str(checkpoint)!r} was written with seed={meta.get('seed')}, "
                f"batch_size={meta.get('batch_size')}; resuming with seed={seed}, "
                f"batch_size={batch_size} would not continue the same run"
            )
        start_step = int(meta["step"])
        history.records = list(meta.get("records", []))
        history.seconds = float(meta.get("seconds", 0.0))

    per_epoch = len(x) // batch_size  # drop the ragged last batch: every step is full-size
    bar = _progress_bar(progress, steps, start_step)
    running_loss, running_acc, began = [], [], time.perf_counter()
    for step in range(start_step, steps):
        epoch, position = divmod(step, per_epoch)
        order = _epoch_order(seed, epoch, len(x))
        index = order[position * batch_size:(position + 1) * batch_size]
        logits = model(x[index])
        value, grad = loss(logits, y[index])
        optimizer.zero_grad()
        model.backward(grad)
        optimizer.step()
        running_loss.append(float(value))
        running_acc.append(accuracy(logits, y[index]))
        done = step + 1
        if done % eval_every == 0 or done == steps:
            record = {"step": done, "train_loss": float(np.mean(running_loss)),
                      "train_acc": float(np.mean(running_acc))}
            running_loss, running_acc = [], []
            if x_test is not None:
                record["test_loss"], record["test_acc"] = evaluate(model, x_test, y_test,
                                                                   loss=loss)
            history.records.append(record)
        if bar is not None:
            shown = {"loss": f"{value:.3f}"}
            if history.records and "test_acc" in history.records[-1]:
                shown["test_acc"] = f"{history.records[-1]['test_acc']:.3f}"
            bar.set_postfix(shown, refresh=False)
            bar.update(1)
        if checkpoint is not None and (done % checkpoint_every == 0 or done == steps):
            save_checkpoint(checkpoint, model, optimizer, meta={
                "step": done, "seed": seed, "batch_size": batch_size,
                "records": history.records,
                "seconds": history.seconds + time.perf_counter() - began})
    if bar is not None:
        bar.close()
    model.forget_inputs()
    history.seconds += time.perf_counter() - began
    history.steps = steps
    return history


def _epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n)


def _check_data(x: Any, y: Any, x_name: str, y_name: str) -> None:
    if x is None or y is None or len(x) == 0:
        raise ArgumentError(f"{x_name} and {y_name} must be non-empty arrays")
    if getattr(y, "ndim", None) != 1 or len(y) != len(x):
        raise ShapeError(
            f"{y_name} must have shape (N,) = ({len(x)},) to match {x_name} of shape "
            f"{tuple(x.shape)}; got shape {tuple(getattr(y, 'shape', ()))}"
        )


def _progress_bar(progress: bool | str, steps: int, start: int) -> Any:
    if not progress:
        return None
    from tqdm.auto import tqdm

    label = progress if isinstance(progress, str) else "training"
    return tqdm(total=steps, initial=start, desc=label, unit="step", leave=True,
                mininterval=0.5, dynamic_ncols=True)
