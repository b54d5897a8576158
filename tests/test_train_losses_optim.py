"""Losses and optimisers of ``fc2conv.train`` against PyTorch.

* Losses: value and gradient of ``cross_entropy``, ``log_softmax`` and ``mse`` agree with
  ``torch.nn.functional`` and autograd (Hypothesis over shapes, reductions, dtypes, scales);
  logits of size 1e4 stay finite in float32; bad input raises the documented errors.
* Optimisers: an fc2conv MLP and its torch twin (same weights through the shared state-dict
  names) trained side by side, each library computing its own gradients, agree to ~1e-10 in
  float64 after every one of 20 steps, for every SGD / Adam / AdamW variant. Fed identical
  gradients, the update arithmetic agrees to a few ulps.
* State: saving optimiser + model state (through safetensors) after 5 steps and resuming in
  fresh objects reproduces the uninterrupted run bit for bit; ``lr`` changes take effect.
"""

from __future__ import annotations

import numpy as np
import pytest
import safetensors.numpy
import torch
from hypothesis import given
from hypothesis import strategies as st

from fc2conv import ArgumentError, DTypeError, ShapeError, nn
from fc2conv.train._losses import accuracy, cross_entropy, log_softmax, mse
from fc2conv.train._optim import SGD, Adam, AdamW, Optimizer

F64 = np.float64
STEPS = 20
# float64 value/gradient tolerances (vs torch) and float32 ones, relative to the scale of the
# quantity: a K-term softmax sum in float32 is good to a few ulps of its largest term.
TOL = {np.float64: {"rtol": 1e-12, "atol": 1e-14}, np.float32: {"rtol": 2e-5, "atol": 2e-6}}


def _t(a):
    return torch.from_numpy(np.array(a, copy=True))


# ---------------------------------------------------------------------------------------------
# losses


@st.composite
def classification(draw):
    n = draw(st.integers(1, 7))
    k = draw(st.integers(1, 9))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    scale = draw(st.sampled_from([0.1, 1.0, 10.0, 100.0]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    logits = (scale * rng.standard_normal((n, k))).astype(dtype)
    labels = rng.integers(0, k, size=n)
    return logits, labels, draw(st.sampled_from(["mean", "sum"]))


@given(classification())
def test_cross_entropy_matches_torch(case):
    logits, labels, reduction = case
    value, grad = cross_entropy(logits, labels, reduction=reduction)
    assert grad.dtype == logits.dtype and grad.shape == logits.shape
    assert np.asarray(value).dtype == logits.dtype and np.ndim(value) == 0

    tl = _t(logits).requires_grad_(True)
    expected = torch.nn.functional.cross_entropy(tl, _t(labels), reduction=reduction)
    expected.backward()
    tol = TOL[logits.dtype.type]
    # a float32 loss summed over N rows of size ~log K + scale carries that much rounding
    value_scale = max(1.0, float(expected.detach().abs()))
    np.testing.assert_allclose(float(value), float(expected.detach()), rtol=tol["rtol"],
                               atol=tol["atol"] * value_scale)
    np.testing.assert_allclose(grad, tl.grad.numpy(), **tol)


@given(classification())
def test_log_softmax_matches_torch(case):
    logits, _, _ = case
    out = log_softmax(logits)
    assert out.dtype == logits.dtype
    expected = torch.log_softmax(_t(logits), dim=-1).numpy()
    tol = TOL[logits.dtype.type]
    np.testing.assert_allclose(out, expected, rtol=tol["rtol"],
                               atol=tol["atol"] * max(1.0, np.abs(expected).max()))


def test_log_softmax_any_leading_axes():
    x = np.random.default_rng(0).standard_normal((2, 3, 4))
    np.testing.assert_allclose(log_softmax(x), torch.log_softmax(_t(x), dim=-1).numpy(),
                               rtol=1e-13)


@given(
    shape=st.lists(st.integers(1, 4), min_size=0, max_size=3).map(tuple),
    dtype=st.sampled_from([np.float32, np.float64]),
    reduction=st.sampled_from(["mean", "sum"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_mse_matches_torch(shape, dtype, reduction, seed):
    rng = np.random.default_rng(seed)
    pred, target = (rng.standard_normal(shape).astype(dtype) for _ in range(2))
    value, grad = mse(pred, target, reduction=reduction)
    assert grad.dtype == pred.dtype and grad.shape == pred.shape

    tp = _t(pred).requires_grad_(True)
    expected = torch.nn.functional.mse_loss(tp, _t(target), reduction=reduction)
    expected.backward()
    tol = TOL[dtype]
    np.testing.assert_allclose(float(value), float(expected.detach()), rtol=tol["rtol"],
                               atol=tol["atol"] * max(1.0, float(expected.detach())))
    np.testing.assert_allclose(grad, tp.grad.numpy(), **tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_large_logits_are_stable(dtype):
    logits = np.array([[1e4, 0.0, -1e4], [0.0, 1e4, 1e4 - 1.0], [-1e4, -1e4, -1e4]], dtype)
    labels = np.array([2, 2, 0])
    value, grad = cross_entropy(logits, labels, reduction="sum")
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    # row 0: 2e4; row 1: 1 + log(1 + e^-1); row 2: log 3
    expected = 2e4 + 1.0 + np.log1p(np.exp(-1.0)) + np.log(3.0)
    np.testing.assert_allclose(float(value), expected, rtol=1e-6 if dtype == np.float32 else 1e-14)
    tl = _t(logits).requires_grad_(True)
    torch.nn.functional.cross_entropy(tl, _t(labels), reduction="sum").backward()
    np.testing.assert_allclose(grad, tl.grad.numpy(), **TOL[dtype])
    assert np.all(np.isfinite(log_softmax(np.array([[1e30, -1e30]], dtype))))


def test_cross_entropy_masked_logit():
    # a -inf logit (masked class) must not poison the sum: 0 * -inf would be nan
    logits = np.array([[0.0, -np.inf, 0.0]])
    value, grad = cross_entropy(logits, np.array([0]))
    assert float(value) == pytest.approx(np.log(2.0))
    assert grad.tolist() == [[-0.5, 0.0, 0.5]]


def test_cross_entropy_gradient_is_what_backward_takes():
    """One full step: the loss gradient drives a model's backward to torch's parameter grads."""
    model, twin = _mlp_pair()
    x, y = _data()
    _, g = cross_entropy(model(x), y)
    model.backward(g)
    torch.nn.functional.cross_entropy(twin(_t(x)), _t(y)).backward()
    for (name, ours), (tname, p) in zip(model.named_grads(), twin.named_parameters()):
        assert name == tname
        np.testing.assert_allclose(ours, p.grad.numpy(), rtol=1e-10, atol=1e-13)


def test_accuracy():
    logits = np.array([[0.1, 0.9, 0.0], [2.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 5.0]])
    assert accuracy(logits, np.array([1, 0, 1, 2])) == 0.75  # tie at row 2 goes to class 0
    assert accuracy(logits.astype(np.float32), np.array([1, 0, 0, 2], np.int32)) == 1.0
    assert isinstance(accuracy(logits, np.array([0, 1, 1, 0])), float)


L = np.zeros((3, 4))
Y = np.array([0, 1, 3])


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda: cross_entropy(np.zeros(4), np.array([0])), ShapeError, r"\(N, K\).*\(4,\)"),
        (lambda: cross_entropy(np.zeros((2, 3, 4)), Y), ShapeError, r"\(2, 3, 4\)"),
        (lambda: cross_entropy(np.zeros((0, 4)), Y[:0]), ShapeError, r"N >= 1"),
        (lambda: cross_entropy(L, np.array([0, 1])), ShapeError, r"\(3,\).*\(2,\)"),
        (lambda: cross_entropy(L, Y[:, None]), ShapeError, r"\(3, 1\)"),
        (lambda: cross_entropy(L, np.array([0, 4, 1])), ArgumentError, r"\[0, 4\).*4 at index 1"),
        (lambda: cross_entropy(L, np.array([0, -1, 1])), ArgumentError, r"-1 at index 1"),
        (lambda: cross_entropy(L, np.array([0.0, 1.0, 2.0])), DTypeError, r"integer.*float64"),
        (lambda: cross_entropy(L, np.array([True, False, True])), DTypeError, r"bool"),
        (lambda: cross_entropy(L, [0, 1, 2]), DTypeError, r"labels.*list"),
        (lambda: cross_entropy(L, torch.tensor([0, 1, 2])), DTypeError, r"torch.*numpy"),
        (lambda: cross_entropy(L.astype(int), Y), DTypeError, r"logits.*int64"),
        (lambda: cross_entropy(L, Y, reduction="none"), ArgumentError, r"reduction.*'none'"),
        (lambda: accuracy(L, np.array([0, 1])), ShapeError, r"\(3,\)"),
        (lambda: log_softmax(np.zeros((2, 0))), ShapeError, r"K >= 1.*\(2, 0\)"),
        (lambda: mse(np.zeros(3), np.zeros(4)), ShapeError, r"\(3,\).*\(4,\)"),
        (lambda: mse(np.zeros(3), np.zeros(3, np.float32)), DTypeError, r"float32"),
        (lambda: mse(np.zeros(3), np.zeros(3), reduction="avg"), ArgumentError, r"'avg'"),
        (lambda: mse(np.zeros((2, 0)), np.zeros((2, 0))), ShapeError, r"empty"),
    ],
)
def test_loss_errors(call, error, words):
    with pytest.raises(error, match=words):
        call()


# ---------------------------------------------------------------------------------------------
# optimisers: an MLP and its torch twin


def _mlp_pair(dtype=F64):
    model = nn.Sequential(nn.Linear(5, 4, dtype=dtype, rng=0), nn.ReLU(),
                          nn.Linear(4, 3, dtype=dtype, rng=1))
    twin = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3))
    twin = twin.to(torch.float64 if dtype == F64 else torch.float32)
    twin.load_state_dict({name: _t(value) for name, value in model.state_dict().items()})
    return model, twin


def _data(dtype=F64, n=16, seed=7):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 5)).astype(dtype), rng.integers(0, 3, size=n)


def _ours_step(model, opt, x, y):
    opt.zero_grad()
    loss, g = cross_entropy(model(x), y)
    model.backward(g)
    opt.step()
    return float(loss)


def _torch_step(twin, opt, x, y):
    opt.zero_grad()
    loss = torch.nn.functional.cross_entropy(twin(_t(x)), _t(y))
    loss.backward()
    opt.step()
    return float(loss.detach())


def _assert_same_params(model, twin, step, **tol):
    theirs = dict(twin.named_parameters())
    for name, ours in model.named_parameters():
        np.testing.assert_allclose(ours, theirs[name].detach().numpy(), **tol,
                                   err_msg=f"{name} after step {step}")


CONFIGS = [
    ("SGD", {"lr": 0.1}),
    ("SGD", {"lr": 0.1, "momentum": 0.9}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
    ("SGD", {"lr": 0.1, "weight_decay": 0.05}),
    ("SGD", {"lr": 0.1, "momentum": 0.8, "dampening": 0.3}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.1, "nesterov": True}),
    ("Adam", {"lr": 0.01}),
    ("Adam", {"lr": 0.01, "weight_decay": 0.1}),
    ("Adam", {"lr": 0.02, "betas": (0.5, 0.9), "eps": 1e-6}),  # beta1 = 0.5: lerp's other branch
    ("AdamW", {"lr": 0.01}),
    ("AdamW", {"lr": 0.01, "weight_decay": 0.3, "betas": (0.8, 0.99)}),
]
OURS = {"SGD": SGD, "Adam": Adam, "AdamW": AdamW}
THEIRS = {"SGD": torch.optim.SGD, "Adam": torch.optim.Adam, "AdamW": torch.optim.AdamW}


def _ids(config):
    return config[0] + "-" + "-".join(f"{k}={v}" for k, v in config[1].items())


@pytest.mark.parametrize("config", CONFIGS, ids=[_ids(c) for c in CONFIGS])
def test_training_matches_torch(config):
    kind, kwargs = config
    model, twin = _mlp_pair()
    opt, topt = OURS[kind](model, **kwargs), THEIRS[kind](twin.parameters(), **kwargs)
    for step in range(1, STEPS + 1):
        x, y = _data(seed=step)
        ours, theirs = _ours_step(model, opt, x, y), _torch_step(twin, topt, x, y)
        assert ours == pytest.approx(theirs, rel=1e-10)
        _assert_same_params(model, twin, step, rtol=1e-10, atol=1e-12)
    assert opt.step_count == STEPS


@pytest.mark.parametrize("kind, kwargs", [("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
                                          ("Adam", {"lr": 0.01, "weight_decay": 0.1}),
                                          ("AdamW", {"lr": 0.01})])
def test_training_matches_torch_float32(kind, kwargs):
    model, twin = _mlp_pair(np.float32)
    opt, topt = OURS[kind](model, **kwargs), THEIRS[kind](twin.parameters(), **kwargs)
    for step in range(1, 11):
        x, y = _data(np.float32, seed=step)
        _ours_step(model, opt, x, y)
        _torch_step(twin, topt, x, y)
    assert all(p.dtype == np.float32 for p in model.parameters())
    _assert_same_params(model, twin, 10, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("config", CONFIGS, ids=[_ids(c) for c in CONFIGS])
def test_update_arithmetic_matches_torch(config):
    """Identical gradients in both libraries: only the update rule is compared."""
    kind, kwargs = config
    model, twin = _mlp_pair()
    opt, topt = OURS[kind](model, **kwargs), THEIRS[kind](twin.parameters(), **kwargs)
    layers = {"0": model[0], "2": model[2]}
    rng = np.random.default_rng(3)
    for step in range(1, STEPS + 1):
        grads = {}
        for name, p in twin.named_parameters():
            g = rng.standard_normal(tuple(p.shape)) * 10.0 ** rng.integers(-3, 2)
            grads[name] = g
            p.grad = _t(g)
        for prefix, layer in layers.items():
            layer.grads = {key: grads[f"{prefix}.{key}"].copy() for key in ("weight", "bias")}
        opt.step()
        topt.step()
        _assert_same_params(model, twin, step, rtol=1e-14, atol=1e-15)
        # the optimiser only reads the gradients
        for prefix, layer in layers.items():
            for key in ("weight", "bias"):
                np.testing.assert_array_equal(layer.grads[key], grads[f"{prefix}.{key}"])
    # the buffers are torch's, under torch's names
    theirs = {name: topt.state[p] for name, p in twin.named_parameters()}
    for key, value in opt.state_dict().items():
        if key in ("step", "lr"):
            continue
        name, buffer = key.rsplit(".", 1)
        np.testing.assert_allclose(value, theirs[name][buffer].numpy(), rtol=1e-14, atol=1e-15)


def test_parameters_updated_in_place():
    model, _ = _mlp_pair()
    weight = model[0].weight
    opt = SGD(model, lr=0.1)
    x, y = _data()
    before = weight.copy()
    _ours_step(model, opt, x, y)
    assert model[0].weight is weight and not np.array_equal(weight, before)


def test_zero_grad_clears_module_gradients():
    model, _ = _mlp_pair()
    opt = Adam(model)
    x, y = _data()
    model.backward(cross_entropy(model(x), y)[1])
    assert model[0].grads
    opt.zero_grad()
    assert all(not layer.grads for layer in model)


# ---------------------------------------------------------------------------------------------
# state dicts and learning rates


@pytest.mark.parametrize("kind, kwargs", [
    ("SGD", {"lr": 0.1}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    ("Adam", {"lr": 0.01, "weight_decay": 0.1}),
    ("AdamW", {"lr": 0.01, "betas": (0.8, 0.99)}),
])
def test_state_dict_round_trip_is_bitwise(kind, kwargs, tmp_path):
    model, _ = _mlp_pair()
    opt = OURS[kind](model, **kwargs)
    for step in range(5):
        _ours_step(model, opt, *_data(seed=step))
    path = tmp_path / "state.safetensors"
    saved = {f"model.{k}": v for k, v in model.state_dict().items()}
    saved |= {f"optimizer.{k}": v for k, v in opt.state_dict().items()}
    safetensors.numpy.save_file(saved, str(path))
    for step in range(5, 10):
        _ours_step(model, opt, *_data(seed=step))

    loaded = safetensors.numpy.load_file(str(path))
    fresh = nn.Sequential(nn.Linear(5, 4, dtype=F64, rng=10), nn.ReLU(),
                          nn.Linear(4, 3, dtype=F64, rng=11))
    fresh_opt = OURS[kind](fresh, lr=123.0)  # lr comes from the state; other settings as built
    for key, value in kwargs.items():
        setattr(fresh_opt, key, value)
    fresh.load_state_dict({k[6:]: v for k, v in loaded.items() if k.startswith("model.")})
    fresh_opt.load_state_dict({k[10:]: v for k, v in loaded.items()
                               if k.startswith("optimizer.")})
    assert fresh_opt.step_count == 5 and fresh_opt.lr == kwargs["lr"]
    for step in range(5, 10):
        _ours_step(fresh, fresh_opt, *_data(seed=step))
    for (name, a), (_, b) in zip(model.named_parameters(), fresh.named_parameters()):
        assert np.array_equal(a, b), name
    assert fresh_opt.step_count == opt.step_count == 10
    for key, value in opt.state_dict().items():
        assert np.array_equal(value, fresh_opt.state_dict()[key]), key


def test_state_dict_names_and_copies():
    model, _ = _mlp_pair()
    opt = Adam(model)
    assert sorted(opt.state_dict()) == ["lr", "step"]  # buffers appear with the first step
    _ours_step(model, opt, *_data())
    state = opt.state_dict()
    names = [name for name, _ in model.named_parameters()]
    assert set(state) == {"step", "lr"} | {f"{n}.{b}" for n in names
                                           for b in ("exp_avg", "exp_avg_sq")}
    assert state["step"].dtype == np.int64 and state["step"].shape == () and int(state["step"]) == 1
    assert state["0.weight.exp_avg"].shape == (4, 5)
    state["0.weight.exp_avg"][...] = 99.0  # a copy: the optimiser is unaffected
    assert not np.any(opt.state_dict()["0.weight.exp_avg"] == 99.0)
    opt.load_state_dict(state)
    state["0.weight.exp_avg"][...] = 7.0  # loading copies too
    assert np.all(opt.state_dict()["0.weight.exp_avg"] == 99.0)
    sgd = SGD(model, lr=0.1, momentum=0.5)
    _ours_step(model, sgd, *_data())
    assert "2.bias.momentum_buffer" in sgd.state_dict()
    assert sorted(SGD(model, lr=0.1).state_dict()) == ["lr", "step"]


def test_load_state_dict_errors():
    model, _ = _mlp_pair()
    opt = Adam(model)
    _ours_step(model, opt, *_data())
    good = opt.state_dict()
    with pytest.raises(ArgumentError, match=r"missing \['0.bias.exp_avg'\]"):
        opt.load_state_dict({k: v for k, v in good.items() if k != "0.bias.exp_avg"})
    with pytest.raises(ArgumentError, match=r"unexpected \['0.bias.momentum'\]"):
        opt.load_state_dict(good | {"0.bias.momentum": good["0.bias.exp_avg"]})
    with pytest.raises(ShapeError, match=r"'0.weight.exp_avg'.*\(5, 4\).*\(4, 5\)"):
        opt.load_state_dict(good | {"0.weight.exp_avg": good["0.weight.exp_avg"].T})
    with pytest.raises(ArgumentError, match=r"step"):
        opt.load_state_dict(good | {"step": np.asarray(-1)})
    with pytest.raises(ArgumentError, match=r"step"):
        opt.load_state_dict(good | {"step": np.asarray(1.5)})
    with pytest.raises(ArgumentError, match=r"'step'"):
        opt.load_state_dict({k: v for k, v in good.items() if k != "step"})
    with pytest.raises(ArgumentError, match=r"momentum_buffer"):  # SGD state into Adam and back
        SGD(model, lr=0.1, momentum=0.9).load_state_dict(good)
    assert opt.step_count == 1  # failed loads changed nothing
    np.testing.assert_array_equal(opt.state_dict()["0.weight.exp_avg"], good["0.weight.exp_avg"])


def test_lr_change_takes_effect():
    # lr = 0 freezes the parameters, for SGD and Adam alike
    for opt_class in (SGD, Adam):
        model, _ = _mlp_pair()
        opt = opt_class(model, lr=0.1)
        _ours_step(model, opt, *_data())
        opt.lr = 0.0
        before = [p.copy() for p in model.parameters()]
        _ours_step(model, opt, *_data(seed=1))
        assert all(np.array_equal(a, b) for a, b in zip(before, model.parameters()))
    # a schedule changing lr between steps matches torch's param_groups[0]["lr"]
    for kind, kwargs in (("SGD", {"lr": 0.1, "momentum": 0.9}), ("Adam", {"lr": 0.01})):
        model, twin = _mlp_pair()
        opt, topt = OURS[kind](model, **kwargs), THEIRS[kind](twin.parameters(), **kwargs)
        for step in range(1, 11):
            lr = kwargs["lr"] * 0.8 ** step
            opt.lr = lr
            topt.param_groups[0]["lr"] = lr
            x, y = _data(seed=step)
            _ours_step(model, opt, x, y)
            _torch_step(twin, topt, x, y)
            _assert_same_params(model, twin, step, rtol=1e-10, atol=1e-12)
        assert opt.state_dict()["lr"] == pytest.approx(kwargs["lr"] * 0.8**10)


@pytest.mark.parametrize(
    "make, error, words",
    [
        (lambda m: SGD(m, lr=-0.1), ArgumentError, r"lr.*-0.1"),
        (lambda m: SGD(m, lr=float("nan")), ArgumentError, r"lr.*nan"),
        (lambda m: SGD(m, lr="0.1"), ArgumentError, r"lr.*'0.1'"),
        (lambda m: SGD(m, lr=0.1, momentum=-0.5), ArgumentError, r"momentum.*-0.5"),
        (lambda m: SGD(m, lr=0.1, weight_decay=-1), ArgumentError, r"weight_decay.*-1"),
        (lambda m: SGD(m, lr=0.1, nesterov=True), ArgumentError, r"nesterov.*momentum=0.0"),
        (lambda m: SGD(m, lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), ArgumentError,
         r"nesterov.*dampening=0.1"),
        (lambda m: Adam(m, lr=-1e-3), ArgumentError, r"lr.*-0.001"),
        (lambda m: Adam(m, betas=(1.0, 0.999)), ArgumentError, r"betas\[0\].*\[0, 1\).*1.0"),
        (lambda m: Adam(m, betas=(0.9, -0.1)), ArgumentError, r"betas\[1\].*-0.1"),
        (lambda m: Adam(m, betas=0.9), ArgumentError, r"betas.*pair.*0.9"),
        (lambda m: Adam(m, eps=-1e-8), ArgumentError, r"eps.*-1e-08"),
        (lambda m: AdamW(m, weight_decay=-0.01), ArgumentError, r"weight_decay.*-0.01"),
        (lambda m: SGD(m.parameters(), lr=0.1), DTypeError, r"Module.*list"),
        (lambda m: Adam(nn.ReLU()), ArgumentError, r"ReLU.*no parameters"),
    ],
)
def test_hyperparameter_errors(make, error, words):
    model, _ = _mlp_pair()
    with pytest.raises(error, match=words):
        make(model)


def test_lr_setter_validates():
    model, _ = _mlp_pair()
    opt = SGD(model, lr=0.1)
    with pytest.raises(ArgumentError, match=r"lr.*-1"):
        opt.lr = -1
    assert opt.lr == 0.1


def test_repr_and_base_class():
    model, _ = _mlp_pair()
    assert repr(Adam(model)) == "Adam(lr=0.001, betas=(0.9, 0.999), eps=1e-08, weight_decay=0.0)"
    assert "nesterov=True" in repr(SGD(model, lr=0.1, momentum=0.9, nesterov=True))
    assert isinstance(AdamW(model), Adam) and isinstance(SGD(model, lr=1), Optimizer)
