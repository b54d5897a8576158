"""Correlation by real FFTs in overlap-save blocks, forward and both gradients.

Per spatial axis let ``span = dilation * (K - 1) + 1`` be the dilated kernel's extent and
``P = (S_out - 1) * stride + 1`` the stride-1 outputs the strided ones are taken from. The
output is cut into ``T`` blocks of ``B`` outputs; block ``t`` reads the input tile
``x_pad[t*B : t*B + L]`` with ``L = B + span - 1``, a fast FFT length (:func:`_plan`). The
circular correlation of a tile with the zero-stuffed (dilated) kernel, ``irfft(X * conj(W))``,
equals the linear one on its first ``B`` samples: that is overlap-save. All tiles of all
images go through one batched ``rfftn``, channels are contracted per frequency
(``(N*T, C_in/G) @ (C_in/G, C_out/G)`` for every group and frequency, a broadcast product when
either side has one channel), and one ``irfftn`` brings the blocks back. Stride is the
stride-1 result subsampled; dilation is zeros in the kernel. One tile (``T = 1``,
``L >= S_pad``) is plain FFT correlation; tiles a few times the span keep memory at a small
multiple of the output and the transforms short.

The gradients reuse the same blocks. The input gradient is the correlation of ``grad_out``,
zero-stuffed by the stride and padded by ``span - 1``, with the flipped kernel and channel
roles swapped (a full convolution). The weight gradient correlates ``x_pad`` with
zero-stuffed ``grad_out`` at the ``span`` lags a kernel offset can reach: per frequency,
``sum_{n,t} conj(GY) * X`` over images and tiles, then one inverse transform per (out, in)
channel pair, read at lags ``0, d, 2d, ...``.

When it wins. Per output position and output channel a GEMM correlation does
``2 * C_in/G * prod(K)`` flops. This does ``(L/B)**d * prod(stride)`` positions' worth of
work per output kept (tile overlap, discarded strided outputs), each
``2.5 * log2(prod(L)) * (C_in + C_out) / C_out`` transform flops plus ``4 * C_in/G``
contraction flops, none growing with ``K``, but running several times below GEMM speed
(:func:`cost`). So with many channels FFT wins once ``prod(K)`` is well above
``~10 * (L/B)**d * prod(stride)`` (7x7 at 64 -> 64 channels, not 3x3), and with one or few
channels, where GEMM is memory-bound, from small kernels on; strided large kernels are rare
and the selector picks this method only where :func:`cost` says so.

Precision: float32 computes in complex64, float64 in complex128, and rounding is spread over
all outputs of a tile, so its scale is the tile's largest value, not each output's own terms.
Measured against float64: ``max|err| / max|y|`` up to 4e-7 for float32 (forward and both
gradients; 200 random small layers, the 16-channel 31x31 layer, a 2048x2048 image with a
101x101 kernel) and ~6e-16 for float64.

NumPy arrays use ``scipy.fft`` with ``workers=fft_workers()``; other array-API namespaces
(PyTorch, array_api_strict) their own ``xp.fft``, with the same code.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
from typing import Any

import array_api_compat
import numpy as np
import scipy.fft
import threadpoolctl

from .._threads import fft_workers
from .._validate import ConvSpec

__all__ = ["correlate", "cost", "fixed_workspace", "input_grad", "terms", "unsupported", "weight_grad"]

STEPS = ("correlate", "input_grad", "weight_grad")
# Smallest tile length considered: shorter transforms are dominated by per-call overhead.
MIN_TILE = 16
# Cost weights (see :func:`cost`), in GEMM-flop equivalents: fitted to forward timings of 15
# layers (1-3 dims, 1 to 64 channels, kernels 3 to 101) on 2 busy cores, where the FFT path
# ran at 9 to 27 "GEMM Gflop/s" by this measure and well-shaped GEMM layers at 15 to 22.
FFT_FLOP = 5.0  # per flop of a real transform: FFTs are memory-bound
MIX_FLOP = 2.0  # per flop of the per-frequency channel contraction
COPY = 30.0  # per sample per channel of the padding, tiling and untiling passes
PRODUCT = 1e4  # per small matrix product (one per frequency and group)


def unsupported(spec: ConvSpec, method: str) -> str | None:
    """Any rank, groups, stride and dilation; the namespace needs the array-API fft extension."""
    if not array_api_compat.is_numpy_namespace(spec.xp) and not hasattr(spec.xp, "fft"):
        return "its array namespace has no fft extension (xp.fft)"
    return None


def correlate(xp: Any, x_pad: Any, w: Any, spec: ConvSpec, method: str) -> Any:
    """``x_pad: (N, C_in, *S_pad)``, ``w: (C_out, C_in/G, *K)`` -> ``(N, C_out, *S_out)``."""
    wg = xp.reshape(w, (spec.groups, -1, *w.shape[1:]))
    y = _overlap_save(xp, x_pad, wg, spec.dilation, _dense(spec))
    return y[(..., *(slice(None, None, s) for s in spec.stride))]


def input_grad(xp: Any, grad_out: Any, w: Any, spec: ConvSpec, method: str) -> Any:
    """Gradient with respect to the padded input: ``(N, C_out, *S_out) -> (N, C_in, *S_pad)``."""
    wg = xp.reshape(w, (spec.groups, -1, *w.shape[1:]))
    wg = xp.flip(xp.permute_dims(wg, (0, 2, 1, *range(3, wg.ndim))), axis=_kernel_axes(wg))
    # A full convolution: zero-stuff by the stride, pad by span - 1, correlate with the flip.
    return _overlap_save(xp, grad_out, wg, spec.dilation, spec.padded_size,
                         offset=tuple(s - 1 for s in _span(spec)), step=spec.stride)


def weight_grad(xp: Any, grad_out: Any, x_pad: Any, spec: ConvSpec, method: str) -> Any:
    """Gradient with respect to ``w``: ``-> (C_out, C_in/G, *K)``."""
    span, g = _span(spec), spec.groups
    plan = _plan(_dense(spec), span, spec.batch, spec.in_channels, spec.out_channels,
                 spec.in_channels // g)
    lengths = tuple(length for _, _, length in plan)
    # grad_out in blocks of B, zero-padded to L by the transform: no lag of a tile wraps around.
    gy = _embed(xp, grad_out, tuple(t * b for t, b, _ in plan), step=spec.stride)
    gy = xp.conj(_rfftn(xp, _blocks(xp, gy, plan), lengths))
    x = _rfftn(xp, _tiles(xp, _embed(xp, x_pad, _tiled_input(plan, span)), plan), lengths)
    r = _irfftn(xp, _outer(xp, gy, x, g), lengths)  # (*L, G, C_out/G, C_in/G), lag m at m
    r = r[(*(slice(0, s, d) for s, d in zip(span, spec.dilation)), ...)]
    r = xp.permute_dims(r, (*range(len(span), r.ndim), *range(len(span))))
    return xp.reshape(r, (spec.out_channels, -1, *spec.kernel))


def cost(spec: ConvSpec, method: str = "fft", step: str = "correlate") -> float:
    """The sum of :func:`terms`."""
    return sum(terms(spec, method, step).values())


def terms(spec: ConvSpec, method: str = "fft", step: str = "correlate") -> dict[str, float]:
    """Estimated time of one step (``"correlate"``, ``"input_grad"``, ``"weight_grad"``), in
    GEMM-flop equivalents: about seconds times 1.7e10 (within ~2x) on the 2-core reference
    machine, the rate at which a well-shaped GEMM correlation runs its
    ``2 * N * prod(S_out) * C_out * C_in/G * prod(K)`` flops. The two strings may also be
    given as ``(spec, step, method)`` or ``(spec, step)``.

    For the block plan ``(T_i, B_i, L_i)`` per axis, ``L = prod(L_i)`` samples per tile and
    ``M = prod(T_i) * L`` per image-channel::

        FFT_FLOP * 2.5 * log2(L) * (N * (C_in + C_out) * M + C_out * C_in/G * L)
        + MIX_FLOP * 4 * N * C_out * C_in/G * M      # complex multiply-adds per frequency
        + COPY * N * (C_in + C_out) * M              # padding, tiling, untiling passes
        + PRODUCT * G * L / 2                        # one small matrix product per frequency

    (``2.5 n log2 n`` flops per real transform, ``n/2`` complex frequencies of 8 flops per
    multiply-add; the last term only where both C_in/G and C_out/G exceed 1). The gradients
    are the same transforms with the channel roles permuted. Returned in its four parts
    (``transforms``, ``mix``, ``copies``, ``products``), to which
    ``benchmarks/calibrate_select.py`` fits a time per unit each.
    """
    if method in STEPS:
        method, step = step, method
    n, c_in, c_out, g = spec.batch, spec.in_channels, spec.out_channels, spec.groups
    if step == "input_grad":
        channels = (n, c_out, c_in, c_out // g, g)
        plan = _plan(spec.padded_size, _span(spec), *channels[:4])
    else:
        channels = (n, c_in, c_out, c_in // g, g)
        plan = _plan(_dense(spec), _span(spec), *channels[:4])
    return _work(plan, *channels)


def fixed_workspace(spec: ConvSpec, method: str = "fft", step: str = "correlate") -> int:
    """Elements (real numbers) of the buffers a step holds whatever the blocking: the spectra of
    every (out, in) channel pair, ``C_out * C_in/G`` transforms of ``prod(L)`` samples (the
    kernel's, or for the weight gradient the per-frequency sums). They do not shrink with the
    image: on a small image with many channels they are many times the output (DESIGN.md's
    large-kernel layer: 37x)."""
    if method in STEPS:
        method, step = step, method
    n, c_in, c_out, g = spec.batch, spec.in_channels, spec.out_channels, spec.groups
    if step == "input_grad":
        plan = _plan(spec.padded_size, _span(spec), n, c_out, c_in, c_out // g)
    else:
        plan = _plan(_dense(spec), _span(spec), n, c_in, c_out, c_in // g)
    lengths = [length for _, _, length in plan]
    spectrum = 2 * math.prod(lengths[:-1]) * (lengths[-1] // 2 + 1)
    return c_out * (c_in // g) * spectrum


# ---------------------------------------------------------------------------------------------
# overlap-save
#
# Inside, spatial (and frequency) axes come first: ``(*L, N, *T, C)``. The transforms run over
# the leading axes, so each frequency's ``(N*T, C)`` block is contiguous and the channel
# contraction is a batch of matrix products with no transposes of the large spectra.


def _overlap_save(xp: Any, x: Any, wg: Any, dilation: tuple[int, ...],
                  out_size: tuple[int, ...], offset: tuple[int, ...] | None = None,
                  step: tuple[int, ...] | None = None) -> Any:
    """Stride-1 correlation ``y[n, g*Og + o, i] = sum_{c,a} wg[g, o, c, a] *
    x'[n, g*Cg + c, i + a*dilation]`` for ``i < out_size``, where ``x'`` is ``x`` placed at
    ``offset`` every ``step`` samples in zeros (so zero-stuffing and padding cost no extra
    pass). ``x: (N, C, *S)``, ``wg: (G, Og, Cg, *K)`` -> ``(N, G*Og, *out_size)``."""
    g, og, cg = wg.shape[:3]
    span = tuple(d * (k - 1) + 1 for d, k in zip(dilation, wg.shape[3:]))
    plan = _plan(out_size, span, x.shape[0], x.shape[1], g * og, cg)
    lengths = tuple(length for _, _, length in plan)
    wg = xp.permute_dims(_embed(xp, wg, span, step=dilation), (*_kernel_axes(wg), 0, 2, 1))
    kernel = xp.conj(_rfftn(xp, wg, lengths))  # (*F, G, Cg, Og)
    tiles = _tiles(xp, _embed(xp, x, _tiled_input(plan, span), offset, step), plan)
    y = _irfftn(xp, _mix(xp, _rfftn(xp, tiles, lengths), kernel), lengths)
    return _untile(xp, y, plan, out_size)


@functools.lru_cache(maxsize=1024)
def _plan(out_size: tuple[int, ...], span: tuple[int, ...], batch: int, c_in: int, c_out: int,
          c_group: int) -> tuple[tuple[int, int, int], ...]:
    """``(tiles T, hop B, length L)`` per axis minimising :func:`_work`: one tile of a fast
    length covering the axis, or fast lengths from ``2 * span`` up in steps of ~1.26x."""
    options = []
    for out, s in zip(out_size, span):
        whole = scipy.fft.next_fast_len(out + s - 1, real=True)
        axis = {(1, whole - s + 1, whole)}
        target = max(MIN_TILE, 2 * s)
        while (length := scipy.fft.next_fast_len(int(target), real=True)) < whole:
            hop = length - s + 1
            axis.add((-(-out // hop), hop, length))
            target = length * 1.26
        options.append(sorted(axis))
    groups = c_in // c_group
    return min(itertools.product(*options),
               key=lambda p: sum(_work(p, batch, c_in, c_out, c_group, groups).values()))


def _work(plan: tuple[tuple[int, int, int], ...], batch: int, c_in: int, c_out: int,
          c_group: int, groups: int) -> dict[str, float]:
    """The cost formula of :func:`terms` for one plan."""
    size = math.prod(length for _, _, length in plan)
    samples = math.prod(t for t, _, _ in plan) * size  # per image-channel, tiles included
    data = batch * (c_in + c_out) * samples
    ffts = 2.5 * math.log2(max(size, 2)) * (data + c_out * c_group * size)
    products = groups * size / 2 if min(c_group, c_out // groups) > 1 else 0.0
    return {"transforms": FFT_FLOP * ffts,
            "mix": MIX_FLOP * 4 * batch * c_out * c_group * samples,
            "copies": COPY * data, "products": PRODUCT * products}


def _span(spec: ConvSpec) -> tuple[int, ...]:
    return tuple(d * (k - 1) + 1 for d, k in zip(spec.dilation, spec.kernel))


def _dense(spec: ConvSpec) -> tuple[int, ...]:
    """Stride-1 outputs needed to read the strided ones from."""
    return tuple((m - 1) * s + 1 for m, s in zip(spec.out_size, spec.stride))


def _tiled_input(plan: tuple[tuple[int, int, int], ...], span: tuple[int, ...]):
    """Input extent that ``T`` tiles of length ``L`` at hop ``B`` read: ``(T - 1) * B + L``."""
    return tuple(t * b + s - 1 for (t, b, _), s in zip(plan, span))


# ---------------------------------------------------------------------------------------------
# array plumbing


def _kernel_axes(wg: Any) -> tuple[int, ...]:
    """The spatial axes of grouped weights ``(G, Og, Cg, *K)``."""
    return tuple(range(3, wg.ndim))


def _embed(xp: Any, a: Any, size: tuple[int, ...], offset: tuple[int, ...] | None = None,
           step: tuple[int, ...] | None = None) -> Any:
    """``a`` placed at ``offset`` every ``step`` samples in zeros of (trailing) spatial
    ``size``, cropped to what fits; a view when nothing needs moving."""
    d = len(size)
    offset, step = offset or (0,) * d, step or (1,) * d
    fits = tuple(min(n, -(-(m - o) // s))
                 for n, m, o, s in zip(a.shape[-d:], size, offset, step))
    a = a[(..., *(slice(0, f) for f in fits))]
    if fits == size and set(offset) == {0} and set(step) == {1}:
        return a
    out = xp.zeros((*a.shape[:-d], *size), dtype=a.dtype, device=array_api_compat.device(a))
    out[(..., *(slice(o, o + s * (f - 1) + 1, s) for o, s, f in zip(offset, step, fits)))] = a
    return out


def _tiles(xp: Any, a: Any, plan: tuple[tuple[int, int, int], ...]) -> Any:
    """``(N, C, *((T - 1)*B + L)) -> (*L, N, *T, C)``: the overlapping input tiles."""
    d = len(plan)
    if array_api_compat.is_numpy_namespace(xp):  # a strided view, no copy
        view = np.lib.stride_tricks.sliding_window_view(
            a, tuple(length for _, _, length in plan), axis=tuple(range(2, 2 + d)))
        a = view[(..., *(slice(None, None, b) for _, b, _ in plan), *(slice(None),) * d)]
        return xp.permute_dims(a, (*range(2 + d, 2 + 2 * d), 0, *range(2, 2 + d), 1))
    for i, (t, b, length) in reversed(list(enumerate(plan))):  # later axes keep their place
        index = np.add.outer(np.arange(t) * b, np.arange(length)).reshape(-1)
        a = xp.take(a, xp.asarray(index, device=array_api_compat.device(a)), axis=2 + i)
        a = xp.reshape(a, (*a.shape[:2 + i], t, length, *a.shape[3 + i:]))
    return xp.permute_dims(a, (*range(3, 2 + 2 * d, 2), 0, *range(2, 2 + 2 * d, 2), 1))


def _blocks(xp: Any, a: Any, plan: tuple[tuple[int, int, int], ...]) -> Any:
    """``(N, C, *(T*B)) -> (*B, N, *T, C)``: disjoint blocks."""
    d = len(plan)
    a = xp.reshape(a, (*a.shape[:2], *itertools.chain(*((t, b) for t, b, _ in plan))))
    return xp.permute_dims(a, (*range(3, 2 + 2 * d, 2), 0, *range(2, 2 + 2 * d, 2), 1))


def _untile(xp: Any, y: Any, plan: tuple[tuple[int, int, int], ...],
            out_size: tuple[int, ...]) -> Any:
    """``(*L, N, *T, G, Og) -> (N, G*Og, *out_size)``: the first ``B`` samples of each tile."""
    d = len(plan)
    y = y[(*(slice(0, b) for _, b, _ in plan), ...)]
    # (N, G, Og, T1, B1, T2, B2, ...)
    y = xp.permute_dims(y, (d, 2 * d + 1, 2 * d + 2,
                            *itertools.chain(*((d + 1 + i, i) for i in range(d)))))
    y = xp.reshape(y, (y.shape[0], y.shape[1] * y.shape[2], *(t * b for t, b, _ in plan)))
    return y[(..., *(slice(0, m) for m in out_size))]


def _rfftn(xp: Any, a: Any, lengths: tuple[int, ...]) -> Any:
    axes = tuple(range(len(lengths)))
    if array_api_compat.is_numpy_namespace(xp):
        return scipy.fft.rfftn(a, s=lengths, axes=axes, workers=fft_workers())
    return xp.fft.rfftn(a, s=lengths, axes=axes)


def _irfftn(xp: Any, a: Any, lengths: tuple[int, ...]) -> Any:
    axes = tuple(range(len(lengths)))
    if array_api_compat.is_numpy_namespace(xp):
        return scipy.fft.irfftn(a, s=lengths, axes=axes, workers=fft_workers(), overwrite_x=True)
    return xp.fft.irfftn(a, s=lengths, axes=axes)


# ---------------------------------------------------------------------------------------------
# channel contractions per frequency


def _mix(xp: Any, a: Any, h: Any) -> Any:
    """``Y[f, r, g, o] = sum_c A[f, r, g*Cg + c] * H[f, g, c, o]`` for frequencies ``f`` and
    rows ``r = (n, *t)``: ``a: (*F, N, *T, C)``, ``h: (*F, G, Cg, Og)`` ->
    ``(*F, N, *T, G, Og)``."""
    d = h.ndim - 3
    freqs, (g, cg, og), rows = h.shape[:d], h.shape[d:], a.shape[d:-1]
    if cg == 1 or og == 1:  # one channel on a side: a broadcast product
        a = xp.reshape(a, (*freqs, *rows, g, 1, cg))
        h = xp.reshape(xp.permute_dims(h, (*range(d), d, d + 2, d + 1)),
                       (*freqs, *(1,) * len(rows), g, og, cg))
        if og == 1:  # in place: the spectrum is ours, and this halves the peak memory
            a *= h
            y = a
        else:
            y = a * h
        return y[..., 0] if cg == 1 else xp.sum(y, axis=-1)
    # Frequencies are the batch of one matmul: (N*T, Cg) @ (Cg, Og) per frequency and group.
    ff, nr = math.prod(freqs), math.prod(rows)
    a = xp.permute_dims(xp.reshape(a, (ff, nr, g, cg)), (0, 2, 1, 3))
    with _serial_blas():
        y = a @ xp.reshape(h, (ff, g, cg, og))  # (Ff, G, N*T, Og)
    y = xp.reshape(y, (*freqs, g, *rows, og))
    return xp.permute_dims(y, (*range(d), *range(d + 1, d + 1 + len(rows)), d, y.ndim - 1))


def _outer(xp: Any, z: Any, x: Any, groups: int) -> Any:
    """``R[f, g, o, c] = sum_r Z[f, r, g*Og + o] * X[f, r, g*Cg + c]`` over rows ``r = (n, *t)``:
    ``z: (*F, N, *T, C_out)``, ``x: (*F, N, *T, C_in)`` -> ``(*F, G, C_out/G, C_in/G)``."""
    d = (z.ndim - 2) // 2
    freqs, g = z.shape[:d], groups
    og, cg = z.shape[-1] // g, x.shape[-1] // g
    ff, nr = math.prod(freqs), math.prod(z.shape[d:-1])
    z, x = xp.reshape(z, (ff, nr, g, og)), xp.reshape(x, (ff, nr, g, cg))
    if cg == 1 or og == 1:  # the broadcast product is no larger than z or x
        r = xp.sum(xp.reshape(z, (ff, nr, g, og, 1)) * xp.reshape(x, (ff, nr, g, 1, cg)), axis=1)
    else:  # per frequency and group (Og, N*T) @ (N*T, Cg)
        with _serial_blas():
            r = xp.permute_dims(z, (0, 2, 3, 1)) @ xp.permute_dims(x, (0, 2, 1, 3))
    return xp.reshape(r, (*freqs, g, og, cg))


def _serial_blas() -> contextlib.AbstractContextManager[Any]:
    """One BLAS thread for a batch of small products. OpenBLAS threads each product, and its
    thread hand-offs cost more than they save; on busy cores each one can wait a scheduler
    quantum (2000 products 32x64x64 measured at 0.04 s single-threaded, up to 4.5 s threaded).
    Only where ``fft_workers() > 1``: the main thread with a multi-threaded BLAS."""
    if fft_workers() == 1:
        return contextlib.nullcontext()
    return _blas_controller().limit(limits=1, user_api="blas")


@functools.cache
def _blas_controller() -> Any:
    return threadpoolctl.ThreadpoolController()
