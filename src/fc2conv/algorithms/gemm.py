"""Correlation as matrix products: im2col and shift-and-GEMM, forward and both gradients.

Both work on the *padded* input in a group-major layout ``(G, C/G, N, *S)`` so that batch and
space fold into one long GEMM dimension: per group one product
``(C_out/G, C_in/G * K) @ (C_in/G * K, N * P)`` instead of N small ones.

- ``im2col`` stacks the K strided windows into a column buffer ``(G, C_in/G * K, N * P)`` and
  does one GEMM: fastest for few input channels (LeNet-sized layers), costs K x the input.
- ``shift`` does K GEMMs ``(C_out/G, C_in/G) @ (C_in/G, N * P)``, one per kernel offset, and
  accumulates: no column buffer, the better choice for many channels or large kernels.

The gradients are the same products transposed (input gradient = scatter of ``w^T gy``
through the same windows, i.e. a transposed convolution; weight gradient = ``gy x^T``, a
correlation of the input with the output gradient).
"""

from __future__ import annotations

import math
from typing import Any

import array_api_compat

from .._validate import ConvSpec
from .._windows import offsets, window

__all__ = ["correlate", "input_grad", "unsupported", "weight_grad"]


def unsupported(spec: ConvSpec, method: str) -> str | None:
    """GEMM runs every layer."""
    return None


def correlate(xp: Any, x_pad: Any, w: Any, spec: ConvSpec, method: str) -> Any:
    """``x_pad: (N, C_in, *S_pad)``, ``w: (C_out, C_in/G, *K)`` -> ``(N, C_out, *S_out)``."""
    g, og, cg = spec.groups, spec.out_channels // spec.groups, spec.in_channels // spec.groups
    xg = _group_major(xp, x_pad, g)
    if method == "im2col":
        cols = _columns(xp, xg, spec)
        y = xp.reshape(w, (g, og, cg * math.prod(spec.kernel))) @ cols
    else:
        y = None
        w_k = _per_offset(xp, w, spec)
        for k, offset in enumerate(offsets(spec.kernel)):
            term = _product(w_k[k, ...], _flat_window(xp, xg, offset, spec))
            if y is None:
                y = term
            else:
                y += term
    return _batch_major(xp, xp.reshape(y, (g, og, spec.batch, *spec.out_size)))


def input_grad(xp: Any, grad_out: Any, w: Any, spec: ConvSpec, method: str) -> Any:
    """Gradient with respect to the padded input: ``(N, C_out, *S_out) -> (N, C_in, *S_pad)``."""
    g, og, cg = spec.groups, spec.out_channels // spec.groups, spec.in_channels // spec.groups
    gy = _flat_group_major(xp, grad_out, spec)
    gx = xp.zeros((g, cg, spec.batch, *spec.padded_size), dtype=grad_out.dtype,
                  device=array_api_compat.device(grad_out))
    out_shape = (g, cg, spec.batch, *spec.out_size)
    if method == "im2col":
        kk = math.prod(spec.kernel)
        gcols = xp.reshape(xp.reshape(w, (g, og, cg * kk)).mT @ gy, (g, cg, kk, -1))
        for k, offset in enumerate(offsets(spec.kernel)):
            index = window(offset, spec.stride, spec.dilation, spec.out_size)
            gx[index] += xp.reshape(gcols[:, :, k, :], out_shape)
    else:
        w_k = _per_offset(xp, w, spec)
        for k, offset in enumerate(offsets(spec.kernel)):
            index = window(offset, spec.stride, spec.dilation, spec.out_size)
            gx[index] += xp.reshape(_product(w_k[k, ...].mT, gy), out_shape)
    return _batch_major(xp, gx)


def weight_grad(xp: Any, grad_out: Any, x_pad: Any, spec: ConvSpec, method: str) -> Any:
    """Gradient with respect to ``w``: ``-> (C_out, C_in/G, *K)``."""
    g, cg = spec.groups, spec.in_channels // spec.groups
    gy = _flat_group_major(xp, grad_out, spec)
    xg = _group_major(xp, x_pad, g)
    if method == "im2col":
        gw = gy @ _columns(xp, xg, spec).mT  # (G, C_out/G, C_in/G * K)
        return xp.reshape(gw, (spec.out_channels, cg, *spec.kernel))
    per_offset = [gy @ _flat_window(xp, xg, offset, spec).mT for offset in offsets(spec.kernel)]
    gw = xp.stack(per_offset, axis=-1)  # (G, C_out/G, C_in/G, K)
    return xp.reshape(gw, (spec.out_channels, cg, *spec.kernel))


# ---------------------------------------------------------------------------------------------


def _group_major(xp: Any, a: Any, groups: int) -> Any:
    """``(N, C, *S) -> (G, C/G, N, *S)``."""
    n, c, *size = a.shape
    a = xp.reshape(a, (n, groups, c // groups, *size))
    return xp.permute_dims(a, (1, 2, 0, *range(3, a.ndim)))


def _batch_major(xp: Any, a: Any) -> Any:
    """``(G, C/G, N, *S) -> (N, C, *S)``."""
    g, cg, n, *size = a.shape
    a = xp.permute_dims(a, (2, 0, 1, *range(3, a.ndim)))
    return xp.reshape(a, (n, g * cg, *size))


def _flat_group_major(xp: Any, grad_out: Any, spec: ConvSpec) -> Any:
    """``(N, C_out, *S_out) -> (G, C_out/G, N * P)``."""
    gy = _group_major(xp, grad_out, spec.groups)
    return xp.reshape(gy, (spec.groups, spec.out_channels // spec.groups, -1))


def _flat_window(xp: Any, xg: Any, offset: tuple[int, ...], spec: ConvSpec) -> Any:
    """What every output reads at one kernel offset: ``(G, C_in/G, N * P)``."""
    part = xg[window(offset, spec.stride, spec.dilation, spec.out_size)]
    return xp.reshape(part, (part.shape[0], part.shape[1], -1))


def _columns(xp: Any, xg: Any, spec: ConvSpec) -> Any:
    """The im2col buffer ``(G, C_in/G * K, N * P)``, kernel offsets inner (like ``w``)."""
    g, cg, n = xg.shape[:3]
    kk = math.prod(spec.kernel)
    # Filling a preallocated buffer is several times faster than xp.stack of strided views.
    cols = xp.empty((g, cg, kk, n, *spec.out_size), dtype=xg.dtype,
                    device=array_api_compat.device(xg))
    for k, offset in enumerate(offsets(spec.kernel)):
        cols[:, :, k, ...] = xg[window(offset, spec.stride, spec.dilation, spec.out_size)]
    return xp.reshape(cols, (g, cg * kk, -1))


def _product(a: Any, b: Any) -> Any:
    """``a @ b`` for stacks of matrices; a broadcast multiply when the inner size is 1.

    Depthwise layers make every per-offset product an outer product, which NumPy's matmul
    runs outside BLAS several times slower than the equivalent elementwise multiply.
    """
    return a * b if a.shape[-1] == 1 else a @ b


def _per_offset(xp: Any, w: Any, spec: ConvSpec) -> Any:
    """``(C_out, C_in/G, *K) -> (K, G, C_out/G, C_in/G)``: one small matrix per offset."""
    g, cg = spec.groups, spec.in_channels // spec.groups
    wk = xp.reshape(w, (g, spec.out_channels // g, cg, -1))
    return xp.permute_dims(wk, (3, 0, 1, 2))
