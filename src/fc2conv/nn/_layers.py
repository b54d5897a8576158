"""Every rung of the ladder as a layer, plus the pieces a small network needs.

Each layer holds its parameters and calls one function of :mod:`fc2conv.functional` forward
and its VJP backward; nothing here computes on its own. Names, argument order and default
initialisation follow PyTorch (weights and biases ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, the
result of ``kaiming_uniform_(a=sqrt(5))``), so a model here and its PyTorch twin share a
``state_dict``.
"""

from __future__ import annotations

import math
from typing import Any

import array_api_compat
import numpy as np

from .. import functional as F
from .._errors import ArgumentError, ShapeError
from .._validate import (
    check_arrays,
    check_grad_out,
    check_padding_mode,
    check_spatial_rank,
    conv_spec,
    per_axis,
    pool_spec,
)
from ._module import Module

__all__ = [
    "AvgPool1d", "AvgPool2d", "AvgPool3d",
    "Conv1d", "Conv2d", "Conv3d",
    "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d",
    "DenseGrid1d", "DenseGrid2d", "DenseGrid3d",
    "Flatten", "Linear",
    "LocallyConnected1d", "LocallyConnected2d", "LocallyConnected3d",
    "MaxPool1d", "MaxPool2d", "MaxPool3d",
    "ReLU",
]


def _uniform(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int, dtype: Any) -> Any:
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


def _shape_only(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """A zero-memory array of ``shape``: lets the validators compute output sizes for free."""
    return np.broadcast_to(np.zeros((), dtype=dtype), shape)


def _positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ArgumentError(f"{name} must be a positive int; got {value!r}")
    return int(value)


class _Spatial(Module):
    """A layer on ``(N, C, *S)`` with a fixed number of spatial dims."""

    ndim = 0

    def _check_rank(self, x: Any) -> None:
        check_spatial_rank("x", x, self.ndim, type(self).__name__)

    def _check_example_shape(self, in_shape: tuple[int, ...]) -> None:
        if len(in_shape) != self.ndim + 1:
            raise ShapeError(
                f"{type(self).__name__} takes examples of shape (C, *S) with {self.ndim} "
                f"spatial dims; got {tuple(in_shape)}"
            )


# ---------------------------------------------------------------------------------------------
# the ladder's rungs


class _ConvNd(_Spatial):
    _param_names = ("weight", "bias")

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1,
                 padding: Any = 0, dilation: Any = 1, groups: int = 1, bias: bool = True,
                 padding_mode: str = "zeros", *, dtype: Any = np.float32,
                 rng: Any = None) -> None:
        super().__init__()
        self.in_channels = _positive("in_channels", in_channels)
        self.out_channels = _positive("out_channels", out_channels)
        self.groups = _positive("groups", groups)
        if in_channels % groups or out_channels % groups:
            raise ArgumentError(
                f"groups={groups} must divide in_channels={in_channels} and "
                f"out_channels={out_channels}"
            )
        self.kernel_size = per_axis("kernel_size", kernel_size, self.ndim, minimum=1)
        self.stride = per_axis("stride", stride, self.ndim, minimum=1)
        self.dilation = per_axis("dilation", dilation, self.ndim, minimum=1)
        self.padding = padding
        self.padding_mode = check_padding_mode(padding_mode)
        gen = np.random.default_rng(rng)
        fan_in = in_channels // groups * math.prod(self.kernel_size)
        self.weight = _uniform(gen, (out_channels, in_channels // groups, *self.kernel_size),
                               fan_in, dtype)
        self.bias = _uniform(gen, (out_channels,), fan_in, dtype) if bias else None

    def _options(self) -> dict[str, Any]:
        return {"stride": self.stride, "padding": self.padding, "dilation": self.dilation,
                "groups": self.groups, "padding_mode": self.padding_mode}

    def forward(self, x: Any) -> Any:
        self._check_rank(x)
        self._input = x
        return F.correlate(x, self.weight, self.bias, **self._options())

    def backward(self, grad_out: Any) -> Any:
        gx, gw, gb = F.correlate_vjp(grad_out, self._saved_input(), self.weight, self.bias,
                                     **self._options())
        self._accumulate("weight", gw)
        self._accumulate("bias", gb)
        return gx

    def output_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        self._check_example_shape(in_shape)
        spec = conv_spec(_shape_only((1, *in_shape), self.weight.dtype), self.weight, None,
                         **self._options())
        return spec.output_shape[1:]

    def extra_repr(self) -> str:
        extra = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"
        extra += f", stride={self.stride}" if set(self.stride) != {1} else ""
        extra += f", padding={self.padding!r}" if self.padding != 0 else ""
        extra += f", dilation={self.dilation}" if set(self.dilation) != {1} else ""
        extra += f", groups={self.groups}" if self.groups != 1 else ""
        extra += "" if self.bias is not None else ", bias=False"
        return extra + (f", padding_mode={self.padding_mode!r}"
                        if self.padding_mode != "zeros" else "")


class Conv1d(_ConvNd):
    """Convolution (cross-correlation) layer, 1 spatial dim: ``(N, C_in, L) -> (N, C_out, L')``.

    ``weight: (C_out, C_in // groups, K)``, ``bias: (C_out,)``; arguments as
    ``torch.nn.Conv1d`` plus ``dtype`` and ``rng`` (a seed or ``numpy.random.Generator``).

    >>> import numpy as np
    >>> from fc2conv import nn
    >>> nn.Conv1d(1, 25, 5, stride=2, padding=1, rng=0)(np.zeros((3, 1, 40), np.float32)).shape
    (3, 25, 19)
    """

    ndim = 1


class Conv2d(_ConvNd):
    """Convolution layer, 2 spatial dims: ``(N, C_in, H, W) -> (N, C_out, H', W')``.

    ``weight: (C_out, C_in // groups, KH, KW)``; arguments as ``torch.nn.Conv2d``.

    >>> import numpy as np
    >>> from fc2conv import nn
    >>> conv = nn.Conv2d(3, 8, 3, padding="same", padding_mode="circular", rng=0)
    >>> conv(np.zeros((2, 3, 16, 16), np.float32)).shape, conv.weight.shape
    ((2, 8, 16, 16), (8, 3, 3, 3))
    """

    ndim = 2


class Conv3d(_ConvNd):
    """Convolution layer, 3 spatial dims: ``(N, C_in, D, H, W) -> (N, C_out, D', H', W')``.

    >>> import numpy as np
    >>> from fc2conv import nn
    >>> nn.Conv3d(2, 4, 3, rng=0).output_shape((2, 8, 8, 8))
    (4, 6, 6, 6)
    """

    ndim = 3


class _ConvTransposeNd(_Spatial):
    _param_names = ("weight", "bias")

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1,
                 padding: Any = 0, output_padding: Any = 0, groups: int = 1, bias: bool = True,
                 dilation: Any = 1, *, dtype: Any = np.float32, rng: Any = None) -> None:
        super().__init__()
        self.in_channels = _positive("in_channels", in_channels)
        self.out_channels = _positive("out_channels", out_channels)
        self.groups = _positive("groups", groups)
        if in_channels % groups or out_channels % groups:
            raise ArgumentError(
                f"groups={groups} must divide in_channels={in_channels} and "
                f"out_channels={out_channels}"
            )
        self.kernel_size = per_axis("kernel_size", kernel_size, self.ndim, minimum=1)
        self.stride = per_axis("stride", stride, self.ndim, minimum=1)
        self.dilation = per_axis("dilation", dilation, self.ndim, minimum=1)
        self.padding = padding
        self.output_padding = output_padding
        gen = np.random.default_rng(rng)
        # PyTorch computes fan_in from weight.shape[1], i.e. the *output* channels per group.
        fan_in = out_channels // groups * math.prod(self.kernel_size)
        self.weight = _uniform(gen, (in_channels, out_channels // groups, *self.kernel_size),
                               fan_in, dtype)
        self.bias = _uniform(gen, (out_channels,), fan_in, dtype) if bias else None

    def _options(self) -> dict[str, Any]:
        return {"stride": self.stride, "padding": self.padding,
                "output_padding": self.output_padding, "dilation": self.dilation,
                "groups": self.groups}

    def forward(self, x: Any) -> Any:
        self._check_rank(x)
        self._input = x
        return F.conv_transpose(x, self.weight, self.bias, **self._options())

    def backward(self, grad_out: Any) -> Any:
        gx, gw, gb = F.conv_transpose_vjp(grad_out, self._saved_input(), self.weight, self.bias,
                                          **self._options())
        self._accumulate("weight", gw)
        self._accumulate("bias", gb)
        return gx

    def output_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        self._check_example_shape(in_shape)
        # Shapes are cheap to get from a forward pass on a one-example zero-memory input.
        from .._validate import conv_transpose_spec

        spec = conv_transpose_spec(_shape_only((1, *in_shape), self.weight.dtype), self.weight,
                                   None, stride=self.stride, padding=self.padding,
                                   output_padding=self.output_padding, dilation=self.dilation,
                                   groups=self.groups)
        return (self.out_channels, *spec.in_size)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}")


class ConvTranspose1d(_ConvTransposeNd):
    """Transposed convolution, 1 spatial dim; ``weight: (C_in, C_out // groups, K)``.

    >>> import numpy as np
    >>> from fc2conv import nn
    >>> nn.ConvTranspose1d(4, 2, 3, stride=2, rng=0)(np.zeros((1, 4, 5), np.float32)).shape
    (1, 2, 11)
    """

    ndim = 1


class ConvTranspose2d(_ConvTransposeNd):
    """Transposed convolution, 2 spatial dims; ``weight: (C_in, C_out // groups, KH, KW)``.

    >>> from fc2conv import nn
    >>> nn.ConvTranspose2d(4, 2, 2, stride=2, rng=0).output_shape((4, 7, 7))
    (2, 14, 14)
    """

    ndim = 2


class ConvTranspose3d(_ConvTransposeNd):
    """Transposed convolution, 3 spatial dims.

    >>> from fc2conv import nn
    >>> nn.ConvTranspose3d(4, 2, 3, rng=0).output_shape((4, 2, 2, 2))
    (2, 4, 4, 4)
    """

    ndim = 3


class _LocallyConnectedNd(_Spatial):
    _param_names = ("weight", "bias")

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, in_size: Any,
                 stride: Any = 1, padding: Any = 0, dilation: Any = 1, bias: bool = True,
                 padding_mode: str = "zeros", *, shared_bias: bool = False,
                 dtype: Any = np.float32, rng: Any = None) -> None:
        super().__init__()
        self.in_channels = _positive("in_channels", in_channels)
        self.out_channels = _positive("out_channels", out_channels)
        self.kernel_size = per_axis("kernel_size", kernel_size, self.ndim, minimum=1)
        self.in_size = per_axis("in_size", in_size, self.ndim, minimum=1)
        self.stride = per_axis("stride", stride, self.ndim, minimum=1)
        self.dilation = per_axis("dilation", dilation, self.ndim, minimum=1)
        self.padding = padding
        self.padding_mode = check_padding_mode(padding_mode)
        spec = conv_spec(_shape_only((1, in_channels, *self.in_size), dtype),
                         _shape_only((out_channels, in_channels, *self.kernel_size), dtype), None,
                         stride=self.stride, padding=padding, dilation=self.dilation, groups=1,
                         padding_mode=padding_mode)
        self.out_size = spec.out_size
        gen = np.random.default_rng(rng)
        fan_in = in_channels * math.prod(self.kernel_size)
        self.weight = _uniform(
            gen, (*self.out_size, out_channels, in_channels, *self.kernel_size), fan_in, dtype)
        bias_shape = (out_channels,) if shared_bias else (*self.out_size, out_channels)
        self.bias = _uniform(gen, bias_shape, fan_in, dtype) if bias else None

    def _options(self) -> dict[str, Any]:
        return {"stride": self.stride, "padding": self.padding, "dilation": self.dilation,
                "padding_mode": self.padding_mode}

    def forward(self, x: Any) -> Any:
        self._check_rank(x)
        _check_grid(self, tuple(x.shape[2:]))
        self._input = x
        return F.local_correlate(x, self.weight, self.bias, **self._options())

    def backward(self, grad_out: Any) -> Any:
        gx, gw, gb = F.local_correlate_vjp(grad_out, self._saved_input(), self.weight,
                                           self.bias, **self._options())
        self._accumulate("weight", gw)
        self._accumulate("bias", gb)
        return gx

    def output_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        self._check_example_shape(in_shape)
        _check_grid(self, tuple(in_shape[1:]))
        return (self.out_channels, *self.out_size)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"in_size={self.in_size}, stride={self.stride}, padding={self.padding!r}")


def _check_grid(layer: Any, size: tuple[int, ...]) -> None:
    if size != layer.in_size:
        raise ShapeError(
            f"{type(layer).__name__} was built for inputs of spatial size {layer.in_size} (its "
            f"weights are untied, one set per position); got spatial size {size}"
        )


class LocallyConnected1d(_LocallyConnectedNd):
    """Locally connected layer (untied conv), 1 spatial dim.

    ``weight: (L_out, C_out, C_in, K)``: one kernel per output position;
    ``bias: (L_out, C_out)``, or ``(C_out,)`` with ``shared_bias=True``.

    >>> import numpy as np
    >>> from fc2conv import nn
    >>> lc = nn.LocallyConnected1d(1, 25, 5, in_size=40, stride=2, padding=1, rng=0)
    >>> lc(np.zeros((3, 1, 40), np.float32)).shape, lc.weight.shape
    ((3, 25, 19), (19, 25, 1, 5))
    """

    ndim = 1


class LocallyConnected2d(_LocallyConnectedNd):
    """Locally connected layer (untied conv), 2 spatial dims.

    ``weight: (H_out, W_out, C_out, C_in, KH, KW)``, ``bias: (H_out, W_out, C_out)``.

    >>> from fc2conv import nn
    >>> nn.LocallyConnected2d(3, 8, 3, in_size=(16, 16), padding=1, rng=0).weight.shape
    (16, 16, 8, 3, 3, 3)
    """

    ndim = 2


class LocallyConnected3d(_LocallyConnectedNd):
    """Locally connected layer (untied conv), 3 spatial dims.

    >>> from fc2conv import nn
    >>> nn.LocallyConnected3d(1, 2, 3, in_size=4, rng=0).weight.shape
    (2, 2, 2, 2, 1, 3, 3, 3)
    """

    ndim = 3


class _DenseGridNd(_Spatial):
    _param_names = ("weight", "bias")

    def __init__(self, in_channels: int, out_channels: int, in_size: Any, out_size: Any = None,
                 bias: bool = True, *, shared_bias: bool = False, dtype: Any = np.float32,
                 rng: Any = None) -> None:
        super().__init__()
        self.in_channels = _positive("in_channels", in_channels)
        self.out_channels = _positive("out_channels", out_channels)
        self.in_size = per_axis("in_size", in_size, self.ndim, minimum=1)
        self.out_size = (self.in_size if out_size is None
                         else per_axis("out_size", out_size, self.ndim, minimum=1))
        gen = np.random.default_rng(rng)
        fan_in = in_channels * math.prod(self.in_size)
        self.weight = _uniform(
            gen, (*self.out_size, out_channels, in_channels, *self.in_size), fan_in, dtype)
        bias_shape = (out_channels,) if shared_bias else (*self.out_size, out_channels)
        self.bias = _uniform(gen, bias_shape, fan_in, dtype) if bias else None

    def forward(self, x: Any) -> Any:
        self._check_rank(x)
        _check_grid(self, tuple(x.shape[2:]))
        self._input = x
        return F.dense_grid(x, self.weight, self.bias)

    def backward(self, grad_out: Any) -> Any:
        gx, gw, gb = F.dense_grid_vjp(grad_out, self._saved_input(), self.weight, self.bias)
        self._accumulate("weight", gw)
        self._accumulate("bias", gb)
        return gx

    def output_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        self._check_example_shape(in_shape)
        _check_grid(self, tuple(in_shape[1:]))
        return (self.out_channels, *self.out_size)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, in_size={self.in_size}, "
                f"out_size={self.out_size}")


class DenseGrid1d(_DenseGridNd):
    """Dense-on-grid layer (fully connected, grids kept), 1 spatial dim.

    ``weight: (L_out, C_out, C_in, L_in)``, ``bias: (L_out, C_out)`` (the seed's ``U``).

    >>> import numpy as np
    >>> from fc2conv import nn
    >>> nn.DenseGrid1d(1, 4, in_size=40, rng=0)(np.zeros((3, 1, 40), np.float32)).shape
    (3, 4, 40)
    """

    ndim = 1


class DenseGrid2d(_DenseGridNd):
    """Dense-on-grid layer, 2 spatial dims: the seed's ``W[i, j, k, l]`` with channels.

    ``weight: (H_out, W_out, C_out, C_in, H_in, W_in)``, ``bias: (H_out, W_out, C_out)``.

    >>> from fc2conv import nn
    >>> nn.DenseGrid2d(1, 1, in_size=(6, 6), rng=0).weight.shape
    (6, 6, 1, 1, 6, 6)
    """

    ndim = 2


class DenseGrid3d(_DenseGridNd):
    """Dense-on-grid layer, 3 spatial dims.

    >>> from fc2conv import nn
    >>> nn.DenseGrid3d(1, 1, in_size=2, out_size=1, rng=0).weight.shape
    (1, 1, 1, 1, 1, 2, 2, 2)
    """

    ndim = 3


# ---------------------------------------------------------------------------------------------
# pooling


class _PoolNd(_Spatial):
    """Shared by max and average pooling: the window geometry, forward, backward, shapes."""

    def __init__(self, kernel_size: Any, stride: Any, padding: Any, dilation: Any,
                 ceil_mode: bool) -> None:
        super().__init__()
        self.kernel_size = per_axis("kernel_size", kernel_size, self.ndim, minimum=1)
        self.stride = (self.kernel_size if stride is None
                       else per_axis("stride", stride, self.ndim, minimum=1))
        self.padding = per_axis("padding", padding, self.ndim, minimum=0)
        self.dilation = per_axis("dilation", dilation, self.ndim, minimum=1)
        self.ceil_mode = ceil_mode

    def _op(self, x: Any) -> Any:
        raise NotImplementedError

    def _vjp(self, grad_out: Any, x: Any) -> Any:
        raise NotImplementedError

    def forward(self, x: Any) -> Any:
        self._check_rank(x)
        self._input = x
        return self._op(x)

    def backward(self, grad_out: Any) -> Any:
        return self._vjp(grad_out, self._saved_input())

    def output_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        self._check_example_shape(in_shape)
        spec = pool_spec(_shape_only((1, *in_shape), np.float32), self.kernel_size,
                         stride=self.stride, padding=self.padding, dilation=self.dilation,
                         ceil_mode=self.ceil_mode)
        return (in_shape[0], *spec.out_size)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


class _MaxPoolNd(_PoolNd):
    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0,
                 dilation: Any = 1, ceil_mode: bool = False) -> None:
        super().__init__(kernel_size, stride, padding, dilation, ceil_mode)

    def _options(self) -> dict[str, Any]:
        return {"stride": self.stride, "padding": self.padding, "dilation": self.dilation,
                "ceil_mode": self.ceil_mode}

    def _op(self, x: Any) -> Any:
        return F.max_pool(x, self.kernel_size, **self._options())

    def _vjp(self, grad_out: Any, x: Any) -> Any:
        return F.max_pool_vjp(grad_out, x, self.kernel_size, **self._options())[0]


class MaxPool1d(_MaxPoolNd):
    """Max pooling, 1 spatial dim (stride defaults to kernel_size).

    >>> import numpy as np
    >>> from fc2conv import nn
    >>> nn.MaxPool1d(2)(np.array([[[1.0, 3.0, 2.0, 0.0]]])).tolist()
    [[[3.0, 2.0]]]
    """

    ndim = 1


class MaxPool2d(_MaxPoolNd):
    """Max pooling, 2 spatial dims.

    >>> from fc2conv import nn
    >>> nn.MaxPool2d(2).output_shape((6, 28, 28))
    (6, 14, 14)
    """

    ndim = 2


class MaxPool3d(_MaxPoolNd):
    """Max pooling, 3 spatial dims.

    >>> from fc2conv import nn
    >>> nn.MaxPool3d(2).output_shape((1, 4, 4, 4))
    (1, 2, 2, 2)
    """

    ndim = 3


class _AvgPoolNd(_PoolNd):
    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0,
                 ceil_mode: bool = False, count_include_pad: bool = True) -> None:
        super().__init__(kernel_size, stride, padding, 1, ceil_mode)
        self.count_include_pad = count_include_pad

    def _options(self) -> dict[str, Any]:
        return {"stride": self.stride, "padding": self.padding, "ceil_mode": self.ceil_mode,
                "count_include_pad": self.count_include_pad}

    def _op(self, x: Any) -> Any:
        return F.avg_pool(x, self.kernel_size, **self._options())

    def _vjp(self, grad_out: Any, x: Any) -> Any:
        return F.avg_pool_vjp(grad_out, x, self.kernel_size, **self._options())[0]


class AvgPool1d(_AvgPoolNd):
    """Average pooling, 1 spatial dim.

    >>> import numpy as np
    >>> from fc2conv import nn
    >>> nn.AvgPool1d(2)(np.array([[[1.0, 3.0, 2.0, 0.0]]])).tolist()
    [[[2.0, 1.0]]]
    """

    ndim = 1


class AvgPool2d(_AvgPoolNd):
    """Average pooling, 2 spatial dims.

    >>> from fc2conv import nn
    >>> nn.AvgPool2d(2, stride=1).output_shape((3, 5, 5))
    (3, 4, 4)
    """

    ndim = 2


class AvgPool3d(_AvgPoolNd):
    """Average pooling, 3 spatial dims.

    >>> from fc2conv import nn
    >>> nn.AvgPool3d(2).output_shape((1, 4, 4, 4))
    (1, 2, 2, 2)
    """

    ndim = 3


# ---------------------------------------------------------------------------------------------
# the rest of a small network


class Linear(Module):
    """Fully-connected layer on vectors: ``(N, in_features) -> (N, out_features)``.

    ``y = x @ weight.T + bias`` with ``weight: (out_features, in_features)`` as in PyTorch.

    >>> import numpy as np
    >>> from fc2conv import nn
    >>> nn.Linear(125, 10, rng=0)(np.zeros((4, 125), np.float32)).shape
    (4, 10)
    """

    _param_names = ("weight", "bias")

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 dtype: Any = np.float32, rng: Any = None) -> None:
        super().__init__()
        self.in_features = _positive("in_features", in_features)
        self.out_features = _positive("out_features", out_features)
        gen = np.random.default_rng(rng)
        self.weight = _uniform(gen, (out_features, in_features), in_features, dtype)
        self.bias = _uniform(gen, (out_features,), in_features, dtype) if bias else None

    def forward(self, x: Any) -> Any:
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ShapeError(
                f"Linear({self.in_features}, {self.out_features}) takes x of shape "
                f"(N, {self.in_features}); got shape {tuple(x.shape)}"
                + (". Put a Flatten() before it" if x.ndim > 2 else "")
            )
        check_arrays(x=x, w=self.weight, bias=self.bias)
        self._input = x
        y = x @ self.weight.T
        return y if self.bias is None else y + self.bias

    def backward(self, grad_out: Any) -> Any:
        x = self._saved_input()
        check_grad_out(grad_out, (x.shape[0], self.out_features),
                       array_api_compat.array_namespace(x), x.dtype)
        self._accumulate("weight", grad_out.T @ x)
        if self.bias is not None:
            xp = array_api_compat.array_namespace(grad_out)
            self._accumulate("bias", xp.sum(grad_out, axis=0))
        return grad_out @ self.weight

    def output_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        if tuple(in_shape) != (self.in_features,):
            raise ShapeError(
                f"Linear({self.in_features}, {self.out_features}) takes examples of shape "
                f"({self.in_features},); got {tuple(in_shape)}"
            )
        return (self.out_features,)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


class ReLU(Module):
    """``max(x, 0)`` elementwise; its gradient passes where ``x > 0``.

    >>> import numpy as np
    >>> from fc2conv import nn
    >>> nn.ReLU()(np.array([-1.0, 2.0])).tolist()
    [0.0, 2.0]
    """

    # NumPy's where() branches on every element: on the random signs of activations it took
    # 160 us for 100 x 25 x 19 floats (the MNIST-1D CNN's), fmax 9 us and a multiply by
    # the mask 16 us; in training that CNN, the ReLUs were a fifth of every step.

    def forward(self, x: Any) -> Any:
        self._input = x
        if isinstance(x, np.ndarray):
            return np.fmax(x, 0)  # (NaN -> 0, as where(x > 0, x, 0))
        xp = array_api_compat.array_namespace(x)
        return xp.where(x > 0, x, xp.zeros_like(x))

    def backward(self, grad_out: Any) -> Any:
        x = self._saved_input()
        xp = array_api_compat.array_namespace(x)
        check_grad_out(grad_out, tuple(x.shape), xp, x.dtype)
        if isinstance(x, np.ndarray) and isinstance(grad_out, np.ndarray) and bool(
                np.isfinite(grad_out).all()):  # (inf or NaN times a False would be NaN)
            return grad_out * (x > 0)
        return xp.where(x > 0, grad_out, xp.zeros_like(grad_out))

    def output_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(in_shape)


class Flatten(Module):
    """``(N, *rest) -> (N, prod(rest))``, as between the conv stack and a classifier.

    >>> import numpy as np
    >>> from fc2conv import nn
    >>> nn.Flatten()(np.zeros((4, 25, 5))).shape
    (4, 125)
    """

    def forward(self, x: Any) -> Any:
        if x.ndim < 2:
            raise ShapeError(f"Flatten takes x of shape (N, ...); got shape {tuple(x.shape)}")
        xp = array_api_compat.array_namespace(x)
        self._input_shape = tuple(x.shape)
        self._input = x
        return xp.reshape(x, (x.shape[0], -1))

    def backward(self, grad_out: Any) -> Any:
        x = self._saved_input()
        xp = array_api_compat.array_namespace(x)
        check_grad_out(grad_out, (x.shape[0], math.prod(x.shape[1:])), xp, x.dtype)
        return xp.reshape(grad_out, self._input_shape)

    def output_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (math.prod(in_shape),)
