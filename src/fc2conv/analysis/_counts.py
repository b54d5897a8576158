"""What a model costs and sees: parameters, FLOPs, receptive field.

FLOPs count a multiply-add as 2 (the benchmark convention of ``DESIGN.md``), a bias add, a
ReLU, a residual add and one pooling comparison/addition as 1. Convolutions count every
kernel tap of every output, padding included, as profilers (fvcore, ptflops) do.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from .. import nn
from .._errors import ArgumentError, ShapeError

__all__ = ["ReceptiveField", "count_flops", "count_params", "receptive_field"]

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_T = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_LOCAL = (nn.LocallyConnected1d, nn.LocallyConnected2d, nn.LocallyConnected3d)
_DENSE = (nn.DenseGrid1d, nn.DenseGrid2d, nn.DenseGrid3d)
_MAX = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)
_AVG = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)


def count_params(model: nn.Module) -> int:
    """Number of trainable scalars (weights and biases) in a layer or model.

    >>> from fc2conv import nn
    >>> from fc2conv.analysis import count_params
    >>> count_params(nn.Conv2d(1, 1, 11))               # the seed's 121 weights + 1 bias
    122
    >>> count_params(nn.LocallyConnected2d(1, 1, 11, in_size=20))   # 10 x 10 x (121 + 1)
    12200
    """
    if not isinstance(model, nn.Module):
        raise ArgumentError(f"count_params takes an fc2conv.nn layer; got {type(model).__name__}")
    return sum(math.prod(p.shape) for p in model.parameters())


def count_flops(model: nn.Module, in_shape: Any) -> int:
    """FLOPs of one forward pass on one example of shape ``in_shape = (C, *S)``.

    Multiply for the batch size. Backward costs about twice this.

    >>> from fc2conv import nn
    >>> from fc2conv.analysis import count_flops
    >>> count_flops(nn.Conv2d(1, 1, 11, padding=5, bias=False), (1, 1000, 1000))   # 2 x 121
    242000000
    >>> count_flops(nn.DenseGrid2d(1, 1, 30, bias=False), (1, 30, 30)) == 2 * 900 ** 2
    True
    """
    if not isinstance(model, nn.Module):
        raise ArgumentError(f"count_flops takes an fc2conv.nn layer; got {type(model).__name__}")
    shape = tuple(int(s) for s in in_shape)
    return _flops(model, shape)[0]


def _flops(layer: nn.Module, shape: tuple[int, ...]) -> tuple[int, tuple[int, ...]]:
    """(FLOPs, output shape) of ``layer`` on one example of ``shape``."""
    if isinstance(layer, nn.Sequential):
        total = 0
        for sub in layer:
            flops, shape = _flops(sub, shape)
            total += flops
        return total, shape
    if isinstance(layer, nn.Residual):
        flops, out = _flops(layer.body, shape)
        return flops + math.prod(out), out
    out = layer.output_shape(shape)
    outputs = math.prod(out)
    bias = outputs if getattr(layer, "bias", None) is not None else 0
    if isinstance(layer, _CONV):
        per_output = layer.in_channels // layer.groups * math.prod(layer.kernel_size)
        return 2 * outputs * per_output + bias, out
    if isinstance(layer, _CONV_T):  # every input pixel scatters a kernel into each group's outputs
        per_input = layer.out_channels // layer.groups * math.prod(layer.kernel_size)
        return 2 * math.prod(shape) * per_input + bias, out
    if isinstance(layer, _LOCAL):
        return 2 * outputs * layer.in_channels * math.prod(layer.kernel_size) + bias, out
    if isinstance(layer, _DENSE):
        return 2 * outputs * layer.in_channels * math.prod(layer.in_size) + bias, out
    if isinstance(layer, nn.Linear):
        return 2 * layer.in_features * layer.out_features + bias, out
    if isinstance(layer, _MAX + _AVG):
        return outputs * math.prod(layer.kernel_size), out
    if isinstance(layer, nn.ReLU):
        return outputs, out
    if isinstance(layer, nn.Flatten):
        return 0, out
    raise ArgumentError(f"count_flops does not know the layer type {type(layer).__name__}")


class ReceptiveField(NamedTuple):
    """Per spatial axis: how many input pixels one output sees, and the step between outputs."""

    size: tuple[int, ...]
    stride: tuple[int, ...]


def receptive_field(model: nn.Module) -> ReceptiveField:
    """Receptive field of the last spatial feature map of a stack.

    Each layer with kernel ``k``, dilation ``d`` and stride ``s`` grows the field by
    ``(k - 1) * d * j`` where ``j`` is the product of the strides before it, then multiplies
    ``j`` by ``s``. A dense-on-grid layer sees its whole input (``k = S_in``). Layers after a
    ``Flatten`` or ``Linear`` see everything and are not counted.

    >>> from fc2conv import nn
    >>> from fc2conv.analysis import receptive_field
    >>> cnn = nn.Sequential(nn.Conv1d(1, 25, 5, 2, 1), nn.ReLU(), nn.Conv1d(25, 25, 3, 2, 1),
    ...                     nn.ReLU(), nn.Conv1d(25, 25, 3, 2, 1), nn.ReLU(), nn.Flatten(),
    ...                     nn.Linear(125, 10))
    >>> receptive_field(cnn)
    ReceptiveField(size=(17,), stride=(8,))
    """
    layers = _spatial_layers(model)
    if not layers:
        raise ArgumentError(f"{type(model).__name__} has no spatial layer to measure")
    ndim = layers[0].ndim
    size, jump = [1] * ndim, [1] * ndim
    for layer in layers:
        if layer.ndim != ndim:
            raise ShapeError(
                f"receptive_field: {type(layer).__name__} has {layer.ndim} spatial dims but the "
                f"stack started with {ndim}"
            )
        if isinstance(layer, _CONV_T):
            raise ArgumentError(
                "receptive_field: a transposed convolution has a fractional stride; its field "
                "is not a whole number of pixels"
            )
        if isinstance(layer, _DENSE):
            kernel, stride, dilation = layer.in_size, (1,) * ndim, (1,) * ndim
        else:
            kernel, stride = layer.kernel_size, layer.stride
            dilation = getattr(layer, "dilation", (1,) * ndim)
        for axis in range(ndim):
            size[axis] += (kernel[axis] - 1) * dilation[axis] * jump[axis]
            jump[axis] *= stride[axis]
    return ReceptiveField(tuple(size), tuple(jump))


def _spatial_layers(model: nn.Module) -> list[Any]:
    """The layers with a kernel, in order, up to the first Flatten/Linear."""
    kept = []
    for layer in _flatten(model):
        if isinstance(layer, (nn.Flatten, nn.Linear)):
            break
        if getattr(layer, "ndim", 0):
            kept.append(layer)
    return kept


def _flatten(model: nn.Module) -> list[nn.Module]:
    if isinstance(model, nn.Sequential):
        return [leaf for layer in model for leaf in _flatten(layer)]
    if isinstance(model, nn.Residual):  # the skip path sees less than the body
        return _flatten(model.body)
    return [model]
