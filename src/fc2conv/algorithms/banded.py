"""Correlation by one matrix product per input row against every kernel row (``method="banded"``).

The spatial axes are split into *leading* axes and the last, *band* axis. For one input row
(fixed image and leading position), the row's windows along the band axis form a banded
(Toeplitz) matrix ``cols[(c, b), j] = x[n, c, r, j*s + b*d - p]`` of ``C_in/G * K_band``
rows and ``S_out[-1]`` columns; one product with the kernel laid out as ``(K_lead * C_out/G,
C_in/G * K_band)`` gives that row's contribution ``Z[a, o, j]`` to every output row that
reads it, which is added to output row ``i = (r + p - a*d) / s`` (where that is a whole
number in range). Every output is the sum of its own terms (each over a kernel row), and the
padding is read, not copied (``UNPADDED``)::

    forward       y[n, o, i, j]   += sum_{c, b} w[o, c, a, b] x[n, c, i*s + a*d - p, j*s + b*d - p]
    input grad    the correlation of grad_out, zero-stuffed by the stride and placed at
                  d*(K - 1) - p, with the flipped kernel (channel roles swapped), on the same code
    weight grad   gw[o, c, a, b] += sum_j gy[n, o, i, j] x[n, c, i*s + a*d - p, j*s + b*d - p]
                  (per input row: the output rows it feeds, gathered per kernel row ``a``, times
                  its banded matrix, accumulated in place by BLAS ``gemm`` with ``beta = 1``)

Why: im2col's column buffer holds ``C_in * prod(K)`` elements per output position (961x the
input for a 31x31 kernel), so under a memory budget its blocks are a few positions long; FFT
holds the spectra of every (out, in) channel pair (``fft.fixed_workspace``: ~38x the output of
DESIGN.md's large-kernel layer, which ``auto``'s workspace limit rules out). Here a row's
matrix holds only ``C_in * K_band`` elements per output column, and each input row is read
once for all kernel rows: for the large-kernel layer (16 -> 16 channels, 64^2, 31x31) the
products are 64 of ``(496 x 496) @ (496 x 64)`` per step.

Memory: one copy of the weights, reordered (for the forward and input gradient; freed before
the weight gradient, of the same size, is allocated in a training step), and per thread a
block of rows' matrix and product (``C_in/G * K_band + K_lead * C_out/G`` elements per output
column and row) within its share of the budget (``gemm.column_budget``: by default the
output's size; a row that does not fit runs its columns in tiles), plus one padded input
row. The weight gradient
accumulates in place in its result, which is returned as a view in ``(C_out, C_in/G, *K)``
order (strided: ``(K_lead, C_out, C_in/G, K_band)`` in memory) where ``G = 1`` and it is
larger than the budget; otherwise it is reordered in place, group by group. Measured on
the large-kernel layer: forward+backward 1.67x the output beyond the results (tracemalloc).

Threads: the forward and input gradient split output channels (or columns) over fc2conv's
threads, each copying its channels' weights and with single-threaded BLAS (threaded BLAS was faster alone but left OpenBLAS's
workers spinning against the next call); the weight gradient runs on one thread (two threads
calling SciPy's BLAS at once were measured to run one after the other).

Strided leading axes waste work (every kernel row is multiplied, only the rows of the right
phase are added), so :func:`terms` charges it. A non-finite weight sends the forward and the
input gradient to ``direct`` (rows of padding are skipped here, and stuffed zeros would make
0 * inf where the reference has none), and a non-finite weight gradient is recomputed by
``direct`` (zeros stand in for outputs that do not exist). NumPy arrays only.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Iterator
from typing import Any

import array_api_compat
import numpy as np
import scipy.linalg.blas
from numpy.lib.stride_tricks import as_strided

from .._threads import fft_workers, pool
from .._validate import ConvSpec
from . import direct, gemm

__all__ = ["correlate", "cost", "input_grad", "terms", "unsupported", "weight_grad"]

#: The steps take the unpadded input (zero padding only) and read the padding themselves.
UNPADDED = True
#: Target size of a block's scratch (its rows' banded matrices and products), in bytes:
#: a few rows per product make the products wider (large-kernel forward: 12.4 ms with one
#: row, 9.3 ms with four), within the budget.
CACHE_BYTES = 2 << 20
#: Cost model units (GEMM flops at ~2e10/s): per element copied or added, per source row.
COPY = 20.0
PER_ROW = 1e5
#: ``select.predict`` multiplies this method's predicted times by this: its fitted model
#: under-predicts layers of many short rows by 15-35 % (resnet-small, held-out batch-1: its
#: per-row NumPy calls share the GIL, so a second thread does not halve them), and it is
#: there for memory (large kernels on small images), where it wins by far or is the only
#: method within the workspace limit.
MARGIN = 1.25
#: Fewest multiply-adds per thread worth a second thread.
MIN_WORK_PER_THREAD = 1 << 20

_STEPS = ("correlate", "input_grad", "weight_grad")


def unsupported(spec: ConvSpec, method: str) -> str | None:
    """Any rank, groups, stride and dilation of NumPy arrays."""
    if not array_api_compat.is_numpy_namespace(spec.xp):
        return "it runs on NumPy arrays only; use method='im2col' or 'shift'"
    return None


def cost(spec: ConvSpec, method: str = "banded", step: str = "correlate") -> float:
    """The sum of :func:`terms`."""
    return sum(terms(spec, method, step).values())


def terms(spec: ConvSpec, method: str = "banded", step: str = "correlate") -> dict[str, float]:
    """Estimated work of one step in parts, in GEMM-flop equivalents like the other modules'
    (``select.SECONDS_PER_UNIT`` turns each into seconds): ``products``, the GEMM flops of
    every source row against all kernel rows, ``2 * rows * K_lead * C_out * C_in/G * K_band *
    W`` (``W`` the band axis's output columns; the input gradient's source rows are
    ``grad_out``'s and its columns the input's), at gemm's efficiency for products of
    ``K_lead * C_out/G`` rows and ``C_in/G * K_band`` inner length; ``passes``, the elements
    copied into the banded matrices, added out of (or gathered into) the products and read from
    the source, :data:`COPY` each; ``calls``, :data:`PER_ROW` per source row (its NumPy
    calls)."""
    if method in _STEPS:
        method, step = step, method
    geo = _Geometry.of(spec, step, padded=False)
    g = spec.groups
    cin, cout = geo.channels
    width, kb = geo.out[-1], geo.kernel[-1]
    a = math.prod(geo.kernel[:-1])
    rows = spec.batch * math.prod(geo.src[:-1])
    flops = 2.0 * rows * a * cout * (cin // g) * kb * width
    passes = rows * (width * (cin * kb + a * cout) + cin * geo.src[-1])
    return {"products": gemm._gemm(a * cout // g, cin // g * kb, flops),
            "passes": COPY * float(passes), "calls": PER_ROW * float(rows)}


# ---------------------------------------------------------------------------------------------
# the steps


def correlate(xp: Any, x_pad: Any, w: Any, spec: ConvSpec, method: str, *,
              padded: bool = True) -> Any:
    """``x_pad: (N, C_in, *S_pad)``, ``w: (C_out, C_in/G, *K)`` -> ``(N, C_out, *S_out)``;
    with ``padded=False`` the unpadded ``x: (N, C_in, *S)``."""
    if not _finite(np.asarray(w)):
        # (rows of zero padding are skipped here, where the reference makes 0 * inf = NaN)
        return direct.correlate(xp, x_pad, w, spec, "direct", padded=padded)
    geo = _Geometry.of(spec, "correlate", padded)
    x = np.asarray(x_pad)
    y = np.zeros(spec.output_shape, dtype=x.dtype)
    w = np.asarray(w, dtype=x.dtype)
    _rows_forward(x, w.reshape(spec.groups, -1, *w.shape[1:]), y, geo, _budget(spec))
    return y


def input_grad(xp: Any, grad_out: Any, w: Any, spec: ConvSpec, method: str, *,
               padded: bool = True) -> Any:
    """Gradient with respect to the padded input: ``(N, C_out, *S_out) -> (N, C_in, *S_pad)``
    (with ``padded=False``: to the unpadded input, ``-> (N, C_in, *S)``)."""
    w = np.asarray(w)
    if not _finite(w):
        return direct.input_grad(xp, grad_out, w, spec, "direct", padded=padded)
    geo = _Geometry.of(spec, "input_grad", padded)
    gy = np.asarray(grad_out)
    # (G, Og, Cg, *K) -> channel roles swapped, flipped: (G, Cg, Og, *K), a view
    wg = w.astype(gy.dtype, copy=False).reshape(spec.groups, -1, *w.shape[1:]).swapaxes(1, 2)
    wg = np.flip(wg, axis=tuple(range(3, wg.ndim)))
    gx = np.zeros((spec.batch, spec.in_channels, *geo.out), dtype=gy.dtype)
    _rows_forward(gy, wg, gx, geo, _budget(spec))
    return gx


def weight_grad(xp: Any, grad_out: Any, x_pad: Any, spec: ConvSpec, method: str, *,
                padded: bool = True) -> Any:
    """Gradient with respect to ``w``: ``-> (C_out, C_in/G, *K)`` (``x_pad`` unpadded with
    ``padded=False``)."""
    geo = _Geometry.of(spec, "weight_grad", padded)
    x = np.asarray(x_pad)
    gy = np.asarray(grad_out, dtype=x.dtype)
    g, og, cg = spec.groups, spec.out_channels // spec.groups, spec.in_channels // spec.groups
    lead, kb = spec.kernel[:-1], spec.kernel[-1]
    a = math.prod(lead)
    # (G, K_lead, Og, Cg, K_band): each group's block is the product's (K_lead*Og, Cg*K_band)
    sums = np.zeros((g, a * og, cg * kb), dtype=x.dtype)
    _rows_weight_grad(x, gy, sums, geo, _budget(spec))
    if not _finite(sums):
        return direct.weight_grad(xp, grad_out, x_pad, spec, "direct", padded=padded)
    blocks = sums.reshape(g, *lead, og, cg, kb)
    order = (0, 1 + len(lead), 2 + len(lead), *range(1, 1 + len(lead)), blocks.ndim - 1)
    if g == 1 and sums.size > _budget(spec):
        return blocks.transpose(order).reshape(og, cg, *spec.kernel)  # a strided view
    if g == 1:
        return np.ascontiguousarray(blocks.transpose(order)).reshape(og, cg, *spec.kernel)
    flat = sums.reshape(g, -1)
    for k in range(g):  # reorder in place, one group's block (1/G of the result) at a time
        flat[k] = blocks[k].transpose(tuple(i - 1 for i in order[1:])).reshape(-1)
    return sums.reshape(spec.out_channels, cg, *spec.kernel)


# ---------------------------------------------------------------------------------------------
# the row loops


def _finite(a: np.ndarray) -> bool:
    """Whether every element is finite (a NaN or inf makes the sum so), without a mask the size
    of ``a`` or a casting buffer; a sum that overflows from finite values (~1e38 in float32)
    is a false alarm that only costs the ``direct`` fallback."""
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(np.isfinite(a.sum()))


def _budget(spec: ConvSpec) -> int:
    """Elements of scratch a step may hold: ``gemm.column_budget`` (by default the output's
    size)."""
    return gemm.column_budget(spec)


def _rows_forward(src: np.ndarray, wg: np.ndarray, out: np.ndarray, geo: _Geometry,
                  budget: int) -> None:
    """``out[n, o, i] += sum_{c, a} w[o, c, a] src'[n, c, i*s + a*d]`` (``src'``: ``src``
    placed per ``geo``), ``wg: (G, Og, Cg, *K)`` (any strides): one product per block of
    source rows.

    :func:`fft_workers` threads split the output channels (or, with fewer channels than
    threads, the band axis's output columns), so no two write the same output; each reorders
    its channels' weights to rows ``(a, o)`` and columns ``(c, b)`` (together one copy of the
    weights: the weight gradient, as large, comes later) and holds its blocks' banded
    matrices and products within its share of the budget (where one row does not fit, it
    runs the row's columns in tiles that do)."""
    g, og, cg = wg.shape[:3]
    lead, kb = wg.shape[3:-1], wg.shape[-1]
    width = geo.out[-1]
    workers = _workers(geo, src.shape[0])
    if og >= workers:
        parts = [(og * k // workers, og * (k + 1) // workers, 0, width)
                 for k in range(workers)]
    else:
        count = min(workers, width)
        parts = [(0, og, width * k // count, width * (k + 1) // count) for k in range(count)]
    positions = list(_positions(src.shape[0], geo))
    out6 = out.reshape(out.shape[0], g, og, *out.shape[2:])
    order = (0, *range(3, 3 + len(lead)), 1, 2, wg.ndim - 1)  # (G, *a, o, c, b)
    shared = None if parts[0][:2] != (0, og) else np.ascontiguousarray(
        wg.transpose(order)).reshape(g, -1, cg * kb)

    def run(o_lo: int, o_hi: int, j_lo: int, j_hi: int) -> None:
        rows_w = shared if shared is not None else np.ascontiguousarray(
            wg[:, o_lo:o_hi].transpose(order)).reshape(g, -1, cg * kb)
        _ForwardPart(src, geo, positions, rows_w, j_lo, j_hi, budget // len(parts)).run(
            out6[:, :, o_lo:o_hi], lead)

    _run([functools.partial(run, *part) for part in parts])


class _ForwardPart:
    """One thread's share of :func:`_rows_forward`: the output channels of ``rows_w`` (the
    reordered weights ``(G, K_lead * o, Cg * K_band)``) and output columns ``[j_lo, j_hi)``,
    with its buffers (a block of rows' banded matrices and products) within ``budget``
    elements: where one row does not fit, its columns run in tiles that do."""

    def __init__(self, src, geo, positions, rows_w, j_lo, j_hi,  # type: ignore[no-untyped-def]
                 budget) -> None:
        g, ao, cb = rows_w.shape
        self.rows_w, self.positions = rows_w, positions
        per_column = g * (cb + ao)
        tiles = max(1, min(j_hi - j_lo, -(-(j_hi - j_lo) * per_column // max(1, budget))))
        edges = [j_lo + (j_hi - j_lo) * k // tiles for k in range(tiles + 1)]
        self.tiles = [(lo, hi, _Band(src, geo, lo, hi)) for lo, hi in itertools.pairwise(edges)]
        width = max(hi - lo for lo, hi, _ in self.tiles)
        self.block = _block_rows(len(positions), width * per_column, src.itemsize, budget)
        self.cols = np.empty((g, cb, self.block * width), dtype=src.dtype)
        self.prod = np.empty((g, ao, self.block * width), dtype=src.dtype)

    def run(self, out6: np.ndarray, lead: tuple[int, ...]) -> None:
        """``out6: (N, G, o, *S_out)`` (this part's output channels) += the products of
        every source row."""
        rows_w, block = self.rows_w, self.block
        g, cb = self.cols.shape[:2]
        for j_lo, j_hi, band in self.tiles:
            width = j_hi - j_lo
            part = out6[..., j_lo:j_hi]
            cols = self.cols[:, :, :block * width]
            cols4 = cols.reshape(g, cb, block, width)
            for lo in range(0, len(self.positions), block):
                rows = self.positions[lo:lo + block]
                m = len(rows) * width
                for k, (n, t, _) in enumerate(rows):
                    band.windows(n, t, cols4[:, :, k])
                z = np.matmul(rows_w, cols[:, :, :m], out=self.prod[:, :rows_w.shape[1], :m])
                z = z.reshape(g, *lead, out6.shape[2], len(rows), width)
                for k, (n, _, pairs) in enumerate(rows):
                    zk = z[(slice(None), *(_a(p) for p in pairs), slice(None), k)]
                    part[(n, slice(None), slice(None), *(_i(p) for p in pairs))] += (
                        zk.transpose(_OG_SECOND[len(lead)]))


def _rows_weight_grad(src: np.ndarray, gy: np.ndarray, sums: np.ndarray, geo: _Geometry,
                      budget: int) -> None:
    """``sums[g, (a, o), (c, b)] += sum_j gy[n, o, i, j] src'[n, c, i*s + a*d, j*s + b*d]``
    over every source row and the output rows ``i`` it feeds, accumulated in place by SciPy's
    BLAS ``gemm`` (``beta = 1``; NumPy's ``matmul`` has no accumulating form, and an
    accumulator per block would be the result's size). On one thread: concurrent calls into
    SciPy's BLAS were measured to run one after the other."""
    g, ao, cb = sums.shape
    og = gy.shape[1] // g
    lead = geo.kernel[:-1]
    width = geo.out[-1]
    positions = list(_positions(src.shape[0], geo))
    band = _Band(src, geo, 0, width)
    block = _block_rows(len(positions), width * g * (cb + ao), src.itemsize, budget)
    cols = np.empty((g, cb, block * width), dtype=src.dtype)
    gathered = np.empty((g, ao, block * width), dtype=src.dtype)
    gy6 = gy.reshape(gy.shape[0], g, og, *gy.shape[2:])
    gemm_ = scipy.linalg.blas.get_blas_funcs("gemm", dtype=src.dtype)
    for lo in range(0, len(positions), block):
        rows = positions[lo:lo + block]
        m = len(rows) * width
        gathered.fill(0)
        z = gathered.reshape(g, *lead, og, block, width)
        for k, (n, t, pairs) in enumerate(rows):
            band.windows(n, t, cols.reshape(g, cb, block, width)[:, :, k])
            zk = z[(slice(None), *(_a(p) for p in pairs), slice(None), k)]
            zk.transpose(_OG_SECOND[len(lead)])[...] = gy6[
                (n, slice(None), slice(None), *(_i(p) for p in pairs))]
        for k in range(g):
            # sums[k]^T (F-ordered, (Cg*Kb, K_lead*Og)) += cols @ gathered^T, in place
            gemm_(1.0, cols[k, :, :m].T, gathered[k, :, :m].T, beta=1.0, c=sums[k].T,
                  trans_a=1, overwrite_c=1)


def _workers(geo: _Geometry, batch: int) -> int:
    """Threads for a step: :func:`fft_workers`, one for layers below
    :data:`MIN_WORK_PER_THREAD` multiply-adds."""
    work = batch * math.prod(geo.src) * math.prod(geo.kernel) * math.prod(geo.channels)
    return max(1, min(fft_workers(), work // MIN_WORK_PER_THREAD))


def _run(tasks: list) -> None:
    """Run the callables, on fc2conv's pool when there are several."""
    if len(tasks) == 1:
        tasks[0]()
        return
    for future in [pool().submit(task) for task in tasks]:
        future.result()


# (G, *a, Og, W) -> (G, Og, *a, W), per number of leading axes
_OG_SECOND = {lead: (0, lead + 1, *range(1, lead + 1), lead + 2) for lead in range(3)}


def _block_rows(positions: int, per_row: int, itemsize: int, budget: int) -> int:
    """Rows per product: as many as fit :data:`CACHE_BYTES`, within the budget, at least 1."""
    fit = min(CACHE_BYTES // max(1, per_row * itemsize), budget // max(1, per_row))
    return max(1, min(positions, fit))


def _positions(batch: int, geo: _Geometry) -> Iterator[tuple[int, tuple[int, ...], tuple]]:
    """``(n, t, pairs)`` for every source row that feeds an output: ``t`` its leading index,
    ``pairs`` per leading axis the slice of kernel rows ``a`` and the matching slice of
    output rows ``i`` (same length)."""
    per_axis = [[_pair(geo.axes[axis], t) for t in range(size)]
                for axis, size in enumerate(geo.src[:-1])]
    for n in range(batch):
        for t in np.ndindex(*geo.src[:-1]):
            pairs = tuple(per_axis[axis][i] for axis, i in enumerate(t))
            if all(p is not None for p in pairs):
                yield n, t, pairs


class _Band:
    """Windows of one source row along the band axis, ``(C, K_band, W_out)``, copied into a
    block's banded matrix; the row is placed (zero padding, zero-stuffing) in a buffer
    first unless it can be read as it is."""

    def __init__(self, src: np.ndarray, geo: _Geometry, j_lo: int, j_hi: int) -> None:
        offset, stuff, stride, dilation, k, out = geo.axes[-1]
        self.src, self.stride, self.dilation, self.k, self.width = src, stride, dilation, k, out
        length = (out - 1) * stride + (k - 1) * dilation + 1
        size = src.shape[-1]
        t_lo = max(0, -(offset // stuff))  # the first source index at m >= 0
        t_hi = max(t_lo, min(size, (length - 1 - offset) // stuff + 1))
        self.direct = offset == 0 and stuff == 1 and size >= length
        self.take = slice(t_lo, t_hi)
        self.put = slice(offset + t_lo * stuff, offset + (t_hi - 1) * stuff + 1, stuff)
        item = src.itemsize
        steps = (dilation * item, stride * item)
        if self.direct:  # every row's windows, as one view of the source
            self.view = as_strided(src, shape=(*src.shape[:-1], k, out),
                                   strides=(*src.strides[:-1], *steps),
                                   writeable=False)[..., j_lo:j_hi]
        else:
            self.buffer = np.zeros((src.shape[1], length), dtype=src.dtype)
            self.view = as_strided(self.buffer, shape=(src.shape[1], k, out),
                                   strides=(self.buffer.strides[0], *steps),
                                   writeable=False)[..., j_lo:j_hi]

    def windows(self, n: int, t: tuple[int, ...], dest: np.ndarray) -> None:
        """``dest: (G, Cg * K_band, W_out)`` <- the windows of row ``(n, :, *t)``."""
        if self.direct:
            view = self.view[(n, slice(None), *t)]
        else:
            if self.take.stop > self.take.start:
                self.buffer[:, self.put] = self.src[(n, slice(None), *t, self.take)]
            view = self.view
        dest.reshape(view.shape)[...] = view


# ---------------------------------------------------------------------------------------------
# geometry


class _Geometry:
    """A step as ``out[n, o, i] = sum_{c, a} w[o, c, a] src'[n, c, i*stride + a*dilation]``
    with ``src'[m] = src[t]`` at ``m = offset + t*stuff`` (zeros elsewhere), per axis
    ``axes[k] = (offset, stuff, stride, dilation, K, out)``; ``src`` the source's spatial
    size, ``channels`` the step's ``(in, out)`` channels."""

    def __init__(self, axes, src, channels) -> None:  # type: ignore[no-untyped-def]
        self.axes, self.src, self.channels = axes, src, channels
        self.kernel = tuple(ax[4] for ax in axes)
        self.out = tuple(ax[5] for ax in axes)

    @classmethod
    def of(cls, spec: ConvSpec, step: str, padded: bool) -> _Geometry:
        before = (0,) * spec.ndim if padded else tuple(b for b, _ in spec.pads)
        size = spec.padded_size if padded else spec.in_size
        if step == "input_grad":
            axes = tuple((d * (k - 1) - b, s, 1, d, k, n) for b, s, d, k, n in zip(
                before, spec.stride, spec.dilation, spec.kernel, size))
            return cls(axes, spec.out_size, (spec.out_channels, spec.in_channels))
        axes = tuple((b, 1, s, d, k, m) for b, s, d, k, m in zip(
            before, spec.stride, spec.dilation, spec.kernel, spec.out_size))
        return cls(axes, size, (spec.in_channels, spec.out_channels))


def _pair(axis: tuple[int, int, int, int, int, int], t: int) -> tuple[int, ...] | None:
    """For source index ``t`` on a leading axis, the kernel rows ``a`` it feeds, ``first +
    k*step`` for ``k < count``, and the output rows ``i = (m - a*dilation) / stride =
    i_first - k*i_step`` (``m = offset + t*stuff``): ``(first, count, step, i_first,
    i_step)``, or None if it feeds none."""
    offset, stuff, stride, dilation, k, out = axis
    m = offset + t * stuff
    found = [a for a in range(k) if (m - a * dilation) % stride == 0
             and 0 <= (m - a * dilation) // stride < out]
    if not found:
        return None
    step = stride // math.gcd(stride, dilation)
    return (found[0], len(found), step, (m - found[0] * dilation) // stride,
            step * dilation // stride)


def _a(pair: tuple[int, ...]) -> slice:
    first, count, step = pair[:3]
    return slice(first, first + (count - 1) * step + 1, step)


def _i(pair: tuple[int, ...]) -> slice:
    """The output rows, descending (so they line up with ``_a``'s ascending kernel rows)."""
    count, i_first, i_step = pair[1], pair[3], pair[4]
    stop = i_first - count * i_step
    return slice(i_first, stop if stop >= 0 else None, -i_step)
