"""The training loop, checkpoints and resume, and the d2l "learning a kernel" example."""

from __future__ import annotations

import os

import numpy as np
import pytest
import safetensors.numpy
import torch

from fc2conv import ArgumentError, ShapeError, nn, train
from fc2conv.train import CheckpointError, load_checkpoint, save_checkpoint


def small_cnn(seed=0):
    return nn.Sequential(nn.Conv1d(1, 4, 3, 2, 1, rng=seed), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 8, 3, rng=seed + 1))


def toy_data(n=120, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.standard_normal((n, 1, 16)).astype(np.float32) * 0.3
    x[np.arange(n), 0, 2 + 4 * y] += 2.0  # the class is where the bump is
    return x, y.astype(np.int64)


def params(model):
    return {k: v.copy() for k, v in model.state_dict().items()}


def test_fit_learns_and_is_reproducible():
    x, y = toy_data()
    runs = []
    for _ in range(2):
        model = small_cnn()
        history = train.fit(model, train.Adam(model, lr=1e-2), x, y, steps=60, batch_size=20,
                            x_test=x, y_test=y, seed=3, progress=False)
        runs.append((history, params(model)))
    assert runs[0][0].final["test_acc"] > 0.9
    assert runs[0][0].records == runs[1][0].records  # same seed -> same numbers
    for name, value in runs[0][1].items():
        np.testing.assert_array_equal(value, runs[1][1][name])
    other = small_cnn()
    train.fit(other, train.Adam(other, lr=1e-2), x, y, steps=60, batch_size=20, seed=4,
              progress=False)
    assert not np.array_equal(params(other)["0.weight"], runs[0][1]["0.weight"])


def test_every_epoch_visits_each_example_once():
    x, y = toy_data(50)
    seen = []

    class Spy(nn.Module):
        def forward(self, xb):
            seen.append(xb[:, 0, 0].copy())
            return np.zeros((len(xb), 3), np.float32)

        def backward(self, g):
            return None

    class NoOp:
        def zero_grad(self):
            pass

        def step(self):
            pass

    x = x.copy()
    x[:, 0, 0] = np.arange(50)
    train.fit(Spy(), NoOp(), x, y, steps=10, batch_size=10, progress=False)
    first, second = np.concatenate(seen[:5]), np.concatenate(seen[5:])
    assert sorted(first) == list(range(50)) and sorted(second) == list(range(50))
    assert not np.array_equal(first, second)  # reshuffled every epoch


def test_resume_reaches_the_uninterrupted_result(tmp_path):
    x, y = toy_data()
    straight = small_cnn()
    train.fit(straight, train.Adam(straight, lr=1e-2), x, y, steps=40, batch_size=25,
              x_test=x, y_test=y, eval_every=10, seed=1, progress=False)
    path = tmp_path / "run.safetensors"
    first = small_cnn()
    train.fit(first, train.Adam(first, lr=1e-2), x, y, steps=15, batch_size=25, x_test=x,
              y_test=y, eval_every=10, checkpoint=path, checkpoint_every=5, seed=1,
              progress=False)
    resumed = small_cnn(seed=7)  # different initial weights: all must come from the file
    history = train.fit(resumed, train.Adam(resumed, lr=1e-2), x, y, steps=40, batch_size=25,
                        x_test=x, y_test=y, eval_every=10, checkpoint=path, resume=True,
                        seed=1, progress=False)
    for name, value in params(straight).items():
        np.testing.assert_array_equal(params(resumed)[name], value)
    assert [r["step"] for r in history.records] == [10, 15, 20, 30, 40]
    with pytest.raises(ArgumentError, match="seed"):
        train.fit(resumed, train.Adam(resumed, lr=1e-2), x, y, steps=50, batch_size=25,
                  checkpoint=path, resume=True, seed=2, progress=False)


def test_checkpoint_names_load_into_the_torch_twin(tmp_path):
    model = small_cnn()
    path = save_checkpoint(tmp_path / "m.safetensors", model, meta={"note": "x"})
    twin = torch.nn.Sequential(torch.nn.Conv1d(1, 4, 3, 2, 1), torch.nn.ReLU(),
                               torch.nn.Flatten(), torch.nn.Linear(32, 3))
    tensors = safetensors.numpy.load_file(str(path))
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in tensors.items()})
    x = toy_data(4)[0]
    np.testing.assert_allclose(twin(torch.from_numpy(x)).detach().numpy(), model(x),
                               rtol=1e-5, atol=1e-6)


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    model = small_cnn()
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, model, meta={"step": 1})
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, small_cnn(seed=5), meta={"step": 2})
    assert path.read_bytes() == before  # the old checkpoint survives intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]  # no temp left


def test_bad_checkpoints_give_clear_errors(tmp_path):
    model = small_cnn()
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.safetensors", model)
    path = save_checkpoint(tmp_path / "m.safetensors", model)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match="truncated or foreign"):
        load_checkpoint(truncated, model)
    foreign = tmp_path / "foreign.safetensors"
    foreign.write_bytes(b"\x80\x04\x95 this is a pickle, not safetensors")
    with pytest.raises(CheckpointError, match="truncated or foreign"):
        load_checkpoint(foreign, model)
    plain = tmp_path / "plain.safetensors"
    safetensors.numpy.save_file(model.state_dict(), str(plain))
    with pytest.raises(CheckpointError, match="not an fc2conv checkpoint"):
        load_checkpoint(plain, model)
    other = nn.Sequential(nn.Linear(3, 2, rng=0))
    with pytest.raises(CheckpointError, match="does not fit"):
        load_checkpoint(path, other)
    with pytest.raises(CheckpointError, match="optimiser"):
        load_checkpoint(path, model, train.SGD(model, lr=0.1))


def test_fit_argument_errors():
    x, y = toy_data(20)
    model = small_cnn()
    opt = train.SGD(model, lr=0.1)
    with pytest.raises(ShapeError, match="y must have shape"):
        train.fit(model, opt, x, y[:5], steps=1, progress=False)
    with pytest.raises(ArgumentError, match="x_test"):
        train.fit(model, opt, x, y, steps=1, x_test=x, progress=False)
    with pytest.raises(ArgumentError, match="steps"):
        train.fit(model, opt, x, y, steps=-1, progress=False)
    with pytest.raises(ArgumentError, match="checkpoint"):
        train.fit(model, opt, x, y, steps=1, resume=True, progress=False)


def test_progress_bar_runs(capsys):
    x, y = toy_data(40)
    model = small_cnn()
    train.fit(model, train.SGD(model, lr=0.1), x, y, steps=4, batch_size=10, x_test=x,
              y_test=y, progress="toy")
    assert "toy" in capsys.readouterr().err


def test_d2l_learns_the_edge_kernel_exactly():
    """d2l 7.2.4: learn K = [1, -1] from X and Y = X * K with Conv2d(1, 1, (1, 2)), squared
    loss summed, lr 3e-2. From w = 0 each step multiplies the error by 0.64 (X's rows make the
    Hessian 2 * [[9, -3], ...]-like): after 10 steps w = +-(1 - 0.64^10)."""
    x = np.ones((1, 1, 6, 8), np.float64)
    x[:, :, :, 2:6] = 0.0
    conv = nn.Conv2d(1, 1, (1, 2), bias=False, dtype=np.float64, rng=0)
    target = np.array([[[[1.0, -1.0]]]])
    y = nn.Conv2d(1, 1, (1, 2), bias=False, dtype=np.float64, rng=0)
    y.weight[...] = target
    y_true = y(x)
    conv.weight[...] = 0.0
    opt = train.SGD(conv, lr=3e-2)
    for _ in range(10):
        diff = conv(x) - y_true
        opt.zero_grad()
        conv.backward(2 * diff)  # d/dy of sum(diff^2)
        opt.step()
    expected = 1 - 0.64 ** 10
    np.testing.assert_allclose(conv.weight.ravel(), [expected, -expected], rtol=1e-12)
    assert round(expected, 5) == 0.98847
