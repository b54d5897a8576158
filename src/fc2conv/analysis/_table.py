"""The seed's parameter table: what translation invariance and locality each save.

The seed starts from a fully-connected layer on an image, ``H[i,j] = U[i,j] + sum_{k,l}
W[i,j,k,l] X[k,l]`` (10^12 weights for a 1000 x 1000 image), ties the weights across
positions (translation invariance: ``V[a,b]`` over every offset, "4 x 10^6", exactly
``1999^2``), then keeps only offsets ``|a|, |b| <= Delta`` (locality: ``(2 Delta + 1)^2 =
121``). :func:`parameter_table` computes these counts for any grid size, ``Delta`` and channel
numbers, adds the rung the seed skips (locality without sharing: the locally connected layer)
and the "image as a vector" MLPs it compares against (10^9 weights, 3 x 10^9 in colour), and
puts the compute next to the storage: FLOPs per output value, which sharing leaves unchanged
and locality cuts.

Counting rules: a multiply-add is 2 FLOPs; FLOPs are per output value at the best-connected
position (an interior one when the window fits in the grid) and count only products with real
pixels, never with padding; bias additions are not counted. Every count is the size of the
array the matching op in :mod:`fc2conv.functional` takes (``dense_grid``, ``local_correlate``,
``correlate``), so the table can be checked by building those arrays.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Any

from .._errors import ArgumentError

__all__ = ["ParameterTable", "Row", "parameter_table"]


@dataclass(frozen=True)
class Row:
    """One layer of the table.

    Attributes:
        name: what the layer is.
        weights: number of weights.
        biases: number of biases.
        flops_per_output: FLOPs for one output value at the best-connected position (a
            multiply-add is 2 FLOPs; products with padding are not counted).
        note: how the row maps to the seed, or a caveat.
    """

    name: str
    weights: int
    biases: int
    flops_per_output: int
    note: str = ""

    @property
    def params(self) -> int:
        """``weights + biases``."""
        return self.weights + self.biases


@dataclass(frozen=True)
class ParameterTable:
    """Parameter and FLOP counts of the layers from dense-on-grid down to convolution.

    Attributes:
        in_size: the grid ``S``, 1 to 3 ints.
        delta: the locality radius ``Delta`` (kernel ``2 Delta + 1`` per axis).
        channels: ``(C_in, C_out)``.
        hidden: the width of the "image as a vector" MLP rows.
        rows: the layers, from dense-on-grid to the MLPs (see :func:`parameter_table`).

    ``str(table)`` is an aligned text table with thousands separators; :meth:`to_dict` gives
    plain JSON-able data.
    """

    in_size: tuple[int, ...]
    delta: int
    channels: tuple[int, int]
    hidden: int
    rows: tuple[Row, ...]

    def to_dict(self) -> dict[str, Any]:
        """Plain ints, strings, lists and dicts (``json.dumps`` takes it as is)."""
        return {
            "in_size": list(self.in_size),
            "delta": self.delta,
            "channels": list(self.channels),
            "hidden": self.hidden,
            "rows": [
                {
                    "name": r.name,
                    "weights": r.weights,
                    "biases": r.biases,
                    "params": r.params,
                    "flops_per_output": r.flops_per_output,
                    "note": r.note,
                }
                for r in self.rows
            ],
        }

    def __str__(self) -> str:
        c_in, c_out = self.channels
        grid = " x ".join(map(str, self.in_size))
        title = (f"{c_in} x {grid} input -> {c_out} x {grid} output (channels x grid), "
                 f"delta = {self.delta}")
        header = ("layer", "weights", "biases", "params", "FLOPs/output")
        body = [
            (r.name, f"{r.weights:,}", f"{r.biases:,}", f"{r.params:,}",
             f"{r.flops_per_output:,}")
            for r in self.rows
        ]
        widths = [max(len(line[i]) for line in (header, *body)) for i in range(len(header))]

        def render(cells: tuple[str, ...]) -> str:
            # Names read left to right, numbers line up on their last digit.
            parts = [cells[0].ljust(widths[0])]
            parts += [cell.rjust(width) for cell, width in zip(cells[1:], widths[1:])]
            return "  ".join(parts).rstrip()

        lines = [title, render(header), render(tuple("-" * w for w in widths))]
        lines += [render(cells) for cells in body]
        notes = [f"  {r.name}: {r.note}" for r in self.rows if r.note]
        if notes:
            lines += ["notes:", *notes]
        return "\n".join(lines)


def parameter_table(
    in_size: Any,
    delta: int,
    *,
    channels: Any = (1, 1),
    hidden: int = 1000,
) -> ParameterTable:
    """Count the parameters and FLOPs of each rung from a dense layer down to a convolution.

    For an input of ``C_in`` channels on a grid ``S`` of ``Q = prod(S)`` pixels, mapped to
    ``C_out`` channels on the same grid, with ``d = len(S)`` and ``K = 2 delta + 1``, the rows
    are (weights; biases; FLOPs per output value):

    - dense-on-grid (MLP on the image): ``(Q C_out)(Q C_in)``; ``Q C_out``; ``2 Q C_in``.
    - translation invariant (shared, full kernel): ``C_out C_in prod(2 S - 1)``; ``C_out``;
      ``2 Q C_in``.
    - locally connected (local, untied): ``Q C_out C_in K^d``; ``Q C_out``; ``2 C_in K^d``.
    - convolution (shared and local): ``C_out C_in K^d``; ``C_out``; ``2 C_in K^d``.
    - MLP to ``hidden`` units (image as a vector): ``Q C_in hidden``; ``hidden``; ``2 Q C_in``.
    - same MLP on RGB (3 colour channels), only when ``C_in == 1``: ``3 Q hidden``;
      ``hidden``; ``6 Q``.

    The full kernel of the second row covers every offset ``|a_i| < n_i``: sharing weights
    shrinks storage from ``O(Q^2)`` to ``O(Q)`` but every output still reads every pixel, so
    only locality cuts the compute. A kernel ``K`` larger than the grid is allowed (it is the
    full kernel once ``delta >= n - 1``); its FLOPs then count the ``min(K, n)`` taps per
    axis that can reach a pixel, and the rows say so in their notes.

    Args:
        in_size: the grid, an int (1-D) or a tuple of 1 to 3 positive ints.
        delta: the locality radius, ``>= 0``.
        channels: ``(C_in, C_out)``, positive ints.
        hidden: positive width of the "image as a vector" MLP rows.

    Returns:
        A :class:`ParameterTable`; ``print`` it for the aligned table.

    Raises:
        ArgumentError: a size, ``delta``, channel count or ``hidden`` that is not an int in
            range, or a grid of more than 3 dims.

    The seed's 1000 x 1000 image with ``Delta = 5``. Each row prints on one line; here the
    numbers are wrapped onto a second line to fit the page:

    >>> from fc2conv.analysis import parameter_table
    >>> table = parameter_table((1000, 1000), 5)
    >>> print(table)
    1 x 1000 x 1000 input -> 1 x 1000 x 1000 output (channels x grid), delta = 5
    layer                                                   weights     biases             params
                                                                                     FLOPs/output
    --------------------------------------------  -----------------  ---------  -----------------
                                                                                     ------------
    dense-on-grid (MLP on the image)
                                                  1,000,000,000,000  1,000,000  1,000,001,000,000
                                                                                        2,000,000
    translation invariant (shared, full kernel)
                                                          3,996,001          1          3,996,002
                                                                                        2,000,000
    locally connected (local, untied)
                                                        121,000,000  1,000,000        122,000,000
                                                                                              242
    convolution (shared and local)
                                                                121          1                122
                                                                                              242
    MLP to 1000 hidden units (image as a vector)
                                                      1,000,000,000      1,000      1,000,001,000
                                                                                        2,000,000
    same MLP on RGB (3 colour channels)
                                                      3,000,000,000      1,000      3,000,001,000
                                                                                        6,000,000
    notes:
      dense-on-grid (MLP on the image): the seed's W[i,j,k,l], U[i,j]; every output reads
        every pixel
      translation invariant (shared, full kernel): V[a,b] over all offsets: kernel 1999 x
        1999 (its "4 x 10^6"); sharing saves parameters, not FLOPs
      locally connected (local, untied): V[i,j,a,b] for |a|, |b| <= 5: a window 11 x 11 per
        position
      convolution (shared and local): V[a,b] for |a|, |b| <= 5: one kernel 11 x 11
      MLP to 1000 hidden units (image as a vector): the image flattened to 1,000,000 inputs
      same MLP on RGB (3 colour channels): 3 values per pixel: 3,000,000 inputs
    >>> f"{table.rows[0].weights / table.rows[3].weights:.1e}"  # the seed's "~10^10 reduction"
    '8.3e+09'
    """
    size = _in_size(in_size)
    delta = _count("delta", delta, minimum=0)
    c_in, c_out = _channels(channels)
    hidden = _count("hidden", hidden, minimum=1)

    d = len(size)
    q = math.prod(size)
    k = 2 * delta + 1
    full = tuple(2 * n - 1 for n in size)
    # Taps of a (2 delta + 1)-window that can land on a pixel: all of them when the window
    # fits, else at most n per axis (reached at the centre of the grid).
    taps = math.prod(min(k, n) for n in size)
    local_flops = 2 * c_in * taps
    window = " x ".join([str(k)] * d)
    kernel_full = " x ".join(map(str, full))
    oversize = [i for i, n in enumerate(size) if k > n]
    caveat = ""
    if oversize:
        caveat = (f"; K = {k} exceeds the grid on axis {', '.join(map(str, oversize))}: FLOPs "
                  "count only taps that can reach a pixel")
    # The seed's own symbols where it has them (2-D), position/offset symbols otherwise.
    if d == 2:
        dense_sym, shared_sym, untied_sym = "the seed's W[i,j,k,l], U[i,j]", "V[a,b]", "V[i,j,a,b]"
        offsets = "|a|, |b|"
    else:
        dense_sym, shared_sym, untied_sym = "W[p,q], U[p]", "V[a]", "V[p,a]"
        offsets = "|a_i|"
    rows = [
        Row(
            "dense-on-grid (MLP on the image)",
            weights=(q * c_out) * (q * c_in),
            biases=q * c_out,
            flops_per_output=2 * q * c_in,
            note=f"{dense_sym}; every output reads every pixel",
        ),
        Row(
            "translation invariant (shared, full kernel)",
            weights=c_out * c_in * math.prod(full),
            biases=c_out,
            flops_per_output=2 * q * c_in,
            note=(f"{shared_sym} over all offsets: kernel {kernel_full}"
                  + (' (its "4 x 10^6")' if size == (1000, 1000) else "")
                  + "; sharing saves parameters, not FLOPs"),
        ),
        Row(
            "locally connected (local, untied)",
            weights=q * c_out * c_in * k**d,
            biases=q * c_out,
            flops_per_output=local_flops,
            note=f"{untied_sym} for {offsets} <= {delta}: a window {window} per position{caveat}",
        ),
        Row(
            "convolution (shared and local)",
            weights=c_out * c_in * k**d,
            biases=c_out,
            flops_per_output=local_flops,
            note=f"{shared_sym} for {offsets} <= {delta}: one kernel {window}{caveat}",
        ),
        Row(
            f"MLP to {hidden} hidden units (image as a vector)",
            weights=q * c_in * hidden,
            biases=hidden,
            flops_per_output=2 * q * c_in,
            note=f"the image flattened to {q * c_in:,} inputs",
        ),
    ]
    if c_in == 1:
        rows.append(Row(
            "same MLP on RGB (3 colour channels)",
            weights=3 * q * hidden,
            biases=hidden,
            flops_per_output=6 * q,
            note=f"3 values per pixel: {3 * q:,} inputs",
        ))
    return ParameterTable(in_size=size, delta=delta, channels=(c_in, c_out), hidden=hidden,
                          rows=tuple(rows))


# ---------------------------------------------------------------------------------------------
# arguments


def _count(name: str, value: Any, *, minimum: int) -> int:
    if isinstance(value, bool):
        raise ArgumentError(f"{name} must be an integer; got {value!r}")
    try:
        value = operator.index(value)
    except TypeError:
        raise ArgumentError(f"{name} must be an integer; got {value!r}") from None
    if value < minimum:
        word = "positive" if minimum == 1 else "non-negative"
        raise ArgumentError(f"{name} must be {word}; got {value}")
    return value


def _in_size(value: Any) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)):
        raise ArgumentError(f"in_size must be an int or a tuple of 1 to 3 ints; got {value!r}")
    try:
        items = tuple(value)
    except TypeError:
        items = (value,)  # a single int: a 1-D grid
    if not 1 <= len(items) <= 3:
        raise ArgumentError(
            f"in_size must have 1, 2 or 3 entries (one per spatial dim); got {value!r} with "
            f"{len(items)}"
        )
    for n in items:
        if isinstance(n, bool) or not _is_int(n) or operator.index(n) < 1:
            raise ArgumentError(f"in_size must hold positive ints; got {value!r}")
    return tuple(operator.index(n) for n in items)


def _channels(value: Any) -> tuple[int, int]:
    try:
        items = tuple(value)
    except TypeError:
        items = ()
    if len(items) != 2 or isinstance(value, str):
        raise ArgumentError(f"channels must be a pair (C_in, C_out); got {value!r}")
    c_in = _count("channels[0] (C_in)", items[0], minimum=1)
    c_out = _count("channels[1] (C_out)", items[1], minimum=1)
    return c_in, c_out


def _is_int(value: Any) -> bool:
    try:
        operator.index(value)
    except TypeError:
        return False
    return True

