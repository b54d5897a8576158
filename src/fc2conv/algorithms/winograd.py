"""Winograd minimal filtering: stride-1 correlations with 3-wide kernels in fewer multiplications.

``F(m, 3)`` computes ``m`` outputs of a 3-tap correlation from ``alpha = m + 2`` inputs with
``alpha`` multiplications instead of ``3 m`` (Lavin & Gray 2016, after Toom-Cook/Winograd):
``y = A^T [(G g) * (B^T d)]`` with ``A^T: (m, alpha)``, ``G: (alpha, 3)``, ``B^T: (alpha,
alpha)``. Nested over two axes, ``F(m x m, 3 x 3)`` reads ``alpha x alpha`` input tiles ``d``
that overlap by 2 and computes ``Y = A^T [(G g G^T) * (B^T d B)] A``. Channels enter only
through the elementwise product, which becomes ``alpha^2`` independent GEMMs. With ``a =
alpha``, ``d`` spatial axes (1 or 2) and ``T = prod(ceil(S_out / m))`` tiles per image:

- weights: ``(C_out, C/G, *K) -> U: (a^d, G, C_out/G, C/G)``;
- input tiles: ``(N, C, *S_pad) -> (a^d, C*N*T)`` by one slice copy per sample offset, then
  ``V = B^T (x) B^T @ tiles -> (a^d, G, C/G, N*T)``;
- products: ``M = U @ V -> (a^d, G, C_out/G, N*T)``, the bulk of the work;
- output: ``A^T (x) A^T @ M -> (m^d, C_out*N*T)``, untiled to ``(N, C_out, *S_out)``.

An output size that is not a multiple of ``m`` gets a last tile that reads zeros, cropped
afterwards. Per output the GEMMs do ``(alpha / m)^2`` multiply-adds per channel pair instead
of 9: 4x fewer for ``"winograd"`` = F(4x4, 3x3), 2.25x fewer for ``"winograd2"`` = F(2x2,
3x3). Each transform is one GEMM with the Kronecker product of the 1-D matrices (``(x)``
above) over the flattened tile samples: in NumPy that measured as fast as one small GEMM per
axis on cache-sized blocks and up to 1.5x faster on whole batches, and far faster than
elementwise passes, whose count grows with the nonzeros.

Images go through in blocks whose tile arrays take about :data:`BLOCK_BYTES`, so each block
runs largely from cache and the extra memory stays bounded. With NumPy the blocks run on
fc2conv's worker threads, BLAS single-threaded: two blocks per thread where the batch
allows; with fewer images than threads, each image is cut into bands of whole tile rows, one
per thread (a band reads its rows plus the 2 its last tile needs).

Speed (float32, NumPy/OpenBLAS, in-process medians of single-thread CPU time on a shared
2-core machine, so noisy to ~10%): on ResNet's 8x64x56x56 -> 64 layer the forward takes
0.70x the time of ``method="shift"`` and about the same as ``"im2col"`` (1.0x), forward +
backward 0.71x shift and 1.0x im2col (torch: 0.34x and 0.49x shift); on the 8x256x14x14 ->
256 layer the forward takes 0.68x shift and 0.88x im2col, forward + backward 0.78x shift and
0.82x im2col, and ``"winograd2"`` does better there (0.60x and 0.72x shift: 14 = 7 tiles of
2, while tiles of 4 compute 16). The channel GEMMs are only ~1/4 of the time: the tile gather
(``(alpha/m)^d`` copies of the input, read at stride ``m``), the two transform GEMMs and the
untile are memory-bound and take the rest, so the 4x saving in multiplications shows as
~1.4x against a GEMM correlation that issues 9 GEMMs.

Gradients. The input gradient of a stride-1 3-tap correlation is the correlation of
``grad_out``, placed 2 samples into zeros on every side, with the kernel flipped and the
channel roles swapped per group; it runs through the same forward (the flip is folded into
``G``). The weight gradient is the same bilinear form differentiated in ``g``:
``grad_w = G^T [sum_{n, tiles} (A grad_y A^T) * (B^T d B)] G``: transform the output-gradient
tiles (non-overlapping, ``m^d -> a^d`` samples) and the input tiles, then ``a^d`` GEMMs
``(C_out/G, N*T) @ (N*T, C/G)`` reduce over images and tiles. Measured as above, this
weight gradient takes 0.75x the time of ``"shift"``'s on the 56x56x64 layer (1.15x
``"im2col"``'s) and 0.65x (0.95x) on the 14x14x256 one, so it is kept rather than falling
back to GEMM; the selector picks per step.

Interpolation points. ``F(2, 3)`` uses ``0, 1, -1, inf``; ``F(4, 3)`` uses ``0, 1, -1, 1/2,
-2, inf`` (Barabasz et al. 2020, "Error analysis and improving the accuracy of Winograd
convolution"), measured 2.5x more accurate in float32 than Lavin's ``0, +-1, +-2``. The
matrices are built exactly from the points (:func:`toom_cook`).

Accuracy: float32 against float64, ``max|y - y_ref| / max|y_ref|`` over a layer with random
normal data, forward / input gradient / weight gradient, worst of 3 seeds:

===================================  =====================  =====================  ==========
layer (N, C_in, S, C_out)            ``"winograd"``         ``"winograd2"``        shift, fwd
===================================  =====================  =====================  ==========
(2, 8, 13x13, 8), padding 1          2.5e-6 1.3e-6 1.0e-6   2.4e-7 1.9e-7 2.2e-7   1.2e-7
(4, 64, 28x28, 64), padding 1        2.5e-6 2.8e-6 3.6e-6   3.4e-7 4.0e-7 9.3e-7   2.7e-7
(8, 256, 14x14, 256), padding 1      5.4e-6 5.0e-6 3.4e-6   7.5e-7 6.7e-7 1.1e-6   4.5e-7
(2, 32, 20x20, 32), depthwise        3.0e-6 2.0e-6 1.4e-6   1.9e-7 2.6e-7 2.2e-7   1.7e-7
(2, 1024, 14x14, 64), forward only   4.4e-6                 6.3e-7                 5.9e-7
===================================  =====================  =====================  ==========

F(4x4) is ~10x, F(2x2) ~1.5x less accurate than GEMM correlation: larger tiles need larger
interpolation points, whose transforms amplify rounding. The error grows slowly with the
channel count. Float64 errors are these times ``eps64 / eps32``. :data:`ERROR_BOUND` holds
the bounds the tests check.

Non-finite values: the transforms mix all samples of a tile, so a NaN or inf read by any
output of a tile makes all ``m^d`` outputs of that tile NaN (an inf can meet ``inf - inf``),
where a GEMM correlation makes exactly the outputs that read it NaN or inf.

Works on any array-API namespace (``reshape``, ``permute_dims``, ``matmul``, slice
assignment); no NumPy-only tricks were needed (a single ``as_strided`` gather measured no
faster than the slice copies).
"""

from __future__ import annotations

import functools
import itertools
import math
from fractions import Fraction
from typing import Any

import array_api_compat
import numpy as np

from .._threads import blas_serial, fft_workers, pool
from .._validate import ConvSpec

__all__ = ["ERROR_BOUND", "POINTS", "TILE", "correlate", "cost", "input_grad", "terms",
           "toom_cook", "unsupported", "weight_grad"]

#: Outputs per tile and axis.
TILE = {"winograd": 4, "winograd2": 2}
#: Finite interpolation points (the point at infinity is always added).
POINTS = {"winograd": (0, 1, -1, Fraction(1, 2), -2), "winograd2": (0, 1, -1)}
#: Bound on ``max|y - y_ref| / max|y_ref|`` in float32, forward and both gradients: ~4x the
#: largest error measured above (the tests floor ``max|y_ref|`` at ``max(bound) / sqrt(L)``
#: for tiny layers whose outputs may cancel, see tests/test_algo_winograd.py).
ERROR_BOUND = {"winograd": 2e-5, "winograd2": 4e-6}
#: Spatial ranks run. Rank 3 would run through the same code, but its Kronecker transforms
#: (216 x 216 for F(4,3)) cost more than the products save.
RANKS = (1, 2)


def toom_cook(points: tuple, m: int, r: int = 3) -> tuple[list, list, list]:
    """Exact ``(A^T, G, B^T)`` of ``F(m, r)`` from ``m + r - 2`` finite points, as nested lists
    of Fractions: ``y = A^T [(G g) * (B^T d)]`` is the correlation of ``d`` with ``g``.

    Correlation is the transpose of polynomial multiplication, so with ``V_k`` the
    ``(alpha, k)`` Vandermonde matrix of the points (last row: the point at infinity, which
    picks the leading coefficient): ``A^T = V_m^T``, ``G = V_r``, ``B^T = V_alpha^-T``. Row
    ``i`` of ``G`` is divided by ``prod_{j != i} (p_i - p_j)`` and that of ``B^T`` multiplied
    by it, which keeps ``B^T`` small (Lavin's scaling).
    """
    pts = [Fraction(p) for p in points]
    alpha = m + r - 1

    def vander(k: int) -> list:
        return [[p**j for j in range(k)] for p in pts] + [[Fraction(j == k - 1)
                                                           for j in range(k)]]

    # Gauss-Jordan inverse of V_alpha in exact arithmetic (alpha <= 6).
    rows = [row + [Fraction(i == j) for j in range(alpha)] for i, row in enumerate(vander(alpha))]
    for c in range(alpha):
        pivot = next(i for i in range(c, alpha) if rows[i][c] != 0)
        rows[c], rows[pivot] = rows[pivot], rows[c]
        rows[c] = [v / rows[c][c] for v in rows[c]]
        for i in range(alpha):
            if i != c and rows[i][c] != 0:
                rows[i] = [a - rows[i][c] * b for a, b in zip(rows[i], rows[c])]
    bt = [list(col) for col in zip(*(row[alpha:] for row in rows))]
    at = [list(col) for col in zip(*vander(m))]
    g = vander(r)
    for i, p in enumerate(pts):
        f = math.prod((p - q for q in pts if q != p), start=Fraction(1))
        g[i] = [v / f for v in g[i]]
        bt[i] = [v * f for v in bt[i]]
    return at, g, bt


@functools.cache
def _kron(method: str, d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``A^T, G, B^T`` of ``F(m^d, 3^d)`` in float64: the 1-D matrices Kronecker-multiplied
    ``d`` times, so each transform of a ``d``-dimensional tile is one GEMM over its flattened
    samples: one pass over the tiles instead of ``d``, and an inner size of ``a^d`` instead of
    ``a`` keeps BLAS busier, which pays for the extra flops."""
    mats = [np.array(mat, dtype=np.float64) for mat in toom_cook(POINTS[method], TILE[method])]
    return tuple(functools.reduce(np.kron, [mat] * d) for mat in mats)


def unsupported(spec: ConvSpec, method: str) -> str | None:
    """Runs 1-D and 2-D layers with a 3-wide kernel, stride 1 and dilation 1."""
    m = TILE[method]
    name = f"Winograd F({m},3)" if spec.ndim == 1 else f"Winograd F({m}x{m},3x3)"
    if spec.ndim not in RANKS:
        return f"{name} runs 1-D and 2-D layers only; got a {spec.ndim}-D layer"
    if (any(k != 3 for k in spec.kernel) or any(s != 1 for s in spec.stride)
            or any(d != 1 for d in spec.dilation)):
        shape = "x".join(["3"] * spec.ndim)
        return (f"{name} needs a {shape} kernel with stride 1 and dilation 1; got kernel "
                f"{spec.kernel}, stride {spec.stride}, dilation {spec.dilation}")
    return None


#: The steps also take the unpadded input (``padded=False``, zero padding only): the tile
#: gather reads zeros outside it, so no padded copy is made (one input-sized buffer less).
UNPADDED = True


def correlate(xp: Any, x_pad: Any, w: Any, spec: ConvSpec, method: str, *,
              padded: bool = True) -> Any:
    """``x_pad: (N, C_in, *S_pad)``, ``w: (C_out, C_in/G, *K)`` -> ``(N, C_out, *S_out)``;
    with ``padded=False`` the unpadded ``x: (N, C_in, *S)`` (``spec.pads`` of zeros)."""
    u = _weights(xp, w, spec.groups, method)
    return _forward(xp, x_pad, u, spec.out_size, _offsets(spec, padded), method)


def input_grad(xp: Any, grad_out: Any, w: Any, spec: ConvSpec, method: str, *,
               padded: bool = True) -> Any:
    """Gradient with respect to the padded input: ``(N, C_out, *S_out) -> (N, C_in, *S_pad)``
    (with ``padded=False``: to the unpadded input, ``-> (N, C_in, *S)``)."""
    u = _weights(xp, w, spec.groups, method, transpose=True)
    size = spec.padded_size if padded else spec.in_size
    # the full correlation of grad_out: placed 2 into zeros, or 2 - pad when only the
    # unpadded input's cells are wanted
    offsets = tuple(2 - (0 if padded else before) for before, _ in spec.pads)
    return _forward(xp, grad_out, u, size, offsets, method)


def _offsets(spec: ConvSpec, padded: bool) -> tuple[int, ...]:
    """Where the input starts in the zero-padded array the tiles read, per axis."""
    return tuple(0 if padded else before for before, _ in spec.pads)


def weight_grad(xp: Any, grad_out: Any, x_pad: Any, spec: ConvSpec, method: str, *,
                padded: bool = True) -> Any:
    """Gradient with respect to ``w``: ``-> (C_out, C_in/G, *K)`` (``x_pad`` as in
    :func:`correlate`)."""
    at, g, bt = _mats(xp, x_pad, method, spec.ndim)
    m, groups = TILE[method], spec.groups
    tiles = tuple(-(-n // m) for n in spec.out_size)
    tile_bytes = _tile_bytes(xp, x_pad, max(spec.in_channels, spec.out_channels), tiles, m)
    offset = _offsets(spec, padded)

    def block(part: tuple[slice, slice]) -> Any:  # (a^d, G, O/G, C/G): a block's products
        images, rows = part
        reads, band_offset = _band(rows, offset[0], x_pad.shape[2])
        band_tiles = (-(-(rows.stop - rows.start) // m), *tiles[1:])
        v = _group(xp, bt @ _gather(xp, x_pad[images, :, reads, ...], m, band_tiles,
                                    (band_offset, *offset[1:])), groups,
                   spec.in_channels)  # (a^d, G, C/G, N*T)
        z = _group(xp, at.mT @ _blocks(xp, grad_out[images, :, rows, ...], m, band_tiles),
                   groups, spec.out_channels)  # (a^d, G, O/G, N*T)
        return _product(z, v.mT)

    parts = _parts(spec.batch, spec.out_size[0], m, tile_bytes, _workers(xp))
    p = functools.reduce(lambda a, b: a + b, _each(xp, block, parts))
    gw = xp.reshape(g.mT @ xp.reshape(p, (p.shape[0], -1)), (g.shape[1], *p.shape[1:]))
    gw = xp.reshape(gw, (*spec.kernel, spec.out_channels, spec.in_channels // groups))
    return xp.permute_dims(gw, (spec.ndim, spec.ndim + 1, *range(spec.ndim)))


def cost(spec: ConvSpec, method: str = "winograd", step: str = "correlate") -> float:
    """The sum of :func:`terms`."""
    return sum(terms(spec, method, step).values())


def terms(spec: ConvSpec, method: str = "winograd", step: str = "correlate"
          ) -> dict[str, float]:
    """Estimated time of one step (``"correlate"``, ``"input_grad"``, ``"weight_grad"``) of
    ``method``, in flops of a GEMM running at the BLAS peak (the unit of
    :func:`fc2conv.algorithms.gemm.cost`); ``inf`` for a layer :func:`unsupported` refuses.
    The two strings may also be passed in the order ``(spec, step, method)``.

    With ``a = alpha = m + 2``, ``d`` spatial axes, ``N*T`` tiles (of the output, or of the
    padded input for ``"input_grad"``), ``C = C_in``, ``O = C_out`` (swapped for
    ``"input_grad"``), and ``B`` blocks of images (float32 assumed)::

        SCALE * (max(2 * C/G, COPY) * a^d * N*T * O              # the a^d channel GEMMs
                 + TRANSFORM * 2 * a^d * N*T * (a^d * C + m^d * O)  # B^T, A^T over the tiles
                 + COPY * N*T * (a^d * C + m^d * O)               # tile gather, untile
                 + (TRANSFORM * 2 * 3^d + COPY) * a^d * O * C/G   # weight transform
                 + PER_CALL * B)

    The weight gradient transforms ``grad_out`` where the forward untiles: the same terms.
    Inside the parentheses the unit is a flop of this module's channel GEMMs, which ran at
    ~45% of the BLAS peak (``SCALE``); a channel GEMM costs at least a copy of its output
    (depthwise layers); the transforms are GEMMs with an inner size of only ``a^d``; a
    strided copy costs about ``COPY`` flops per element; ``PER_CALL`` is the ~150 us a tiny
    layer takes. Fitted to single-thread timings: within ~20% of the measured ratio to
    ``method="shift"`` and ``"im2col"`` on ResNet's 56x56x64 and 14x14x256 layers.
    Returned in parts (``products``, ``transforms`` with the weight transform, ``copies``,
    ``calls``), to which ``benchmarks/calibrate_select.py`` fits a time per unit each.
    """
    if method not in TILE:
        method, step = step, method
    if unsupported(spec, method) is not None:
        return {"products": math.inf}
    m, d = TILE[method], spec.ndim
    a = m + 2
    c, o, size = spec.in_channels, spec.out_channels, spec.out_size
    if step == "input_grad":
        c, o, size = o, c, spec.padded_size
    cg = c // spec.groups
    nt = spec.batch * math.prod(-(-n // m) for n in size)
    products = max(2 * cg, COPY) * a**d * nt * o
    transforms = TRANSFORM * 2 * a**d * nt * (a**d * c + m**d * o)
    copies = COPY * nt * (a**d * c + m**d * o)
    weights = (TRANSFORM * 2 * 3**d + COPY) * a**d * o * cg
    cores = fft_workers()
    blocks = len(_parts(spec.batch, size[0], m, 4 * a**d * max(c, o) * nt // spec.batch,
                        cores))
    threads = cores if blocks >= cores else 1  # as _each
    # threaded blocks share the work (the weights were fitted with whole steps timed)
    return {"products": SCALE * products / threads,
            "transforms": SCALE * (transforms + weights) / threads,
            "copies": SCALE * copies / threads, "calls": SCALE * PER_CALL * blocks}


# ---------------------------------------------------------------------------------------------

#: The transformed tiles of one block of images take about this many bytes: a block's
#: gather, transforms and GEMMs then run largely from cache (measured 10-15% faster than one
#: pass over a batch of 56x56x64 layers), and the extra memory is bounded (two blocks are
#: in flight on two threads: 2 MiB kept ResNet-mid's forward+backward workspace at 2.3x its
#: output, 4 MiB took 4.5x, at about the same speed).
BLOCK_BYTES = 2 << 20
#: An image with at least this many bytes of tiles is cut into bands of rows for the worker
#: threads when the batch has fewer images than threads (:func:`_parts`). Measured on one
#: 64 x 56^2 -> 64 image (1.8 MB of F(4x4) tiles), F(4x4) forward 2.83 -> 1.95 ms, input
#: gradient 2.74 -> 1.80, weight gradient 3.30 -> 1.87 with two bands on two threads; four
#: bands (two per thread) gained only 15 %.
BAND_MIN_BYTES = 1 << 19
#: Constants of :func:`cost`.
SCALE = 2.2
TRANSFORM = 1.5
COPY = 60.0
PER_CALL = 6e6


def _mats(xp: Any, like: Any, method: str, d: int) -> tuple[Any, Any, Any]:
    """``A^T, G, B^T`` of ``F(m^d, 3^d)`` as arrays of ``like``'s namespace, dtype and device:
    ``(m^d, a^d)``, ``(a^d, 3^d)``, ``(a^d, a^d)``."""
    device = array_api_compat.device(like)
    return tuple(xp.asarray(mat, dtype=like.dtype, device=device) for mat in _kron(method, d))


def _weights(xp: Any, w: Any, groups: int, method: str, transpose: bool = False) -> Any:
    """``U = G w G^T``: ``(O, C/G, *K) -> (a^d, G, O/G, C/G)``; with ``transpose`` the
    flipped kernel with channel roles swapped, ``(a^d, G, C/G, O/G)``, which the input
    gradient correlates with."""
    d = w.ndim - 2
    _, g, _ = _mats(xp, w, method, d)
    if transpose:
        g = xp.flip(g, axis=1)  # reversing the flattened taps flips every axis
    taps = xp.reshape(xp.permute_dims(w, (*range(2, w.ndim), 0, 1)), (g.shape[1], -1))
    u = xp.reshape(g @ taps, (g.shape[0], groups, w.shape[0] // groups, w.shape[1]))
    return u.mT if transpose else u


def _forward(xp: Any, x: Any, u: Any, out_size: tuple[int, ...], offset: tuple[int, ...],
             method: str) -> Any:
    """Stride-1 3-tap correlation of ``x: (N, C, *S)``, placed ``offset[i]`` samples into
    zeros along axis ``i`` (negative: cut), with transformed weights ``u: (a^d, G, O/G, C/G)``, for ``out_size``
    outputs -> ``(N, O, *out_size)``, a block of images at a time."""
    m, (n, c) = TILE[method], x.shape[:2]
    o = u.shape[1] * u.shape[2]
    tiles = tuple(-(-k // m) for k in out_size)
    parts = _parts(n, out_size[0], m, _tile_bytes(xp, x, max(c, o), tiles, m), _workers(xp))
    y = xp.empty((n, o, *out_size), dtype=x.dtype, device=array_api_compat.device(x))

    def block(part: tuple[slice, slice]) -> None:
        images, rows = part
        reads, band_offset = _band(rows, offset[0], x.shape[2])
        if len(parts) == 1:
            into = y
        elif isinstance(y, np.ndarray):  # (a NumPy slice is a view: the block writes y)
            into = y[images, :, rows, ...]
        else:  # (the array API does not promise that writes into a slice reach y)
            into = xp.empty((images.stop - images.start, o, rows.stop - rows.start,
                             *out_size[1:]), dtype=x.dtype, device=array_api_compat.device(x))
        _forward_block(xp, x[images, :, reads, ...], u, (band_offset, *offset[1:]), method,
                       into)
        if into is not y and not isinstance(y, np.ndarray):
            y[images, :, rows, ...] = into

    _each(xp, block, parts)
    return y


def _forward_block(xp: Any, x: Any, u: Any, offset: tuple[int, ...], method: str,
                   into: Any) -> None:
    """:func:`_forward` on all of ``x`` at once, into ``into: (N, O, *out_size)``."""
    d, m = into.ndim - 2, TILE[method]
    at, _, bt = _mats(xp, x, method, d)
    tiles = tuple(-(-n // m) for n in into.shape[2:])
    v = _group(xp, bt @ _gather(xp, x, m, tiles, offset), u.shape[1], x.shape[1])
    _untile(xp, at @ xp.reshape(_product(u, v), (v.shape[0], -1)), m, tiles, into)


def _untile(xp: Any, y: Any, m: int, tiles: tuple[int, ...], into: Any) -> None:
    """Output tiles ``y: (m^d, O * N * T)`` (ordered like :func:`_gather`) into ``into: (N,
    O, *S_out)``, cropped to ``S_out``: one strided copy per sample of a tile, each in runs
    of a row of tiles. (One permuting copy of the whole array, which reads ``y`` in runs of
    ``m`` at a stride of ``O * N * T``, and then a copy into the output took per block 0.17
    ms for ResNet-deep's F(2x2) forward and 0.31 ms for ResNet-mid's; these copies 0.08
    ms.)"""
    d, (n, o) = len(tiles), into.shape[:2]
    y = xp.reshape(y, (*(m,) * d, o, n, *tiles))
    for index in itertools.product(range(m), repeat=d):
        counts = [-(-(s - i) // m) for s, i in zip(into.shape[2:], index)]
        if min(counts) <= 0:
            continue
        tile = y[(*index, ..., *(slice(0, k) for k in counts))]  # (O, N, *counts)
        into[(slice(None), slice(None), *(slice(i, None, m) for i in index))] = (
            xp.permute_dims(tile, (1, 0, *range(2, d + 2))))


def _each(xp: Any, fn: Any, parts: list) -> list:
    """``[fn(part) for part in parts]``; for NumPy with a block or more per worker thread,
    on fc2conv's threads with BLAS single-threaded: the copies and transforms around the
    products then use every core too, and no multi-threaded BLAS call leaves OpenBLAS's
    threads spinning into the steps that follow (see ``gemm._Blocked._plan``)."""
    workers = _workers(xp)
    if workers <= 1 or len(parts) < workers:
        return [fn(part) for part in parts]
    with blas_serial():
        return list(pool().map(fn, parts))


def _parts(batch: int, rows: int, m: int, tile_bytes: int, workers: int
           ) -> list[tuple[slice, slice]]:
    """The blocks of a step: ``(images, output rows)``. Blocks of whole images
    (:func:`_images_per_block`); with fewer images than worker threads, each image of at
    least :data:`BAND_MIN_BYTES` of tiles is cut into bands of whole tile rows, so that a
    single image runs on every core. (Bands to bound the memory of large images measured
    slower: ResNet-mid's F(2x2) forward 12.7 -> 15.4 ms with two bands per image.)"""
    step = _images_per_block(batch, tile_bytes, workers)
    bands = 1
    if step == 1 and workers > batch and tile_bytes >= BAND_MIN_BYTES:
        bands = -(-workers // batch)
    tile_rows = -(-rows // m)
    band = -(-tile_rows // min(bands, tile_rows)) * m
    return [(slice(i, min(i + step, batch)), slice(r, min(r + band, rows)))
            for i in range(0, batch, step) for r in range(0, rows, band)]


def _band(rows: slice, offset: int, size: int) -> tuple[slice, int]:
    """The input rows (first spatial axis, ``size`` of them, placed ``offset`` into zeros)
    that the tiles of the output rows ``rows`` read, and where that slice starts in the
    band's own zero-extended frame."""
    first = max(0, rows.start - offset)
    last = min(size, max(first, rows.stop + 2 - offset))
    return slice(first, last), offset - rows.start + first


def _workers(xp: Any) -> int:
    """Threads the blocks may run on: fc2conv's workers for NumPy, else 1."""
    return fft_workers() if array_api_compat.is_numpy_namespace(xp) else 1


def _tile_bytes(xp: Any, x: Any, channels: int, tiles: tuple[int, ...], m: int) -> int:
    """Bytes of one image's transformed tiles."""
    per_image = (m + 2) ** len(tiles) * channels * math.prod(tiles)
    return per_image * xp.finfo(x.dtype).bits // 8


def _images_per_block(batch: int, tile_bytes: int, workers: int) -> int:
    """Images per block such that a block's tile arrays stay within :data:`BLOCK_BYTES`, and
    at least two blocks per worker thread where there are enough images."""
    step = max(1, BLOCK_BYTES // max(1, tile_bytes))
    return min(step, max(1, batch // (2 * workers))) if workers > 1 else step


def _gather(xp: Any, x: Any, m: int, tiles: tuple[int, ...], offset: tuple[int, ...]) -> Any:
    """Overlapping ``alpha``-wide tiles at hop ``m`` of ``x: (N, C, *S)`` placed ``offset[i]``
    samples into zeros along axis ``i``: ``(a^d, C * N * T)``, sample ``(a_0, a_1, ...)`` of
    tile ``(t_0, t_1, ...)`` reading ``x[n, c, t_0*m + a_0 - offset_0, ...]`` (zero outside
    ``x``). One slice copy per sample offset."""
    d, alpha = len(tiles), m + 2
    xc = xp.permute_dims(x, (1, 0, *range(2, x.ndim)))
    reads = [[_reads(a, m, t, o, n) for a in range(alpha)]
             for t, n, o in zip(tiles, x.shape[2:], offset)]
    inside = all(r[0] == slice(0, t) for rs, t in zip(reads, tiles) for r in rs)
    make = xp.empty if inside else xp.zeros  # tile samples outside x read zeros
    out = make((*(alpha,) * d, *xc.shape[:2], *tiles), dtype=x.dtype,
               device=array_api_compat.device(x))
    for index in itertools.product(range(alpha), repeat=d):
        parts = [reads[k][a] for k, a in enumerate(index)]
        if all(dst.stop > dst.start for dst, _ in parts):
            out[(*index, ..., *(dst for dst, _ in parts))] = xc[(..., *(src for _, src in parts))]
    return xp.reshape(out, (alpha**d, -1))


def _reads(a: int, m: int, t: int, offset: int, n: int) -> tuple[slice, slice]:
    """Along one axis: the tiles ``i < t`` whose sample ``a`` lies inside ``x`` (length ``n``,
    placed at ``offset``) and the samples of ``x`` they read, as ``(tiles, samples)``."""
    first = max(0, -((a - offset) // m))  # ceil((offset - a) / m)
    stop = min(t, (n - 1 + offset - a) // m + 1)
    if stop <= first:
        return slice(0, 0), slice(0, 0)
    start = first * m + a - offset
    return slice(first, stop), slice(start, start + (stop - first - 1) * m + 1, m)


def _blocks(xp: Any, y: Any, m: int, tiles: tuple[int, ...]) -> Any:
    """Non-overlapping ``m``-wide tiles of ``y: (N, O, *S)``, zero beyond ``S``:
    ``(m^d, O * N * T)``, ordered like :func:`_gather`."""
    d = len(tiles)
    size = tuple(t * m for t in tiles)
    if tuple(y.shape[2:]) != size:
        padded = xp.zeros((*y.shape[:2], *size), dtype=y.dtype, device=array_api_compat.device(y))
        padded[(..., *(slice(0, n) for n in y.shape[2:]))] = y
        y = padded
    y = xp.reshape(y, (*y.shape[:2], *(s for t in tiles for s in (t, m))))
    y = xp.permute_dims(y, (*(3 + 2 * k for k in range(d)), 1, 0, *(2 + 2 * k for k in range(d))))
    return xp.reshape(y, (m**d, -1))


def _group(xp: Any, v: Any, groups: int, channels: int) -> Any:
    """``(a^d, C * N * T) -> (a^d, G, C/G, N*T)``."""
    return xp.reshape(v, (v.shape[0], groups, channels // groups, -1))


def _product(a: Any, b: Any) -> Any:
    """``a @ b`` on stacks of matrices; a broadcast multiply for an inner size of 1
    (depthwise), which NumPy runs several times faster than matmul's outer-product loop."""
    return a * b if a.shape[-1] == 1 else a @ b
