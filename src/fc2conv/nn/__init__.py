"""Layers: every rung of the ladder, trainable, with PyTorch's names and initialisation.

Dense-on-grid -> locally connected -> convolution, plus what a small network needs. Each layer
holds NumPy parameters and calls :mod:`fc2conv.functional` forward and its VJPs backward;
``backward(grad_out)`` returns the input gradient and accumulates parameter gradients in
``layer.grads``.

>>> import numpy as np
>>> from fc2conv import nn
>>> cnn = nn.Sequential(nn.Conv1d(1, 25, 5, 2, 1, rng=0), nn.ReLU(),
...                     nn.Conv1d(25, 25, 3, 2, 1, rng=1), nn.ReLU(),
...                     nn.Conv1d(25, 25, 3, 2, 1, rng=2), nn.ReLU(),
...                     nn.Flatten(), nn.Linear(125, 10, rng=3))
>>> x = np.random.default_rng(0).standard_normal((8, 1, 40)).astype(np.float32)
>>> logits = cnn(x)
>>> logits.shape, sum(p.size for p in cnn.parameters())
((8, 10), 5210)
>>> grad_x = cnn.backward(np.ones_like(logits))
>>> sorted(cnn[0].grads)
['bias', 'weight']
"""

from ._layers import (
    AvgPool1d,
    AvgPool2d,
    AvgPool3d,
    Conv1d,
    Conv2d,
    Conv3d,
    ConvTranspose1d,
    ConvTranspose2d,
    ConvTranspose3d,
    DenseGrid1d,
    DenseGrid2d,
    DenseGrid3d,
    Flatten,
    Linear,
    LocallyConnected1d,
    LocallyConnected2d,
    LocallyConnected3d,
    MaxPool1d,
    MaxPool2d,
    MaxPool3d,
    ReLU,
)
from ._module import Module, Residual, Sequential

__all__ = [
    "AvgPool1d",
    "AvgPool2d",
    "AvgPool3d",
    "Conv1d",
    "Conv2d",
    "Conv3d",
    "ConvTranspose1d",
    "ConvTranspose2d",
    "ConvTranspose3d",
    "DenseGrid1d",
    "DenseGrid2d",
    "DenseGrid3d",
    "Flatten",
    "Linear",
    "LocallyConnected1d",
    "LocallyConnected2d",
    "LocallyConnected3d",
    "MaxPool1d",
    "MaxPool2d",
    "MaxPool3d",
    "Module",
    "ReLU",
    "Residual",
    "Sequential",
]
