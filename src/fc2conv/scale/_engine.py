"""Running a stack of windowed stages over a Dask array, tile by tile.

1. The outer border is padded in Dask, with the first stage's padding mode (a gather of
   slices, so every mode and any width works, circular included; the pieces are thin).
2. Every output tile of the plan of :mod:`._plan` slices its haloed region out of the padded
   array (channels in one chunk, batch chunks kept); ``da.block`` assembles the tiles.
3. Every block runs all stages in NumPy with no padding: a deeper stage pads only where its
   tile touches the border of its own input, by the same gather, so the tile equals the
   matching part of the in-memory result.
"""

from __future__ import annotations

import itertools
from typing import Any

import dask.array as da
import numpy as np

from .. import _padding
from ._plan import AxisPlan, Stage, _Axis, plan_axis, reads, sources, stage_axes

__all__ = ["pad", "run_stack"]


def run_stack(x: da.Array, stages: list[Stage]) -> da.Array:
    """``x: (N, C, *S)`` through ``stages`` -> ``(N, C_out, *S_out)``, chunked along N and S."""
    ndim = x.ndim - 2
    x = x.rechunk({1: -1})
    first = stages[0]
    padded = pad(x, first.pads, first.mode, first.fill)
    stages = [first.without_padding(), *stages[1:]]
    axes = [stage_axes(stages, axis) for axis in range(ndim)]
    plans = [
        plan_axis(axes[axis], _boundaries(x.chunks[2 + axis], first.pads[axis][0]))
        for axis in range(ndim)
    ]
    channels = next((s.out_channels for s in reversed(stages) if s.out_channels), x.shape[1])
    return da.block(_tiles(padded, x.chunks[0], channels, stages, axes, plans))


def _tiles(padded: da.Array, batch_chunks: tuple[int, ...], channels: int,
           stages: list[Stage], axes: list[list[_Axis]], plans: list[AxisPlan]) -> list[Any]:
    """Nested lists (batch, channel, *spatial) of one-chunk tiles, for ``da.block``.

    Each tile slices its haloed region out of the padded input and computes from it alone.
    Slicing per tile rather than ``da.overlap`` is for memory: on a 16k x 16k float32 Zarr
    image (1 GiB) the threaded scheduler peaked at ~1.1 GiB with Dask's overlap graph and at
    ~0.8 GiB with region slices (figures in docs/scale.md).
    """
    ends = [[*(b + plan.depth[1] for b in itertools.accumulate(plan.in_chunks[:-1])),
             sum(plan.in_chunks)] for plan in plans]

    def build(batch: slice, tile: tuple[int, ...]) -> Any:
        axis = len(tile)
        if axis == len(plans):
            region = (batch, slice(None), *(slice(plan.tile_start[k], end[k])
                                             for plan, end, k in zip(plans, ends, tile)))
            piece = padded[region].rechunk(-1)
            shape = (batch.stop - batch.start, channels,
                     *(plan.out_chunks[k] for plan, k in zip(plans, tile)))
            return piece.map_blocks(
                _tile, stages=stages, axes=axes, plans=plans, tile=tile,
                chunks=tuple((n,) for n in shape), dtype=padded.dtype,
                meta=np.empty((0,) * padded.ndim, dtype=padded.dtype))
        return [build(batch, (*tile, k)) for k in range(len(plans[axis].out_chunks))]

    starts = [0, *itertools.accumulate(batch_chunks)]
    return [[build(slice(a, b), ())] for a, b in itertools.pairwise(starts)]


def _boundaries(chunks: tuple[int, ...], before: int) -> list[int]:
    """Inner chunk boundaries of the input, in the padded input's coordinates."""
    return [int(b) + before for b in np.cumsum(chunks)[:-1]]


def _tile(block: np.ndarray, *, stages: list[Stage], axes: list[list[_Axis]],
          plans: list[AxisPlan], tile: tuple[int, ...]) -> np.ndarray:
    """One output tile: every stage on the haloed block, padding only at the true border."""
    start = [plan.tile_start[k] for plan, k in zip(plans, tile)]
    current = block
    for index, stage in enumerate(stages):
        ranges = [plan.stage_ranges[k][index] for plan, k in zip(plans, tile)]
        for axis, (p, q) in enumerate(ranges):
            ax = axes[axis][index]
            current = _gather(current, 2 + axis, sources(ax, *reads(ax, p, q)), start[axis],
                              stage.fill)
        current = stage.run(current, tuple(p for p, _ in ranges))
        start = [p for p, _ in ranges]
    return current


def _gather(a: np.ndarray, axis: int, index: np.ndarray, offset: int, fill: float) -> np.ndarray:
    """``a`` holds cells ``offset, offset + 1, ...`` of an axis; return the cells ``index``
    names along it (``-1``: ``fill``). A contiguous run, the usual case, is a view."""
    real = index >= 0
    local = index - offset
    if np.any(real & ((local < 0) | (local >= a.shape[axis]))):
        raise AssertionError("fc2conv.scale: a tile reads outside its halo (plan bug)")
    if real.all() and (local.size == 1 or np.all(np.diff(local) == 1)):
        return a[_along(a.ndim, axis, slice(int(local[0]), int(local[-1]) + 1))]
    taken = np.take(a, np.where(real, local, 0), axis=axis)
    if not real.all():
        taken[_along(a.ndim, axis, ~real)] = fill
    return taken


def _along(ndim: int, axis: int, index: Any) -> tuple[Any, ...]:
    return (slice(None),) * axis + (index,) + (slice(None),) * (ndim - axis - 1)


# ---------------------------------------------------------------------------------------------
# the outer border


def pad(x: da.Array, pads: tuple[tuple[int, int], ...], mode: str, fill: float) -> da.Array:
    """Pad the spatial axes of ``x: (N, C, *S)`` like :func:`fc2conv._padding.pad`, lazily.

    The border is a gather (:func:`fc2conv._padding.source_index`) written as a few slices of
    ``x`` (runs of consecutive, reversed or repeated indices), so it stays in Dask and reads
    only the chunks at the border.
    """
    for offset, (before, after) in enumerate(pads):
        if not before and not after:
            continue
        axis = 2 + offset
        n = x.shape[axis]
        index = _padding.source_index(mode, n, before, after)
        parts = [*_pieces(x, axis, index[:before], fill), x,
                 *_pieces(x, axis, index[before + n:], fill)]
        x = da.concatenate(parts, axis=axis)
    return x


def _pieces(x: da.Array, axis: int, index: np.ndarray, fill: float) -> list[da.Array]:
    pieces = []
    for first, length, step in _runs(index):
        if first < 0:
            shape = list(x.shape)
            shape[axis] = length
            chunks = list(x.chunks)
            chunks[axis] = (length,)
            pieces.append(da.full(tuple(shape), fill, dtype=x.dtype, chunks=tuple(chunks)))
        elif step == 0:
            edge = x[_along(x.ndim, axis, slice(first, first + 1))]
            pieces.append(da.repeat(edge, length, axis=axis))
        elif step == 1:
            pieces.append(x[_along(x.ndim, axis, slice(first, first + length))])
        else:
            stop = first - length
            pieces.append(x[_along(x.ndim, axis, slice(first, stop if stop >= 0 else None, -1))])
    return pieces


def _runs(index: np.ndarray) -> list[tuple[int, int, int]]:
    """Split an index vector into ``(first, length, step)`` runs, ``step`` in -1, 0, 1;
    a run of ``-1`` (fill) has ``first = -1``."""
    runs: list[tuple[int, int, int]] = []
    i = 0
    while i < len(index):
        first = int(index[i])
        step = 0
        if first >= 0 and i + 1 < len(index) and index[i + 1] >= 0:
            step = int(index[i + 1]) - first
            step = step if step in (-1, 0, 1) else 0
        j = i + 1
        while j < len(index) and (
            (first < 0 and index[j] < 0)
            or (first >= 0 and index[j] >= 0 and index[j] - index[j - 1] == step
                and (step != 0 or index[j] == first))
        ):
            j += 1
        if first >= 0 and step != 0 and j == i + 1:
            step = 1
        runs.append((first, j - i, step))
        i = j
    return runs
