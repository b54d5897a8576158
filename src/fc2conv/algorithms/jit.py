"""Compiled direct loops for depthwise layers (``method="jit"``), with Numba.

A depthwise layer (``C_in/G == 1``, any channel multiplier ``C_out/G``; a single-channel
image is one) does ``K`` multiply-adds per output and no channel mixing, so its time is
memory traffic. Whole-array NumPy (:mod:`~fc2conv.algorithms.direct`) pays ~2 passes over
the data per kernel offset, each a NumPy call; these loops make those passes inside the L1/L2
cache, and the compiler vectorises the innermost loop.

The steps (the spatial axes brought to three, ``(D, H, W)``, by leading axes of size 1)::

    forward       y[n, o, i] = sum_a w[o, a] x[n, c(o), i*s + a*d - p]
    input grad    gx[n, c, j] = sum_{o of c, a: j = i*s + a*d - p} w[o, a] gy[n, o, i]
    weight grad   gw[o, a] = sum_{n, i} gy[n, o, i] x[n, c(o), i*s + a*d - p]

with ``c(o) = o // (C_out/G)``, each computed per input plane ``(n, c)`` (for all its
``C_out/G`` outputs at once where they share its reads). All steps read the zero padding
themselves (``UNPADDED``: no padded copy of the input; the input gradient comes back
unpadded).

Stride 1 (all axes): blocks of output rows on a flat grid. The input rows a block reads are
copied, zero-padded, into a buffer ``Wp = W_out + d(K_W - 1)`` wide (with the
accumulators about 256 KiB, in the L2 cache); then every tap is *one* vector loop over the whole block, ``acc[t] += w_a *
buf[off(a) + t]``, three taps of a kernel row per pass over ``acc``; the columns past
``W_out`` are junk and dropped when the block is copied out. The input gradient is the
correlation of ``grad_out`` with the flipped kernel, padded by ``d(K - 1) - p``, on the same
code. The weight gradient lays ``grad_out`` on the grid (zeros at the junk columns) and
makes one dot product per tap and block (in the arrays' dtype; their sum in float64); if that
gives a non-finite value (a zero at a junk column times an inf), ``direct`` recomputes it.

Strided layers: the forward on the same grid, one phase of the input at a time (with
``a*d = q*s + ph``, the taps of phase ``ph`` read ``x[ph - p :: s]`` at shifts ``q``: a
stride-1 correlation; each block gathers one phase into the buffer), and so the weight
gradient; the input gradient one phase of ``gx`` at a time (the inputs ``j = m*s + ph - p``
get ``sum_{a of phase ph} w[a] gy[m - q]``, a stride-1 correlation of ``grad_out``, written
to every ``s``-th input). A non-finite weight sends the input gradient to ``direct`` (on the
grid it would meet the zeros around ``grad_out``; 0 * inf is NaN).

Threads: contiguous ranges of planes over ``fft_workers()`` of fc2conv's threads, or of rows
where a layer has fewer planes than threads (a single image); the kernels release the GIL
(``nogil``), so no Numba threading layer is involved and a caller's thread limits
(threadpoolctl, Dask) hold. Compiled once per dtype and cached on disk (``cache=True``, in
``__pycache__`` or ``NUMBA_CACHE_DIR``): the first call of a new install compiles for ~1-2 s
per kernel and dtype.

Measured (float32, 2 threads, 2-core AVX-512 Xeon; steps as the ops run them, calibration
run U, docs/benchmarks.md): DESIGN.md's depthwise layer (8 x 128 x 56^2, 3x3) forward / input
gradient / weight gradient 1.35 / 1.40 / 2.00 ms against ``direct``'s ~9.9 / 10.0 / 4.8;
through the API, forward+backward 6.7-7.2 ms against PyTorch's CPU ``conv2d`` 5.7 ms at its
best and 18 ms out of the box (bench_conv.py).

Numba is optional (``pip install 'fc2conv[jit]'``): without it this method reports itself
unsupported and ``auto`` never picks it. NumPy arrays only (other namespaces: ``direct``).
"""

from __future__ import annotations

import functools
import importlib.util
import math
from typing import Any

import array_api_compat
import numpy as np

from .._threads import fft_workers, pool
from .._validate import ConvSpec
from . import direct

__all__ = ["available", "correlate", "cost", "input_grad", "terms", "unsupported",
           "weight_grad"]

#: The steps take the unpadded input (zero padding only) and read the padding themselves.
UNPADDED = True
#: Elements of a block's flat-grid buffers (its input rows and its accumulators):
#: ``_jit_kernels._block_rows`` sizes the blocks of rows by it.
_BLOCK = 65536
#: Fewest multiply-adds per thread worth a hand-off to a second thread (~50 us).
MIN_WORK_PER_THREAD = 1 << 18


@functools.cache
def available() -> bool:
    """Whether Numba can be imported (without importing it)."""
    return importlib.util.find_spec("numba") is not None


def unsupported(spec: ConvSpec, method: str) -> str | None:
    """Depthwise layers (``C_in/groups == 1``) of NumPy float32/float64 arrays, any rank,
    stride, dilation and channel multiplier; needs Numba."""
    if not available():
        return "it needs Numba: pip install 'fc2conv[jit]' (or numba)"
    if spec.in_channels // spec.groups != 1:
        return (f"it is for depthwise layers (C_in/groups == 1); this layer has C_in/groups = "
                f"{spec.in_channels // spec.groups}, use method='direct' or 'im2col'")
    if not array_api_compat.is_numpy_namespace(spec.xp):
        return "it runs on NumPy arrays only; use method='direct'"
    return None


def cost(spec: ConvSpec, method: str = "jit", step: str = "correlate") -> float:
    """The sum of :func:`terms`."""
    return sum(terms(spec, method, step).values())


def terms(spec: ConvSpec, method: str = "jit", step: str = "correlate") -> dict[str, float]:
    """Estimated work of one step in parts, for ``select.SECONDS_PER_UNIT``: the
    ``N * C_out * prod(S_out) * K`` multiply-adds, as ``macs`` at stride 1 or ``strided``
    (gathered phases, one tap per pass; taps on the padding counted too: an upper bound);
    ``elements``, the elements read or written once (``N * (C_in * prod(S) + C_out *
    prod(S_out))``); and ``loops``, the vector loops run, one per tap and block of rows
    (``N * C_out * D_out * blocks * K``), each with a fixed cost that small blocks feel.
    """
    geo = _Geometry.of(spec, padded=True)
    per_plane = spec.batch * spec.out_channels * math.prod(spec.kernel)
    macs = float(per_plane * math.prod(spec.out_size))
    depth, rows, width = geo.out
    (_, s1, s2), (_, d1, d2) = geo.ints[0], geo.ints[1]
    reach = (geo.kernel[1] - 1) * int(d1) // int(s1)
    wp = width + (geo.kernel[2] - 1) * int(d2) // int(s2)
    og = spec.out_channels // spec.groups
    block = max(1, min(rows, (_BLOCK // wp - reach) // (og + 1)))
    loops = per_plane * depth * -(-rows // block)
    elements = spec.batch * spec.in_channels * math.prod(spec.in_size) + (
        spec.batch * spec.out_channels * math.prod(spec.out_size))
    return {"macs": macs if geo.unit else 0.0, "strided": 0.0 if geo.unit else macs,
            "elements": float(elements), "loops": float(loops)}


# ---------------------------------------------------------------------------------------------
# the steps


def correlate(xp: Any, x_pad: Any, w: Any, spec: ConvSpec, method: str, *,
              padded: bool = True) -> Any:
    """``x_pad: (N, C_in, *S_pad)``, ``w: (C_out, 1, *K)`` -> ``(N, C_out, *S_out)``; with
    ``padded=False`` the unpadded ``x: (N, C_in, *S)`` (``spec.pads`` of zeros)."""
    geo = _Geometry.of(spec, padded)
    x = _as3(np.ascontiguousarray(x_pad))
    w3 = _as3(np.ascontiguousarray(w, dtype=x.dtype))
    y = np.empty((spec.batch, spec.out_channels, *geo.out), dtype=x.dtype)
    k = _kernels()
    # (per input plane: each of its blocks is copied once for its og outputs)
    _split(lambda lo, hi, row_lo, row_hi, _: k.flat_forward(x, w3, y, geo.og, geo.ints, lo, hi,
                                                            row_lo, row_hi),
           spec.batch * spec.in_channels, geo.out[1], _work(spec))
    return y.reshape(spec.batch, spec.out_channels, *spec.out_size)


def input_grad(xp: Any, grad_out: Any, w: Any, spec: ConvSpec, method: str, *,
               padded: bool = True) -> Any:
    """Gradient with respect to the padded input: ``(N, C_out, *S_out) -> (N, C_in, *S_pad)``
    (with ``padded=False``: to the unpadded input, ``-> (N, C_in, *S)``)."""
    if not np.isfinite(w).all():
        # (on the flat grid a non-finite weight would meet the zeros around grad_out)
        return direct.input_grad(xp, grad_out, w, spec, "direct", padded=padded)
    geo = _Geometry.of(spec, padded)
    gy = _as3(np.ascontiguousarray(grad_out))
    w3 = _as3(np.ascontiguousarray(w, dtype=gy.dtype))
    k = _kernels()
    if geo.unit:  # the correlation of grad_out with the flipped kernel, padded by d(K-1) - p
        gx = np.empty((spec.batch, spec.in_channels, *geo.size), dtype=gy.dtype)
        ints = geo.ints.copy()
        ints[2] = ints[1] * (np.array(geo.kernel) - 1) - ints[2]

        def run(lo: int, hi: int, row_lo: int, row_hi: int, _: int) -> None:
            k.flat_input_grad(gy, w3, gx, geo.og, ints, lo, hi, row_lo, row_hi)
        rows = geo.size[1]
    else:  # one phase of gx at a time (threads split the planes only)
        gx = np.zeros((spec.batch, spec.in_channels, *geo.size), dtype=gy.dtype)

        def run(lo: int, hi: int, row_lo: int, row_hi: int, _: int) -> None:
            k.flat_strided_input_grad(gy, w3, gx, geo.og, geo.ints, lo, hi)
        rows = 0
    _split(run, spec.batch * spec.in_channels, rows, _work(spec))
    size = spec.padded_size if padded else spec.in_size
    return gx.reshape(spec.batch, spec.in_channels, *size)


def weight_grad(xp: Any, grad_out: Any, x_pad: Any, spec: ConvSpec, method: str, *,
                padded: bool = True) -> Any:
    """Gradient with respect to ``w``: ``-> (C_out, 1, *K)`` (``x_pad`` unpadded with
    ``padded=False``)."""
    geo = _Geometry.of(spec, padded)
    x = _as3(np.ascontiguousarray(x_pad))
    gy = _as3(np.ascontiguousarray(grad_out, dtype=x.dtype))
    kernel = _kernels().flat_weight_grad
    # one float64 sum per thread (threads splitting rows add into the same channels), per
    # input channel for its og outputs
    sums = np.zeros((max(1, fft_workers()), spec.out_channels, 1, *geo.kernel))
    _split(lambda lo, hi, row_lo, row_hi, thread: kernel(gy, x, sums[thread], geo.og, geo.ints,
                                                         lo, hi, row_lo, row_hi),
           spec.in_channels, geo.out[1], _work(spec))
    gw = sums.sum(axis=0)
    if not np.isfinite(gw).all():
        # maybe a non-finite input times a zero at the grid's junk points: direct's sums
        # (exact, each output's own terms)
        return direct.weight_grad(xp, grad_out, x_pad, spec, "direct", padded=padded)
    return gw.astype(x.dtype).reshape(spec.out_channels, 1, *spec.kernel)


# ---------------------------------------------------------------------------------------------
# geometry and threads


class _Geometry:
    """The layer on three spatial axes: ``size`` (the array read), ``out``, ``kernel`` and
    ``ints`` = ``[stride, dilation, padding before]`` per axis, an int64 ``(3, 3)`` array."""

    def __init__(self, size, out, kernel, ints, og) -> None:  # type: ignore[no-untyped-def]
        self.size, self.out, self.kernel, self.ints, self.og = size, out, kernel, ints, og
        #: stride 1 on every axis (no phases)
        self.unit = bool((ints[0] == 1).all())

    @classmethod
    def of(cls, spec: ConvSpec, padded: bool) -> _Geometry:
        lead = 3 - spec.ndim
        size = spec.padded_size if padded else spec.in_size
        before = (0,) * spec.ndim if padded else tuple(b for b, _ in spec.pads)
        ints = np.array([(1,) * lead + tuple(spec.stride), (1,) * lead + tuple(spec.dilation),
                         (0,) * lead + before], dtype=np.int64)
        return cls((1,) * lead + tuple(size), (1,) * lead + tuple(spec.out_size),
                   (1,) * lead + tuple(spec.kernel), ints,
                   spec.out_channels // spec.groups)


def _as3(a: np.ndarray) -> np.ndarray:
    """``(A, B, *S)`` as ``(A, B, D, H, W)`` (a view)."""
    return a.reshape(*a.shape[:2], *(1,) * (5 - a.ndim), *a.shape[2:])


def _work(spec: ConvSpec) -> int:
    return spec.batch * spec.out_channels * math.prod(spec.out_size) * math.prod(spec.kernel)


def _split(run: Any, planes: int, rows: int, work: int) -> None:
    """``run(lo, hi, row_lo, row_hi, k)`` over ``planes`` and their ``rows`` (``k``: the
    thread's index), in contiguous ranges of planes, one per thread, or where there are
    fewer planes than threads, of rows (``rows=0``: planes only)."""
    workers = max(1, min(fft_workers(), work // max(1, MIN_WORK_PER_THREAD)))
    by_rows = planes < workers and rows >= workers
    workers = min(workers, rows if by_rows else planes)
    if workers <= 1:
        run(0, planes, 0, max(rows, 1), 0)
        return
    count = rows if by_rows else planes
    bounds = [count * k // workers for k in range(workers + 1)]

    def part(k: int) -> None:
        if by_rows:
            run(0, planes, bounds[k], bounds[k + 1], k)
        else:
            run(bounds[k], bounds[k + 1], 0, max(rows, 1), k)

    list(pool().map(part, range(workers)))


def _kernels() -> Any:
    """The compiled kernels' module (Numba is imported, and they are compiled or loaded
    from the cache, on first use)."""
    from . import _jit_kernels

    return _jit_kernels
