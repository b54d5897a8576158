"""Cross-correlation, convolution and transposed convolution, with their VJPs.

All three share one private kernel: ``convolve`` is ``correlate`` with the kernel flipped
(``flip=True``), and ``conv_transpose`` is the input-gradient of ``correlate``. The VJPs
follow from the same identities: the input gradient of a correlation is a transposed
convolution of the output gradient, and its weight gradient is a correlation of the input with
the output gradient.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import _padding, _threads, _validate
from .._buffering import unbuffered
from ..algorithms import choose, implementation
from ..algorithms.select import reads_padding

__all__ = [
    "conv_transpose",
    "conv_transpose_vjp",
    "convolve",
    "convolve_vjp",
    "correlate",
    "correlate_vjp",
]


def correlate(
    x: Any,
    w: Any,
    bias: Any = None,
    *,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    method: str = "auto",
) -> Any:
    """Cross-correlation, what deep learning calls convolution, in 1, 2 or 3 spatial dims.

    ``y[n, o, i] = bias[o] + sum_{c, a} w[o, c, a] * x_pad[n, g*C_in/G + c, i*stride + a*dilation]``
    for output channel ``o`` in group ``g``: the seed's ``H[i,j] = u + sum_{a,b} V[a,b]
    X[i+a, j+b]`` with channels, padding, stride, dilation and groups.

    Args:
        x: ``(N, C_in, *S)``, float32 or float64, ``len(S)`` in 1..3.
        w: ``(C_out, C_in // groups, *K)``.
        bias: ``(C_out,)`` or None.
        stride, dilation: an int or one int per spatial dim.
        padding: an int, one int per dim (symmetric), ``(before, after)`` pairs per dim,
            ``"valid"`` (none), ``"same"`` (output ``ceil(S / stride)``, any extra after) or
            ``"full"`` (``dilation * (K - 1)`` on each side).
        groups: split channels into ``groups`` independent blocks (``groups=C_in`` is
            depthwise).
        padding_mode: ``"zeros"``, ``"reflect"``, ``"symmetric"``, ``"replicate"`` or
            ``"circular"`` (SciPy's constant, mirror, reflect, nearest, wrap).
        method: ``"auto"`` (a cost model picks per step, :mod:`fc2conv.algorithms.select`),
            ``"im2col"``, ``"shift"`` (GEMM), ``"fft"``, ``"winograd"`` (F(4x4,3x3)),
            ``"winograd2"`` (F(2x2,3x3)), ``"direct"`` (depthwise/grouped), ``"jit"``
            (depthwise, compiled loops; needs Numba: ``pip install 'fc2conv[jit]'``) or
            ``"banded"`` (a GEMM per input row and all kernel rows: large kernels in little
            memory); all give the same result to float rounding.

    Returns:
        ``(N, C_out, *S_out)`` with ``S_out = (S + pad_before + pad_after - dilation*(K-1) - 1)
        // stride + 1``, same array type and dtype as ``x``.

    >>> import numpy as np, fc2conv
    >>> x = np.arange(9.0).reshape(1, 1, 3, 3)
    >>> w = np.array([[[[0.0, 1.0], [2.0, 3.0]]]])
    >>> fc2conv.correlate(x, w)[0, 0].tolist()
    [[19.0, 25.0], [37.0, 43.0]]
    >>> fc2conv.correlate(np.ones((2, 4, 16, 16)), np.ones((8, 4, 3, 3)), padding="same",
    ...                   stride=2).shape
    (2, 8, 8, 8)
    """
    spec = _validate.conv_spec(
        x, w, bias, stride=stride, padding=padding, dilation=dilation, groups=groups,
        padding_mode=padding_mode, method=method,
    )
    return _forward(spec, x, w, bias, flip=False)


def convolve(
    x: Any,
    w: Any,
    bias: Any = None,
    *,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    method: str = "auto",
) -> Any:
    """True convolution: :func:`correlate` with the kernel flipped on every spatial axis.

    ``y[n, o, i] = bias[o] + sum_{c, a} w[o, c, K-1-a] * x_pad[n, c, i*stride + a*dilation]``,
    the discrete ``(f * g)(i) = sum_a f(a) g(i - a)``. Shapes and arguments as in
    :func:`correlate`: ``x: (N, C_in, *S)``, ``w: (C_out, C_in // groups, *K)``,
    ``bias: (C_out,)`` -> ``(N, C_out, *S_out)``.

    >>> import numpy as np, fc2conv
    >>> x = np.array([[[0.0, 1.0, 2.0, 3.0]]])
    >>> fc2conv.convolve(x, np.array([[[1.0, -1.0]]]), padding="full")[0, 0].tolist()
    [0.0, 1.0, 1.0, 1.0, -3.0]
    """
    spec = _validate.conv_spec(
        x, w, bias, stride=stride, padding=padding, dilation=dilation, groups=groups,
        padding_mode=padding_mode, method=method,
    )
    return _forward(spec, x, w, bias, flip=True)


def conv_transpose(
    x: Any,
    w: Any,
    bias: Any = None,
    *,
    stride: Any = 1,
    padding: Any = 0,
    output_padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
) -> Any:
    """Transposed convolution: the adjoint of :func:`correlate` with respect to its input.

    ``<correlate(z, w'), x> == <z, conv_transpose(x, w)>`` where ``w'`` is ``w`` read as a
    correlation from ``C_out`` to ``C_in`` channels (PyTorch's ``conv_transpose`` semantics).

    Args:
        x: ``(N, C_in, *S)``.
        w: ``(C_in, C_out // groups, *K)``.
        bias: ``(C_out,)`` or None.
        stride, padding, dilation, groups: as in the correlation it transposes (padding is an
            int, per-dim ints or ``(before, after)`` pairs, or ``"valid"``; always zeros).
        output_padding: extra size added after, ``< max(stride, dilation)`` per dim, to pick
            one of the input sizes a strided correlation maps to the same output size.

    Returns:
        ``(N, C_out, *S_out)``, ``S_out = (S - 1)*stride - pad_before - pad_after
        + dilation*(K - 1) + output_padding + 1``.

    >>> import numpy as np, fc2conv
    >>> x = np.array([[[1.0, 2.0]]])
    >>> fc2conv.conv_transpose(x, np.array([[[1.0, 10.0, 100.0]]]), stride=2)[0, 0].tolist()
    [1.0, 10.0, 102.0, 20.0, 200.0]
    """
    spec = _validate.conv_transpose_spec(
        x, w, bias, stride=stride, padding=padding, output_padding=output_padding,
        dilation=dilation, groups=groups,
    )
    xp = spec.xp
    method = choose(spec, "input_grad")
    with _threads.own_threads(x):
        grad = implementation(spec, method).input_grad(xp, x, w, spec, method)
    y = _padding.pad_vjp(xp, grad, spec.in_size, spec.pads, "zeros")
    return _add_bias(xp, y, bias, x)


# ---------------------------------------------------------------------------------------------
# vector-Jacobian products


def correlate_vjp(
    grad_out: Any,
    x: Any,
    w: Any,
    bias: Any = None,
    *,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    method: str = "auto",
) -> tuple[Any, Any, Any]:
    """Gradients of ``sum(correlate(x, w, bias, ...) * grad_out)`` with respect to x, w, bias.

    ``grad_out: (N, C_out, *S_out)`` -> ``(grad_x: (N, C_in, *S), grad_w: (C_out, C_in //
    groups, *K), grad_bias: (C_out,) or None)``. ``grad_x`` is a transposed convolution of
    ``grad_out`` (folded back through the padding mode), ``grad_w`` a correlation of ``x``
    with ``grad_out``.

    >>> import numpy as np, fc2conv.functional as F
    >>> x, w = np.arange(4.0).reshape(1, 1, 4), np.array([[[1.0, 2.0]]])
    >>> gx, gw, gb = F.correlate_vjp(np.ones((1, 1, 3)), x, w, np.zeros(1))
    >>> gx.tolist(), gw.tolist(), gb.tolist()
    ([[[1.0, 3.0, 3.0, 2.0]]], [[[3.0, 6.0]]], [3.0])
    """
    spec = _validate.conv_spec(
        x, w, bias, stride=stride, padding=padding, dilation=dilation, groups=groups,
        padding_mode=padding_mode, method=method,
    )
    return _backward(spec, grad_out, x, w, bias, flip=False)


def convolve_vjp(
    grad_out: Any,
    x: Any,
    w: Any,
    bias: Any = None,
    *,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    method: str = "auto",
) -> tuple[Any, Any, Any]:
    """Gradients of ``sum(convolve(x, w, bias, ...) * grad_out)`` with respect to x, w, bias.

    Shapes as in :func:`correlate_vjp`.

    >>> import numpy as np, fc2conv.functional as F
    >>> x, w = np.arange(4.0).reshape(1, 1, 4), np.array([[[1.0, 2.0]]])
    >>> F.convolve_vjp(np.ones((1, 1, 3)), x, w)[1].tolist()
    [[[6.0, 3.0]]]
    """
    spec = _validate.conv_spec(
        x, w, bias, stride=stride, padding=padding, dilation=dilation, groups=groups,
        padding_mode=padding_mode, method=method,
    )
    return _backward(spec, grad_out, x, w, bias, flip=True)


def conv_transpose_vjp(
    grad_out: Any,
    x: Any,
    w: Any,
    bias: Any = None,
    *,
    stride: Any = 1,
    padding: Any = 0,
    output_padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
) -> tuple[Any, Any, Any]:
    """Gradients of ``sum(conv_transpose(x, w, bias, ...) * grad_out)``.

    ``grad_out: (N, C_out, *S_out)`` -> ``(grad_x: (N, C_in, *S), grad_w: (C_in, C_out //
    groups, *K), grad_bias)``. The adjoint of the adjoint is the correlation itself, so
    ``grad_x = correlate(grad_out, w)``.

    >>> import numpy as np, fc2conv.functional as F
    >>> x, w = np.array([[[1.0, 2.0]]]), np.array([[[1.0, 10.0, 100.0]]])
    >>> F.conv_transpose_vjp(np.ones((1, 1, 5)), x, w, stride=2)[0].tolist()
    [[[111.0, 111.0]]]
    """
    spec = _validate.conv_transpose_spec(
        x, w, bias, stride=stride, padding=padding, output_padding=output_padding,
        dilation=dilation, groups=groups,
    )
    xp = spec.xp
    _validate.check_grad_out(grad_out, (spec.batch, spec.in_channels, *spec.in_size), xp,
                             x.dtype)
    grad_out_pad = _padding.pad(xp, grad_out, spec.pads, "zeros", scratch="x_pad")
    with _threads.own_threads(x):
        method = choose(spec, "correlate")
        grad_x = implementation(spec, method).correlate(xp, grad_out_pad, w, spec, method)
        method = choose(spec, "weight_grad")
        grad_w = implementation(spec, method).weight_grad(xp, x, grad_out_pad, spec, method)
    return grad_x, grad_w, _bias_grad(xp, grad_out, bias)


# ---------------------------------------------------------------------------------------------
# the shared kernel


def _forward(spec: _validate.ConvSpec, x: Any, w: Any, bias: Any, *, flip: bool) -> Any:
    with _threads.own_threads(x):
        return _forward_steps(spec, x, w, bias, flip=flip)


def _forward_steps(spec: _validate.ConvSpec, x: Any, w: Any, bias: Any, *, flip: bool) -> Any:
    xp = spec.xp
    if flip:
        w = _flip(xp, w)
    method = choose(spec, "correlate")
    module = implementation(spec, method)
    y = _on_input(module, spec, x, lambda x_in, **kw: module.correlate(
        xp, x_in, w, spec, method, **kw))
    return _add_bias(xp, y, bias, x)


def _backward(spec: _validate.ConvSpec, grad_out: Any, x: Any, w: Any, bias: Any, *,
              flip: bool) -> tuple[Any, Any, Any]:
    with _threads.own_threads(x):
        return _backward_steps(spec, grad_out, x, w, bias, flip=flip)


def _backward_steps(spec: _validate.ConvSpec, grad_out: Any, x: Any, w: Any, bias: Any, *,
                    flip: bool) -> tuple[Any, Any, Any]:
    xp = spec.xp
    _validate.check_grad_out(grad_out, spec.output_shape, xp, x.dtype)
    if flip:
        w = _flip(xp, w)
    method = choose(spec, "input_grad")
    grad_x = _input_grad(implementation(spec, method), spec, grad_out, w, method)
    method = choose(spec, "weight_grad")
    module = implementation(spec, method)
    grad_w = _on_input(module, spec, x, lambda x_in, **kw: module.weight_grad(
        xp, grad_out, x_in, spec, method, **kw))
    if flip:
        grad_w = _flip(xp, grad_w)
    return grad_x, grad_w, _bias_grad(xp, grad_out, bias)


def _input_grad(module: Any, spec: _validate.ConvSpec, grad_out: Any, w: Any,
                method: str) -> Any:
    """The gradient with respect to the unpadded input: computed so where the algorithm
    reads the padding itself, else cropped (or folded, for other padding modes) from the
    padded input's."""
    if reads_padding(module, spec):
        return module.input_grad(spec.xp, grad_out, w, spec, method, padded=False)
    grad_x_pad = module.input_grad(spec.xp, grad_out, w, spec, method)
    return _padding.pad_vjp(spec.xp, grad_x_pad, spec.in_size, spec.pads, spec.padding_mode)


def _on_input(module: Any, spec: _validate.ConvSpec, x: Any, step: Any) -> Any:
    """``step(input, **options)`` on ``x`` as the algorithm takes it: unpadded with
    ``padded=False``, or a padded copy (a reused per-thread buffer for NumPy)."""
    if reads_padding(module, spec):
        return step(x, padded=False)
    return step(_padding.pad(spec.xp, x, spec.pads, spec.padding_mode, scratch="x_pad"))


def _flip(xp: Any, w: Any) -> Any:
    return xp.flip(w, axis=tuple(range(2, w.ndim)))


def _add_bias(xp: Any, y: Any, bias: Any, x: Any) -> Any:
    if bias is None:
        return y
    bias = xp.reshape(bias, (1, -1) + (1,) * (y.ndim - 2))
    if isinstance(y, np.ndarray) and y.flags.writeable and not np.may_share_memory(y, x):
        # the algorithm's fresh output: no second output-sized array; one bias per run of
        # prod(S_out) (unbuffered when long: the suite's depthwise layer 0.86 -> 0.49 ms)
        unbuffered(np.add, math.prod(y.shape[2:]))(y, bias, out=y)
        return y
    return y + bias


def _bias_grad(xp: Any, grad_out: Any, bias: Any) -> Any:
    if bias is None:
        return None
    if type(grad_out) is np.ndarray and grad_out.flags.c_contiguous:
        # the images first (whole-array adds), then each channel's positions: ~3x faster
        # than one reduction over the batch and spatial axes together
        per_image = np.add.reduce(grad_out, axis=0)
        return per_image.reshape(per_image.shape[0], -1).sum(axis=1)
    return xp.sum(grad_out, axis=(0, *range(2, grad_out.ndim)))
