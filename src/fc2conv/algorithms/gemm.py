"""Correlation as matrix products: im2col and shift-and-GEMM, forward and both gradients.

Both methods compute, per group, ``(C_out/G, C_in/G * K) @ (C_in/G * K, positions)``.

- ``im2col`` copies the ``K`` strided windows of a block of output positions into a column
  buffer and does one GEMM per block: the most efficient GEMM shape, at the price of a copy
  of ``K`` times the input.
- ``shift`` does ``K`` GEMMs ``(C_out/G, C_in/G) @ (C_in/G, positions)``, one per kernel
  offset, and accumulates: a buffer ``K`` times smaller, so blocks ``K`` times longer; a
  window that is one contiguous run (one spatial axis at stride 1) is read in place.

The gradients are the same products transposed. Input gradient, by the cheapest estimate
(:func:`cost`) for im2col: at stride 1 the "full" correlation of ``grad_out`` with the
flipped kernel over a zero-extended copy (*halo*: no scatter at all), or col2im on the
flattened padded grid (*flat*: contiguous scatter-adds); else one GEMM ``w^T @ grad_out``
per block and a scatter-add per offset (*scatter*), or shift's per-offset version. Weight
gradient: ``columns @ grad_out^T`` summed over blocks (im2col falls back to shift's
per-offset products when the budget leaves its blocks too short). A 1x1 kernel at stride 1
is one product on the input as it lies, with no copy, for both methods and all three steps;
strided, it is one strided gather then the product.

NumPy arrays take this blocked path; any other array-API namespace (torch, array_api_strict,
...) takes a portable path written with the standard's operations only (im2col in chunks of
whole samples within the budget where one sample fits).

Blocks, memory budget, workspaces (NumPy path)
----------------------------------------------
The output positions ``N * prod(S_out)`` are cut into *blocks*: several whole samples, or a
box of one sample (fixed leading indices, a range on one spatial axis, whole trailing axes),
so every block is one contiguous run of each output channel and the GEMM writes the output
(or reads ``grad_out``) in place. A block's scratch (im2col: ``C_in * K`` elements per
position, plus at most ``2/K_0`` of that where the columns are gathered in two stages,
:class:`_Windows`; shift ``C_in``) is sized to about :data:`CACHE_BYTES` (the columns stay
in the L2 cache between the copy that writes them and the GEMM that reads them: 10-30%
faster than one large buffer), at least :data:`MIN_BLOCK` positions, at least
:data:`AMORTIZE` times the weights (which BLAS packs again for every product), and **never
more than the budget**:

    budget = the ``budget=`` argument of correlate / input_grad / weight_grad, else the
             module setting :data:`COLUMN_BUDGET`, else N * C_out * prod(S_out) (the size of
             the correlation's output), in elements; a block holds at least one position.

Besides the columns a step holds small per-block scratch (a partial product; the positions-
major ``grad_out`` of a block for the weight gradient; for the halo/flat input gradient the
zero-extended ``grad_out`` of the block's samples). Scratch comes from a per-thread cache
(:func:`workspace`: one buffer per tag and dtype, at most :data:`WORKSPACE_BYTES` per thread,
thread-local so Dask's threads never share), so repeated calls of a layer reuse memory instead
of page-faulting fresh allocations; :func:`clear_workspace` frees the calling thread's.

:func:`cost` estimates each step's time in GEMM-flop units for the method selector.
"""

from __future__ import annotations

import itertools
import math
import threading
from typing import Any

import array_api_compat
import numpy as np
from numpy.lib.stride_tricks import as_strided

from .._buffering import STRIDED_RUN, unbuffered
from .._threads import blas_serial, fft_workers, pool
from .._validate import ConvSpec
from .._windows import offsets, window

__all__ = [
    "CACHE_BYTES",
    "COLUMN_BUDGET",
    "WORKSPACE_BYTES",
    "clear_workspace",
    "column_budget",
    "correlate",
    "cost",
    "input_grad",
    "terms",
    "unsupported",
    "weight_grad",
    "workspace",
    "workspace_bytes",
]

#: Module-wide column-buffer budget in elements (``None``: the size of the correlation's
#: output). The ``budget=`` argument of :func:`correlate`, :func:`input_grad` and
#: :func:`weight_grad` overrides it for one call.
COLUMN_BUDGET: int | None = None
#: Target size of one block's scratch, near a core's L2 cache (1.25 MiB on the reference
#: machine; 2 MiB measured best there with two BLAS threads, 1 MiB with one).
CACHE_BYTES = 8 << 20
#: Blocks are never made shorter than this many positions for the cache alone (only the
#: budget may make them shorter): GEMMs with fewer columns run well below the BLAS peak.
MIN_BLOCK = 256
#: Blocks hold at least this many times the weights in columns: BLAS packs the weights
#: again for every product, which costs as much as packing that many columns.
AMORTIZE = 4
#: The most scratch memory one thread keeps between calls.
WORKSPACE_BYTES = 64 << 20
#: Run the blocks of a step on ``fft_workers()`` threads (one single-threaded BLAS call per
#: block and thread) where :meth:`_Blocked._plan` finds it pays.
PARALLEL = True
#: Threads are used when a thread's block of columns holds at least this many elements, or
#: its product at least :data:`PARALLEL_MIN_FLOPS` (smaller blocks are dominated by the
#: per-block overheads: LeNet-sized layers run faster on one thread).
PARALLEL_MIN_COLUMNS = 1 << 18
PARALLEL_MIN_FLOPS = 2e7
#: Gather im2col's columns in two stages (:class:`_Windows`) where the output rows are
#: shorter than this (NumPy's copies cost ~4.5 ns per run: runs of 10 elements cost 0.48 ns
#: per element, runs of 16 and more ~0.3). Measured on LeNet-2 (64 x 6 x 14^2, 5x5, rows
#: of 10): forward 0.95 -> 0.79 ms, weight gradient 1.18 -> 0.86 ms; on rows of 28 and more
#: it was 0-50 % slower.
STAGED_MAX_ROW = 16
#: ... and where a block's columns hold at least this many elements (below that the extra
#: calls cost more than they save: LeNet-2 at batch 8, 0.25 -> 0.35 ms).
STAGED_MIN_COLUMNS = 1 << 15
#: The cost model's estimate of a staged gather relative to a plain one (measured 0.6-0.7).
STAGED_COPY = 0.65


def unsupported(spec: ConvSpec, method: str) -> str | None:
    """GEMM runs every layer."""
    return None


def column_budget(spec: ConvSpec, budget: int | None = None) -> int:
    """The column-buffer budget in elements for ``spec``: ``budget``, else
    :data:`COLUMN_BUDGET`, else the size of the correlation's output."""
    if budget is None:
        budget = COLUMN_BUDGET
    if budget is None:
        budget = math.prod(spec.output_shape)
    return max(1, int(budget))


def correlate(xp: Any, x_pad: Any, w: Any, spec: ConvSpec, method: str, *,
              budget: int | None = None) -> Any:
    """``x_pad: (N, C_in, *S_pad)``, ``w: (C_out, C_in/G, *K)`` -> ``(N, C_out, *S_out)``."""
    if _is_numpy(x_pad, w):
        return _Blocked(spec, x_pad.dtype, method, budget).forward(x_pad, w)
    return _portable_correlate(xp, x_pad, w, spec, method, column_budget(spec, budget))


def input_grad(xp: Any, grad_out: Any, w: Any, spec: ConvSpec, method: str, *,
               budget: int | None = None) -> Any:
    """Gradient with respect to the padded input: ``(N, C_out, *S_out) -> (N, C_in, *S_pad)``."""
    if _is_numpy(grad_out, w):
        return _Blocked(spec, grad_out.dtype, method, budget).input_grad(grad_out, w)
    return _portable_input_grad(xp, grad_out, w, spec, method, column_budget(spec, budget))


def weight_grad(xp: Any, grad_out: Any, x_pad: Any, spec: ConvSpec, method: str, *,
                budget: int | None = None) -> Any:
    """Gradient with respect to ``w``: ``-> (C_out, C_in/G, *K)``."""
    if _is_numpy(grad_out, x_pad):
        return _Blocked(spec, x_pad.dtype, method, budget).weight_grad(grad_out, x_pad)
    return _portable_weight_grad(xp, grad_out, x_pad, spec, method,
                                 column_budget(spec, budget))


# ---------------------------------------------------------------------------------------------
# cost model

#: GEMM rate relative to the BLAS peak, for ``M`` = the smaller output dimension and ``Q``
#: the inner size: ``(GEMM_FLOOR + (1 - GEMM_FLOOR) * M / (M + GEMM_M0)) * Q / (Q + GEMM_Q0)``
#: (OpenBLAS 0.3, float32, operands in cache: M=1: 0.27, 6: 0.39, 16: 0.46, 32: 0.55,
#: 64 and up: 0.9-1.0 of ~105 GFLOP/s per core).
GEMM_FLOOR = 0.25
GEMM_M0 = 40.0
GEMM_Q0 = 4.0
#: The weight gradient's products ``(Cg*K, L) @ (L, Og)`` have only ``Og`` columns:
#: their rate is scaled by ``Og / (Og + WEIGHT_N0)``.
WEIGHT_N0 = 8.0
#: Per element: a copy through a strided window (columns, gathers, halos), ~0.7 ns; a
#: read-modify-write add (accumulation), ~1 ns; the scatter-add of columns back through
#: the windows (NumPy adds on strided views run ~4x slower than copies), ~2 ns; writing a
#: block's weight-gradient product and adding it to the sum, ~3.4 ns; per NumPy call
#: (slicing, dispatch), ~3 us; all in flops of a peak-rate GEMM (~105 GFLOP/s per core).
COPY = 75.0
ADD = 105.0
SCATTER = 210.0
BLOCK_SUM = 360.0
STRIDED_SOURCE = 1.3
PER_CALL = 3.0e5

_STEPS = ("correlate", "input_grad", "weight_grad")
# tests and benchmarks: force im2col's variant of the input gradient ("halo", "flat",
# "scatter" or "shift")
# and of the weight gradient ("im2col" or "shift")
_FORCE_INPUT_GRAD: str | None = None
_FORCE_WEIGHT_GRAD: str | None = None


def cost(spec: ConvSpec, method: str = "im2col", step: str = "correlate", *,
         budget: int | None = None) -> float:
    """Estimated time of one step of ``method`` (``"im2col"`` or ``"shift"``) for ``spec``, in
    flops of a GEMM running at the BLAS peak (~1e11 per second per core on the reference
    machine, a 2.8 GHz AVX-512 Xeon). ``step`` is ``"correlate"``, ``"input_grad"`` or
    ``"weight_grad"``; the two strings may also be passed in the order ``(spec, step,
    method)``.

    With ``E = N * prod(S_out)`` output positions, ``E' = N * prod(S_pad)``, ``C = C_in``,
    ``O = C_out``, ``Cg = C/G``, ``Og = O/G``, ``K = prod(kernel)``, ``L`` positions per
    block and ``B = ceil(E / L)`` blocks (module docstring)::

        gemm(M, Q, F) = F / ((GEMM_FLOOR + (1 - GEMM_FLOOR) * M / (M + GEMM_M0))
                             * Q / (Q + GEMM_Q0)),   F = 2 * E * O * Cg * K

        correlate  im2col: gemm(Og, Cg*K) + COPY * E*C*K
                   shift:  gemm(Og, Cg)  + COPY * E*C*K + ADD * (K-1) * E*O
        input_grad im2col, the cheapest of
                   halo (stride 1):  gemm(Cg, Og*K, F * E'/E) + COPY * (E'*O*K + N*O*prod(S_pad+span))
                   flat (stride 1):  gemm(min(Cg*K, L), Og, F * Ef/E) + ADD * Ef*C*K
                                     + COPY * E'*(C + 2*O),  Ef = N * (flat index of the
                                     last output + 1) on the padded grid
                   scatter:          gemm(min(Cg*K, L), Og) + 1.3 * SCATTER * E*C*K + COPY * E'*C
                   shift's variant:
                   shift:  gemm(Cg, Og) + SCATTER * E*C*K + COPY * E'*C
        weight_grad, the cheaper of (im2col only; shift runs the second)
                   im2col: gemm(Cg*K, L, F') + COPY * E*(C*K + O) + BLOCK_SUM * B*O*Cg*K
                   shift:  gemm(Cg, L, F') + COPY * E*(C*K + O) + BLOCK_SUM * B*O*Cg*K
                   with F' = F * (Og + WEIGHT_N0) / Og (products with Og columns)
        all:       + PER_CALL * B * (calls per block: 2, plus K for the scatter or shift)

    Where im2col gathers its columns in two stages (short rows, :class:`_Windows`), its
    ``COPY * E*C*K`` (forward, weight gradient, halo) is scaled by :data:`STAGED_COPY`, and
    the staged rows count in the scratch per position that sizes ``L``.

    The terms other than ``gemm`` and ``PER_CALL`` (passes over memory: copies, adds,
    scatters) are divided by the threads the step runs on (:meth:`_Blocked._plan`); the
    ``gemm`` terms, which assume every core, are multiplied by ``cores / threads``: within a
    convolution op BLAS is single-threaded (``_threads.own_threads``), so a serial step's
    products run on one core.

    A 1x1 kernel at stride 1 costs only ``gemm(Og, Cg)`` (``gemm(Cg, Og)`` for the input
    gradient): it reads the input in place. The blocked loop only runs on NumPy arrays; other
    namespaces run the portable path, for which this is a rough guide.
    """
    if method in _STEPS:
        method, step = step, method
    if method not in ("im2col", "shift"):
        raise ValueError(f"gemm.cost: unknown method {method!r}")
    if step not in _STEPS:
        raise ValueError(f"gemm.cost: unknown step {step!r}")
    return sum(terms(spec, method, step, budget=budget).values())


def terms(spec: ConvSpec, method: str = "im2col", step: str = "correlate", *,
          budget: int | None = None) -> dict[str, float]:
    """:func:`cost` in its parts: ``products`` (the ``gemm`` terms), ``passes`` (copies, adds
    and scatters) and ``calls`` (``PER_CALL``), of the cheapest variant of the step; what
    ``benchmarks/calibrate_select.py`` fits a time per unit to."""
    if method in _STEPS:
        method, step = step, method
    variants = _estimates(spec, method, step, column_budget(spec, budget), 4)
    return variants[_cheapest(variants)]


def _terms(products: float, passes: float, calls: float) -> dict[str, float]:
    return {"products": products, "passes": passes, "calls": calls}


def _cheapest(variants: dict[str, dict[str, float]]) -> str:
    return min(variants, key=lambda name: sum(variants[name].values()))


def _estimates(spec: ConvSpec, method: str, step: str, budget: int,
               itemsize: int) -> dict[str, dict[str, float]]:
    """:func:`terms` per variant of the step (im2col has several for the gradients)."""
    n, c, o, g = spec.batch, spec.in_channels, spec.out_channels, spec.groups
    cg, og, kk = c // g, o // g, math.prod(spec.kernel)
    e = n * math.prod(spec.out_size)
    e_pad = n * math.prod(spec.padded_size)
    flops = 2.0 * e * o * cg * kk
    cores = fft_workers() if PARALLEL else 1
    if kk == 1 and all(s == 1 for s in spec.stride) and spec.padded_size == spec.out_size:
        rows, inner = (cg, og) if step == "input_grad" else (og, cg)
        if step == "weight_grad":
            rows, inner = min(cg, og), math.prod(spec.out_size)
        threads = _pointwise_workers(spec)
        return {"pointwise": _terms(_gemm(rows, inner, flops) * cores / threads, 0.0,
                                    PER_CALL * 2 * n)}

    def part(products: float, passes: float, calls: float, per_pos: int, reads: int,
             positions: int, by_samples: bool = False) -> dict[str, float]:
        """The terms of a variant run on the threads :meth:`_Blocked._plan` gives it: the
        passes over memory (copies, adds, scatters) are divided by them, and the products
        of a serial step run on one of the ``cores`` (BLAS is single-threaded in an op)."""
        threads = _workers(spec, per_pos, reads, positions, budget, itemsize,
                           by_samples and n < 2)
        return _terms(products * cores / threads, passes / threads, calls)

    shift = method == "shift"
    staged = _stageable(spec.kernel, spec.stride, spec.out_size)
    columns = _column_scratch(c, spec.kernel, spec.stride, spec.out_size)
    per_pos = (c + o if step == "correlate" else c) if shift else columns
    length = min(_block_positions(spec, per_pos, itemsize, budget, c * kk), e)
    blocks = math.ceil(e / length)
    calls = 2 + (2 * kk if shift else 0)
    gather = COPY * e * c * kk * (STAGED_COPY if staged and not shift else 1.0)
    if step == "correlate":
        passes = gather
        if shift:
            products = _gemm(og, cg, flops)
            passes += ADD * (kk - 1) * e * o
        else:
            products = _gemm(og, cg * kk, flops)
        return {method: part(products, passes, PER_CALL * blocks * calls, per_pos, c * kk, e)}
    if step == "weight_grad":
        # (Cg*K, L) @ (L, Og) per block; the product is written and added to the sum
        out = {}
        for variant in ("shift",) if shift else ("im2col", "shift"):
            one = variant == "shift"
            per_pos = (c if one else columns) + o
            length = min(_block_positions(spec, per_pos, itemsize, budget, c * kk), e)
            blocks = math.ceil(e / length)
            rate_flops = flops * (og + WEIGHT_N0) / og
            passes = ((COPY * e * c * kk if one else gather) + COPY * e * o
                      + BLOCK_SUM * blocks * o * cg * kk)
            out[variant] = part(_gemm(cg if one else cg * kk, length, rate_flops), passes,
                                PER_CALL * blocks * (2 + (2 * kk if one else 0)),
                                per_pos, c * kk, e)
        return out
    shift_length = min(_block_positions(spec, c, itemsize, budget, c * kk), e)
    per_offset = {"shift": part(
        _gemm(cg, og, flops), SCATTER * e * c * kk + COPY * e_pad * c,
        PER_CALL * math.ceil(e / shift_length) * (2 + 3 * kk), c, c * kk, e, True)}
    if shift:
        return per_offset
    length = min(_block_positions(spec, c * kk, itemsize, budget), e)  # no staged gather
    out = {"scatter": part(
        _gemm(min(cg * kk, length), og, flops),
        SCATTER * STRIDED_SOURCE * e * c * kk + COPY * e_pad * c,
        PER_CALL * math.ceil(e / length) * (calls + kk), c * kk, c * kk, e, True),
        **per_offset}
    if all(s == 1 for s in spec.stride):
        flat = [math.prod(spec.padded_size[i + 1:]) for i in range(spec.ndim)]
        e_flat = n * (sum((m - 1) * f for m, f in zip(spec.out_size, flat)) + 1)
        flat_length = min(_block_positions(spec, c * kk, itemsize, budget), e_flat)
        out["flat"] = part(_gemm(min(cg * kk, flat_length), og, flops * e_flat / e),
                           ADD * e_flat * c * kk + COPY * e_pad * (c + 2 * o),
                           PER_CALL * math.ceil(e_flat / flat_length) * (2 + kk),
                           c * kk, c * kk, e_flat, True)
        span = tuple(d * (k - 1) for d, k in zip(spec.dilation, spec.kernel))
        halo = n * o * math.prod(s + r for s, r in zip(spec.padded_size, span))
        ones = (1,) * spec.ndim
        halo_pos = _column_scratch(o, spec.kernel, ones, spec.padded_size)
        halo_len = min(_block_positions(spec, halo_pos, itemsize, budget, o * kk), e_pad)
        halo_copy = STAGED_COPY if _stageable(spec.kernel, ones, spec.padded_size) else 1.0
        out["halo"] = part(_gemm(cg, og * kk, flops * e_pad / e),
                           COPY * (e_pad * o * kk * halo_copy + halo),
                           PER_CALL * math.ceil(e_pad / halo_len) * 3, halo_pos, o * kk,
                           e_pad, True)
    return out


def _workers(spec: ConvSpec, per_position: int, reads: int, positions: int, budget: int,
             itemsize: int, one_sample: bool = False) -> int:
    """The threads a step of ``positions`` output positions runs on (:meth:`_Blocked._plan`;
    ``one_sample``: its blocks must stay per sample and there is one)."""
    workers = fft_workers() if PARALLEL else 1
    if workers <= 1 or one_sample:
        return 1
    cap = _block_positions(spec, per_position, itemsize, budget // workers, reads)
    if math.ceil(positions / cap) >= 2 * workers and _worth_threads(spec, cap, reads):
        return workers
    return 1


def _pointwise_workers(spec: ConvSpec) -> int:
    """The threads a 1x1 layer's products run on: all, once its input has
    :data:`PARALLEL_MIN_COLUMNS` elements."""
    workers = fft_workers() if PARALLEL else 1
    size = spec.batch * math.prod(spec.out_size) * spec.in_channels
    return workers if size >= PARALLEL_MIN_COLUMNS else 1


def _worth_threads(spec: ConvSpec, cap: int, reads: int) -> bool:
    """Whether a thread's block of ``cap`` positions is worth a thread (:meth:`_plan`)."""
    flops = 2.0 * cap * spec.out_channels * (spec.in_channels // spec.groups) * math.prod(
        spec.kernel)
    return cap * reads >= PARALLEL_MIN_COLUMNS or flops >= PARALLEL_MIN_FLOPS


def _gemm(rows: float, inner: float, flops: float, q0: float = GEMM_Q0) -> float:
    rate = GEMM_FLOOR + (1.0 - GEMM_FLOOR) * rows / (rows + GEMM_M0)
    return flops / (rate * inner / (inner + q0))


# ---------------------------------------------------------------------------------------------
# workspaces

_LOCAL = threading.local()
_CACHES: list[dict] = []  # every thread's cache, for clear_workspace(all_threads=True)
_CACHES_LOCK = threading.Lock()


def workspace(tag: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """A scratch array of ``shape`` from the calling thread's cache (contents undefined).

    One buffer per ``(tag, dtype)``, grown when too small and reused across calls, so a
    buffer must not outlive the call that took it, and two live buffers need two tags. The
    buffers of a thread total at most :data:`WORKSPACE_BYTES` (oldest evicted first); a
    larger request gets a fresh array that is not kept.
    """
    dtype = np.dtype(dtype)
    size = math.prod(shape)
    nbytes = size * dtype.itemsize
    if nbytes > WORKSPACE_BYTES:
        return np.empty(shape, dtype)
    cache = getattr(_LOCAL, "buffers", None)
    if cache is None:
        cache = _LOCAL.buffers = {}
        with _CACHES_LOCK:
            _CACHES.append(cache)
    key = (tag, dtype.str)
    buf = cache.get(key)
    if buf is None or buf.size < size:
        cache.pop(key, None)
        held = sum(b.nbytes for b in cache.values())
        while cache and held + nbytes > WORKSPACE_BYTES:
            held -= cache.pop(next(iter(cache))).nbytes
        buf = np.empty(size, dtype)
        cache[key] = buf
    return buf[:size].reshape(shape)


def clear_workspace(all_threads: bool = False) -> None:
    """Drop the calling thread's cached scratch buffers, or every thread's (``all_threads``:
    only while no fc2conv op runs, e.g. the worker threads' after a large layer)."""
    if all_threads:
        with _CACHES_LOCK:
            for cache in _CACHES:
                cache.clear()
    elif getattr(_LOCAL, "buffers", None) is not None:
        _LOCAL.buffers.clear()


def workspace_bytes(all_threads: bool = False) -> int:
    """Bytes of scratch the calling thread holds (or all threads together)."""
    if all_threads:
        with _CACHES_LOCK:
            return sum(b.nbytes for cache in _CACHES for b in list(cache.values()))
    return sum(b.nbytes for b in getattr(_LOCAL, "buffers", {}).values())


# ---------------------------------------------------------------------------------------------
# NumPy: blocked im2col / shift


def _is_numpy(*arrays: Any) -> bool:
    return all(type(a) is np.ndarray for a in arrays)


def _block_positions(spec: ConvSpec, per_position: int, itemsize: int, budget: int,
                     reads: int | None = None) -> int:
    """Output positions per block when each position needs ``per_position`` scratch elements
    and its product reads ``reads`` (default ``per_position``) elements of columns.

    At least :data:`MIN_BLOCK` positions, enough to fill :data:`CACHE_BYTES`, and enough
    that the block's columns are :data:`AMORTIZE` times the weights (which BLAS packs anew
    for every product), but never more than ``budget`` elements of scratch.
    """
    reads = per_position if reads is None else reads
    weights = spec.out_channels * (spec.in_channels // spec.groups) * math.prod(spec.kernel)
    want = max(CACHE_BYTES // (itemsize * per_position), MIN_BLOCK,
               AMORTIZE * weights // max(reads, 1))
    return max(1, min(budget // per_position, want))


def _balanced(total: int, most: int) -> int:
    """The step that cuts ``range(total)`` into ``ceil(total / most)`` near-equal pieces."""
    pieces = -(-total // max(1, most))
    return -(-total // pieces)


def _blocks(batch: int, out: tuple[int, ...], cap: int):
    """Blocks of output positions, each ``(n0, n1, start, extent, pos0, length)``.

    Either whole samples ``n0:n1`` or one box of one sample: indices ``start`` and sizes
    ``extent`` per spatial axis, where the axes before some ``a`` have size 1, axis ``a`` a
    range and the axes after it are whole; ``pos0`` is the box's first flat output index and
    ``length`` its number of positions (one contiguous run of the flattened output).
    """
    d = len(out)
    p = math.prod(out)
    if p <= cap:
        step = _balanced(batch, cap // p)
        for n0 in range(0, batch, step):
            yield n0, min(n0 + step, batch), (0,) * d, out, 0, p
        return
    a = next(i for i in range(d) if math.prod(out[i + 1:]) <= cap)
    inner = math.prod(out[a + 1:])
    step = _balanced(out[a], cap // inner)
    flat = [math.prod(out[i + 1:]) for i in range(d)]
    for n in range(batch):
        for prefix in itertools.product(*(range(m) for m in out[:a])):
            for lo in range(0, out[a], step):
                hi = min(lo + step, out[a])
                start = (*prefix, lo) + (0,) * (d - a - 1)
                extent = (1,) * a + (hi - lo,) + out[a + 1:]
                pos0 = sum(i * f for i, f in zip(start, flat))
                yield n, n + 1, start, extent, pos0, (hi - lo) * inner


class _Blocked:
    """One layer's geometry and the blocked NumPy loops of both methods."""

    def __init__(self, spec: ConvSpec, dtype: Any, method: str, budget: int | None) -> None:
        self.spec = spec
        self.dtype = np.dtype(dtype)
        self.g = spec.groups
        self.cg = spec.in_channels // spec.groups
        self.og = spec.out_channels // spec.groups
        self.kk = math.prod(spec.kernel)
        self.p = math.prod(spec.out_size)
        # a 1x1 kernel at stride 1 reading the whole input: one product on x as it is
        self.pointwise = (self.kk == 1 and all(s == 1 for s in spec.stride)
                          and spec.padded_size == spec.out_size)
        # 1x1 kernels: both methods are the same single product
        self.shift = method == "shift" and self.kk > 1
        self.budget = column_budget(spec, budget)

    # -- geometry ---------------------------------------------------------------------------

    def _plan(self, per_position: int, reads: int | None = None,
              out: tuple[int, ...] | None = None) -> tuple[list, int]:
        """The blocks of a step and how many threads run them (see :meth:`_run`).

        Threaded, each of ``w`` threads holds a block of the budget's ``1/w``, so the scratch
        stays within the budget. Threads are used when there are at least two blocks per
        thread of at least :data:`PARALLEL_MIN_COLUMNS` column elements or
        :data:`PARALLEL_MIN_FLOPS` each. Alone, a
        layer with large weights and short blocks (256 channels on 14x14) runs as fast with
        one two-thread product per block; but OpenBLAS's threads spin for ~0.1 s after each
        multi-threaded call, and a threaded step that follows one then shares the cores with
        them (measured: the strided suite layer's forward+backward 115 ms with mixed steps,
        70 ms with all steps threaded). So every step large enough is threaded."""
        spec = self.spec
        out = spec.out_size if out is None else out
        reads = per_position if reads is None else reads
        itemsize = self.dtype.itemsize
        workers = _workers(spec, per_position, reads, spec.batch * math.prod(out), self.budget,
                           itemsize)
        cap = _block_positions(spec, per_position, itemsize, self.budget // workers, reads)
        return list(_blocks(spec.batch, out, cap)), workers

    def _pointwise_parts(self) -> tuple[list, int]:
        """A 1x1 layer's products cut for the worker threads: ``(n0, n1, p0, p1)`` samples
        and a range of positions, two parts per thread (positions split only if samples are
        fewer)."""
        n, p = self.spec.batch, self.p
        workers = _pointwise_workers(self.spec)
        if workers <= 1:
            return [(0, n, 0, p)], 1
        pieces = 2 * workers
        if n >= pieces:
            step = -(-n // pieces)
            return [(i, min(n, i + step), 0, p) for i in range(0, n, step)], workers
        step = -(-p // -(-pieces // n))
        return [(i, i + 1, j, min(p, j + step)) for i in range(n) for j in range(0, p, step)], workers

    @staticmethod
    def _run(work: Any, blocks: list, workers: int, by_samples: bool = False) -> list:
        """``work(blocks)`` for all blocks: on the calling thread, or split over ``workers``
        threads with BLAS single-threaded. ``by_samples``: blocks of the same samples stay
        on one thread (steps whose blocks add into overlapping parts of the result)."""
        if workers > 1 and by_samples:
            keys: dict = {}
            parts: list[list] = [[] for _ in range(workers)]
            for block in blocks:
                parts[keys.setdefault(block[:2], len(keys)) % workers].append(block)
            if len(keys) < workers:
                workers = 1
        elif workers > 1:
            parts = [blocks[i::workers] for i in range(workers)]
        if workers <= 1:
            return [work(blocks)]
        with blas_serial():
            return list(pool().map(work, parts))

    def _windows(self, x: np.ndarray, *, channel_major: bool = False,
                 offset: tuple[int, ...] | None = None, stride: tuple[int, ...] | None = None,
                 size: tuple[int, ...] | None = None) -> _Windows:
        spec = self.spec
        return _Windows(x, self.g, spec.kernel, spec.stride if stride is None else stride,
                        spec.dilation, spec.out_size if size is None else size,
                        channel_major=channel_major, offset=offset)

    def _rows(self, a: np.ndarray, block) -> np.ndarray:
        """The block's run of a ``(N, G, Cgroup, P)`` array: ``(Nc, G, Cgroup, length)``."""
        n0, n1, _, _, pos0, length = block
        return a[n0:n1, :, :, pos0:pos0 + length]

    def _per_offset_weights(self, w: np.ndarray) -> np.ndarray:
        """``(C_out, Cg, *K) -> (K, G, Og, Cg)`` contiguous."""
        wk = np.reshape(w, (self.g, self.og, self.cg, self.kk))
        return np.ascontiguousarray(np.moveaxis(wk, 3, 0))

    # -- forward ----------------------------------------------------------------------------

    def forward(self, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        spec, g, og, cg = self.spec, self.g, self.og, self.cg
        n = spec.batch
        y = np.empty(spec.output_shape, self.dtype)
        y4 = y.reshape(n, g, og, self.p)
        if self.pointwise:
            x4, wg = np.reshape(x, (n, g, cg, self.p)), np.reshape(w, (g, og, cg))

            def pointwise(parts: list) -> None:
                for n0, n1, p0, p1 in parts:
                    np.matmul(wg, x4[n0:n1, ..., p0:p1], out=y4[n0:n1, ..., p0:p1])

            self._run(pointwise, *self._pointwise_parts())
            return y
        if not self.shift:
            wg = np.ascontiguousarray(np.reshape(w, (g, og, cg * self.kk)))
            windows = self._windows(x)

            def columns(blocks: list) -> None:
                for block in blocks:
                    cols = windows.gather("cols", block, self.dtype)
                    cols = cols.reshape(*cols.shape[:2], cg * self.kk, cols.shape[-1])
                    np.matmul(wg, cols, out=self._rows(y4, block))

            columns_scratch = _column_scratch(spec.in_channels, spec.kernel, spec.stride,
                                              spec.out_size)
            self._run(columns, *self._plan(columns_scratch, spec.in_channels * self.kk))
            return y
        wk = self._per_offset_weights(w)
        per_offset = [self._windows(x, offset=offset) for offset in offsets(spec.kernel)]

        def shifted(blocks: list) -> None:
            for block in blocks:
                out = self._rows(y4, block)
                tmp = workspace("product", out.shape, self.dtype)
                for k, windows in enumerate(per_offset):
                    # gathered even for depthwise: a multiply over long contiguous rows beats
                    # one reading the strided window (NumPy's per-row cost)
                    xk = windows.gather("window", block, self.dtype)
                    _product(wk[k], xk, out=out if k == 0 else tmp)
                    if k:
                        np.add(out, tmp, out=out)

        scratch = spec.in_channels + spec.out_channels  # a window and a product
        self._run(shifted, *self._plan(scratch, spec.in_channels * self.kk))
        return y

    # -- input gradient ---------------------------------------------------------------------

    def input_grad(self, grad_out: np.ndarray, w: np.ndarray) -> np.ndarray:
        """im2col runs the cheapest by :func:`cost` of: the halo correlation (stride 1,
        :meth:`_input_grad_halo`); one GEMM ``w^T @ grad_out`` per block into columns, then a
        scatter-add per kernel offset; or shift's per-offset GEMM and scatter-add, whose
        smaller scratch allows longer blocks (fewer calls, for small layers)."""
        spec, g, og, cg = self.spec, self.g, self.og, self.cg
        n = spec.batch
        gy4 = np.reshape(grad_out, (n, g, og, self.p))
        if self.pointwise:
            gx = np.empty((n, spec.in_channels, *spec.padded_size), self.dtype)
            gx4, wt = gx.reshape(n, g, cg, self.p), np.reshape(w, (g, og, cg)).mT

            def pointwise(parts: list) -> None:
                for n0, n1, p0, p1 in parts:
                    np.matmul(wt, gy4[n0:n1, ..., p0:p1], out=gx4[n0:n1, ..., p0:p1])

            self._run(pointwise, *self._pointwise_parts())
            return gx
        variant = "shift"
        if not self.shift:
            variants = _estimates(spec, "im2col", "input_grad", self.budget,
                                  self.dtype.itemsize)
            variant = _FORCE_INPUT_GRAD or _cheapest(variants)
            if variant not in variants:
                variant = "scatter"
            if variant == "halo":
                return self._input_grad_halo(grad_out, w)
            if variant == "flat":
                return self._input_grad_flat(grad_out, w)
        gx = np.zeros((n, spec.in_channels, *spec.padded_size), self.dtype)
        gx5 = gx.reshape(n, g, cg, *spec.padded_size)
        offs = offsets(spec.kernel)
        # blocks of the same samples add into overlapping windows: one thread each
        if variant == "scatter":
            wt = np.reshape(w, (g, og, cg * self.kk)).mT  # BLAS reads the transpose in place

            def scatter(blocks: list) -> None:
                for block in blocks:
                    gyb = self._rows(gy4, block)
                    gcols = workspace("cols", (*gyb.shape[:2], cg * self.kk, gyb.shape[-1]),
                                      self.dtype)
                    np.matmul(wt, gyb, out=gcols)
                    gk = gcols.reshape(*gyb.shape[:2], cg, self.kk, *block[3])
                    for k, offset in enumerate(offs):
                        self._scatter(gx5, block, offset, gk[:, :, :, k])

            self._run(scatter, *self._plan(spec.in_channels * self.kk), by_samples=True)
            return gx
        wt = self._per_offset_weights(w).mT  # (K, G, Cg, Og)

        def shifted(blocks: list) -> None:
            for block in blocks:
                gyb = self._rows(gy4, block)
                tmp = workspace("window", (*gyb.shape[:2], cg, gyb.shape[-1]), self.dtype)
                for k, offset in enumerate(offs):
                    _product(wt[k], gyb, out=tmp)
                    self._scatter(gx5, block, offset, tmp.reshape(*tmp.shape[:3], *block[3]))

        self._run(shifted, *self._plan(spec.in_channels, spec.in_channels * self.kk),
                  by_samples=True)
        return gx

    def _input_grad_flat(self, grad_out: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Stride 1: col2im on the flattened padded grid. ``grad_out`` is embedded in a
        zeroed ``(N, C_out, prod(S_pad))`` buffer (one group of samples at a time), so
        output position ``i`` sits at flat index ``q(i)`` and kernel offset ``a`` adds to
        ``q + flat(a * dilation)``: every block is a plain range of ``q``, its GEMM reads the
        buffer in place and its scatter-adds are contiguous runs (NumPy adds strided views
        several times slower). The zeros between rows cost ``prod(S_pad) / prod(S_out)``
        more flops at most."""
        spec, g, og, cg, kk = self.spec, self.g, self.og, self.cg, self.kk
        n, size = spec.batch, spec.padded_size
        flat = [math.prod(size[i + 1:]) for i in range(spec.ndim)]
        offs = [sum(a * d * f for a, d, f in zip(o, spec.dilation, flat))
                for o in offsets(spec.kernel)]
        last = sum((m - 1) * f for m, f in zip(spec.out_size, flat)) + 1
        gx = np.zeros((n, spec.in_channels, *size), self.dtype)
        gxf = gx.reshape(n, g, cg, math.prod(size))
        wt = np.reshape(w, (g, og, cg * kk)).mT
        inner = tuple(slice(0, m) for m in spec.out_size)

        def flat_blocks(blocks: list) -> None:
            samples = None
            for n0, n1, _, _, q0, length in blocks:
                if samples != (n0, n1):
                    samples = (n0, n1)
                    emb = workspace("halo", (n1 - n0, spec.out_channels, *size), self.dtype)
                    emb.fill(0)
                    np.copyto(emb[(Ellipsis, *inner)], grad_out[n0:n1])
                    embf = emb.reshape(n1 - n0, g, og, -1)
                gcols = workspace("cols", (n1 - n0, g, cg * kk, length), self.dtype)
                np.matmul(wt, embf[..., q0:q0 + length], out=gcols)
                gk = gcols.reshape(n1 - n0, g, cg, kk, length)
                for k, off in enumerate(offs):
                    target = gxf[n0:n1, :, :, q0 + off:q0 + off + length]
                    np.add(target, gk[:, :, :, k], out=target)

        blocks, workers = self._plan(spec.in_channels * kk, out=(last,))
        # (the scatter-adds run over the blocks' lengths)
        self._run(unbuffered(flat_blocks, min(b[-1] for b in blocks), STRIDED_RUN), blocks,
                  workers, by_samples=True)
        return gx

    def _input_grad_halo(self, grad_out: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Stride 1: the input gradient is the "full" correlation of ``grad_out`` with the
        flipped kernel, channels swapped, so it runs as a forward im2col over the positions
        of ``x_pad`` (no zero fill of the gradient, no scatter-add): per group of samples,
        ``grad_out`` is copied once into a buffer zero-extended by ``dilation * (K - 1)`` on
        every side, whose windows the blocks' columns read."""
        spec, g, og, cg, kk = self.spec, self.g, self.og, self.cg, self.kk
        n, nd, size = spec.batch, spec.ndim, spec.padded_size
        reach = tuple(d * (k - 1) for d, k in zip(spec.dilation, spec.kernel))
        gx = np.empty((n, spec.in_channels, *size), self.dtype)
        gx4 = gx.reshape(n, g, cg, math.prod(size))
        wf = np.flip(np.reshape(w, (g, og, cg, *spec.kernel)), axis=tuple(range(3, 3 + nd)))
        wt = np.ascontiguousarray(np.swapaxes(wf, 1, 2)).reshape(g, cg, og * kk)
        ones = (1,) * nd
        ext_size = tuple(s + r for s, r in zip(size, reach))
        inner = tuple(slice(r, r + m) for r, m in zip(reach, spec.out_size))

        def halo_blocks(blocks: list) -> None:
            samples = None
            for n0, n1, start, extent, pos0, length in blocks:
                if samples != (n0, n1):
                    samples = (n0, n1)
                    ext = workspace("halo", (n1 - n0, spec.out_channels, *ext_size),
                                    self.dtype)
                    _zero_outside(ext, inner)
                    np.copyto(ext[(Ellipsis, *inner)], grad_out[n0:n1])
                    windows = self._windows(ext, stride=ones, size=size)
                cols = windows.gather("cols", (0, n1 - n0, start, extent, 0, length),
                                      self.dtype)
                cols = cols.reshape(n1 - n0, g, og * kk, length)
                np.matmul(wt, cols, out=gx4[n0:n1, :, :, pos0:pos0 + length])

        # (by samples only so that each thread builds the halo of its own samples)
        scratch = _column_scratch(spec.out_channels, spec.kernel, ones, size)
        self._run(halo_blocks, *self._plan(scratch, spec.out_channels * kk, out=size),
                  by_samples=True)
        return gx

    def _scatter(self, gx5: np.ndarray, block, offset: tuple[int, ...],
                 values: np.ndarray) -> None:
        """``gx[window of the block at offset] += values``; ``values: (Nc, G, Cg, *extent)``."""
        spec = self.spec
        n0, n1, start, extent, _, _ = block
        index = (slice(n0, n1), slice(None), slice(None), *(
            slice(a * d + i * s, a * d + (i + e - 1) * s + 1, s)
            for a, d, i, s, e in zip(offset, spec.dilation, start, spec.stride, extent)))
        target = gx5[index]
        if self.kk == 1:  # windows of a 1x1 kernel never overlap and gx is zero
            np.copyto(target, values)
        else:
            np.add(target, values, out=target)

    # -- weight gradient --------------------------------------------------------------------

    def weight_grad(self, grad_out: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Accumulates the transposed products ``columns @ grad_out^T`` over the blocks,
        with the block's ``grad_out`` copied positions-major: ``(C_in/G * K, L) @ (L,
        C_out/G)`` runs 20-50% faster in OpenBLAS than ``grad_out @ columns^T``.

        im2col takes the per-offset loop of shift when the budget leaves its blocks so short
        that accumulating the ``(C_in/G * K, C_out/G)`` products would dominate (layers with
        many channels and few positions)."""
        spec, g, og, cg, kk = self.spec, self.g, self.og, self.cg, self.kk
        n = spec.batch
        gy4 = np.reshape(grad_out, (n, g, og, self.p))
        # the sum is kept in the layout of w; the products are added transposed
        gw = np.zeros((g, og, cg * kk), self.dtype)
        if self.pointwise:
            x4 = np.reshape(x, (n, g, cg, self.p))

            def pointwise(parts: list) -> np.ndarray:
                total = np.zeros((g, og, cg), self.dtype)
                part = workspace("product", (g, cg, og), self.dtype)
                for n0, n1, p0, p1 in parts:
                    for i in range(n0, n1):
                        np.matmul(x4[i, ..., p0:p1], gy4[i, ..., p0:p1].mT, out=part)
                        np.add(total, part.mT, out=total)
                return total

            gw = sum(self._run(pointwise, *self._pointwise_parts()))
            return gw.reshape(spec.out_channels, cg, *spec.kernel)
        shift = self.shift
        if not shift:
            variants = _estimates(spec, "im2col", "weight_grad", self.budget,
                                  self.dtype.itemsize)
            shift = (_FORCE_WEIGHT_GRAD or _cheapest(variants)) == "shift"
        offs = offsets(spec.kernel)
        if shift:
            per_offset = [self._windows(x, channel_major=True, offset=o) for o in offs]
            plan = self._plan(spec.in_channels + spec.out_channels, spec.in_channels * kk)
        else:
            windows = self._windows(x, channel_major=True)
            scratch = _column_scratch(spec.in_channels, spec.kernel, spec.stride, spec.out_size)
            plan = self._plan(scratch + spec.out_channels,
                              spec.in_channels * kk + spec.out_channels)

        def accumulate(blocks: list) -> np.ndarray:
            total = np.zeros((g, og, cg * kk), self.dtype)
            total_k = total.reshape(g, og, cg, kk)
            part = workspace("product", (g, cg, og) if shift else (g, cg * kk, og),
                             self.dtype)
            for block in blocks:
                gyt = self._positions_major(gy4, block)  # (G, Nc * length, Og)
                if not shift:
                    cols = windows.gather("cols", block, self.dtype)
                    np.matmul(cols.reshape(g, cg * kk, gyt.shape[1]), gyt, out=part)
                    np.add(total, part.mT, out=total)
                    continue
                for k in range(kk):
                    xk = per_offset[k].gather("window", block, self.dtype)
                    _product(xk, gyt, out=part)
                    target = total_k[..., k]
                    np.add(target, part.mT, out=target)
            return total

        gw = sum(self._run(accumulate, *plan))
        return gw.reshape(spec.out_channels, cg, *spec.kernel)

    def _positions_major(self, gy4: np.ndarray, block) -> np.ndarray:
        """The block's run of ``grad_out`` as ``(G, Nc * length, Og)`` in the scratch
        buffer ``"rows"``."""
        rows = self._rows(gy4, block)
        nc, length = rows.shape[0], rows.shape[-1]
        buf = workspace("rows", (self.g, nc, length, self.og), self.dtype)
        np.copyto(buf, rows.transpose(1, 0, 3, 2))
        return buf.reshape(self.g, nc * length, self.og)


class _Windows:
    """The windows of ``x: (N, C, *S)`` read by the output positions of a strided correlation,
    as one read-only strided view made once per call and sliced per block.

    Layout ``(N, G, C/G, *K, *out)``, or ``(G, C/G, *K, N, *out)`` when ``channel_major``;
    with one kernel ``offset``, the same without the ``K`` axes.
    """

    def __init__(self, x: np.ndarray, groups: int, kernel: tuple[int, ...],
                 stride: tuple[int, ...], dilation: tuple[int, ...], out: tuple[int, ...], *,
                 channel_major: bool = False, offset: tuple[int, ...] | None = None) -> None:
        shift = (0,) * len(kernel) if offset is None else offset
        base = x[(slice(None), slice(None), *(slice(a * d, None)
                                              for a, d in zip(shift, dilation)))]
        sn, sc, *ss = x.strides
        cg = x.shape[1] // groups
        k_shape = kernel if offset is None else ()
        k_strides = tuple(d * st for d, st in zip(dilation, ss)) if offset is None else ()
        pos_strides = tuple(s * st for s, st in zip(stride, ss))
        if channel_major:
            shape = (groups, cg, *k_shape, x.shape[0], *out)
            strides = (cg * sc, sc, *k_strides, sn, *pos_strides)
        else:
            shape = (x.shape[0], groups, cg, *k_shape, *out)
            strides = (sn, cg * sc, sc, *k_strides, *pos_strides)
        self.view = as_strided(base, shape=shape, strides=strides, writeable=False)
        self.channel_major = channel_major
        self.lead = (slice(None),) * (2 + len(k_shape))
        # the trailing axes merged into one: positions, and samples when channel-major
        self.merged = len(out) + (1 if channel_major else 0)
        self.in_place = offset is not None or math.prod(kernel) == 1
        # Staged gather (all kernel offsets, stride 1 on the first spatial axis, a kernel of
        # several rows): the windows of the offsets along axis 0 are shifts of each other by
        # whole input rows, so the windows over the other kernel axes are gathered once for
        # every input row the block reads ("staged", 1/K_0 of the columns) and each axis-0
        # offset's columns are then one slice of that: copies in runs of whole blocks of
        # output rows instead of runs of one output row's length.
        self.staged: np.ndarray | None = None
        if offset is None and _stageable(kernel, stride, out):
            k1, k1_strides = kernel[1:], k_strides[1:]
            if channel_major:
                shape = (groups, cg, *k1, x.shape[0], x.shape[2], *out[1:])
                strides = (cg * sc, sc, *k1_strides, sn, ss[0], *pos_strides[1:])
            else:
                shape = (x.shape[0], groups, cg, *k1, x.shape[2], *out[1:])
                strides = (sn, cg * sc, sc, *k1_strides, ss[0], *pos_strides[1:])
            self.staged = as_strided(x, shape=shape, strides=strides, writeable=False)
            self.k0, self.d0 = kernel[0], dilation[0]

    def block(self, block) -> np.ndarray:
        n0, n1, start, extent, _, _ = block
        box = tuple(slice(i, i + e) for i, e in zip(start, extent))
        if self.channel_major:
            return self.view[(*self.lead, slice(n0, n1), *box)]
        return self.view[(slice(n0, n1), *self.lead, *box)]

    def gather(self, tag: str, block, dtype: Any) -> np.ndarray:
        """The block's windows with the merged trailing axes on one last axis, ``(..., L)``:
        a view when that needs no copy and leaves a unit inner stride (a 1x1 kernel or one
        offset, at stride 1, over whole trailing axes), else a copy into the C-contiguous
        scratch buffer ``tag``."""
        if self.staged is not None and self._stages(block):
            view = self._staged_block(tag, block, dtype)
        else:
            view = self.block(block)
        nd = self.merged
        lead, tail = view.shape[:-nd], view.shape[-nd:]
        if self.in_place and _unit_run(tail, view.strides[-nd:], view.itemsize):
            return view.reshape(*lead, math.prod(tail))
        buf = workspace(tag, (*lead, math.prod(tail)), dtype)
        np.copyto(buf.reshape(view.shape), view)
        return buf

    @property
    def reach(self) -> int:
        """How many more input rows than output rows a block reads on the first axis."""
        return self.d0 * (self.k0 - 1)

    def _stages(self, block) -> bool:
        """Whether the block is gathered in two stages: when its columns are large enough
        and its staged rows at most twice its rows (the staged buffer, ``(rows + reach) /
        (rows * K_0)`` of the columns, is then at most ``2 / K_0`` of them)."""
        n0, n1, _, extent, _, length = block
        lead = self.view.shape[:-self.merged]
        columns = (n1 - n0) * length * math.prod(lead[1:] if not self.channel_major else lead)
        return extent[0] >= self.reach and columns >= STAGED_MIN_COLUMNS

    def _staged_block(self, tag: str, block, dtype: Any) -> np.ndarray:
        """The block's windows (as :meth:`block`) as a view of its staged rows, copied into
        the scratch buffer ``tag + "-staged"``."""
        n0, n1, start, extent, _, _ = block
        rows = extent[0]
        box = (slice(start[0], start[0] + rows + self.reach),
               *(slice(i, i + e) for i, e in zip(start[1:], extent[1:])))
        k1 = (slice(None),) * (self.staged.ndim - len(box) - 3)
        if self.channel_major:  # (G, Cg, *K[1:], N, rows, *S[1:])
            part = self.staged[(slice(None), slice(None), *k1, slice(n0, n1), *box)]
        else:  # (N, G, Cg, *K[1:], rows, *S[1:])
            part = self.staged[(slice(n0, n1), slice(None), slice(None), *k1, *box)]
        staged = workspace(tag + "-staged", part.shape, dtype)
        np.copyto(staged, part)
        # the K_0 offsets: a new axis before K[1:] stepping d_0 staged rows
        row_axis, k_axis = 3 + len(k1), 2 if self.channel_major else 3
        shape, strides = list(staged.shape), list(staged.strides)
        shape[row_axis] = rows
        shape.insert(k_axis, self.k0)
        strides.insert(k_axis, self.d0 * strides[row_axis])
        return as_strided(staged, shape=tuple(shape), strides=tuple(strides), writeable=False)


def _stageable(kernel: tuple[int, ...], stride: tuple[int, ...], out: tuple[int, ...]) -> bool:
    """Whether im2col's columns are gathered in two stages (:class:`_Windows`): two or more
    spatial axes, a kernel of several rows at stride 1 on the first, and short contiguous
    output rows (:data:`STAGED_MAX_ROW`) on the last."""
    return (len(kernel) >= 2 and kernel[0] > 1 and stride[0] == 1 and stride[-1] == 1
            and out[-1] < STAGED_MAX_ROW)


def _column_scratch(channels: int, kernel: tuple[int, ...], stride: tuple[int, ...],
                    out: tuple[int, ...]) -> int:
    """im2col's scratch per output position: its columns, and where they may be gathered in
    two stages the staged rows (at most ``2 / K_0`` of them, :meth:`_Windows._stages`)."""
    per_position = channels * math.prod(kernel)
    if _stageable(kernel, stride, out):
        per_position += -(-2 * per_position // kernel[0])
    return per_position


def _zero_outside(a: np.ndarray, inner: tuple[slice, ...]) -> None:
    """Zero ``a`` outside the box ``inner`` of its trailing axes (one slab per side)."""
    lead = a.ndim - len(inner)
    for axis, sl in enumerate(inner):
        before = (slice(None),) * (lead + axis)
        a[(*before, slice(0, sl.start))] = 0
        a[(*before, slice(sl.stop, None))] = 0


def _unit_run(shape: tuple[int, ...], strides: tuple[int, ...], itemsize: int) -> bool:
    """Whether axes of ``shape`` and ``strides`` form one C-contiguous run."""
    expected = itemsize
    for size, stride in zip(reversed(shape), reversed(strides)):
        if size != 1 and stride != expected:
            return False
        expected *= size
    return True


def _product(a: Any, b: Any, out: Any = None) -> Any:
    """``a @ b`` for stacks of matrices; a broadcast multiply when the inner size is 1.

    Depthwise layers make every per-offset product an outer product, which NumPy's matmul
    runs outside BLAS several times slower than the equivalent elementwise multiply.
    """
    if a.shape[-1] == 1:
        return a * b if out is None else np.multiply(a, b, out=out)
    return a @ b if out is None else np.matmul(a, b, out=out)


# ---------------------------------------------------------------------------------------------
# portable array-API path (torch, array_api_strict, ...)


def _portable_correlate(xp: Any, x_pad: Any, w: Any, spec: ConvSpec, method: str,
                        budget: int) -> Any:
    g, og, cg = spec.groups, spec.out_channels // spec.groups, spec.in_channels // spec.groups
    if method == "im2col":
        step = _portable_samples(spec, budget)
        wg = xp.reshape(w, (g, og, cg * math.prod(spec.kernel)))
        parts = []
        for n0 in range(0, spec.batch, step):
            xg = _group_major(xp, x_pad[n0:n0 + step, ...], g)
            y = wg @ _columns(xp, xg, spec)
            nc = xg.shape[2]
            parts.append(_batch_major(xp, xp.reshape(y, (g, og, nc, *spec.out_size))))
        return parts[0] if len(parts) == 1 else xp.concat(parts, axis=0)
    xg = _group_major(xp, x_pad, g)
    y = None
    w_k = _per_offset(xp, w, spec)
    for k, offset in enumerate(offsets(spec.kernel)):
        term = _product(w_k[k, ...], _flat_window(xp, xg, offset, spec))
        if y is None:
            y = term
        else:
            y += term
    return _batch_major(xp, xp.reshape(y, (g, og, spec.batch, *spec.out_size)))


def _portable_input_grad(xp: Any, grad_out: Any, w: Any, spec: ConvSpec, method: str,
                         budget: int) -> Any:
    g, og, cg = spec.groups, spec.out_channels // spec.groups, spec.in_channels // spec.groups
    gy = _flat_group_major(xp, grad_out, spec)
    gx = xp.zeros((g, cg, spec.batch, *spec.padded_size), dtype=grad_out.dtype,
                  device=array_api_compat.device(grad_out))
    if method == "im2col":
        kk = math.prod(spec.kernel)
        step = _portable_samples(spec, budget)
        wt = xp.reshape(w, (g, og, cg * kk)).mT
        p = math.prod(spec.out_size)
        for n0 in range(0, spec.batch, step):
            nc = min(step, spec.batch - n0)
            gcols = xp.reshape(wt @ gy[:, :, n0 * p:(n0 + nc) * p], (g, cg, kk, -1))
            out_shape = (g, cg, nc, *spec.out_size)
            for k, offset in enumerate(offsets(spec.kernel)):
                index = window(offset, spec.stride, spec.dilation, spec.out_size)
                index = (slice(None), slice(None), slice(n0, n0 + nc), *index[1:])
                gx[index] += xp.reshape(gcols[:, :, k, :], out_shape)
    else:
        out_shape = (g, cg, spec.batch, *spec.out_size)
        w_k = _per_offset(xp, w, spec)
        for k, offset in enumerate(offsets(spec.kernel)):
            index = window(offset, spec.stride, spec.dilation, spec.out_size)
            gx[index] += xp.reshape(_product(w_k[k, ...].mT, gy), out_shape)
    return _batch_major(xp, gx)


def _portable_weight_grad(xp: Any, grad_out: Any, x_pad: Any, spec: ConvSpec, method: str,
                          budget: int) -> Any:
    g, cg = spec.groups, spec.in_channels // spec.groups
    if method == "im2col":
        step = _portable_samples(spec, budget)
        gw = None
        for n0 in range(0, spec.batch, step):
            gy = _flat_group_major(xp, grad_out[n0:n0 + step, ...], spec)
            xg = _group_major(xp, x_pad[n0:n0 + step, ...], g)
            part = gy @ _columns(xp, xg, spec).mT  # (G, C_out/G, C_in/G * K)
            gw = part if gw is None else gw + part
        return xp.reshape(gw, (spec.out_channels, cg, *spec.kernel))
    gy = _flat_group_major(xp, grad_out, spec)
    xg = _group_major(xp, x_pad, g)
    per_offset = [gy @ _flat_window(xp, xg, offset, spec).mT for offset in offsets(spec.kernel)]
    gw = xp.stack(per_offset, axis=-1)  # (G, C_out/G, C_in/G, K)
    return xp.reshape(gw, (spec.out_channels, cg, *spec.kernel))


def _portable_samples(spec: ConvSpec, budget: int) -> int:
    """Samples per chunk of the portable im2col (at least one, whatever the budget)."""
    per_sample = spec.in_channels * math.prod(spec.kernel) * math.prod(spec.out_size)
    return _balanced(spec.batch, max(1, budget // per_sample))


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


def _per_offset(xp: Any, w: Any, spec: ConvSpec) -> Any:
    """``(C_out, C_in/G, *K) -> (K, G, C_out/G, C_in/G)``: one small matrix per offset."""
    g, cg = spec.groups, spec.in_channels // spec.groups
    wk = xp.reshape(w, (g, spec.out_channels // g, cg, -1))
    return xp.permute_dims(wk, (3, 0, 1, 2))
