"""The MNIST-1D models and experiments: gradients of the full models (loss included) against
finite differences in float64, PyTorch twins trained side by side, the rungs' exact relations,
reproducibility and the shift report."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_nn import TorchResidual  # torch twin of nn.Residual

from fc2conv import ladder, train
from fc2conv.analysis import count_params
from fc2conv.data import mnist1d
from fc2conv.experiments import (
    feature_extractor,
    shift_report,
    subset,
    summarize,
    train_mnist1d,
)
from fc2conv.models import MNIST1D_MODELS, mnist1d_model

F64 = np.float64


@pytest.fixture(scope="module")
def small():
    return mnist1d(num_samples=600, cache=False)


@pytest.mark.parametrize("name", MNIST1D_MODELS)
def test_full_model_and_loss_gradients_match_finite_differences(name):
    """d cross_entropy(model(x), y) / d(every parameter, x), central differences, float64."""
    rng = np.random.default_rng(11)
    model = mnist1d_model(name, dtype=F64, rng=3)
    x = rng.standard_normal((4, 1, 40))
    y = np.array([0, 3, 7, 9])

    def loss():
        return float(train.cross_entropy(model(x), y)[0])

    _, grad = train.cross_entropy(model(x), y)
    model.zero_grad()
    gx = model.backward(grad)
    analytic = {name: np.array(g) for name, g in model.named_grads()} | {"x": gx}
    arrays = dict(model.named_parameters()) | {"x": x}
    eps = 1e-6
    for key, array in arrays.items():
        flat = array.reshape(-1)
        coords = rng.choice(flat.size, min(flat.size, 12), replace=False)
        for i in coords:
            old = flat[i]
            flat[i] = old + eps
            up = loss()
            flat[i] = old - eps
            down = loss()
            flat[i] = old
            numeric = (up - down) / (2 * eps)
            assert abs(analytic[key].reshape(-1)[i] - numeric) <= 1e-6 + 1e-5 * abs(numeric), \
                (name, key, i)


def _torch_twin(name):
    t = torch.nn
    if name == "logistic":
        return t.Sequential(t.Flatten(), t.Linear(40, 10))
    if name == "mlp":
        return t.Sequential(t.Flatten(), t.Linear(40, 100), t.ReLU(),
                            TorchResidual(t.Sequential(t.Linear(100, 100), t.ReLU())),
                            t.Linear(100, 10))
    return t.Sequential(t.Conv1d(1, 25, 5, 2, 1), t.ReLU(), t.Conv1d(25, 25, 3, 2, 1), t.ReLU(),
                        t.Conv1d(25, 25, 3, 2, 1), t.ReLU(), t.Flatten(), t.Linear(125, 10))


@pytest.mark.parametrize("name", ["logistic", "mlp", "cnn"])
def test_models_train_like_their_torch_twins(name, small):
    """Same weights, same batches, Adam(lr 1e-2): 20 steps of the paper's recipe in fc2conv and
    in PyTorch (float64) give the same parameters."""
    ours = mnist1d_model(name, dtype=F64, rng=0)
    theirs = _torch_twin(name).double()
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()},
                           strict=True)
    opt_ours = train.Adam(ours, lr=1e-2)
    opt_theirs = torch.optim.Adam(theirs.parameters(), lr=1e-2)
    x, y = small.x_train.astype(F64), small.y_train
    for step in range(20):
        xb, yb = x[step * 25:(step + 1) * 25], y[step * 25:(step + 1) * 25]
        _, grad = train.cross_entropy(ours(xb), yb)
        opt_ours.zero_grad()
        ours.backward(grad)
        opt_ours.step()
        opt_theirs.zero_grad()
        torch.nn.functional.cross_entropy(theirs(torch.from_numpy(xb)),
                                          torch.from_numpy(yb.copy())).backward()
        opt_theirs.step()
    for key, value in theirs.state_dict().items():
        np.testing.assert_allclose(ours.state_dict()[key], value.numpy(), rtol=1e-9,
                                   atol=1e-11, err_msg=key)


def test_rungs_are_the_cnn_untied_and_densified(small):
    """The LC model is the CNN untied layer by layer, and the dense model is the LC densified:
    with those weights, all three compute the same logits."""
    cnn = mnist1d_model("cnn", dtype=F64, rng=0)
    lc = mnist1d_model("lc", dtype=F64, rng=1)
    dense = mnist1d_model("dense", dtype=F64, rng=2)
    size = 40
    for i in (0, 2, 4):
        untied = ladder.untie(cnn[i], size)
        lc[i].load_state_dict(untied.state_dict())
        dense[i].load_state_dict(ladder.to_dense(untied).state_dict())
        size = untied.out_size[0]
    for model in (lc, dense):
        model[7].load_state_dict(cnn[7].state_dict())
    x = small.x_test[:50].astype(F64)
    np.testing.assert_allclose(lc(x), cnn(x), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dense(x), cnn(x), rtol=1e-12, atol=1e-12)


def test_parameter_counts_match_the_paper():
    counts = {name: count_params(mnist1d_model(name, rng=0)) for name in MNIST1D_MODELS}
    assert counts["mlp"] == 15210 and counts["cnn"] == 5210 and counts["logistic"] == 410
    # untied: 19*25*5 + 19*25, 10*25*25*3 + 10*25, 5*25*25*3 + 5*25, 125*10 + 10
    assert counts["lc"] == (2375 + 475) + (18750 + 250) + (9375 + 125) + 1260
    assert counts["dense"] == (19 * 25 * 40 + 475) + (10 * 25 * 25 * 19 + 250) \
        + (5 * 25 * 25 * 10 + 125) + 1260


def test_unknown_model_name_is_a_clear_error():
    with pytest.raises(ValueError, match="one of"):
        mnist1d_model("gru")


def test_training_is_reproducible_and_seed_dependent(small):
    a = train_mnist1d("cnn", small, seed=4, steps=30, progress=False)
    b = train_mnist1d("cnn", small, seed=4, steps=30, progress=False)
    c = train_mnist1d("cnn", small, seed=5, steps=30, progress=False)
    for (key, va), (_, vb) in zip(a.model.named_parameters(), b.model.named_parameters()):
        assert np.array_equal(va, vb), key
    assert a.test_acc == b.test_acc
    assert not np.array_equal(a.model[0].weight, c.model[0].weight)
    assert a.record()["params"] == 5210 and a.record()["steps"] == 30


def test_subset_is_class_balanced_and_keeps_the_test_set(small):
    part = subset(small, 100)
    assert part.x_train.shape == (100, 1, 40)
    expected = np.bincount(small.y_train, minlength=10) * 100 / len(small.y_train)
    assert np.abs(np.bincount(part.y_train, minlength=10) - expected).max() < 1
    assert np.array_equal(part.x_test, small.x_test)
    # every training example of the subset comes from the full training set
    rows = {r.tobytes() for r in small.x_train}
    assert all(r.tobytes() in rows for r in part.x_train)
    with pytest.raises(ValueError, match="size"):
        subset(small, 0)
    with pytest.raises(ValueError, match="size"):
        subset(small, 481)


def test_shift_report_separates_tied_from_untied_weights(small):
    """At initialisation the CNN's features move with the input (error only at the border),
    the untied rungs' do not."""
    x, y = small.x_test[:200], small.y_test[:200]
    errors = {name: shift_report(mnist1d_model(name, rng=0), x, y)["feature_shift_error"]
              for name in ("cnn", "lc", "dense")}
    assert errors["cnn"] < 0.5 < errors["lc"] and errors["cnn"] < errors["dense"]
    report = shift_report(mnist1d_model("mlp", rng=0), x, y, shifts=(1, 3))
    assert report["feature_shift_error"] is None
    assert set(report["acc_shifted"]) == {"1", "3"}
    assert all(0 <= v <= 1 for v in report["agreement"].values())


def test_feature_extractor_stops_at_flatten():
    cnn = mnist1d_model("cnn", rng=0)
    features = feature_extractor(cnn)
    assert len(list(features)) == 6
    assert features(np.zeros((2, 1, 40), np.float32)).shape == (2, 25, 5)
    assert feature_extractor(mnist1d_model("mlp", rng=0)) is None


def test_summarize():
    assert summarize([0.5]) == (0.5, 0.0)
    with pytest.raises(ValueError, match="at least one"):
        summarize([])
