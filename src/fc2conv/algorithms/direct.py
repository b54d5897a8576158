"""Direct correlation: multiply-accumulate over the kernel offsets, for depthwise layers.

A depthwise (``C_in/G == 1``) or narrow grouped layer makes every GEMM of the other methods
tiny (an outer product per offset), so its time is all memory traffic. This method does that
traffic as well as whole-array NumPy can: for each kernel offset one broadcast multiply
``w[k] * window_k`` (a small ``(C_out/G, C_in/G)`` matmul when ``C_in/G > 1``) and one in-place
add into an accumulator, with every buffer preallocated (``out=``) and the work cut into
cache-sized blocks. There is no Python loop over channels or pixels, only over the offsets
(and the blocks).

Flat windows. For a stride-1 correlation, flatten each (image, channel) of the padded input:
output ``i`` and kernel offset ``a`` read flat index ``sum_j (i_j + a_j*d_j) * G_j`` with
``G`` the C-order strides of the padded size, i.e. ``l(i) + off(a)``. So the window of
offset ``a`` is the *contiguous* run ``x_flat[off(a) : off(a) + L]`` when the outputs are
computed on the grid ``l = sum_j i_j G_j`` (``L = l(last output) + 1``): every ufunc runs one
long inner loop per (image, channel) instead of one short loop per output row. Grid points
past the end of an output row (``i_j >= S_out_j``) are junk and cropped; they read real
neighbouring values, never out of bounds. A stride ``s`` is reduced to stride 1 by the
polyphase split ``x_pad[..., p::s]``: offset ``a*d`` reads phase ``(a*d) % s`` at shift
``(a*d) // s`` (one gather of the block's input, only of the phases some offset reads; any
padding can be filled in during the gather, which is how pooling avoids a padded copy).

Gradients use the same runs. The input gradient adds ``w[k] * grad_out`` into the run of
offset ``k`` of a zeroed gradient buffer (``grad_out`` is laid on the grid with zeros at the
junk points, so they add nothing), then puts the phases back. The weight gradient is, per
offset, one BLAS product per (image, group) of ``grad_out`` on the grid with the run,
``(C_out/G, L) @ (L, C_in/G)`` (a dot product for depthwise layers), summed over the blocks.

Two layouts keep the NumPy calls long. Each offset's product is written into a buffer laid
out like the (contiguous) accumulator with zeros past every run, and added with one flat
``np.add`` over the whole block: the zero tails spill into the next item's first cells and add
nothing, and NumPy's ~50 ns per strided run disappear (:func:`_flat_pair`). And at stride 1,
in 2-D and 3-D with several input channels per group, the forward and weight gradient first
copy each channel's runs for the offsets along the last kernel axis side by side (staged
rows, :func:`_stage_rows`), so that a whole row of the kernel is one product with inner size
``C_in/G * K_last``.

Blocks are ``(images, groups, rows of the first spatial axis)`` whose buffers fit in
:data:`BLOCK_BYTES` (about the L2 cache of one core); independent blocks run on
``fft_workers()`` threads (NumPy releases the GIL inside each ufunc), split by (image, group)
so no two threads ever add into the same gradient cell; steps made of small BLAS products
stay on one thread (:func:`_large_products`). Layers with ``C_in/G`` above
:data:`MAX_GROUP_CHANNELS` are left to the GEMM methods (:func:`unsupported`); ``C_out/G``
(a depthwise channel multiplier) is any.

Arrays of other array-API namespaces (PyTorch, array_api_strict) take a plain path with the
same formulas on whole strided windows.

Measured (float32, 2-core AVX-512 Xeon, shared and noisy; in-process medians), the depthwise
layer ``N=8, C=128, 56x56, 3x3, pad 1, groups=128`` end to end (padding and bias included):
forward ~1.1x faster than PyTorch's CPU ``conv2d``, forward+backward ~1.35x faster; ~2.6x
faster than the original ``shift`` path in both. With Numba installed, depthwise layers
(``C_in/G == 1``) run faster as compiled loops, :mod:`~fc2conv.algorithms.jit`
(``method="jit"``; ``auto`` picks by the cost model); this method keeps the narrow grouped
layers, other array namespaces and installs without Numba.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import array_api_compat
import numpy as np
from numpy.lib.stride_tricks import as_strided

from .. import _padding
from .._buffering import STRIDED_RUN, unbuffered
from .._threads import blas_serial, fft_workers, pool
from .._validate import ConvSpec, conv_spec
from .._windows import offsets, window

__all__ = [
    "MAX_GROUP_CHANNELS",
    "correlate",
    "cost",
    "input_grad",
    "terms",
    "unsupported",
    "weight_grad",
]

#: Largest ``C_in / groups`` this method runs: at 16 it was measured ~1.6x slower than
#: ``im2col`` (forward and forward+backward), at 8 within ~1.4x, at 1-4 on par or faster.
MAX_GROUP_CHANNELS = 8
#: Working set of one block (its slice of the input, accumulator and scratch), in bytes.
BLOCK_BYTES = 1 << 20
#: Fewest grid points a block's calls work on, however large each point's input: below it the
#: ~2 us of Python per NumPy call would dominate (large pooling windows, global pooling).
MIN_GRID = 1 << 13
#: Threads get at least this many blocks each (fewer blocks run on the calling thread).
MIN_BLOCKS_PER_THREAD = 2
#: Multiply-adds of one (image, group) product from which steps made of products run on
#: threads (:func:`_large_products`).
THREADED_PRODUCT = 1 << 20
# Cost weights (see :func:`cost`), in GEMM-flop units: per element of a pass over a cached
# block, per input element of a strided phase gather, per NumPy call.
PASS = 2.2
GATHER = 55.0
PER_CALL = 1.2e5
#: ... and per small matrix product inside one NumPy matmul call (~0.5 us).
PER_PRODUCT = 1e4


def unsupported(spec: ConvSpec, method: str) -> str | None:
    """Any rank, stride, dilation and channel multiplier; ``C_in/G`` up to
    :data:`MAX_GROUP_CHANNELS`."""
    per_group = spec.in_channels // spec.groups
    if per_group > MAX_GROUP_CHANNELS:
        return (
            f"it is for depthwise and narrow grouped layers (C_in/groups <= "
            f"{MAX_GROUP_CHANNELS}); this layer has C_in/groups = {per_group}, use "
            "method='shift' or 'im2col'"
        )
    return None


def cost(spec: ConvSpec, method: str = "direct", step: str = "correlate") -> float:
    """The sum of :func:`terms`."""
    return sum(terms(spec, method, step).values())


def terms(spec: ConvSpec, method: str = "direct", step: str = "correlate") -> dict[str, float]:
    """Estimated time of one step (``"correlate"``, ``"input_grad"``, ``"weight_grad"``) in
    GEMM-flop units (one unit = 1/20 ns, a BLAS flop at 20 GFLOP/s), comparable with
    ``2 * N * prod(S_out) * C_out * C_in/G * prod(K)`` for a GEMM correlation.

    The method is memory-pass bound. With ``P = N * G * S_out[0] * prod(q[1:])`` grid points
    per channel of a group (``q`` the phase size: the output plus the kernel's reach; junk columns
    included), ``cg = C_in/G``, ``og = C_out/G`` and ``K = prod(kernel)``::

        PASS * (K * og * cg + M * adds + copies * og + staging) * P   # element passes
        + GATHER * N * C_in * prod(S_pad)                # stride > 1: phase gather or fold
        + PER_CALL * blocks * (M * (2, or 1 for weight_grad) + staged)   # NumPy calls
        + PER_PRODUCT * N * G * M                      # small products inside matmul calls
                                                       # (all steps but a broadcast multiply)

    where ``M`` is the number of products made: ``K``, or ``K / K_last`` for a forward or
    weight gradient on staged rows (:func:`_stage_rows`, whose copy is ``staging = cg *
    K_last`` passes; else 0) and for an input gradient on row products
    (:func:`_staged_input_grad`; it still adds ``K`` products, in ``K`` calls besides the
    ``M`` products), ``adds`` = ``og``, ``cg``, 0 the passes adding one product into
    the sum, and ``copies`` = 1, 2, 1 (cropping the grid, laying ``grad_out`` on it); except
    that a depthwise weight gradient makes dot products, not matrix products: their ``K *
    P`` elements are a part of their own (``dots``), and at stride 1 it makes 3 calls per
    block, one ``vecdot`` for every offset. Returned in its parts ``passes``, ``gathers``,
    ``calls``, ``products`` and, for the weight gradient, ``dots`` (what
    ``benchmarks/calibrate_select.py`` fits a time per unit to). The weights were
    fitted by least squares to single-threaded timings of nine depthwise and grouped layers
    (1-3-D, strides 1-2, K 3-9) on the 2-core AVX-512 test machine: the model is within
    ~0.4x-1.7x of the measured times.
    """
    layer = Layer.of_conv(spec)
    staged = _staged(layer) and (step != "input_grad" or layer.cg == 1)
    eng = Engine(layer, np.float32, staged and step != "input_grad")
    plan = _plan(spec.kernel, spec.stride, spec.dilation, spec.out_size)
    cg, og = spec.in_channels // spec.groups, spec.out_channels // spec.groups
    grid = spec.batch * spec.groups * spec.out_size[0] * math.prod(plan.q[1:])
    taps = math.prod(spec.kernel)
    # per grid point and offset: multiply-adds, and the adds of one product into the sum
    macs, adds = og * cg, {"input_grad": cg, "weight_grad": 0}.get(step, og)
    # the products actually made: one per offset, or per row of the kernel when staged
    made, staging = (taps // spec.kernel[-1], cg * spec.kernel[-1]) if staged else (taps, 0)
    copies = 2 if step == "input_grad" else 1
    gathers = 0 if plan.unit else spec.batch * spec.in_channels * math.prod(spec.padded_size)
    calls = len(eng.blocks) * (made * (1 if step == "weight_grad" else 2) + (1 if staged else 0))
    added = made * adds
    if staged and step == "input_grad":  # rows of products, still one add per offset
        staging, added = 0, taps * adds
        calls = len(eng.blocks) * (made + taps)
    # matrix products NumPy's matmul loops over, one per (image, group) and offset
    looped = {"correlate": cg > 1 or staged, "input_grad": og > 1}.get(step, True)
    dots = 0
    if step == "weight_grad" and cg == og == 1:  # dot products, no matrix products
        looped, dots, macs = False, taps * grid, 0
        if plan.unit:  # one vecdot per block
            calls = len(eng.blocks) * 3
    products = spec.batch * spec.groups * made if looped else 0
    found = {"passes": PASS * (taps * macs + added + copies * og + staging) * grid,
             "gathers": GATHER * gathers, "calls": PER_CALL * calls,
             "products": PER_PRODUCT * products}
    if step == "weight_grad":
        found["dots"] = PASS * dots
    return found


#: The steps also take the unpadded input (``padded=False``, zero padding only): each block's
#: gather of its input fills the padding in (no padded copy of the whole input is made, and
#: the input gradient comes back unpadded).
UNPADDED = True


def correlate(xp: Any, x_pad: Any, w: Any, spec: ConvSpec, method: str, *,
              padded: bool = True) -> Any:
    """``x_pad: (N, C_in, *S_pad)``, ``w: (C_out, C_in/G, *K)`` -> ``(N, C_out, *S_out)``;
    with ``padded=False`` the unpadded ``x: (N, C_in, *S)`` (``spec.pads`` of zeros)."""
    if not _is_numpy(xp, x_pad, w):
        return _plain_correlate(xp, _padded(xp, x_pad, spec, padded), w, spec)
    return _forward(spec, np.ascontiguousarray(x_pad), w, padded)


def input_grad(xp: Any, grad_out: Any, w: Any, spec: ConvSpec, method: str, *,
               padded: bool = True) -> Any:
    """Gradient with respect to the padded input: ``(N, C_out, *S_out) -> (N, C_in, *S_pad)``
    (with ``padded=False``: to the unpadded input, ``-> (N, C_in, *S)``)."""
    if not _is_numpy(xp, grad_out, w) or not np.isfinite(w).all():
        # (A non-finite weight times the zeros at the grid's junk points would spread NaN.)
        gx = _plain_input_grad(xp, grad_out, w, spec)
        return gx if padded else _padding.pad_vjp(xp, gx, spec.in_size, spec.pads, "zeros")
    return _input_grad(spec, grad_out, w, padded)


def weight_grad(xp: Any, grad_out: Any, x_pad: Any, spec: ConvSpec, method: str, *,
                padded: bool = True) -> Any:
    """Gradient with respect to ``w``: ``-> (C_out, C_in/G, *K)`` (``x_pad`` unpadded with
    ``padded=False``)."""
    if not _is_numpy(xp, grad_out, x_pad):
        return _plain_weight_grad(xp, grad_out, _padded(xp, x_pad, spec, padded), spec)
    with np.errstate(invalid="ignore", over="ignore"):  # warned again by the recomputation
        gw = _weight_grad(spec, grad_out, np.ascontiguousarray(x_pad), padded)
    if not np.isfinite(gw).all():  # maybe junk zeros times a non-finite input: recompute
        return _plain_weight_grad(xp, grad_out, _padded(xp, x_pad, spec, padded), spec)
    return gw


def _padded(xp: Any, x: Any, spec: ConvSpec, padded: bool) -> Any:
    return x if padded else _padding.pad(xp, x, spec.pads, "zeros")


# ---------------------------------------------------------------------------------------------
# the flat-window engine (also behind fc2conv.functional.pool)


@dataclass(frozen=True)
class _Plan:
    """Where each offset's run starts, for one block of output rows.

    ``q``: the size of each phase array, ``S_out + (dilation * (K - 1)) // stride`` per axis
    (for stride 1, the input extent the outputs read); ``phases``: the phase starts (one per
    axis) some offset reads; ``taps``: per kernel offset, in C order, ``(phase index, flat
    shift)``; ``length``: the grid length ``L``; ``crop``: whether the grid has junk points
    (``q[1:] != S_out[1:]``).
    """

    unit: bool
    q: tuple[int, ...]
    phases: tuple[tuple[int, ...], ...]
    taps: tuple[tuple[int, int], ...]
    length: int
    crop: bool


@functools.lru_cache(maxsize=256)
def _plan(kernel: tuple[int, ...], stride: tuple[int, ...], dilation: tuple[int, ...],
          out: tuple[int, ...]) -> _Plan:
    q = tuple(m + d * (k - 1) // s for m, k, s, d in zip(out, kernel, stride, dilation))
    strides = [math.prod(q[j + 1:]) for j in range(len(q))]
    phases: dict[tuple[int, ...], int] = {}
    taps = []
    for offset in offsets(kernel):
        reach = [a * d for a, d in zip(offset, dilation)]
        phase = tuple(r % s for r, s in zip(reach, stride))
        shift = sum(r // s * g for r, s, g in zip(reach, stride, strides))
        taps.append((phases.setdefault(phase, len(phases)), shift))
    length = sum((m - 1) * g for m, g in zip(out, strides)) + 1
    unit = all(s == 1 for s in stride)
    return _Plan(unit, q, tuple(phases), tuple(taps), length, q[1:] != out[1:])


@dataclass(frozen=True)
class Layer:
    """The geometry the engine runs: ``groups`` blocks of ``cg`` input and ``og`` output
    channels; the windows read an array of spatial size ``in_size`` surrounded by ``pads``
    (filled with a constant: zeros for a correlation, ``-inf`` for max pooling)."""

    batch: int
    groups: int
    cg: int
    og: int
    in_size: tuple[int, ...]
    pads: tuple[tuple[int, int], ...]
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    out_size: tuple[int, ...]

    @classmethod
    def of_conv(cls, spec: ConvSpec, padded: bool = True) -> Layer:
        """A correlation on its already padded input, or (``padded=False``) on its input
        with ``spec.pads`` of zeros around it."""
        g = spec.groups
        in_size, pads = ((spec.padded_size, ((0, 0),) * spec.ndim) if padded
                         else (spec.in_size, spec.pads))
        return cls(spec.batch, g, spec.in_channels // g, spec.out_channels // g, in_size,
                   pads, spec.kernel, spec.stride, spec.dilation, spec.out_size)


@dataclass(frozen=True)
class Block:
    """Images ``n0:n1``, groups ``g0:g1`` and output rows ``i0:i1`` (first spatial axis)."""

    n0: int
    n1: int
    g0: int
    g1: int
    i0: int
    i1: int


class Engine:
    """Blocks of a layer on the flat grid; see the module docstring.

    A step is a ``work(blocks)`` function handed to :meth:`run`; per block it asks
    :meth:`plan` for the geometry, :meth:`source` for the input runs, :meth:`grid` for
    ``grad_out`` on the grid, :meth:`output` / :meth:`store` for the output and
    :meth:`gradient` / :meth:`fold` for an input gradient. ``scratch`` is a per-thread dict
    of reusable buffers.
    """

    def __init__(self, layer: Layer, dtype: Any, staged: bool = False) -> None:
        self.layer = L = layer
        self.dtype = np.dtype(dtype)
        full = _plan(L.kernel, L.stride, L.dilation, L.out_size)
        self.unpadded = all(p == (0, 0) for p in L.pads) and full.q[1:] == L.in_size[1:]
        rows_q = math.prod(full.q[1:])
        grid = L.og * L.out_size[0] * rows_q  # grid points of one (image, group) item
        phases = len(full.phases) + (L.kernel[-1] if staged else 0)  # (+ the staged runs)
        item = self.dtype.itemsize * (L.cg * phases * math.prod(full.q) + 3 * grid)
        # Cache-sized blocks, but never so small that the per-call overhead dominates: an
        # item larger than the budget is cut into slabs only if it has MIN_GRID points.
        items = BLOCK_BYTES // item
        if items or grid < MIN_GRID:
            items = max(items, -(-MIN_GRID // grid), 1)
        n, g, m0 = L.batch, L.groups, L.out_size[0]
        if items >= g:  # whole images per block
            nb = min(n, items // g)
            self.blocks = [Block(n0, min(n, n0 + nb), 0, g, 0, m0) for n0 in range(0, n, nb)]
        elif items >= 1:  # groups of one image per block
            self.blocks = [Block(n0, n0 + 1, g0, min(g, g0 + items), 0, m0)
                           for n0 in range(n) for g0 in range(0, g, items)]
        else:  # slabs of rows of one (image, group)
            rows = max(1, m0 * BLOCK_BYTES // item, -(-MIN_GRID // (L.og * rows_q)))
            self.blocks = [Block(n0, n0 + 1, g0, g0 + 1, i0, min(m0, i0 + rows))
                           for n0 in range(n) for g0 in range(g) for i0 in range(0, m0, rows)]

    def plan(self, b: Block) -> _Plan:
        L = self.layer
        return _plan(L.kernel, L.stride, L.dilation, (b.i1 - b.i0, *L.out_size[1:]))

    def run(self, work: Any, blocks: list[Block] | None = None, threads: bool = True) -> list[Any]:
        """``work(blocks)`` over all blocks (or the given ones), split by (image, group) on
        threads (unless ``threads`` is false: see :func:`_large_products`)."""
        blocks = self.blocks if blocks is None else blocks
        # A few blocks are not worth a thread hand-off (~50 us each).
        workers = min(fft_workers(), len(blocks) // MIN_BLOCKS_PER_THREAD) if threads else 1
        if workers <= 1:
            return [work(blocks)]
        parts: list[list[Block]] = [[] for _ in range(workers)]
        keys: dict[tuple[int, int], int] = {}
        for b in blocks:  # the slabs of one (image, group) stay on one thread
            parts[keys.setdefault((b.n0, b.g0), len(keys)) % workers].append(b)
        with blas_serial():  # (the weight gradient's products: one core per thread)
            return list(pool().map(work, parts))

    # -- inputs ----------------------------------------------------------------------------

    def _spans(self, b: Block, plan: _Plan, phase: tuple[int, ...]) -> list[Any] | None:
        """Per axis ``(lo, hi, source slice)``: the cells ``lo:hi`` of a phase array that lie
        in the (unpadded) array, and where; None if none do."""
        L = self.layer
        spans = []
        for axis, (p, s, q, n, (before, _)) in enumerate(
                zip(phase, L.stride, plan.q, L.in_size, L.pads)):
            start = (b.i0 * s if axis == 0 else 0) + p - before  # source index of cell 0
            lo, hi = max(0, -(start // s)), min(q, -((start - n) // s))
            if hi <= lo:
                return None
            first = start + lo * s
            spans.append((lo, hi, slice(first, first + (hi - lo - 1) * s + 1, s)))
        return spans

    def source(self, x: np.ndarray, b: Block, plan: _Plan, scratch: dict,
               fill: float = 0.0) -> np.ndarray:
        """The block's input as ``(nb, gb, cg, phases, prod(q))``: a view of ``x`` for stride
        1 without padding, else the phases gathered into a buffer, ``fill`` in the padding."""
        L = self.layer
        nb, gb, cg = b.n1 - b.n0, b.g1 - b.g0, L.cg
        part = x[b.n0:b.n1, b.g0 * cg:b.g1 * cg]
        size = math.prod(plan.q)
        if plan.unit and self.unpadded:
            return _view(part[:, :, b.i0:b.i0 + plan.q[0]], (nb, gb, cg, 1, size))
        buf = scratch_buffer(scratch, "source", (nb, gb, cg, len(plan.phases), *plan.q), self.dtype)
        lead = (slice(None),) * 3
        for p, phase in enumerate(plan.phases):
            into = buf[:, :, :, p]
            spans = self._spans(b, plan, phase)
            if spans is None:
                into[...] = fill
                continue
            for axis, (lo, hi, _) in enumerate(spans):
                before = (slice(None),) * axis
                if lo:
                    into[(*lead, *before, slice(0, lo))] = fill
                if hi < plan.q[axis]:
                    into[(*lead, *before, slice(hi, None))] = fill
            pick = part[(slice(None), slice(None), *(sl for _, _, sl in spans))]
            into[(*lead, *(slice(lo, hi) for lo, hi, _ in spans))] = _view(
                pick, (nb, gb, cg, *pick.shape[2:]))
        return _view(buf, (nb, gb, cg, len(plan.phases), size))

    def grid(self, grad_out: np.ndarray, b: Block, plan: _Plan, scratch: dict,
             divide: np.ndarray | None = None) -> np.ndarray:
        """The block's ``grad_out`` (divided by ``divide[i0:i1]`` if given) on the grid, zeros
        at the junk points: ``(nb, gb, og, L)``."""
        L = self.layer
        nb, gb, og, rows = b.n1 - b.n0, b.g1 - b.g0, L.og, b.i1 - b.i0
        part = _view(grad_out[b.n0:b.n1, b.g0 * og:b.g1 * og, b.i0:b.i1],
                     (nb, gb, og, rows, *L.out_size[1:]))
        if not plan.crop and divide is None:
            return _view(part, (nb, gb, og, -1))
        buf = scratch_buffer(scratch, "grid", (nb, gb, og, rows, *plan.q[1:]), self.dtype, zero=True)
        valid = buf[(..., *(slice(0, m) for m in L.out_size[1:]))]
        if divide is None:
            valid[...] = part
        else:
            np.divide(part, divide[b.i0:b.i1], out=valid)
        return _view(buf, (nb, gb, og, -1))[..., :plan.length]

    # -- outputs ---------------------------------------------------------------------------

    def output(self, y: np.ndarray, b: Block, plan: _Plan, scratch: dict) -> np.ndarray:
        """Where the block's output goes on the grid, ``(nb, gb, og, rows * prod(q[1:]))``:
        a view of ``y`` when the grid has no junk, else a buffer for :meth:`store`."""
        L = self.layer
        shape = (b.n1 - b.n0, b.g1 - b.g0, L.og, (b.i1 - b.i0) * math.prod(plan.q[1:]))
        if plan.crop:
            return scratch_buffer(scratch, "output", shape, self.dtype)
        return _view(y[b.n0:b.n1, b.g0 * L.og:b.g1 * L.og, b.i0:b.i1], shape)

    def store(self, y: np.ndarray, b: Block, plan: _Plan, full: np.ndarray,
              divide: np.ndarray | None = None) -> None:
        """Crop the grid into ``y`` (dividing by ``divide[i0:i1]`` if given)."""
        L = self.layer
        nb, gb, og, rows = b.n1 - b.n0, b.g1 - b.g0, L.og, b.i1 - b.i0
        into = _view(y[b.n0:b.n1, b.g0 * og:b.g1 * og, b.i0:b.i1],
                     (nb, gb, og, rows, *L.out_size[1:]))
        if plan.crop:
            full = full.reshape(nb, gb, og, rows, *plan.q[1:])
            full = full[(..., *(slice(0, m) for m in L.out_size[1:]))]
            if divide is None:
                into[...] = full
            else:
                np.divide(full, divide[b.i0:b.i1], out=into)
        elif divide is not None:
            np.divide(into, divide[b.i0:b.i1], out=into)

    def gradient(self, gx: np.ndarray, b: Block, plan: _Plan, scratch: dict) -> np.ndarray:
        """A zeroed ``(nb, gb, cg, phases, prod(q))`` accumulator for the block's input
        gradient: a view of ``gx`` (zeros already) when :meth:`source` would be one."""
        L = self.layer
        nb, gb, cg = b.n1 - b.n0, b.g1 - b.g0, L.cg
        size = math.prod(plan.q)
        if plan.unit and self.unpadded:
            part = gx[b.n0:b.n1, b.g0 * cg:b.g1 * cg, b.i0:b.i0 + plan.q[0]]
            return _view(part, (nb, gb, cg, 1, size))
        buf = scratch_buffer(scratch, "gradient", (nb, gb, cg, len(plan.phases), size), self.dtype)
        buf[...] = 0
        return buf

    def fold(self, gx: np.ndarray, b: Block, plan: _Plan, acc: np.ndarray) -> None:
        """Put the phases of :meth:`gradient`'s accumulator into ``gx`` (zeros before;
        padding dropped). The phases partition the cells, so a block of whole rows assigns
        (a strided copy is twice as fast as a strided add); a slab adds, because the next
        slab of the same rows shares its halo."""
        L = self.layer
        if plan.unit and self.unpadded:
            return
        nb, gb, cg = b.n1 - b.n0, b.g1 - b.g0, L.cg
        slab = b.i0 > 0 or b.i1 < L.out_size[0]
        full = acc.reshape(nb, gb, cg, len(plan.phases), *plan.q)
        part = gx[b.n0:b.n1, b.g0 * cg:b.g1 * cg]
        for p, phase in enumerate(plan.phases):
            spans = self._spans(b, plan, phase)
            if spans is None:
                continue
            into = part[(slice(None), slice(None), *(sl for _, _, sl in spans))]
            into = _view(into, (nb, gb, cg, *into.shape[2:]))
            values = full[(slice(None), slice(None), slice(None), p,
                           *(slice(lo, hi) for lo, hi, _ in spans))]
            if slab:
                np.add(into, values, out=into)
            else:
                np.copyto(into, values)


# ---------------------------------------------------------------------------------------------
# the three steps on NumPy arrays


def _taps(w: Any, layer: Layer, dtype: Any) -> np.ndarray:
    """``(C_out, C_in/G, *K)`` -> ``(K, G, C_out/G, C_in/G)`` contiguous."""
    wk = np.asarray(w, dtype=dtype).reshape(layer.groups, layer.og, layer.cg, -1)
    return np.ascontiguousarray(np.moveaxis(wk, -1, 0))


def _forward(spec: ConvSpec, x_pad: np.ndarray, w: Any, padded: bool = True) -> np.ndarray:
    layer = Layer.of_conv(spec, padded)
    staged = _staged(layer)
    eng = Engine(layer, x_pad.dtype, staged)
    cg = layer.cg
    broadcast = cg == 1 and not staged  # (one input channel: multiply by og weights)
    taps = _row_taps(w, layer, eng.dtype) if staged else _taps(w, layer, eng.dtype)
    y = np.empty(spec.output_shape, dtype=eng.dtype)

    def work(blocks: list[Block]) -> None:
        scratch: dict = {}
        for b in blocks:
            plan = eng.plan(b)
            length = plan.length
            src = eng.source(x_pad, b, plan, scratch)
            full = eng.output(y, b, plan, scratch)
            acc = full[..., :length]
            flat = _flat_pair(full, length, scratch, "tmp")
            tmp = scratch_buffer(scratch, "tmp", acc.shape, eng.dtype) if flat is None else (
                flat[1][..., :length])
            if staged:
                src = _stage_rows(src, layer, scratch)
            for k, (p, shift) in enumerate(_row_starts(plan, layer) if staged else plan.taps):
                run = src[:, :, :, p, shift:shift + length]  # (nb, gb, cg [* K_last], L)
                wk = taps[k, b.g0:b.g1]  # (gb, og, cg [* K_last])
                into = tmp if k else acc
                if broadcast:  # (matmul would loop outside BLAS)
                    np.multiply(run, wk, out=into)
                else:
                    np.matmul(wk, run, out=into)
                if k and flat is not None:  # (the tails are zero)
                    np.add(flat[0], flat[1].reshape(-1), out=flat[0])
                elif k:
                    np.add(acc, tmp, out=acc)
            eng.store(y, b, plan, full)

    if broadcast:  # (over runs of L)
        work = unbuffered(work, eng.plan(eng.blocks[0]).length, STRIDED_RUN)
    eng.run(work, threads=(broadcast and _slabs(eng)) or _large_products(
        eng, layer.og * cg * (spec.kernel[-1] if staged else 1)))
    return y


def _input_grad(spec: ConvSpec, grad_out: np.ndarray, w: Any, padded: bool = True) -> np.ndarray:
    layer = Layer.of_conv(spec, padded)
    transposed = None if padded else _as_forward(spec, layer, grad_out, w)
    if transposed is not None:
        return _forward(*transposed, padded=False)
    eng = Engine(layer, grad_out.dtype)
    og = layer.og
    grad_out = np.ascontiguousarray(grad_out)
    taps = np.ascontiguousarray(np.swapaxes(_taps(w, layer, eng.dtype), -1, -2))  # (K,G,cg,og)
    gx = np.zeros((spec.batch, spec.in_channels, *layer.in_size), dtype=eng.dtype)
    # one input channel per group: a kernel row's products as one (K_last x og) @ (og x L)
    rows = None
    if layer.cg == 1 and _staged(layer):
        kl = spec.kernel[-1]
        rows = np.ascontiguousarray(  # (K / K_last, G, K_last, og)
            taps[:, :, 0].reshape(-1, kl, layer.groups, og).swapaxes(1, 2))

    def work(blocks: list[Block]) -> None:
        scratch: dict = {}
        for b in blocks:
            plan = eng.plan(b)
            length = plan.length
            gy = eng.grid(grad_out, b, plan, scratch)  # (nb, gb, og, L)
            acc = eng.gradient(gx, b, plan, scratch)
            if rows is not None and acc.flags.c_contiguous:  # (its flat adds need a view)
                _staged_input_grad(gy, rows[:, b.g0:b.g1], plan, acc, length, scratch)
                eng.fold(gx, b, plan, acc)
                continue
            flat = _flat_pair(acc, length, scratch, "tmp", junk_tail=False)
            if flat is None:
                tmp = scratch_buffer(scratch, "tmp", (*acc.shape[:3], length), eng.dtype)
            else:
                whole, tmp = flat[0], flat[1][..., :length]
            for k, (p, shift) in enumerate(plan.taps):
                wk = taps[k, b.g0:b.g1]  # (gb, cg, og)
                if og == 1:
                    np.multiply(gy, wk, out=tmp)
                else:
                    np.matmul(wk, gy, out=tmp)
                if flat is None:
                    run = acc[:, :, :, p, shift:shift + length]  # (nb, gb, cg, L)
                    np.add(run, tmp, out=run)
                    continue
                # the run of offset k in every item at once: item i's product starts at
                # flat index i * item + p * size + shift; what a run's tail (zero) adds
                # spills into the next item
                start = p * acc.shape[4] + shift
                into = whole[start:]
                np.add(into, flat[1].reshape(-1)[:whole.size - start], out=into)
            eng.fold(gx, b, plan, acc)

    if og == 1:  # (broadcast multiplies over runs of L)
        work = unbuffered(work, eng.plan(eng.blocks[0]).length, STRIDED_RUN)
    eng.run(work, threads=(og == 1 and _slabs(eng)) or _large_products(eng, og * layer.cg))
    return gx


def _as_forward(spec: ConvSpec, layer: Layer, grad_out: np.ndarray, w: Any
                ) -> tuple[ConvSpec, np.ndarray, np.ndarray] | None:
    """One channel in and out per group (depthwise, single-channel images) at stride 1: the
    gradient with respect to the unpadded input as a forward step, ``(spec, grad_out,
    flipped w)``: the correlation of ``grad_out`` with the flipped kernel, padded by
    ``dilation * (K - 1)`` less the layer's padding on each side (None where that is
    negative). It skips the input gradient's zeroed accumulator and the fold out of it:
    5-15 % faster (the suite's depthwise layer 9.1 -> 8.1 ms, a 2048^2 image with a 5x5
    kernel 28.7 -> 24.3 ms). :func:`terms` still prices the per-offset input gradient (its
    constants were measured on it), so the estimate is that much high for these layers."""
    if layer.cg != 1 or layer.og != 1 or any(s != 1 for s in spec.stride):
        return None
    pads = tuple((d * (k - 1) - before, d * (k - 1) - after) for (before, after), k, d in
                 zip(spec.pads, spec.kernel, spec.dilation))
    if min(min(pair) for pair in pads) < 0:
        return None
    grad_out = np.ascontiguousarray(grad_out)  # (the forward reads its runs as flat views)
    flipped = np.flip(np.asarray(w, dtype=grad_out.dtype), axis=tuple(range(2, 2 + spec.ndim)))
    transposed = conv_spec(grad_out, flipped, None, stride=1, padding=pads,
                           dilation=spec.dilation, groups=spec.groups, padding_mode="zeros",
                           method="direct")
    return transposed, grad_out, flipped


def _staged_input_grad(gy: np.ndarray, rows: np.ndarray, plan: _Plan, acc: np.ndarray,
                       length: int, scratch: dict) -> None:
    """One input channel per group, stride 1: each kernel row's ``K_last`` products at once,
    ``rows[r]: (gb, K_last, og)`` @ ``gy: (nb, gb, og, L)``, written offset-major into a
    buffer laid out like the contiguous accumulator ``acc: (nb, gb, 1, 1, size)`` (zero
    tails, as :func:`_flat_pair`), so that each offset's product is still added with one
    flat ``np.add``. LeNet-1's input gradient (og = 6, 5x5): 5 products of (5 x 6) @ (6 x L)
    per image instead of 25 of (1 x 6) @ (6 x L)."""
    nb, gb, _, _, item = acc.shape
    kl, whole = rows.shape[2], acc.reshape(-1)
    buf = scratch_buffer(scratch, "rows_product", (kl, nb, gb, item), acc.dtype)
    buf[..., length:] = 0
    into = np.moveaxis(buf[..., :length], 0, 2)  # (nb, gb, K_last, L)
    for r in range(rows.shape[0]):
        np.matmul(rows[r], gy, out=into)
        for j, (p, shift) in enumerate(plan.taps[r * kl:(r + 1) * kl]):
            start = p * item + shift
            target = whole[start:]
            np.add(target, buf[j].reshape(-1)[:whole.size - start], out=target)


def _weight_grad(spec: ConvSpec, grad_out: np.ndarray, x_pad: np.ndarray,
                 padded: bool = True) -> np.ndarray:
    layer = Layer.of_conv(spec, padded)
    grad_out = np.ascontiguousarray(grad_out)
    kk = math.prod(spec.kernel)
    # depthwise (one channel in and out per group): every offset's dot products in one
    # vecdot call over a view of the source (~2.6x faster than a matmul, a sum and an add
    # per offset on blocks of 20 groups)
    dots = layer.og == 1 and layer.cg == 1
    staged = _staged(layer)  # (never with dots: it needs C_in/G > 1)
    eng = Engine(layer, x_pad.dtype, staged)
    kl = spec.kernel[-1] if staged else 1

    def work(blocks: list[Block]) -> np.ndarray:
        gw = np.zeros((kk // kl, layer.groups, layer.og, layer.cg * kl), dtype=eng.dtype)
        scratch: dict = {}
        for b in blocks:
            plan = eng.plan(b)
            length = plan.length
            gy = eng.grid(grad_out, b, plan, scratch)  # (nb, gb, og, L)
            src = eng.source(x_pad, b, plan, scratch)
            if dots and plan.unit:
                windows = _offset_windows(src, plan, spec.kernel, spec.dilation)
                gy_k = gy.reshape(*gy.shape[:3], *(1,) * spec.ndim, length)
                part = np.vecdot(gy_k, windows).sum(axis=0)  # (gb, 1, *K)
                gw[:, b.g0:b.g1, 0, 0] += part.reshape(b.g1 - b.g0, kk).T
                continue
            if staged:
                src = _stage_rows(src, layer, scratch)
            for k, (p, shift) in enumerate(_row_starts(plan, layer) if staged else plan.taps):
                run = src[:, :, :, p, shift:shift + length]  # (nb, gb, cg [* K_last], L)
                if dots:  # (strided depthwise: one dot per (image, group), ~15 % faster)
                    gw[k, b.g0:b.g1] += np.vecdot(gy, run).sum(axis=0)[..., None]
                    continue
                # One BLAS product per (image, group): (og, L) @ (L, cg [* K_last]).
                gw[k, b.g0:b.g1] += np.matmul(gy, np.swapaxes(run, -1, -2)).sum(axis=0)
        return gw

    gw = functools.reduce(np.add, eng.run(work, threads=(dots and _slabs(eng)) or (
        _large_products(eng, layer.og * layer.cg * kl))))
    # (K / K_last, G, og, cg, K_last) or (K, G, og, cg) -> (G, og, cg, K)
    gw = gw.reshape(kk // kl, layer.groups, layer.og, layer.cg, kl)
    gw = np.ascontiguousarray(np.moveaxis(gw, 0, -2))
    return gw.reshape(spec.out_channels, layer.cg, *spec.kernel)


def _staged(layer: Layer) -> bool:
    """Whether a step runs on the staged rows (:func:`_stage_rows`; the input gradient with
    one input channel per group on row products, :func:`_staged_input_grad`): stride 1,
    several channels in or out per group (depthwise stays a broadcast multiply) and a last
    kernel axis of several offsets, not the only one (in 1-D the staged rows are all of
    im2col's columns: conv1d with K = 65 measured 1.9x slower). LeNet-1 (one channel in,
    six out, 5x5): forward 3.25 -> 1.5 ms, weight gradient 1.3 -> 0.72 ms, input gradient
    1.16 -> 0.83 ms."""
    return (len(layer.kernel) > 1 and all(s == 1 for s in layer.stride)
            and (layer.cg > 1 or layer.og > 1) and layer.kernel[-1] > 1)


def _large_products(eng: Engine, macs: int) -> bool:
    """Whether a step's products (``macs`` multiply-adds per grid point) are large enough to
    run its blocks on threads: at least :data:`THREADED_PRODUCT` each. Smaller ones measured
    1.1-1.7x slower on two threads than on one (LeNet-2's forward 0.70 -> 0.95 ms; OpenBLAS
    serialises small concurrent calls); products of ~10^7 up to 2x faster (conv1d with
    K = 65 as one product per image: 11.1 -> 5.9 ms)."""
    return macs * eng.plan(eng.blocks[0]).length >= THREADED_PRODUCT


def _slabs(eng: Engine) -> bool:
    """Whether the blocks are slabs of one (image, group) item: then the broadcast
    multiplies and the depthwise ``vecdot`` may run on two threads (image filters: from
    10 % slower to 18 % faster than on one). Blocks of several items measured faster on one
    thread: the suite's depthwise layer (blocks of 19 groups) forward 12.0 -> 9.7 ms, input
    gradient 11.5 -> 10.0 ms, weight gradient 7.6 -> 4.7 ms; dw-5x5 likewise, 1.0-1.2x. On
    two threads each thread's CPU time for half the blocks was 1.6x inflated (shared memory
    bandwidth) and each waited ~3.5 ms more (the GIL between its many short NumPy calls);
    im2col's fewer, larger steps on the same layer gain 1.7x from the second thread."""
    first = eng.blocks[0]
    return first.n1 - first.n0 == 1 and first.g1 - first.g0 == 1


def _stage_rows(src: np.ndarray, layer: Layer, scratch: dict) -> np.ndarray:
    """Stride 1: the block's source ``(nb, gb, cg, 1, size)`` with each channel's runs for the
    offsets along the last kernel axis side by side, ``(nb, gb, cg * K_last, 1, size')``
    (``size' = size - d_last * (K_last - 1)``): one copy, in runs of ``size'``, after which
    the products of all ``K_last`` offsets of a row of the kernel are one product whose
    inner dimension is ``cg * K_last`` (5x fewer, larger products for a 5x5 kernel: a matmul
    of a few channels is mostly call overhead)."""
    kl, dl = layer.kernel[-1], layer.dilation[-1]
    nb, gb, cg, _, size = src.shape
    cut = size - dl * (kl - 1)
    base = src[:, :, :, 0]
    view = as_strided(base, shape=(nb, gb, cg, kl, cut),
                      strides=(*base.strides[:3], dl * base.strides[3], base.strides[3]),
                      writeable=False)
    rows = scratch_buffer(scratch, "rows", (nb, gb, cg, kl, cut), src.dtype)
    np.copyto(rows, view)
    return rows.reshape(nb, gb, cg * kl, 1, cut)


def _row_starts(plan: _Plan, layer: Layer) -> list[tuple[int, int]]:
    """The taps of :func:`_stage_rows`' staged source: one per row of the kernel (its first
    offset's shift; the row's other offsets are the staged copies)."""
    return list(plan.taps[::layer.kernel[-1]])


def _row_taps(w: Any, layer: Layer, dtype: Any) -> np.ndarray:
    """``(C_out, C_in/G, *K)`` -> ``(K / K_last, G, C_out/G, C_in/G * K_last)`` contiguous
    (the weights of :func:`_row_starts`' taps, channel-major like the staged rows)."""
    kl = layer.kernel[-1]
    wk = np.asarray(w, dtype=dtype).reshape(layer.groups, layer.og, layer.cg, -1, kl)
    wk = np.ascontiguousarray(np.moveaxis(wk, 3, 0))  # (K / K_last, G, og, cg, K_last)
    return wk.reshape(wk.shape[0], layer.groups, layer.og, layer.cg * kl)


def _flat_pair(acc: np.ndarray, length: int, scratch: dict, name: str, *,
               junk_tail: bool = True) -> tuple[np.ndarray, np.ndarray] | None:
    """For an accumulator ``acc: (nb, gb, c, *item)``: ``(acc flat, tmp)``, ``tmp: (nb, gb,
    c, prod(item))`` a scratch buffer of its layout, zero past ``length`` in every item (and
    ``acc`` zeroed there too if that is uninitialised grid junk, ``junk_tail``), so that a
    product written to ``tmp[..., :length]`` is added with one flat, contiguous ``np.add``.
    NumPy adds strided runs with ~50 ns of overhead each: on small images (runs of ~100
    cells) that was most of the step. None when ``acc`` is not contiguous (a slab of rows of
    a larger image)."""
    if not acc.flags.c_contiguous:
        return None
    lead, item = acc.shape[:3], math.prod(acc.shape[3:])
    tmp = scratch_buffer(scratch, name, (*lead, item), acc.dtype)
    tmp[..., length:] = 0
    if junk_tail:
        acc.reshape(*lead, item)[..., length:] = 0
    return acc.reshape(-1), tmp


def _offset_windows(src: np.ndarray, plan: _Plan, kernel: tuple[int, ...],
                    dilation: tuple[int, ...]) -> np.ndarray:
    """Stride 1: every kernel offset's run of a block's source ``(nb, gb, cg, 1, size)`` as
    one read-only view ``(nb, gb, cg, *K, L)`` (offset ``a`` starts ``sum_j a_j d_j G_j``
    into the grid, ``G`` its C-order strides)."""
    grid = [math.prod(plan.q[j + 1:]) for j in range(len(plan.q))]
    item = src.itemsize
    base = src[:, :, :, 0]
    return as_strided(base, shape=(*base.shape[:3], *kernel, plan.length),
                      strides=(*base.strides[:3], *(d * g * item for d, g in zip(dilation, grid)),
                               base.strides[3]), writeable=False)


# ---------------------------------------------------------------------------------------------
# NumPy helpers


def _is_numpy(xp: Any, *arrays: Any) -> bool:
    return array_api_compat.is_numpy_namespace(xp) and all(
        isinstance(a, np.ndarray) for a in arrays)


def _view(a: np.ndarray, shape: tuple[int, ...] | None) -> np.ndarray:
    """``a.reshape(shape)`` that must not copy (results are written through it)."""
    if shape is None:
        return a
    v = a.reshape(shape)
    if v.size and not np.may_share_memory(v, a):  # pragma: no cover - a layout bug
        raise AssertionError(f"reshape of {a.shape} {a.strides} to {shape} copied")
    return v


def scratch_buffer(store: dict, name: str, shape: tuple[int, ...], dtype: Any,
             zero: bool = False) -> np.ndarray:
    """A per-thread buffer of ``shape`` reused across blocks (the first block is the largest).

    A ``zero`` buffer is zeroed when allocated only: its users write the same cells of every
    block (whole rows of ``prod(q[1:])``), so the junk points between them stay zero.
    """
    size = math.prod(shape)
    buf = store.get(name)
    if buf is None or buf.size < size:
        buf = store[name] = (np.zeros if zero else np.empty)(size, dtype=dtype)
    return buf[:size].reshape(shape)


# ---------------------------------------------------------------------------------------------
# any array-API namespace: the same formulas on whole strided windows


def _plain_correlate(xp: Any, x_pad: Any, w: Any, spec: ConvSpec) -> Any:
    g, og, cg = spec.groups, spec.out_channels // spec.groups, spec.in_channels // spec.groups
    n, d = spec.batch, spec.ndim
    xg = xp.reshape(x_pad, (n, g, cg, *spec.padded_size))
    wg = xp.reshape(w, (g, og, cg, -1))
    y = None
    for k, offset in enumerate(offsets(spec.kernel)):
        part = xg[window(offset, spec.stride, spec.dilation, spec.out_size)]
        for c in range(cg):
            term = (xp.reshape(part[:, :, c, ...], (n, g, 1, *spec.out_size))
                    * xp.reshape(wg[:, :, c, k], (g, og) + (1,) * d))
            y = term if y is None else y + term
    return xp.reshape(y, spec.output_shape)


def _plain_input_grad(xp: Any, grad_out: Any, w: Any, spec: ConvSpec) -> Any:
    g, og, cg = spec.groups, spec.out_channels // spec.groups, spec.in_channels // spec.groups
    n, d = spec.batch, spec.ndim
    gy = xp.reshape(grad_out, (n, g, og, *spec.out_size))
    wg = xp.reshape(w, (g, og, cg, -1))
    gx = xp.zeros((n, g, cg, *spec.padded_size), dtype=grad_out.dtype,
                  device=array_api_compat.device(grad_out))
    for k, offset in enumerate(offsets(spec.kernel)):
        spots = window(offset, spec.stride, spec.dilation, spec.out_size)[1:]
        for c in range(cg):
            term = xp.sum(gy * xp.reshape(wg[:, :, c, k], (g, og) + (1,) * d), axis=2)
            index = (slice(None), slice(None), c, *spots)
            gx[index] = gx[index] + term
    return xp.reshape(gx, (n, spec.in_channels, *spec.padded_size))


def _plain_weight_grad(xp: Any, grad_out: Any, x_pad: Any, spec: ConvSpec) -> Any:
    g, og, cg = spec.groups, spec.out_channels // spec.groups, spec.in_channels // spec.groups
    n = spec.batch
    gy = xp.reshape(grad_out, (n, g, og, *spec.out_size))
    xg = xp.reshape(x_pad, (n, g, cg, *spec.padded_size))
    space = tuple(range(3, 3 + spec.ndim))
    per_offset = []
    for offset in offsets(spec.kernel):
        part = xg[window(offset, spec.stride, spec.dilation, spec.out_size)]
        per_offset.append(xp.stack(
            [xp.sum(gy * part[:, :, c:c + 1, ...], axis=(0, *space)) for c in range(cg)],
            axis=-1))  # (G, og, cg)
    gw = xp.stack(per_offset, axis=-1)  # (G, og, cg, K)
    return xp.reshape(gw, (spec.out_channels, cg, *spec.kernel))
