"""The MNIST-1D models of Greydanus & Kobak (ICML 2024), and the ladder's rungs between them.

The paper compares a logistic regression, an MLP and a CNN on 40-position signals. The CNN
is three strided convolutions and a linear read-out; fc2conv adds the two rungs the paper
leaves out, built on the *same* windows so that only the weight sharing differs:

- ``"cnn"``: ``Conv1d(1, 25, 5, stride 2, padding 1)``, ``Conv1d(25, 25, 3, 2, 1)`` twice,
  ReLUs, ``Linear(125, 10)``: 5,210 parameters, the paper's ``ConvBase``;
- ``"lc"``: the same three layers locally connected (untied weights and biases per output
  position, :class:`~fc2conv.nn.LocallyConnected1d`): 40 -> 19 -> 10 -> 5 positions;
- ``"dense"``: the same three layers dense-on-grid (every output position reads every input
  position, :class:`~fc2conv.nn.DenseGrid1d`), same grid sizes;
- ``"mlp"``: ``Linear(40, 100)``, ReLU, a residual ``Linear(100, 100)`` + ReLU,
  ``Linear(100, 10)``: 15,210 parameters, the paper's ``MLPBase``;
- ``"logistic"``: ``Linear(40, 10)``, 410 parameters.

Every model maps ``x: (N, 1, 40)`` to logits ``(N, 10)``, and its ``state_dict`` names match
the same architecture written with ``torch.nn.Sequential``.

>>> from fc2conv.models import MNIST1D_MODELS, mnist1d_model
>>> from fc2conv.analysis import count_params
>>> {name: count_params(mnist1d_model(name, rng=0)) for name in MNIST1D_MODELS}
{'logistic': 410, 'mlp': 15210, 'cnn': 5210, 'lc': 32610, 'dense': 171110}
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import nn
from ._errors import ArgumentError

__all__ = ["MNIST1D_MODELS", "mnist1d_model"]

MNIST1D_MODELS = ("logistic", "mlp", "cnn", "lc", "dense")
_CHANNELS, _LENGTH, _CLASSES = 25, 40, 10
# (kernel, stride, padding) of the paper's three convolutions; the grid goes 40 -> 19 -> 10 -> 5
_CONV_GEOMETRY = ((5, 2, 1), (3, 2, 1), (3, 2, 1))


def mnist1d_model(name: str, *, hidden: int = 100, channels: int = _CHANNELS,
                  dtype: Any = np.float32, rng: Any = None) -> nn.Sequential:
    """A fresh MNIST-1D model: ``x: (N, 1, 40)`` -> logits ``(N, 10)``.

    Args:
        name: one of :data:`MNIST1D_MODELS` (see the module docstring).
        hidden: the MLP's width (the paper: 100).
        channels: the feature maps of the convolutional rungs (the paper: 25).
        dtype: parameter dtype, float32 or float64.
        rng: seed or ``numpy.random.Generator`` for the (PyTorch-style) initialisation.

    >>> import numpy as np
    >>> from fc2conv.models import mnist1d_model
    >>> cnn = mnist1d_model("cnn", rng=0)
    >>> cnn(np.zeros((3, 1, 40), np.float32)).shape
    (3, 10)
    >>> [type(layer).__name__ for layer in mnist1d_model("lc", rng=0)][:3]
    ['LocallyConnected1d', 'ReLU', 'LocallyConnected1d']
    """
    if name not in MNIST1D_MODELS:
        raise ArgumentError(f"name must be one of {MNIST1D_MODELS}; got {name!r}")
    gen = np.random.default_rng(rng)
    options = {"dtype": dtype, "rng": gen}
    if name == "logistic":
        return nn.Sequential(nn.Flatten(), nn.Linear(_LENGTH, _CLASSES, **options))
    if name == "mlp":
        return nn.Sequential(
            nn.Flatten(), nn.Linear(_LENGTH, hidden, **options), nn.ReLU(),
            nn.Residual(nn.Sequential(nn.Linear(hidden, hidden, **options), nn.ReLU())),
            nn.Linear(hidden, _CLASSES, **options))
    layers: list[nn.Module] = []
    size, c_in = _LENGTH, 1
    for kernel, stride, padding in _CONV_GEOMETRY:
        out_size = (size + 2 * padding - kernel) // stride + 1
        if name == "cnn":
            layer = nn.Conv1d(c_in, channels, kernel, stride, padding, **options)
        elif name == "lc":
            layer = nn.LocallyConnected1d(c_in, channels, kernel, size, stride, padding,
                                          **options)
        else:
            layer = nn.DenseGrid1d(c_in, channels, size, out_size, **options)
        layers += [layer, nn.ReLU()]
        size, c_in = out_size, channels
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(channels * size, _CLASSES, **options))
