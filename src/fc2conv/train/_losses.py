"""Losses as functions returning ``(value, grad)``, where ``grad`` is d(value)/d(input).

The gradient is what a model's ``backward`` takes, so one training step reads::

    loss, grad = cross_entropy(model(x), labels)
    model.backward(grad)
    optimizer.step()

Everything is computed in the input's dtype (float32 training stays float32) and in the input's
array namespace (NumPy, or any array-API library through array-api-compat). ``value`` is a 0-d
array of that dtype (a NumPy scalar for NumPy input); ``float(value)`` gives a Python number.
"""

from __future__ import annotations

from typing import Any

import array_api_compat

from .._errors import ArgumentError, DTypeError, ShapeError
from .._validate import check_arrays

__all__ = ["accuracy", "cross_entropy", "log_softmax", "mse"]

_REDUCTIONS = ("mean", "sum")


def _check_reduction(reduction: Any) -> str:
    if reduction not in _REDUCTIONS:
        raise ArgumentError(f"reduction must be 'mean' or 'sum'; got {reduction!r}")
    return reduction


def _log_softmax(xp: Any, logits: Any) -> Any:
    # Shifting by the row maximum keeps every exp() argument <= 0: no overflow for logits of
    # any size, and the largest term is exactly 1, so the log's argument is in [1, K].
    shifted = logits - xp.max(logits, axis=-1, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=-1, keepdims=True))


def log_softmax(logits: Any) -> Any:
    """``log(softmax(logits))`` along the last axis, without overflow for large logits.

    ``logits: (..., K)`` float32 or float64 with ``K >= 1``; returns the same shape and dtype.

    >>> import numpy as np
    >>> from fc2conv.train import log_softmax
    >>> log_softmax(np.array([[0.0, 0.0], [1e4, 0.0]])).tolist()
    [[-0.6931471805599453, -0.6931471805599453], [0.0, -10000.0]]
    """
    xp = check_arrays(logits=logits)
    if logits.ndim < 1 or logits.shape[-1] == 0:
        raise ShapeError(
            f"logits must have shape (..., K) with K >= 1 classes; got shape "
            f"{tuple(logits.shape)}"
        )
    return _log_softmax(xp, logits)


def _check_classification(logits: Any, labels: Any) -> Any:
    """Check ``logits: (N, K)`` float and ``labels: (N,)`` integer in ``[0, K)``; return xp."""
    xp = check_arrays(logits=logits)
    if logits.ndim != 2 or logits.shape[0] == 0 or logits.shape[1] == 0:
        raise ShapeError(
            f"logits must have shape (N, K) with N >= 1 examples and K >= 1 classes; got shape "
            f"{tuple(logits.shape)}"
            + (". For a single example use logits[None]" if logits.ndim == 1 else "")
        )
    n, k = logits.shape
    if isinstance(labels, (list, tuple)) or not hasattr(labels, "dtype"):
        raise DTypeError(
            f"labels must be an integer array of shape ({n},); got {type(labels).__name__}. "
            "Wrap Python data with numpy.asarray(labels)"
        )
    try:
        same_library = array_api_compat.array_namespace(labels) is xp
    except TypeError:
        same_library = False
    if not same_library:
        raise DTypeError(
            f"labels is a {type(labels).__module__} array but logits is a "
            f"{type(logits).__module__} array; pass arrays of one library"
        )
    if not xp.isdtype(labels.dtype, "integral"):
        raise DTypeError(
            f"labels must hold integer class indices (an integer dtype); got dtype "
            f"{labels.dtype}. Convert with labels.astype(int) if the values are whole numbers"
        )
    if tuple(labels.shape) != (n,):
        raise ShapeError(
            f"labels must have shape (N,) = ({n},) to match logits of shape {(n, k)}; got shape "
            f"{tuple(labels.shape)}"
        )
    bad = (labels < 0) | (labels >= k)
    if bool(xp.any(bad)):
        where = int(xp.nonzero(bad)[0][0])
        raise ArgumentError(
            f"labels must be class indices in [0, K) = [0, {k}); got {int(labels[where])} at "
            f"index {where}"
        )
    return xp


def _one_hot(xp: Any, labels: Any, k: int) -> Any:
    return labels[:, None] == xp.arange(k, dtype=labels.dtype)[None, :]


def cross_entropy(logits: Any, labels: Any, *, reduction: str = "mean") -> tuple[Any, Any]:
    """Softmax cross-entropy of ``logits: (N, K)`` against class indices ``labels: (N,)``.

    ``value = -sum_n log_softmax(logits)[n, labels[n]]``, divided by ``N`` when
    ``reduction="mean"`` (as ``torch.nn.functional.cross_entropy``). Returns ``(value, grad)``
    with ``grad = (softmax(logits) - one_hot(labels)) / N`` (no ``/ N`` for ``"sum"``), shape
    ``(N, K)`` in the logits' dtype. ``labels`` are integers in ``[0, K)``.

    >>> import numpy as np
    >>> from fc2conv.train import cross_entropy
    >>> logits = np.array([[0.0, 0.0], [3.0, -3.0]])
    >>> loss, grad = cross_entropy(logits, np.array([0, 1]))
    >>> round(float(loss), 6), grad.round(4).tolist()
    (3.347811, [[-0.25, 0.25], [0.4988, -0.4988]])
    """
    reduction = _check_reduction(reduction)
    xp = _check_classification(logits, labels)
    n, k = logits.shape
    logp = _log_softmax(xp, logits)
    target = _one_hot(xp, labels, k)
    # where(), not one_hot * logp: a masked logit of -inf would make 0 * -inf = nan.
    total = -xp.sum(xp.where(target, logp, xp.zeros_like(logp)))
    grad = xp.exp(logp) - xp.astype(target, logits.dtype)
    if reduction == "mean":
        return total / n, grad / n
    return total, grad


def mse(pred: Any, target: Any, *, reduction: str = "mean") -> tuple[Any, Any]:
    """Squared error ``sum((pred - target)**2)``, divided by ``pred.size`` for ``"mean"``.

    ``pred`` and ``target`` have one shape ``(*)`` and one float dtype, as
    ``torch.nn.functional.mse_loss``. Returns ``(value, grad)`` with
    ``grad = 2 * (pred - target) / pred.size`` (no division for ``"sum"``), shape ``(*)``.

    >>> import numpy as np
    >>> from fc2conv.train import mse
    >>> loss, grad = mse(np.array([1.0, 2.0]), np.array([0.0, 4.0]))
    >>> float(loss), grad.tolist()
    (2.5, [1.0, -2.0])
    """
    reduction = _check_reduction(reduction)
    xp = check_arrays(pred=pred, target=target)
    if tuple(pred.shape) != tuple(target.shape):
        raise ShapeError(
            f"target must have pred's shape {tuple(pred.shape)}; got shape "
            f"{tuple(target.shape)} (mse does not broadcast)"
        )
    size = 1
    for s in pred.shape:
        size *= s
    if size == 0:
        raise ShapeError(f"pred is empty (shape {tuple(pred.shape)}); mse needs an element")
    diff = pred - target
    total = xp.sum(diff * diff)
    if reduction == "mean":
        return total / size, diff * (2.0 / size)
    return total, 2.0 * diff


def accuracy(logits: Any, labels: Any) -> float:
    """Fraction of rows of ``logits: (N, K)`` whose largest entry is at ``labels: (N,)``.

    Ties go to the first maximal class, as ``argmax``.

    >>> import numpy as np
    >>> from fc2conv.train import accuracy
    >>> accuracy(np.array([[2.0, 1.0], [0.0, 1.0], [5.0, 0.0]]), np.array([0, 1, 1]))
    0.6666666666666666
    """
    xp = _check_classification(logits, labels)
    hits = xp.argmax(logits, axis=-1) == xp.astype(labels, xp.int64)
    return float(xp.sum(xp.astype(hits, xp.int64))) / logits.shape[0]
