"""Running a trained :mod:`fc2conv.nn` model over a Dask array.

Two ways, both exact:

- **tiles**: a stack of convolution, pooling and ReLU layers is fused into one pass per tile,
  with the model's receptive field as the halo (``analysis.receptive_field``: an output reads
  ``size`` inputs, and neighbouring outputs are ``stride`` inputs apart, so a tile of ``t``
  outputs reads ``t*stride + size - stride`` inputs). Each layer pads only where its tile
  touches the border of its own input, so zero, reflect, symmetric and replicate padding inside
  the network come out exactly as on the whole image. A circular layer after the first reads
  the far side of its input; the stack is split there and that layer's input is padded in
  Dask, as the first layer's is.
- **batch**: any model (classifiers with ``Flatten``/``Linear`` too) on whole examples,
  blocks of examples in parallel; the spatial axes are one chunk.
"""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np

from .. import _validate, nn
from .._errors import ArgumentError
from ._engine import run_stack
from ._ops import (
    as_dask,
    avg_pool_stage,
    conv_stage,
    max_pool_stage,
    pointwise_stage,
    shape_only,
)
from ._plan import Stage

__all__ = ["apply", "model_stages"]

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_MAX = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)
_AVG = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
_MODES = ("auto", "tiles", "batch")


def apply(model: nn.Module, x: Any, *, mode: str = "auto") -> da.Array:
    """Run ``model`` forward over ``x: (N, C, *S)``, a Dask array, lazily.

    Args:
        model: an :mod:`fc2conv.nn` layer or ``Sequential``.
        x: ``(N, C, *S)`` Dask array of the model's dtype (a NumPy array is wrapped).
        mode: ``"tiles"``: ``x`` may be chunked along S; the model must be a stack of
            ``Conv*d``, ``MaxPool*d``, ``AvgPool*d`` and ``ReLU`` (nested ``Sequential`` is
            flattened), run tile by tile with its receptive field as the halo.
            ``"batch"``: any model, on blocks of whole examples (S merged into one chunk).
            ``"auto"``: tiles when ``x`` is chunked along S and the model is such a stack,
            else batch.

    Returns:
        Lazy Dask array equal to ``model(x.compute())``: ``(N, C_out, *S_out)`` for a
        convolutional stack, ``(N, *out)`` for a classifier.

    >>> import numpy as np, dask.array as da
    >>> from fc2conv import nn, scale
    >>> model = nn.Sequential(nn.Conv2d(1, 4, 5, padding=2, padding_mode="reflect", rng=0),
    ...                       nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 1, 3, padding=1, rng=1))
    >>> image = np.random.default_rng(0).standard_normal((1, 1, 200, 300)).astype(np.float32)
    >>> y = scale.apply(model, da.from_array(image, chunks=(1, 1, 64, 64)))
    >>> y.chunks[2:]
    ((32, 32, 32, 4), (32, 32, 32, 32, 22))
    >>> bool(np.allclose(y.compute(), model(image), atol=1e-5))
    True
    """
    if mode not in _MODES:
        raise ArgumentError(f"mode must be one of {', '.join(map(repr, _MODES))}; got {mode!r}")
    x = as_dask(x)
    if mode == "batch":
        return _apply_batch(model, x)
    stages = None
    if x.ndim >= 3:
        try:
            stages = model_stages(model, x)
        except ArgumentError:
            if mode == "tiles":
                raise
    if stages is None or (mode == "auto" and all(len(c) == 1 for c in x.chunks[2:])):
        return _apply_batch(model, x)
    for segment in _segments(stages):
        x = run_stack(x, segment)
    return x


def model_stages(model: nn.Module, x: da.Array) -> list[Stage]:
    """The model as stages, shapes resolved for ``x``'s size (checked like the layers do)."""
    layers = _leaves(model)
    shape = shape_only(x)[:1]  # one example of zero memory is enough to resolve the shapes
    stages = []
    for layer in layers:
        if isinstance(layer, nn.ReLU):
            stages.append(pointwise_stage(tuple(shape.shape[2:]), _relu))
            continue
        if not isinstance(layer, (*_CONV, *_MAX, *_AVG)):
            raise ArgumentError(
                f"apply(mode='tiles') runs stacks of Conv, MaxPool, AvgPool and ReLU layers; "
                f"{type(layer).__name__} is none of them (its output at a position is not a "
                "function of a window): use mode='batch', which runs whole examples"
            )
        _validate.check_spatial_rank("x", shape, layer.ndim, type(layer).__name__)
        if isinstance(layer, _CONV):
            spec = _validate.conv_spec(
                shape, layer.weight, layer.bias, stride=layer.stride, padding=layer.padding,
                dilation=layer.dilation, groups=layer.groups, padding_mode=layer.padding_mode)
            stages.append(conv_stage(spec, layer.weight, layer.bias, flip=False))
            out = (spec.out_channels, *spec.out_size)
        else:
            dilation = layer.dilation if isinstance(layer, _MAX) else 1
            spec = _validate.pool_spec(shape, layer.kernel_size, stride=layer.stride,
                                       padding=layer.padding, dilation=dilation,
                                       ceil_mode=layer.ceil_mode)
            stages.append(max_pool_stage(spec) if isinstance(layer, _MAX)
                          else avg_pool_stage(spec, layer.count_include_pad))
            out = (shape.shape[1], *spec.out_size)
        shape = np.broadcast_to(np.zeros((), dtype=shape.dtype), (1, *out))
    if not stages:
        raise ArgumentError(f"{type(model).__name__} has no layer to run")
    return stages


def _leaves(model: nn.Module) -> list[nn.Module]:
    if isinstance(model, nn.Sequential):
        return [leaf for layer in model for leaf in _leaves(layer)]
    return [model]


def _segments(stages: list[Stage]) -> list[list[Stage]]:
    """Split before every circular padding after the first stage (it reads the far side)."""
    segments: list[list[Stage]] = [[]]
    for stage in stages:
        wraps = stage.mode == "circular" and any(b or a for b, a in stage.pads)
        if wraps and segments[-1]:
            segments.append([])
        segments[-1].append(stage)
    return segments


def _relu(block: np.ndarray) -> np.ndarray:
    return np.where(block > 0, block, np.zeros_like(block))  # as nn.ReLU: NaN -> 0


def _apply_batch(model: nn.Module, x: da.Array) -> da.Array:
    example = tuple(int(s) for s in x.shape[1:])
    out = tuple(model.output_shape(example))
    proxy = shape_only(x)
    for name, parameter in model.named_parameters():  # fail now, not inside a worker
        _validate.check_arrays(x=proxy, **{f"parameter {name}": parameter})
    x = x.rechunk({axis: -1 for axis in range(1, x.ndim)})
    extra = {}
    if len(out) < len(example):
        extra["drop_axis"] = list(range(len(out) + 1, x.ndim))
    elif len(out) > len(example):
        extra["new_axis"] = list(range(x.ndim, len(out) + 1))
    return x.map_blocks(_forward, model=model, chunks=(x.chunks[0], *((s,) for s in out)),
                        dtype=x.dtype, meta=np.empty((0,) * (len(out) + 1), dtype=x.dtype),
                        **extra)


def _forward(block: np.ndarray, *, model: nn.Module) -> np.ndarray:
    y = model(block)
    # Layers keep their input for backward; inference needs none of it.
    model.forget_inputs()
    return y
