"""Translations of arrays, and how far a layer is from commuting with them.

The seed asks that "a shift in the input X should simply lead to a shift in the hidden
representation H": the layer ``f`` is *equivariant* to the translation ``S`` when
``f(S x) = S' f(x)`` (Goodfellow's ``f(g(x)) = g(f(x))``) and *invariant* when ``f(S x) =
f(x)``. Neither is a yes/no property of real code: zero padding breaks equivariance at the
border, striding breaks it for shifts that are not multiples of the stride, untied weights
break it everywhere. So this module measures it, as the relative error

    ``shift_error(f, x, s)     = ||f(S x) - S' f(x)|| / ||f(x)||``
    ``invariance_error(f, x, s) = ||f(S x) - f(x)||   / ||f(x)||``

(Frobenius norms, accumulated in float64). Exact equivariance shows up as a rounding-level
error (~1e-16 in float64), broken equivariance as an error of order one.

Two translations are offered. ``mode="circular"`` rolls the grid like ``np.roll``: a shift is
then a permutation, and a correlation with circular padding commutes with it exactly.
``mode="zeros"`` slides the content and fills the vacated cells with zeros, losing what slides
past the edge: the shift of a finite image seen through a zero-padded window, under which a
zero-padded correlation is equivariant only away from the border.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any

import array_api_compat

from .. import _validate
from .._errors import ArgumentError, ShapeError

__all__ = ["invariance_error", "shift", "shift_error"]

SHIFT_MODES = ("circular", "zeros")
# Names users bring from np.pad / SciPy, so the error can point them to ours.
_MODE_SYNONYMS = {"wrap": "circular", "roll": "circular", "constant": "zeros", "zero": "zeros"}


def shift(x: Any, shift: Any, axes: Any = None, *, mode: str = "circular") -> Any:
    """Translate ``x`` by integer offsets along some of its axes.

    ``y[..., i + s, ...] = x[..., i, ...]``: a positive offset moves the content towards
    higher indices, as in ``np.roll``.

    Args:
        x: any array (NumPy or array-API), typically ``(N, C, *S)``; any dtype.
        shift: an int, or one int per shifted axis. Offsets of any size and sign are allowed.
        axes: an int or a tuple of distinct axes (negative counts from the end). Default: the
            last ``len(shift)`` axes for a tuple ``shift``; for an int ``shift``, every spatial
            axis of ``(N, C, *S)`` (all axes after the first two), each by ``shift``.
        mode: ``"circular"`` (roll: what leaves one edge re-enters at the other) or
            ``"zeros"`` (vacated cells become zero; what moves past the edge is lost, so an
            offset of at least the axis length gives all zeros).

    Returns:
        An array of the same type, shape and dtype as ``x``.

    >>> import numpy as np
    >>> from fc2conv.analysis import shift
    >>> x = np.arange(1.0, 6.0).reshape(1, 1, 5)
    >>> shift(x, 2).tolist()
    [[[4.0, 5.0, 1.0, 2.0, 3.0]]]
    >>> shift(x, 2, mode="zeros").tolist()
    [[[0.0, 0.0, 1.0, 2.0, 3.0]]]
    >>> shift(np.arange(9).reshape(3, 3), (-1, 1), mode="zeros").tolist()
    [[0, 3, 4], [0, 6, 7], [0, 0, 0]]
    """
    xp = _validate._namespace("x", x)
    mode = _mode(mode)
    shifts, axes = _shifts_and_axes(tuple(x.shape), shift, axes)
    return _apply(xp, x, shifts, axes, mode)


def shift_error(
    f: Callable[[Any], Any],
    x: Any,
    shift: Any,
    axes: Any = None,
    *,
    mode: str = "circular",
    output_shift: Any = None,
) -> float:
    """How far ``f`` is from commuting with a translation: ``||f(S x) - S' f(x)|| / ||f(x)||``.

    ``S`` translates the input by ``shift`` along ``axes`` (see :func:`shift`); ``S'``
    translates the output by ``output_shift`` along the same axes (counted from the end, so a
    ``(N, C_in, *S)`` to ``(N, C_out, *S_out)`` layer is shifted on its grid both times), with
    the same ``mode``. Zero (up to rounding) means ``f`` is shift equivariant for this ``x``.

    Args:
        f: any callable array -> array that keeps the number of axes (a layer, or a
            composition of layers); it is called twice.
        x: the input, e.g. ``(N, C, *S)``.
        shift, axes, mode: as in :func:`shift`.
        output_shift: the offsets applied to ``f(x)``, an int or one per shifted axis.
            Default: ``shift``, which requires ``f`` to keep the size of every shifted axis. A
            layer with stride ``s`` maps a shift by ``t`` (a multiple of ``s``) to a shift by
            ``t // s`` of its output: pass ``output_shift=t // s``.

    Returns:
        The relative error as a Python float; the absolute error ``||f(S x) - S' f(x)||``
        when ``f(x)`` is all zeros.

    Raises:
        ArgumentError: bad shift/axes/mode, ``output_shift`` of the wrong length, ``f``
            changing the number of axes, or ``f`` resizing a shifted axis while
            ``output_shift`` is left to default.
        ShapeError: ``f(S x)`` and ``f(x)`` differ in shape.

    >>> import numpy as np, fc2conv
    >>> from fc2conv.analysis import shift_error
    >>> x = np.random.default_rng(0).normal(size=(1, 1, 16))
    >>> w = np.array([[[1.0, -2.0, 1.0]]])
    >>> def conv(a, mode):
    ...     return fc2conv.correlate(a, w, padding="same", padding_mode=mode)
    >>> shift_error(lambda a: conv(a, "circular"), x, 3) < 1e-12
    True
    >>> shift_error(lambda a: conv(a, "zeros"), x, 3) > 0.01  # the wrap-around at the border
    True
    >>> strided = lambda a: fc2conv.correlate(a, w, stride=2, padding="same",
    ...                                       padding_mode="circular")
    >>> shift_error(strided, x, 2, output_shift=1) < 1e-12
    True
    """
    shifts, axes, mode, y, y_of_shifted = _outputs(f, x, shift, axes, mode)
    y_ndim, x_ndim = len(y.shape), len(x.shape)
    if y_ndim != x_ndim:
        raise ArgumentError(
            f"f must keep the number of axes to be compared with a shift of its input; x has "
            f"shape {tuple(x.shape)} but f(x) has shape {tuple(y.shape)}. For a function that "
            "pools the grid away, measure invariance_error instead"
        )
    if output_shift is None:
        for s, a in zip(shifts, axes):
            if y.shape[a] != x.shape[a]:
                raise ArgumentError(
                    f"f changes the size of shifted axis {a} from {x.shape[a]} to "
                    f"{y.shape[a]}, so the output shift cannot default to the input shift "
                    f"{s}; pass output_shift (for a layer with stride t: shift // t)"
                )
        out_shifts = shifts
    else:
        out_shifts = _offsets("output_shift", output_shift, len(axes))
    y_shifted = _apply(array_api_compat.array_namespace(y), y, out_shifts, axes, mode)
    return _relative(y_of_shifted, y_shifted)


def invariance_error(
    f: Callable[[Any], Any],
    x: Any,
    shift: Any,
    axes: Any = None,
    *,
    mode: str = "circular",
) -> float:
    """How far ``f`` is from ignoring a translation: ``||f(S x) - f(x)|| / ||f(x)||``.

    A convolution is equivariant, not invariant; following it by a global pooling (which
    forgets *where*) makes the composition invariant to circular shifts.

    Args:
        f: any callable array -> array; ``f(x)`` may have any shape (e.g. ``(N, C)`` after a
            global pooling).
        x, shift, axes, mode: as in :func:`shift`.

    Returns:
        The relative error as a Python float (absolute when ``f(x)`` is all zeros).

    >>> import numpy as np, fc2conv
    >>> from fc2conv.analysis import invariance_error
    >>> x = np.random.default_rng(0).normal(size=(2, 3, 8, 8))
    >>> w = np.random.default_rng(1).normal(size=(4, 3, 3, 3))
    >>> conv = lambda a: fc2conv.correlate(a, w, padding="same", padding_mode="circular")
    >>> invariance_error(lambda a: conv(a).mean(axis=(2, 3)), x, (2, -3)) < 1e-12
    True
    >>> invariance_error(conv, x, (2, -3)) > 0.5
    True
    """
    _, _, _, y, y_of_shifted = _outputs(f, x, shift, axes, mode)
    return _relative(y_of_shifted, y)


def _outputs(f: Callable[[Any], Any], x: Any, shift: Any, axes: Any,
             mode: Any) -> tuple[tuple[int, ...], tuple[int, ...], str, Any, Any]:
    """``f(x)`` and ``f(S x)`` (checked to have one shape), with the resolved shift."""
    xp = _validate._namespace("x", x)
    mode = _mode(mode)
    shifts, axes = _shifts_and_axes(tuple(x.shape), shift, axes)
    y = f(x)
    y_of_shifted = f(_apply(xp, x, shifts, axes, mode))
    _check_same_shape(y, y_of_shifted)
    return shifts, axes, mode, y, y_of_shifted


# ---------------------------------------------------------------------------------------------
# arguments


def _mode(mode: Any) -> str:
    return _validate._choice("mode", mode, SHIFT_MODES, _MODE_SYNONYMS)


def _offsets(name: str, value: Any, count: int) -> tuple[int, ...]:
    """An int (repeated ``count`` times) or a sequence of exactly ``count`` ints."""
    if isinstance(value, bool):
        raise ArgumentError(f"{name} must be an integer or a tuple of integers; got {value!r}")
    try:
        return (operator.index(value),) * count
    except TypeError:
        pass
    values = _int_tuple(name, value)
    if len(values) != count:
        raise ArgumentError(
            f"{name} must be an int or a tuple of {count} int{'s' * (count != 1)} (one per "
            f"shifted axis); got "
            f"{value!r} with {len(values)} entries"
        )
    return values


def _int_tuple(name: str, value: Any) -> tuple[int, ...]:
    if isinstance(value, str):
        raise ArgumentError(f"{name} must be an integer or a tuple of integers; got {value!r}")
    try:
        items = tuple(value)
    except TypeError:
        raise ArgumentError(
            f"{name} must be an integer or a tuple of integers; got {value!r}"
        ) from None
    return tuple(_validate._int(name, v) for v in items)


def _shifts_and_axes(
    shape: tuple[int, ...], shift: Any, axes: Any
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Normalise ``shift`` and ``axes`` to equal-length tuples, axes non-negative."""
    ndim = len(shape)
    scalar_shift = not isinstance(shift, bool) and _is_index(shift)
    if axes is None:
        if scalar_shift:
            if ndim < 3:
                raise ShapeError(
                    f"an int shift moves the spatial axes of x: (N, C, *S), so x needs at "
                    f"least 3 axes; got shape {shape}. Pass axes= to choose the axes"
                )
            axes_t = tuple(range(2, ndim))
        else:
            shifts = _int_tuple("shift", shift)
            if not 1 <= len(shifts) <= ndim:
                raise ArgumentError(
                    f"shift must have 1 to {ndim} entries (one per trailing axis of x, shape "
                    f"{shape}); got {shift!r}"
                )
            return shifts, tuple(range(ndim - len(shifts), ndim))
    else:
        axes_t = _int_tuple("axes", (axes,) if _is_index(axes) else axes)
        if not axes_t:
            raise ArgumentError(f"axes must name at least one axis; got {axes!r}")
        bad = [a for a in axes_t if not -ndim <= a < ndim]
        if bad:
            raise ArgumentError(
                f"axes must lie in [-{ndim}, {ndim}) for x of shape {shape}; got {axes!r}"
            )
        axes_t = tuple(a % ndim for a in axes_t)
        if len(set(axes_t)) != len(axes_t):
            raise ArgumentError(f"axes must be distinct; got {axes!r} (x has {ndim} axes)")
    return _offsets("shift", shift, len(axes_t)), axes_t


def _is_index(value: Any) -> bool:
    try:
        operator.index(value)
    except TypeError:
        return False
    return True


def _check_same_shape(y: Any, y_of_shifted: Any) -> None:
    if tuple(y.shape) != tuple(y_of_shifted.shape):
        raise ShapeError(
            f"f must give outputs of one shape for x and its shift; got {tuple(y.shape)} for x "
            f"and {tuple(y_of_shifted.shape)} for the shifted x"
        )


# ---------------------------------------------------------------------------------------------
# the translation and the norm


def _apply(xp: Any, x: Any, shifts: tuple[int, ...], axes: tuple[int, ...], mode: str) -> Any:
    if mode == "circular":
        return xp.roll(x, shift=shifts, axis=axes)
    for s, a in zip(shifts, axes):
        x = _slide(xp, x, s, a)
    return x


def _slide(xp: Any, x: Any, s: int, axis: int) -> Any:
    """Shift with zero fill along one axis, built by concatenation (no in-place writes, so it
    also works for immutable arrays)."""
    n = x.shape[axis]
    keep = max(n - abs(s), 0)
    if s == 0 or n == 0:
        return x
    fill_shape = tuple(n - keep if i == axis else m for i, m in enumerate(x.shape))
    zeros = xp.zeros(fill_shape, dtype=x.dtype, device=array_api_compat.device(x))
    if keep == 0:
        return zeros
    index = [slice(None)] * len(x.shape)
    if s > 0:
        index[axis] = slice(0, keep)
        return xp.concat((zeros, x[tuple(index)]), axis=axis)
    index[axis] = slice(n - keep, n)
    return xp.concat((x[tuple(index)], zeros), axis=axis)


def _relative(a: Any, b: Any) -> float:
    """``||a - b|| / ||b||`` in float64, or ``||a - b||`` when ``b`` is all zeros."""
    xp = array_api_compat.array_namespace(a, b)
    a = xp.astype(a, xp.float64)
    b = xp.astype(b, xp.float64)
    num, den = _norm(xp, a - b), _norm(xp, b)
    return num / den if den > 0 else num


def _norm(xp: Any, a: Any) -> float:
    """Frobenius norm; scaled by the largest entry first so squares cannot overflow."""
    if math.prod(a.shape) == 0:
        return 0.0
    top = float(xp.max(xp.abs(a)))
    if top == 0.0 or not math.isfinite(top):
        return top
    return top * float(xp.sqrt(xp.sum((a / top) ** 2)))
