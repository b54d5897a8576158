"""The :class:`Dataset` container, the :func:`batches` iterator and a seeded stratified split."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._errors import ArgumentError, DTypeError, ShapeError

__all__ = ["Dataset", "batches", "stratified_split"]

DIGIT_CLASSES = tuple(str(d) for d in range(10))


def read_only(a: np.ndarray) -> np.ndarray:
    """A read-only view of ``a``: cached arrays are shared between callers, so none may write."""
    view = a.view()
    view.flags.writeable = False
    return view


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """A train/test split of a classification data set, channels-first like every fc2conv op.

    ``x_train: (N_train, C, *S)`` and ``x_test: (N_test, C, *S)`` are float32;
    ``y_train: (N_train,)`` and ``y_test: (N_test,)`` are int64 labels in
    ``range(len(classes))``; ``classes`` names the labels; ``meta`` records where the data came
    from and how it was made (source, seeds, split, ...). The arrays are read-only because the
    loaders cache and share them: copy one (``x.copy()``) to change it.

    >>> import numpy as np
    >>> from fc2conv.data import Dataset
    >>> x = np.zeros((6, 1, 4, 4), np.float32)
    >>> y = np.array([0, 1, 2, 0, 1, 2])
    >>> ds = Dataset(x[:4], y[:4], x[4:], y[4:], name="toy", classes=("a", "b", "c"))
    >>> ds
    Dataset(name='toy', train=(4, 1, 4, 4), test=(2, 1, 4, 4), classes=3)
    >>> ds.input_shape, ds.num_classes, ds.y_train.dtype, ds.x_train.flags.writeable
    ((1, 4, 4), 3, dtype('int64'), False)
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    name: str
    classes: tuple[str, ...]
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        classes = tuple(str(c) for c in self.classes)
        if not classes:
            raise ArgumentError("classes must name at least one class; got ()")
        object.__setattr__(self, "classes", classes)
        object.__setattr__(self, "meta", dict(self.meta))
        sample_shape = None
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if not isinstance(x, np.ndarray) or not isinstance(y, np.ndarray):
                raise DTypeError(
                    f"x_{split} and y_{split} must be NumPy arrays; got "
                    f"{type(x).__name__} and {type(y).__name__}"
                )
            if x.ndim < 3:
                raise ShapeError(
                    f"x_{split} must have shape (N, C, *S) with at least one spatial dim; got "
                    f"shape {x.shape}"
                )
            if y.ndim != 1 or y.shape[0] != x.shape[0]:
                raise ShapeError(
                    f"y_{split} must have shape (N,) = ({x.shape[0]},) to match x_{split}; got "
                    f"shape {y.shape}"
                )
            if sample_shape is not None and x.shape[1:] != sample_shape:
                raise ShapeError(
                    f"x_test examples must have the shape of x_train's, {sample_shape}; got "
                    f"{x.shape[1:]}"
                )
            sample_shape = x.shape[1:]
            if x.dtype != np.float32:
                raise DTypeError(f"x_{split} must be float32; got {x.dtype}")
            if y.dtype.kind not in "iu":
                raise DTypeError(f"y_{split} must hold integer labels; got {y.dtype}")
            if y.size and (y.min() < 0 or y.max() >= len(classes)):
                raise ArgumentError(
                    f"y_{split} labels must lie in [0, {len(classes) - 1}] for "
                    f"{len(classes)} classes; got the range [{y.min()}, {y.max()}]"
                )
            object.__setattr__(self, f"x_{split}", read_only(x))
            object.__setattr__(self, f"y_{split}", read_only(y.astype(np.int64, copy=False)))

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape ``(C, *S)`` of one example."""
        return tuple(self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        """``len(classes)``."""
        return len(self.classes)

    def __repr__(self) -> str:
        return (f"Dataset(name={self.name!r}, train={self.x_train.shape}, "
                f"test={self.x_test.shape}, classes={len(self.classes)})")


def _generator(rng: Any, name: str = "rng") -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or (isinstance(rng, (int, np.integer)) and not isinstance(rng, bool)
                       and rng >= 0):
        return np.random.default_rng(rng)
    raise ArgumentError(
        f"{name} must be a non-negative int seed, a numpy.random.Generator or None; "
        f"got {rng!r}"
    )


def batches(x: Any, y: Any, batch_size: int, *, rng: Any, shuffle: bool = True,
            drop_last: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Iterate over one epoch of ``(x_batch, y_batch)`` minibatches.

    ``x: (N, ...)`` and ``y: (N, ...)`` are split along axis 0 into batches of ``batch_size``
    examples (the last one smaller unless ``drop_last``), so each example appears exactly once
    per epoch (or not at all, if dropped). With ``shuffle`` the order is a permutation drawn
    from ``rng``: an int seed gives the same order on every call, a ``numpy.random.Generator``
    advances, so one generator reused over epochs gives a new but reproducible order each
    epoch; ``None`` draws fresh entropy. Arguments are checked and the permutation is drawn
    when ``batches`` is called, not at the first ``next``.

    >>> import numpy as np
    >>> from fc2conv.data import batches
    >>> x, y = np.arange(10.0).reshape(10, 1, 1), np.arange(10)
    >>> [yb.tolist() for _, yb in batches(x, y, 4, rng=0)]
    [[4, 6, 2, 7], [3, 5, 9, 0], [8, 1]]
    >>> [yb.tolist() for _, yb in batches(x, y, 4, rng=0, shuffle=False, drop_last=True)]
    [[0, 1, 2, 3], [4, 5, 6, 7]]
    """
    batch_size = positive_int("batch_size", batch_size)
    n = len(x)
    if len(y) != n:
        raise ShapeError(
            f"x and y must hold the same number of examples; got len(x) = {n} and "
            f"len(y) = {len(y)}"
        )
    gen = _generator(rng)
    order = gen.permutation(n) if shuffle else None
    stop = n - n % batch_size if drop_last else n
    return _iterate(x, y, batch_size, order, stop)


def _iterate(x: Any, y: Any, batch_size: int, order: np.ndarray | None,
             stop: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    for start in range(0, stop, batch_size):
        end = min(start + batch_size, stop)
        if order is None:
            yield x[start:end], y[start:end]
        else:
            idx = order[start:end]
            yield x[idx], y[idx]


def stratified_split(y: Sequence[int] | np.ndarray, test_fraction: float,
                     seed: Any) -> tuple[np.ndarray, np.ndarray]:
    """Split ``range(len(y))`` into shuffled ``(train_idx, test_idx)`` with matching class mix.

    About ``round(test_fraction * N)`` examples go to test, each class contributing in
    proportion to its size (largest remainders settle the rounding), and every class with at
    least two examples keeps at least one in each part. Deterministic for a given ``seed``.

    >>> import numpy as np
    >>> from fc2conv.data import stratified_split
    >>> y = np.array([0] * 8 + [1] * 4)
    >>> tr, te = stratified_split(y, 0.25, seed=0)
    >>> len(tr), len(te), np.bincount(y[te]).tolist(), sorted(np.r_[tr, te]) == list(range(12))
    (9, 3, [2, 1], True)
    """
    y = np.asarray(y)
    if y.ndim != 1:
        raise ShapeError(f"y must have shape (N,); got shape {y.shape}")
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (float, int)) \
            or not 0.0 < test_fraction < 1.0:
        raise ArgumentError(f"test_fraction must be a float in (0, 1); got {test_fraction!r}")
    n = y.shape[0]
    n_test = round(test_fraction * n)
    if not 0 < n_test < n:
        raise ArgumentError(
            f"test_fraction={test_fraction!r} of {n} examples leaves {n_test} for test and "
            f"{n - n_test} for training; both must be at least 1"
        )
    gen = _generator(seed, "seed")
    labels, counts = np.unique(y, return_counts=True)
    quota = counts * (n_test / n)
    take = np.floor(quota).astype(np.int64)
    # largest remainders first; ties go to the smaller label (a stable sort keeps label order)
    extra = np.argsort(-(quota - take), kind="stable")[: n_test - int(take.sum())]
    take[extra] += 1
    # keep one example of each class (of at least two) on both sides when the totals allow
    take = np.where((counts >= 2) & (take == 0), 1, take)
    take = np.where((counts >= 2) & (take == counts), counts - 1, take)
    train_parts, test_parts = [], []
    for label, k in zip(labels, take, strict=True):
        members = gen.permutation(np.flatnonzero(y == label))
        test_parts.append(members[:k])
        train_parts.append(members[k:])
    train_idx = gen.permutation(np.concatenate(train_parts))
    test_idx = gen.permutation(np.concatenate(test_parts))
    return train_idx, test_idx


def positive_int(name: str, value: Any) -> int:
    """Check a positive int argument (``num_samples``, ``batch_size``, ...)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ArgumentError(f"{name} must be a positive int; got {value!r}")
    return int(value)
