"""The layer classes of ``fc2conv.nn``: gradients, PyTorch parity, init, state dicts, errors.

* Finite differences (float64, central, ``eps = 1e-6``) check the input gradient and every
  parameter gradient of ``L = sum(layer(x) * G)`` for a random ``G``, for every layer type and
  for whole models (the MNIST-1D CNN, an MLP and a CNN with residual blocks).
* PyTorch parity: the torch twin built with the same constructor arguments shares our
  ``state_dict`` names exactly; forward values and all gradients agree to ~1e-10 in float64.
* Initialisation follows torch's ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` with torch's fan_in.
* Gradient accumulation, ``zero_grad``, state dicts, errors and ``output_shape``.
* The ladder: a locally connected layer with tied weights and a dense-on-grid layer with a
  scattered kernel both reproduce a convolution.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

import fc2conv
from fc2conv import nn

F64 = np.float64
EPS = 1e-6
RTOL = 1e-6
COORDS = 24  # finite-difference coordinates sampled per array (all of them when fewer)
TORCH_RTOL, TORCH_ATOL = 1e-10, 1e-12


# ---------------------------------------------------------------------------------------------
# helpers


def _input(shape, rng, kind="normal"):
    """A float64 input: ``normal``; ``distinct`` (max pooling: no ties, gaps of 0.1);
    ``away`` (ReLU: no value within 1e-2 of the kink at 0)."""
    if kind == "distinct":
        return (rng.permutation(math.prod(shape)).reshape(shape) * 0.1 - 1.0).astype(F64)
    x = rng.standard_normal(shape)
    if kind == "away":
        x += np.where(x >= 0, 1e-2, -1e-2)
    return x


def _coords(size, rng, limit=COORDS):
    return np.arange(size) if size <= limit else rng.choice(size, limit, replace=False)


def _fd_check(loss, array, analytic, rng, what):
    """Central differences of ``loss()`` in a few coordinates of ``array`` (perturbed in place)."""
    assert analytic.shape == array.shape, what
    flat = array.reshape(-1)
    assert np.shares_memory(flat, array)
    idx = _coords(array.size, rng)
    numeric = np.empty(len(idx))
    for n, i in enumerate(idx):
        old = flat[i]
        flat[i] = old + EPS
        up = loss()
        flat[i] = old - EPS
        down = loss()
        flat[i] = old
        numeric[n] = (up - down) / (2 * EPS)
    scale = max(1.0, float(np.max(np.abs(analytic))))
    np.testing.assert_allclose(analytic.reshape(-1)[idx], numeric, rtol=RTOL,
                               atol=0.1 * RTOL * scale, err_msg=what)


def _check_all_gradients(layer, x, rng):
    """Input and parameter gradients of ``sum(layer(x) * G)`` against finite differences."""
    y = layer(x)
    G = rng.standard_normal(y.shape)
    layer.zero_grad()
    gx = layer.backward(G)
    assert gx.shape == x.shape and gx.dtype == F64
    grads = {name: np.array(g, copy=True) for name, g in layer.named_grads()}
    params = layer.named_parameters()
    assert [name for name, _ in params] == list(grads)

    def loss():
        return float(np.sum(layer(x) * G))

    _fd_check(loss, x, gx, rng, "input gradient")
    for name, p in params:
        assert p.dtype == F64, name
        _fd_check(loss, p, grads[name], rng, f"gradient of {name}")


# Layer factories: (id, build(rng) -> layer, input shape, input kind). Every conv-like family has
# 1-D, 2-D and 3-D cases; stride, padding (int, tuple, "same", "full"), dilation, groups, the
# padding modes and both bias layouts are spread over them.
LAYER_CASES = [
    # convolution
    ("conv1d-stride-pad", lambda r: nn.Conv1d(3, 4, 3, 2, 1, dtype=F64, rng=r), (2, 3, 9),
     "normal"),
    ("conv1d-same-dil-reflect", lambda r: nn.Conv1d(2, 3, 4, padding="same", dilation=2,
                                                    padding_mode="reflect", dtype=F64, rng=r),
     (2, 2, 9), "normal"),
    ("conv1d-groups-circular", lambda r: nn.Conv1d(4, 6, 3, stride=2, padding=2, groups=2,
                                                   padding_mode="circular", dtype=F64, rng=r),
     (2, 4, 8), "normal"),
    ("conv2d-same-stride-groups-reflect",
     lambda r: nn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding="same", dilation=(1, 2), groups=2,
                         padding_mode="reflect", dtype=F64, rng=r), (2, 4, 7, 6), "normal"),
    ("conv2d-circular-nobias",
     lambda r: nn.Conv2d(2, 3, 3, padding=(1, 2), bias=False, padding_mode="circular",
                         dtype=F64, rng=r), (2, 2, 5, 6), "normal"),
    ("conv2d-symmetric-replicate-full",
     lambda r: nn.Conv2d(2, 2, 2, stride=2, padding="full", padding_mode="replicate",
                         dtype=F64, rng=r), (1, 2, 5, 4), "normal"),
    ("conv2d-symmetric", lambda r: nn.Conv2d(1, 2, 3, padding=1, padding_mode="symmetric",
                                             dtype=F64, rng=r), (2, 1, 4, 5), "normal"),
    ("conv3d-stride-pad-groups",
     lambda r: nn.Conv3d(2, 4, 2, stride=2, padding=1, groups=2, dtype=F64, rng=r),
     (1, 2, 3, 4, 3), "normal"),
    ("conv3d-same-circular",
     lambda r: nn.Conv3d(1, 2, 3, padding="same", padding_mode="circular", dtype=F64, rng=r),
     (1, 1, 3, 4, 3), "normal"),
    # transposed convolution
    ("convT1d-stride-outpad-groups",
     lambda r: nn.ConvTranspose1d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2,
                                  dtype=F64, rng=r), (2, 4, 5), "normal"),
    ("convT2d-dilation",
     lambda r: nn.ConvTranspose2d(3, 2, (3, 2), stride=(2, 1), padding=(1, 0),
                                  output_padding=(1, 0), dilation=(1, 2), dtype=F64, rng=r),
     (2, 3, 3, 4), "normal"),
    ("convT2d-nobias", lambda r: nn.ConvTranspose2d(2, 2, 2, stride=2, bias=False, dtype=F64,
                                                    rng=r), (1, 2, 3, 2), "normal"),
    ("convT3d", lambda r: nn.ConvTranspose3d(2, 2, 2, stride=2, padding=1, dtype=F64, rng=r),
     (1, 2, 2, 3, 2), "normal"),
    # locally connected
    ("lc1d-stride-reflect",
     lambda r: nn.LocallyConnected1d(2, 3, 3, 7, stride=2, padding=1, padding_mode="reflect",
                                     dtype=F64, rng=r), (2, 2, 7), "normal"),
    ("lc1d-shared-bias", lambda r: nn.LocallyConnected1d(1, 2, 2, 6, dilation=2, shared_bias=True,
                                                         dtype=F64, rng=r), (3, 1, 6), "normal"),
    ("lc2d-same-circular-shared",
     lambda r: nn.LocallyConnected2d(2, 3, 3, (5, 6), stride=(2, 1), padding="same",
                                     dilation=(1, 2), padding_mode="circular", shared_bias=True,
                                     dtype=F64, rng=r), (2, 2, 5, 6), "normal"),
    ("lc2d-per-position-replicate",
     lambda r: nn.LocallyConnected2d(2, 2, (2, 3), (4, 5), padding=1, padding_mode="replicate",
                                     dtype=F64, rng=r), (2, 2, 4, 5), "normal"),
    ("lc2d-symmetric-nobias",
     lambda r: nn.LocallyConnected2d(1, 2, 3, 4, padding=2, bias=False, padding_mode="symmetric",
                                     dtype=F64, rng=r), (1, 1, 4, 4), "normal"),
    ("lc3d", lambda r: nn.LocallyConnected3d(1, 2, 2, (3, 3, 4), padding=1, stride=(1, 2, 1),
                                             dtype=F64, rng=r), (2, 1, 3, 3, 4), "normal"),
    # dense on grid
    ("dense1d", lambda r: nn.DenseGrid1d(2, 3, 5, 4, dtype=F64, rng=r), (2, 2, 5), "normal"),
    ("dense2d-shared", lambda r: nn.DenseGrid2d(2, 2, (3, 4), (2, 3), shared_bias=True,
                                                dtype=F64, rng=r), (2, 2, 3, 4), "normal"),
    ("dense2d-per-position", lambda r: nn.DenseGrid2d(1, 2, 3, dtype=F64, rng=r), (2, 1, 3, 3),
     "normal"),
    ("dense3d", lambda r: nn.DenseGrid3d(1, 2, (2, 2, 3), (2, 1, 2), dtype=F64, rng=r),
     (2, 1, 2, 2, 3), "normal"),
    # pooling
    ("maxpool1d", lambda r: nn.MaxPool1d(3, stride=2, padding=1), (2, 2, 9), "distinct"),
    ("maxpool2d", lambda r: nn.MaxPool2d(2), (2, 2, 4, 6), "distinct"),
    ("maxpool2d-dil-ceil", lambda r: nn.MaxPool2d(3, stride=2, padding=1, dilation=(1, 2),
                                                  ceil_mode=True), (1, 2, 6, 7), "distinct"),
    ("maxpool3d", lambda r: nn.MaxPool3d(2, stride=(1, 2, 2), ceil_mode=True), (1, 2, 3, 5, 4),
     "distinct"),
    ("avgpool1d-exclude-pad", lambda r: nn.AvgPool1d(3, stride=2, padding=1,
                                                     count_include_pad=False), (2, 2, 8),
     "normal"),
    ("avgpool2d-ceil", lambda r: nn.AvgPool2d(2, ceil_mode=True), (2, 2, 5, 5), "normal"),
    ("avgpool2d-pad", lambda r: nn.AvgPool2d((3, 2), stride=(2, 1), padding=(1, 1)),
     (1, 2, 5, 4), "normal"),
    ("avgpool3d", lambda r: nn.AvgPool3d(2, stride=1), (1, 2, 3, 3, 3), "normal"),
    # the rest
    ("linear", lambda r: nn.Linear(5, 3, dtype=F64, rng=r), (4, 5), "normal"),
    ("linear-nobias", lambda r: nn.Linear(4, 2, bias=False, dtype=F64, rng=r), (3, 4), "normal"),
    ("relu", lambda r: nn.ReLU(), (3, 2, 5), "away"),
    ("flatten", lambda r: nn.Flatten(), (3, 2, 2, 3), "normal"),
]
LAYER_IDS = [case[0] for case in LAYER_CASES]


@pytest.mark.parametrize(("build", "shape", "kind"), [c[1:] for c in LAYER_CASES],
                         ids=LAYER_IDS)
def test_layer_gradients_match_finite_differences(build, shape, kind):
    rng = np.random.default_rng(abs(hash(shape)) % 2**32)
    layer = build(1)
    _check_all_gradients(layer, _input(shape, rng, kind), rng)


@pytest.mark.parametrize("wrap", ["numpy", "torch"])
def test_relu_matches_where_on_non_finite_values(wrap):
    """ReLU and its gradient equal ``where(x > 0, ., 0)`` exactly, NaN and inf included: the
    NumPy path (fmax, a multiply by the mask) and the array-API one (torch tensors)."""
    x = np.array([[-np.inf, -2.0, -0.0, 0.0, 0.5, np.nan, np.inf, 3.0]], dtype=np.float32)
    finite = np.arange(8, dtype=np.float32).reshape(1, 8) - 3
    odd = np.array([[np.nan, np.inf, -np.inf, 1.0, np.nan, 2.0, np.inf, -np.inf]],
                   dtype=np.float32)
    as_array = np.asarray
    if wrap == "torch":
        torch = pytest.importorskip("torch")
        as_array = torch.asarray
    for grad_out in (finite, odd):
        layer = nn.ReLU()
        y = np.asarray(layer(as_array(x)))
        gx = np.asarray(layer.backward(as_array(grad_out)))
        np.testing.assert_array_equal(y, np.where(x > 0, x, 0))
        np.testing.assert_array_equal(gx, np.where(x > 0, grad_out, 0))
        assert y.dtype == gx.dtype == np.float32


def mnist1d_cnn(dtype=F64):
    """The MNIST-1D CNN of the README: 40 samples -> 10 logits, 5210 parameters."""
    return nn.Sequential(
        nn.Conv1d(1, 25, 5, 2, 1, dtype=dtype, rng=0), nn.ReLU(),
        nn.Conv1d(25, 25, 3, 2, 1, dtype=dtype, rng=1), nn.ReLU(),
        nn.Conv1d(25, 25, 3, 2, 1, dtype=dtype, rng=2), nn.ReLU(),
        nn.Flatten(), nn.Linear(125, 10, dtype=dtype, rng=3),
    )


def residual_mlp(dtype=F64):
    return nn.Sequential(
        nn.Linear(6, 8, dtype=dtype, rng=0), nn.ReLU(),
        nn.Residual(nn.Sequential(nn.Linear(8, 8, dtype=dtype, rng=1), nn.ReLU())),
        nn.Residual(nn.Linear(8, 8, dtype=dtype, rng=2)),
        nn.Linear(8, 3, dtype=dtype, rng=3),
    )


def residual_cnn(dtype=F64):
    """Conv, pool, two residual blocks (one nested in the other), locally connected, dense."""
    inner = nn.Residual(nn.Sequential(
        nn.Conv2d(4, 4, 3, padding="same", padding_mode="circular", dtype=dtype, rng=3),
        nn.ReLU()))
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, dtype=dtype, rng=0), nn.ReLU(), nn.MaxPool2d(2),
        nn.Residual(nn.Sequential(
            nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect", dtype=dtype, rng=1),
            nn.ReLU(), inner)),
        nn.LocallyConnected2d(4, 3, 2, (4, 4), stride=2, dtype=dtype, rng=4), nn.ReLU(),
        nn.DenseGrid2d(3, 2, (2, 2), (1, 2), shared_bias=True, dtype=dtype, rng=5),
        nn.AvgPool2d((1, 2)), nn.Flatten(), nn.Linear(2, 3, dtype=dtype, rng=6),
    )


@pytest.mark.parametrize(("build", "shape"), [
    (mnist1d_cnn, (3, 1, 40)),
    (residual_mlp, (4, 6)),
    (residual_cnn, (2, 1, 8, 8)),
], ids=["mnist1d-cnn", "residual-mlp", "residual-cnn"])
def test_model_gradients_match_finite_differences(build, shape):
    rng = np.random.default_rng(5)
    model = build()
    x = _input(shape, rng)
    _check_all_gradients(model, x, rng)


def test_mnist1d_cnn_parameter_names_and_count():
    model = mnist1d_cnn()
    names = [name for name, _ in model.named_parameters()]
    assert names == ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias",
                     "7.weight", "7.bias"]
    assert sum(p.size for p in model.parameters()) == 5210
    assert model(np.zeros((2, 1, 40))).shape == (2, 10)


# ---------------------------------------------------------------------------------------------
# PyTorch parity


class TorchResidual(torch.nn.Module):
    """torch twin of ``nn.Residual``: the body under the attribute name ``body``."""

    def __init__(self, body):
        super().__init__()
        self.body = body

    def forward(self, x):
        return x + self.body(x)


def _torch_cnn():
    t = torch.nn
    return t.Sequential(
        t.Conv2d(1, 4, 3, padding=1), t.ReLU(), t.MaxPool2d(2),
        TorchResidual(t.Sequential(t.Conv2d(4, 4, 3, padding=1, padding_mode="circular"),
                                   t.ReLU())),
        t.Conv2d(4, 6, 3, stride=2), t.ReLU(), t.AvgPool2d(2, ceil_mode=True),
        t.Flatten(), t.Linear(6, 5),
    )


def _our_cnn():
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, dtype=F64, rng=0), nn.ReLU(), nn.MaxPool2d(2),
        nn.Residual(nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, padding_mode="circular",
                                            dtype=F64, rng=1), nn.ReLU())),
        nn.Conv2d(4, 6, 3, stride=2, dtype=F64, rng=2), nn.ReLU(), nn.AvgPool2d(2, ceil_mode=True),
        nn.Flatten(), nn.Linear(6, 5, dtype=F64, rng=3),
    )


def _pair(name, args, kwargs):
    ours = getattr(nn, name)(*args, **kwargs, **({"dtype": F64, "rng": 3}
                                                 if "Pool" not in name else {}))
    return ours, getattr(torch.nn, name)(*args, **kwargs)


TORCH_CASES = [
    # (id, build() -> (ours, theirs), input shape, input kind)
    ("Conv1d-same-dil-reflect",
     lambda: _pair("Conv1d", (3, 4, 4), {"padding": "same", "dilation": 2,
                                         "padding_mode": "reflect"}), (2, 3, 9), "normal"),
    ("Conv1d-same-even-kernel",  # odd total padding: the extra one goes after, as in torch
     lambda: _pair("Conv1d", (2, 3, 4), {"padding": "same"}), (2, 2, 7), "normal"),
    ("Conv2d-same-even-kernel-reflect",
     lambda: _pair("Conv2d", (2, 2, (2, 3)), {"padding": "same", "dilation": (3, 1),
                                              "padding_mode": "reflect"}), (1, 2, 6, 5),
     "normal"),
    ("Conv1d-stride", lambda: _pair("Conv1d", (1, 25, 5, 2, 1), {}), (2, 1, 40), "normal"),
    ("Conv2d-groups-circular",
     lambda: _pair("Conv2d", (4, 6, 3), {"stride": 2, "padding": 1, "groups": 2,
                                         "padding_mode": "circular"}), (2, 4, 7, 6), "normal"),
    ("Conv2d-rect-nobias",
     lambda: _pair("Conv2d", (2, 3, (2, 3)), {"stride": (1, 2), "padding": (0, 1),
                                              "bias": False}), (2, 2, 5, 7), "normal"),
    ("Conv2d-replicate-dil",
     lambda: _pair("Conv2d", (2, 2, 3), {"padding": 2, "dilation": 2,
                                         "padding_mode": "replicate"}), (1, 2, 6, 5), "normal"),
    ("Conv3d",
     lambda: _pair("Conv3d", (2, 4, (2, 3, 2)), {"stride": (1, 2, 1), "padding": 1,
                                                 "dilation": (2, 1, 1), "groups": 2}),
     (2, 2, 4, 5, 3), "normal"),
    ("ConvTranspose1d",
     lambda: _pair("ConvTranspose1d", (4, 6, 3), {"stride": 2, "padding": 1,
                                                  "output_padding": 1, "groups": 2}),
     (2, 4, 5), "normal"),
    ("ConvTranspose2d",
     lambda: _pair("ConvTranspose2d", (3, 2, (3, 2)), {"stride": (2, 1), "padding": (1, 0),
                                                       "output_padding": (1, 0),
                                                       "dilation": (1, 2)}),
     (2, 3, 3, 4), "normal"),
    ("ConvTranspose3d",
     lambda: _pair("ConvTranspose3d", (2, 3, 2), {"stride": 2, "bias": False}),
     (1, 2, 2, 3, 2), "normal"),
    ("Linear", lambda: _pair("Linear", (5, 3), {}), (4, 5), "normal"),
    ("Linear-nobias", lambda: _pair("Linear", (4, 2), {"bias": False}), (3, 4), "normal"),
    ("MaxPool2d", lambda: _pair("MaxPool2d", (2,), {}), (2, 3, 4, 6), "distinct"),
    ("MaxPool2d-pad-dil-ceil",
     lambda: _pair("MaxPool2d", (3,), {"stride": 2, "padding": 1, "dilation": (1, 2),
                                       "ceil_mode": True}), (2, 2, 6, 8), "distinct"),
    ("AvgPool2d", lambda: _pair("AvgPool2d", (2,), {}), (2, 3, 4, 6), "normal"),
    ("AvgPool2d-pad-ceil-exclude",
     lambda: _pair("AvgPool2d", (3,), {"stride": 2, "padding": 1, "ceil_mode": True,
                                       "count_include_pad": False}), (2, 2, 6, 7), "normal"),
    ("Sequential-CNN", lambda: (_our_cnn(), _torch_cnn()), (2, 1, 10, 10), "normal"),
]


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
@pytest.mark.parametrize(("build", "shape", "kind"), [c[1:] for c in TORCH_CASES],
                         ids=[c[0] for c in TORCH_CASES])
def test_matches_torch_module(build, shape, kind):
    rng = np.random.default_rng(11)
    ours, theirs = build()
    theirs = theirs.double()
    state = ours.state_dict()
    # The names are exactly torch's (in the same order), so a state dict moves across as is.
    assert list(state) == list(theirs.state_dict())
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})

    x = _input(shape, rng, kind)
    y = ours(x)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    yt = theirs(xt)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=TORCH_RTOL, atol=TORCH_ATOL)

    G = rng.standard_normal(y.shape)
    ours.zero_grad()
    gx = ours.backward(G)
    yt.backward(torch.from_numpy(G))
    np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=TORCH_RTOL, atol=TORCH_ATOL)
    torch_grads = {name: p.grad.numpy() for name, p in theirs.named_parameters()}
    our_grads = dict(ours.named_grads())
    assert list(our_grads) == list(torch_grads)
    for name, g in our_grads.items():
        np.testing.assert_allclose(g, torch_grads[name], rtol=TORCH_RTOL, atol=TORCH_ATOL,
                                   err_msg=name)


def test_state_dict_loads_torch_tensors_directly():
    ours = mnist1d_cnn()
    t = torch.nn
    theirs = t.Sequential(t.Conv1d(1, 25, 5, 2, 1), t.ReLU(), t.Conv1d(25, 25, 3, 2, 1), t.ReLU(),
                          t.Conv1d(25, 25, 3, 2, 1), t.ReLU(), t.Flatten(),
                          t.Linear(125, 10)).double()
    ours.load_state_dict(theirs.state_dict())
    x = np.random.default_rng(0).standard_normal((3, 1, 40))
    np.testing.assert_allclose(ours(x), theirs(torch.from_numpy(x)).detach().numpy(),
                               rtol=TORCH_RTOL, atol=TORCH_ATOL)


# ---------------------------------------------------------------------------------------------
# initialisation


INIT_CASES = [
    ("Conv2d", (16, 32, 3), {}),
    ("Conv2d", (16, 32, 3), {"groups": 4}),
    ("Linear", (300, 100), {}),
    ("ConvTranspose2d", (16, 8, 3), {}),
    ("ConvTranspose2d", (16, 8, 3), {"groups": 2}),
]


@pytest.mark.parametrize(("name", "args", "kwargs"), INIT_CASES,
                         ids=[f"{n}{a}" + "".join(f"-{key}{v}" for key, v in k.items())
                              for n, a, k in INIT_CASES])
def test_init_matches_torch_distribution(name, args, kwargs):
    ours = getattr(nn, name)(*args, **kwargs, rng=0)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        theirs = getattr(torch.nn, name)(*args, **kwargs)
    fan_in, _ = torch.nn.init._calculate_fan_in_and_fan_out(theirs.weight)
    tw = theirs.weight.detach().numpy()
    expected_fan_in = tw.shape[1] * math.prod(tw.shape[2:])  # also ConvTranspose: shape[1]
    assert fan_in == expected_fan_in
    bound = 1.0 / math.sqrt(fan_in)
    assert ours.weight.shape == tuple(tw.shape)
    assert ours.weight.dtype == np.float32
    slack = bound * (1 + 1e-6)  # float32 rounding of a value just below the bound
    for label, w, b in [("ours", ours.weight, ours.bias),
                        ("torch", tw, theirs.bias.detach().numpy())]:
        assert np.abs(w).max() <= slack, label
        assert np.abs(w).max() >= 0.95 * bound, label
        assert np.abs(b).max() <= slack, label
        assert np.abs(b).max() >= 0.8 * bound, label
    # Uniform on [-bound, bound], and the same distribution as torch's.
    assert stats.kstest(ours.weight.ravel() / bound, "uniform", args=(-1, 2)).pvalue > 1e-3
    assert stats.ks_2samp(ours.weight.ravel(), tw.ravel()).pvalue > 1e-3
    assert abs(ours.weight.mean()) < 0.05 * bound


@pytest.mark.parametrize("build", [
    lambda: nn.LocallyConnected2d(3, 4, (3, 2), (6, 6)),
    lambda: nn.DenseGrid2d(2, 3, (4, 5), (2, 2)),
], ids=["LocallyConnected2d", "DenseGrid2d"])
def test_untied_layers_use_the_conv_fan_in(build):
    layer = build()
    c_in = layer.in_channels
    window = layer.kernel_size if hasattr(layer, "kernel_size") else layer.in_size
    bound = 1.0 / math.sqrt(c_in * math.prod(window))
    assert np.abs(layer.weight).max() <= bound * (1 + 1e-6)
    assert np.abs(layer.weight).max() >= 0.95 * bound
    assert np.abs(layer.bias).max() <= bound * (1 + 1e-6)


PARAM_BUILDERS = {
    "Conv1d": lambda rng: nn.Conv1d(2, 3, 3, rng=rng),
    "Conv2d": lambda rng: nn.Conv2d(2, 3, 3, rng=rng),
    "ConvTranspose2d": lambda rng: nn.ConvTranspose2d(2, 3, 3, rng=rng),
    "LocallyConnected2d": lambda rng: nn.LocallyConnected2d(2, 3, 3, 5, rng=rng),
    "DenseGrid1d": lambda rng: nn.DenseGrid1d(2, 3, 5, rng=rng),
    "Linear": lambda rng: nn.Linear(4, 3, rng=rng),
    "Sequential": lambda rng: nn.Sequential(nn.Linear(4, 3, rng=rng), nn.ReLU(),
                                            nn.Residual(nn.Linear(3, 3, rng=rng))),
}


@pytest.mark.parametrize("name", list(PARAM_BUILDERS))
def test_seeds_reproduce(name):
    build = PARAM_BUILDERS[name]
    a, b, c = build(7), build(7), build(8)
    for (na, pa), (nb, pb), (nc, pc) in zip(a.named_parameters(), b.named_parameters(),
                                            c.named_parameters()):
        assert na == nb == nc
        np.testing.assert_array_equal(pa, pb)
        assert not np.array_equal(pa, pc), na
    if name != "Sequential":  # (there one Generator would be shared by the layers)
        d = build(np.random.default_rng(7))  # a Generator seeded alike gives the same draws
        for pa, pd in zip(a.parameters(), d.parameters()):
            np.testing.assert_array_equal(pa, pd)
    e, f = build(None), build(None)
    assert not np.array_equal(e.parameters()[0], f.parameters()[0])


def test_dtype_argument():
    assert nn.Conv2d(1, 1, 1, rng=0).weight.dtype == np.float32
    assert nn.Conv2d(1, 1, 1, dtype=F64, rng=0).bias.dtype == F64
    assert nn.LocallyConnected1d(1, 1, 1, 3, dtype=F64, rng=0).weight.dtype == F64


# ---------------------------------------------------------------------------------------------
# gradient accumulation and zero_grad


ACCUMULATION_CASES = [c for c in LAYER_CASES
                      if c[0] in ("conv1d-stride-pad", "conv2d-same-stride-groups-reflect",
                                  "conv3d-stride-pad-groups", "convT2d-dilation",
                                  "lc2d-same-circular-shared", "lc2d-per-position-replicate",
                                  "dense2d-per-position", "linear", "maxpool2d",
                                  "avgpool2d-ceil", "relu", "flatten")]


@pytest.mark.parametrize(("build", "shape", "kind"), [c[1:] for c in ACCUMULATION_CASES],
                         ids=[c[0] for c in ACCUMULATION_CASES])
def test_backward_accumulates_until_zero_grad(build, shape, kind):
    rng = np.random.default_rng(3)
    layer = build(0)
    x = _input(shape, rng, kind)
    G = rng.standard_normal(layer(x).shape)
    gx1 = layer.backward(G)
    once = {name: np.array(g, copy=True) for name, g in layer.named_grads()}
    G_saved = G.copy()
    G[...] = 0.0  # the stored gradients must not alias grad_out
    for name, g in layer.named_grads():
        np.testing.assert_array_equal(g, once[name])
    G[...] = G_saved
    gx2 = layer.backward(G)
    np.testing.assert_allclose(gx2, gx1, rtol=1e-14)  # the input gradient does not accumulate
    for name, g in layer.named_grads():
        np.testing.assert_allclose(g, 2 * once[name], rtol=1e-14, atol=1e-15, err_msg=name)
    layer.zero_grad()
    assert layer.grads == {}
    for name, g in layer.named_grads():
        assert g.shape == dict(layer.named_parameters())[name].shape
        assert not g.any(), name


@pytest.mark.parametrize(("build", "shape"), [(residual_mlp, (4, 6)),
                                              (residual_cnn, (2, 1, 8, 8))],
                         ids=["residual-mlp", "residual-cnn"])
def test_nested_accumulation_and_zero_grad(build, shape):
    rng = np.random.default_rng(4)
    model = build()
    x = _input(shape, rng)
    G = rng.standard_normal(model(x).shape)
    model.backward(G)
    once = {name: np.array(g, copy=True) for name, g in model.named_grads()}
    assert all(np.any(g) for g in once.values())
    model.backward(G)
    for name, g in model.named_grads():
        np.testing.assert_allclose(g, 2 * once[name], rtol=1e-13, atol=1e-15, err_msg=name)
    model.zero_grad()

    def every_module(module):
        yield module
        for _, child in module.children():
            yield from every_module(child)

    modules = list(every_module(model))
    assert any(isinstance(m, nn.Residual) for m in modules)
    assert all(m.grads == {} for m in modules)
    assert not any(g.any() for _, g in model.named_grads())
    # After zero_grad a fresh pass gives the single-pass gradient again.
    model(x)
    model.backward(G)
    for name, g in model.named_grads():
        np.testing.assert_allclose(g, once[name], rtol=1e-13, atol=1e-15, err_msg=name)


@pytest.mark.parametrize(("build", "shape", "kind"), [c[1:] for c in ACCUMULATION_CASES],
                         ids=[c[0] for c in ACCUMULATION_CASES])
def test_backward_before_forward_raises(build, shape, kind):
    layer = build(0)
    with pytest.raises(fc2conv.ArgumentError, match="before forward"):
        layer.backward(np.zeros((1,)))


@pytest.mark.parametrize("build", [residual_mlp, mnist1d_cnn,
                                   lambda: nn.Residual(nn.Linear(3, 3, rng=0))],
                         ids=["residual-mlp", "mnist1d-cnn", "Residual"])
def test_backward_before_forward_raises_in_containers(build):
    with pytest.raises(fc2conv.ArgumentError, match="before forward"):
        build().backward(np.zeros((1, 3)))


# ---------------------------------------------------------------------------------------------
# state dicts


def test_state_dict_round_trip():
    a, b = residual_cnn(), residual_cnn()
    for p in b.parameters():
        p[...] = 0.0
    state = a.state_dict()
    names = list(state)
    assert "3.body.0.weight" in names and "3.body.2.body.0.bias" in names
    assert names == [name for name, _ in a.named_parameters()]
    kept = [id(p) for p in b.parameters()]
    b.load_state_dict(state)
    assert [id(p) for p in b.parameters()] == kept  # loaded in place (optimisers hold these)
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_array_equal(pa, pb, err_msg=name)
    x = np.random.default_rng(0).standard_normal((2, 1, 8, 8))
    np.testing.assert_array_equal(a(x), b(x))


def test_state_dict_returns_copies_and_load_copies():
    layer = nn.Conv2d(2, 3, 3, rng=0)
    original = layer.weight.copy()
    state = layer.state_dict()
    state["weight"][...] = 99.0
    np.testing.assert_array_equal(layer.weight, original)
    other = nn.Conv2d(2, 3, 3, rng=1)
    state = layer.state_dict()
    other.load_state_dict(state)
    state["weight"][...] = -1.0
    np.testing.assert_array_equal(other.weight, original)


def test_load_state_dict_keeps_the_parameter_dtype():
    layer = nn.Linear(3, 2, dtype=F64, rng=0)
    state = {k: v.astype(np.float32) for k, v in nn.Linear(3, 2, rng=1).state_dict().items()}
    layer.load_state_dict(state)
    assert layer.weight.dtype == F64
    np.testing.assert_array_equal(layer.weight, state["weight"].astype(F64))


def test_bias_false_has_no_bias_entry():
    assert list(nn.Conv2d(1, 2, 3, bias=False, rng=0).state_dict()) == ["weight"]
    assert list(nn.LocallyConnected1d(1, 2, 3, 5, bias=False, rng=0).state_dict()) == ["weight"]
    assert list(nn.Sequential(nn.ReLU(), nn.Linear(2, 2, bias=False, rng=0)).state_dict()) == [
        "1.weight"]


def test_load_state_dict_missing_or_unexpected_key():
    model = residual_mlp()
    before = [p.copy() for p in model.parameters()]
    state = model.state_dict()
    del state["2.body.0.bias"]
    with pytest.raises(fc2conv.ArgumentError, match=r"missing \['2.body.0.bias'\]"):
        model.load_state_dict(state)
    state = model.state_dict()
    state["5.weight"] = np.zeros((3, 3))
    with pytest.raises(fc2conv.ArgumentError, match=r"unexpected \['5.weight'\]"):
        model.load_state_dict(state)
    for p, q in zip(model.parameters(), before):
        np.testing.assert_array_equal(p, q)


def test_load_state_dict_wrong_shape_changes_nothing():
    model = residual_mlp()
    before = [p.copy() for p in model.parameters()]
    state = {k: np.zeros_like(v) for k, v in model.state_dict().items()}
    state["4.weight"] = np.zeros((3, 9))
    with pytest.raises(fc2conv.ShapeError, match=r"4\.weight.*\(3, 9\).*\(3, 8\)"):
        model.load_state_dict(state)
    # Shapes are all checked before anything is written: no partial load.
    for p, q in zip(model.parameters(), before):
        np.testing.assert_array_equal(p, q)


# ---------------------------------------------------------------------------------------------
# errors


@pytest.mark.parametrize(("layer", "shape"), [
    (nn.Conv1d(1, 1, 3, rng=0), (1, 1, 5, 5)),
    (nn.Conv2d(1, 1, 3, rng=0), (1, 1, 5)),
    (nn.Conv3d(1, 1, 1, rng=0), (1, 1, 5, 5)),
    (nn.ConvTranspose1d(1, 1, 3, rng=0), (1, 1, 5, 5)),
    (nn.LocallyConnected1d(1, 1, 3, 5, rng=0), (1, 1, 5, 5)),
    (nn.DenseGrid2d(1, 1, 5, rng=0), (1, 1, 5)),
    (nn.MaxPool1d(2), (1, 1, 4, 4)),
    (nn.AvgPool2d(2), (1, 4, 4)),
], ids=lambda v: type(v).__name__ if isinstance(v, nn.Module) else str(v))
def test_wrong_spatial_rank(layer, shape):
    with pytest.raises(fc2conv.ShapeError, match=type(layer).__name__) as info:
        layer(np.zeros(shape, dtype=np.float32))
    assert str(shape) in str(info.value)
    with pytest.raises(fc2conv.ShapeError):
        layer.output_shape(shape[1:])


@pytest.mark.parametrize("layer", [
    nn.LocallyConnected2d(1, 2, 3, (5, 6), padding=1, rng=0),
    nn.DenseGrid2d(1, 2, (5, 6), rng=0),
], ids=["LocallyConnected2d", "DenseGrid2d"])
def test_untied_layers_reject_another_grid(layer):
    layer(np.zeros((1, 1, 5, 6), dtype=np.float32))
    for size in [(6, 5), (5, 7)]:
        with pytest.raises(fc2conv.ShapeError, match=r"\(5, 6\)") as info:
            layer(np.zeros((1, 1, *size), dtype=np.float32))
        assert str(size) in str(info.value)
        with pytest.raises(fc2conv.ShapeError, match=r"\(5, 6\)"):
            layer.output_shape((1, *size))


def test_linear_shape_errors():
    layer = nn.Linear(12, 3, rng=0)
    with pytest.raises(fc2conv.ShapeError, match="Flatten") as info:
        layer(np.zeros((2, 3, 4), dtype=np.float32))
    assert "(2, 3, 4)" in str(info.value)
    with pytest.raises(fc2conv.ShapeError, match=r"\(N, 12\)") as info:
        layer(np.zeros((2, 11), dtype=np.float32))
    assert "Flatten" not in str(info.value)
    with pytest.raises(fc2conv.ShapeError, match=r"\(12,\)"):
        layer.output_shape((3, 4))
    nn.Sequential(nn.Flatten(), layer)(np.zeros((2, 3, 4), dtype=np.float32))


@pytest.mark.parametrize(("build", "error", "word"), [
    (lambda: nn.Conv2d(3, 4, 3, groups=2), fc2conv.ArgumentError, "groups"),
    (lambda: nn.Conv2d(4, 3, 3, groups=2), fc2conv.ArgumentError, "groups"),
    (lambda: nn.Conv1d(4, 4, 3, groups=0), fc2conv.ArgumentError, "groups"),
    (lambda: nn.ConvTranspose2d(3, 4, 3, groups=2), fc2conv.ArgumentError, "groups"),
    (lambda: nn.Conv2d(1, 1, 0), fc2conv.ArgumentError, "kernel_size"),
    (lambda: nn.Conv2d(1, 1, (3, 0)), fc2conv.ArgumentError, "kernel_size"),
    (lambda: nn.Conv2d(1, 1, (3, 3, 3)), fc2conv.ArgumentError, "kernel_size"),
    (lambda: nn.Conv3d(1, 1, 2, stride=0), fc2conv.ArgumentError, "stride"),
    (lambda: nn.Conv1d(1, 1, 2, dilation=-1), fc2conv.ArgumentError, "dilation"),
    (lambda: nn.Conv1d(0, 1, 2), fc2conv.ArgumentError, "in_channels"),
    (lambda: nn.Conv1d(1, True, 2), fc2conv.ArgumentError, "out_channels"),
    (lambda: nn.ConvTranspose1d(1, 1, 0), fc2conv.ArgumentError, "kernel_size"),
    (lambda: nn.LocallyConnected2d(1, 1, 0, 5), fc2conv.ArgumentError, "kernel_size"),
    (lambda: nn.LocallyConnected2d(1, 1, 3, (5, 0)), fc2conv.ArgumentError, "in_size"),
    (lambda: nn.LocallyConnected1d(1, 1, 7, 5), fc2conv.ShapeError, "kernel"),
    (lambda: nn.LocallyConnected1d(1, 1, 3, 5, padding_mode="wrap"), fc2conv.ArgumentError,
     "circular"),
    (lambda: nn.Conv2d(1, 1, 3, padding_mode="wrap"), fc2conv.ArgumentError, "circular"),
    (lambda: nn.DenseGrid1d(1, 1, 5, out_size=0), fc2conv.ArgumentError, "out_size"),
    (lambda: nn.DenseGrid2d(1, 0, 5), fc2conv.ArgumentError, "out_channels"),
    (lambda: nn.MaxPool2d(0), fc2conv.ArgumentError, "kernel_size"),
    (lambda: nn.AvgPool1d(2, stride=0), fc2conv.ArgumentError, "stride"),
    (lambda: nn.Linear(0, 3), fc2conv.ArgumentError, "in_features"),
    (lambda: nn.Linear(3, 2.5), fc2conv.ArgumentError, "out_features"),
    (lambda: nn.Sequential(nn.ReLU(), lambda x: x), fc2conv.ArgumentError, "argument 1"),
])
def test_bad_constructor_arguments(build, error, word):
    with pytest.raises(error, match=word):
        build()


@pytest.mark.parametrize(("layer", "shape", "word"), [
    (nn.Conv2d(1, 1, 3, padding="bogus", rng=0), (1, 1, 5, 5), "padding"),
    (nn.ConvTranspose1d(1, 1, 3, padding="same", rng=0), (1, 1, 5), "padding"),
    (nn.ConvTranspose1d(1, 1, 3, stride=2, output_padding=2, rng=0), (1, 1, 5),
     "output_padding"),
    (nn.MaxPool2d(2, padding=2), (1, 1, 6, 6), "padding"),
    (nn.Conv1d(1, 1, 7, rng=0), (1, 1, 5), "kernel"),
    (nn.Conv1d(2, 1, 3, rng=0), (1, 3, 5), "C_in"),
])
def test_bad_arguments_raise_at_the_latest_on_forward(layer, shape, word):
    """Conv and pooling layers check padding and modes when they see an input."""
    with pytest.raises(fc2conv.Fc2convError, match=word):
        layer(np.zeros(shape, dtype=np.float32))


def test_residual_body_must_keep_the_shape():
    block = nn.Residual(nn.Linear(3, 4, rng=0))
    with pytest.raises(fc2conv.ShapeError, match="skip connection"):
        block(np.zeros((2, 3), dtype=np.float32))


@pytest.mark.parametrize("layer", [nn.Conv1d(1, 2, 3, dtype=F64, rng=0),
                                   nn.LocallyConnected1d(1, 2, 3, 6, dtype=F64, rng=0),
                                   nn.MaxPool1d(2)],
                         ids=["Conv1d", "LocallyConnected1d", "MaxPool1d"])
def test_backward_rejects_a_wrong_grad_out(layer):
    y = layer(np.ones((2, 1, 6)))
    with pytest.raises(fc2conv.ShapeError, match="grad_out"):
        layer.backward(np.ones((y.shape[0], y.shape[1], y.shape[2] + 1)))
    assert layer.grads == {}


def test_linear_backward_rejects_a_wrong_grad_out():
    layer = nn.Linear(3, 2, dtype=F64, rng=0)
    layer(np.ones((4, 3)))
    with pytest.raises(fc2conv.ShapeError, match="grad_out"):
        layer.backward(np.ones((4, 3)))
    assert layer.grads == {}


def test_relu_backward_rejects_a_wrong_grad_out():
    layer = nn.ReLU()
    layer(np.ones((4, 3)))
    with pytest.raises(fc2conv.ShapeError):
        layer.backward(np.ones((1, 3)))


def test_linear_rejects_mixed_precision():
    layer = nn.Linear(3, 2, rng=0)  # float32
    with pytest.raises(fc2conv.DTypeError):
        layer(np.ones((4, 3)))


# ---------------------------------------------------------------------------------------------
# output_shape


@pytest.mark.parametrize(("build", "shape", "kind"), [c[1:] for c in LAYER_CASES],
                         ids=LAYER_IDS)
def test_output_shape_matches_forward(build, shape, kind):
    layer = build(0)
    y = layer(_input(shape, np.random.default_rng(0), kind))
    assert layer.output_shape(shape[1:]) == y.shape[1:]


@pytest.mark.parametrize(("build", "shape"), [
    (mnist1d_cnn, (2, 1, 40)),
    (residual_mlp, (2, 6)),
    (residual_cnn, (2, 1, 8, 8)),
    (lambda: nn.Sequential(nn.ConvTranspose2d(1, 2, 3, stride=2, output_padding=1, rng=0),
                           nn.MaxPool2d(3, stride=2, ceil_mode=True),
                           nn.AvgPool2d(2, padding=1, ceil_mode=True), nn.Flatten()),
     (1, 1, 5, 6)),
], ids=["mnist1d-cnn", "residual-mlp", "residual-cnn", "convT-pools"])
def test_sequential_output_shape(build, shape):
    model = build()
    y = model(np.zeros(shape, dtype=model.parameters()[0].dtype))
    assert model.output_shape(shape[1:]) == y.shape[1:]


@settings(max_examples=40, deadline=None)
@given(d=st.integers(1, 3), size=st.integers(3, 7), k=st.integers(1, 3), s=st.integers(1, 3),
       dil=st.integers(1, 2), pad=st.sampled_from([0, 1, "same", "valid"]),
       mode=st.sampled_from(["zeros", "reflect", "circular"]), ceil=st.booleans())
def test_output_shape_matches_forward_property(d, size, k, s, dil, pad, mode, ceil):
    if dil * (k - 1) + 1 > size:
        return
    if mode == "reflect" and pad not in (0, "valid") and dil * (k - 1) >= size:
        return
    x = np.zeros((1, 2, *(size,) * d))
    conv = getattr(nn, f"Conv{d}d")(2, 2, k, s, pad, dil, padding_mode=mode, dtype=F64, rng=0)
    lc = getattr(nn, f"LocallyConnected{d}d")(2, 1, k, size, s, pad, dil, padding_mode=mode,
                                              dtype=F64, rng=0)
    layers = [conv, lc, getattr(nn, f"MaxPool{d}d")(k, s, k // 2, dil, ceil),
              getattr(nn, f"AvgPool{d}d")(k, s, k // 2, ceil)]
    if s > 1 or dil > 1:  # output_padding < max(stride, dilation)
        layers.append(getattr(nn, f"ConvTranspose{d}d")(2, 3, k, s, k // 2, max(s, dil) - 1,
                                                        dilation=dil, dtype=F64, rng=0))
    for layer in layers:
        assert layer.output_shape(x.shape[1:]) == layer(x).shape[1:], layer


# ---------------------------------------------------------------------------------------------
# the ladder: tied locally connected and scattered dense-on-grid layers are convolutions


MODES = ("zeros", "reflect", "symmetric", "replicate", "circular")


def _source(mode, n, j):
    """Input index that padded position ``j`` (``-pad <= j < n + pad``) reads; None for 0."""
    if 0 <= j < n:
        return j
    if mode == "zeros":
        return None
    if mode == "circular":
        return j % n
    if mode == "replicate":
        return min(max(j, 0), n - 1)
    if mode == "reflect":
        return -j if j < 0 else 2 * (n - 1) - j
    return -j - 1 if j < 0 else 2 * n - 1 - j  # symmetric


def _same_before(n, k, s):
    """Padding before the input for "same" (DESIGN.md: ceil(n / s) outputs, extra after)."""
    total = max((-(-n // s) - 1) * s + k - n, 0)
    return total // 2


def _conv_pair(mode, padding, rng):
    conv = nn.Conv2d(2, 3, 3, stride=2, padding=padding, padding_mode=mode, dtype=F64, rng=rng)
    x = np.random.default_rng(rng).standard_normal((2, 2, 7, 6))
    return conv, x


@pytest.mark.parametrize("padding", [1, "same"])
@pytest.mark.parametrize("mode", MODES)
def test_tied_locally_connected_is_conv(mode, padding):
    conv, x = _conv_pair(mode, padding, 0)
    lc = nn.LocallyConnected2d(2, 3, 3, (7, 6), stride=2, padding=padding, padding_mode=mode,
                               shared_bias=True, dtype=F64, rng=1)
    lc.weight[...] = conv.weight  # the same kernel at every position
    lc.bias[...] = conv.bias
    y = conv(x)
    np.testing.assert_allclose(lc(x), y, rtol=1e-12, atol=1e-13)
    # Per-position bias holding the same value everywhere is the same layer too.
    lc2 = nn.LocallyConnected2d(2, 3, 3, (7, 6), stride=2, padding=padding, padding_mode=mode,
                                dtype=F64, rng=1)
    assert lc2.bias.shape == (*y.shape[2:], 3)
    lc2.weight[...] = conv.weight
    lc2.bias[...] = conv.bias
    np.testing.assert_allclose(lc2(x), y, rtol=1e-12, atol=1e-13)
    # Backward: same input gradient; the tied weight's gradient is the sum over positions.
    G = np.random.default_rng(2).standard_normal(y.shape)
    np.testing.assert_allclose(lc.backward(G), conv.backward(G), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(lc.grads["weight"].sum(axis=(0, 1)), conv.grads["weight"],
                               rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(lc.grads["bias"], conv.grads["bias"], rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("padding", [1, "same"])
@pytest.mark.parametrize("mode", MODES)
def test_scattered_dense_grid_is_conv(mode, padding):
    conv, x = _conv_pair(mode, padding, 3)
    y = conv(x)
    (h, w), (h_out, w_out) = x.shape[2:], y.shape[2:]
    pads = [1, 1] if padding == 1 else [_same_before(n, 3, 2) for n in (h, w)]
    dense = nn.DenseGrid2d(2, 3, (h, w), (h_out, w_out), dtype=F64, rng=4)
    dense.weight[...] = 0.0
    for i in range(h_out):
        for j in range(w_out):
            for a in range(3):
                for b in range(3):
                    si = _source(mode, h, i * 2 + a - pads[0])
                    sj = _source(mode, w, j * 2 + b - pads[1])
                    if si is not None and sj is not None:
                        dense.weight[i, j, :, :, si, sj] += conv.weight[:, :, a, b]
    dense.bias[...] = conv.bias
    np.testing.assert_allclose(dense(x), y, rtol=1e-12, atol=1e-13)
    G = np.random.default_rng(5).standard_normal(y.shape)
    np.testing.assert_allclose(dense.backward(G), conv.backward(G), rtol=1e-12, atol=1e-13)
