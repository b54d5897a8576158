"""Tile planning: which input cells each output tile reads, through a stack of windowed stages.

Everything here is integer arithmetic on one spatial axis at a time (windows are boxes, so the
axes are independent) and knows nothing of Dask. A *stage* is one windowed op (correlation,
pooling; a pointwise op is a window of size 1) with its own stride, dilation, padding and
padding mode. Output ``i`` of a stage reads padded input positions
``i*stride + a*dilation - pad_before``; a position outside ``[0, n)`` is padding, which reads
the input cell that :func:`fc2conv._padding.source_index` names (or is a constant fill).

Going backwards from an output tile ``[p, q)`` through the stages gives, per stage, the output
range it must produce and finally the range of the (pre-padded) input the tile reads. The
chunk plan puts tile boundaries where the user's chunk boundaries were (so a ``"same"``
filter returns the input's chunks), aligned to the total stride, and merges chunks until each
is at least as long as the halo Dask must share between neighbours.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import _padding

__all__ = ["AxisPlan", "Stage", "plan_axis", "receptive_field", "sources", "stage_axes"]

Range = tuple[int, int]


@dataclass(frozen=True)
class Stage:
    """One windowed op on ``(N, C, *S)``: what a tile needs to know to compute it locally.

    ``run(padded_block, out_start) -> block`` computes the op with no padding on a block that
    already holds its padding; ``out_start`` is the global index of its first output (average
    pooling needs it for the divisor near the border).
    """

    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    pads: tuple[tuple[int, int], ...]
    mode: str
    fill: float
    in_size: tuple[int, ...]
    out_size: tuple[int, ...]
    out_channels: int | None  # None: as many as its input
    run: Callable[[Any, tuple[int, ...]], Any]

    def without_padding(self) -> Stage:
        """The same stage on an input that already holds its padding (padded in Dask)."""
        padded = tuple(n + b + a for n, (b, a) in zip(self.in_size, self.pads))
        return Stage(self.kernel, self.stride, self.dilation, ((0, 0),) * len(padded),
                     "zeros", self.fill, padded, self.out_size, self.out_channels, self.run)


@dataclass(frozen=True)
class _Axis:
    """A stage seen along one spatial axis."""

    kernel: int
    stride: int
    dilation: int
    before: int
    after: int
    mode: str
    n: int  # input length
    out: int  # output length

    @property
    def span(self) -> int:
        return self.dilation * (self.kernel - 1) + 1


def stage_axes(stages: list[Stage], axis: int) -> list[_Axis]:
    return [_Axis(s.kernel[axis], s.stride[axis], s.dilation[axis], *s.pads[axis], s.mode,
                  s.in_size[axis], s.out_size[axis]) for s in stages]


def reads(ax: _Axis, p: int, q: int) -> Range:
    """Input positions (padding included, so possibly < 0 or >= n) read by outputs [p, q)."""
    return p * ax.stride - ax.before, (q - 1) * ax.stride + ax.span - ax.before


def sources(ax: _Axis, start: int, stop: int) -> np.ndarray:
    """Input index each position of ``[start, stop)`` reads; ``-1`` for a constant fill."""
    return _padding.source_index(ax.mode, ax.n, ax.before, ax.after)[
        start + ax.before:stop + ax.before]


def needed(ax: _Axis, p: int, q: int) -> Range:
    """The input range outputs [p, q) need: what they read directly plus padding sources."""
    start, stop = reads(ax, p, q)
    lo, hi = max(start, 0), min(stop, ax.n)
    if ax.mode != "zeros" and (start < 0 or stop > ax.n):
        src = sources(ax, start, stop)
        lo, hi = min(lo, int(src.min())), max(hi, int(src.max()) + 1)
    if hi <= lo:
        # Outputs that read only zero padding: keep one real cell so no array is ever empty.
        lo = min(max(start, 0), ax.n - 1)
        hi = lo + 1
    return lo, hi


def tile_ranges(axes: list[_Axis], p: int, q: int) -> tuple[tuple[Range, ...], Range]:
    """Output range of every stage for final outputs [p, q), and the input range they need."""
    ranges = []
    for ax in reversed(axes):
        ranges.append((p, q))
        p, q = needed(ax, p, q)
    return tuple(reversed(ranges)), (p, q)


def receptive_field(axes: list[_Axis]) -> tuple[int, int, int]:
    """``(size, jump, first)``: output ``p`` reads inputs ``[jump*p + first, ... + size)``
    away from the borders (the composition of the stages' affine windows)."""
    size, jump, first = 1, 1, 0
    for ax in axes:
        size += (ax.span - 1) * jump
        first -= ax.before * jump
        jump *= ax.stride
    return size, jump, first


@dataclass(frozen=True)
class AxisPlan:
    """How one spatial axis is tiled.

    ``in_chunks`` chunk the (pre-padded) input; Dask's overlap widens every block by
    ``depth = (before, after)`` cells of its neighbours (none at the array's ends), so block
    ``k`` covers input ``[tile_start[k], ...)``. Tile ``k`` produces ``out_chunks[k]`` outputs;
    ``stage_ranges[k]`` is the output range of every stage for it.
    """

    in_chunks: tuple[int, ...]
    out_chunks: tuple[int, ...]
    depth: Range
    tile_start: tuple[int, ...]
    stage_ranges: tuple[tuple[Range, ...], ...]


def plan_axis(axes: list[_Axis], boundaries: list[int]) -> AxisPlan:
    """Tile one axis. ``axes[0]`` reads the pre-padded input (no padding of its own);
    ``boundaries`` are the chunk boundaries to keep if possible, in that input's coordinates."""
    n, out = axes[0].n, axes[-1].out
    size, jump, first = receptive_field(axes)
    centre = (size - 1) // 2
    # The output whose window is centred on a boundary starts the next tile; aligned so that
    # every tile starts on a whole stride of the stack.
    cuts = sorted({math.ceil((b - first - centre) / jump) for b in boundaries})
    cuts = [o for o in cuts if 0 < o < out]
    while True:
        plan = _try(axes, cuts, n, out, first + centre, jump)
        if isinstance(plan, AxisPlan):
            return plan
        del cuts[plan]  # merge the offending tile with a neighbour and try again


def _try(axes: list[_Axis], cuts: list[int], n: int, out: int, offset: int,
         jump: int) -> AxisPlan | int:
    """The plan for output cuts ``cuts``, or the index of a cut to drop."""
    outs = [0, *cuts, out]
    tiles = [tile_ranges(axes, p, q) for p, q in itertools.pairwise(outs)]
    # Input chunk boundaries: the tile's centre-aligned start, clamped into the input.
    bounds = [0, *(min(max(o * jump + offset, 0), n) for o in cuts), n]
    for k in range(1, len(bounds) - 1):
        if not bounds[k - 1] < bounds[k] < bounds[-1]:
            return k - 1
    before = max([0] + [bounds[k] - tiles[k][1][0] for k in range(1, len(tiles))])
    after = max([0] + [tiles[k][1][1] - bounds[k + 1] for k in range(len(tiles) - 1)])
    chunks = [b - a for a, b in itertools.pairwise(bounds)]
    smallest = min(range(len(chunks)), key=chunks.__getitem__)
    if len(chunks) > 1 and chunks[smallest] < max(before, after):
        # Dask's overlap shares halos only between direct neighbours: every chunk must be at
        # least as long as the halo. Drop the cut after the short chunk (or before the last).
        return min(smallest, len(cuts) - 1)
    starts = [0, *(b - before for b in bounds[1:-1])]
    for (_, (lo, hi)), start, (a, b) in zip(tiles, starts, itertools.pairwise(bounds)):
        assert start <= lo and hi <= b + (after if b < n else 0), "tile plan reads outside"
    return AxisPlan(tuple(chunks), tuple(q - p for p, q in itertools.pairwise(outs)),
                    (before, after), tuple(starts), tuple(ranges for ranges, _ in tiles))
