"""Reference implementations: the float64 test oracle.

Every function here is written as directly as its defining formula, with Python loops over
output (or input) positions, and computes in float64 whatever float dtype it receives. Nothing
here is tuned for speed, and nothing here imports the fast implementation: the test-suite
checks the fast code paths (``fc2conv.correlate`` and friends, every ``method``) against these
loops, and checks these loops in turn against NumPy, SciPy and PyTorch.

Conventions (see ``DESIGN.md``): channels first, ``x: (N, C_in, *S)`` with 1, 2 or 3 spatial
dims ``S``; correlation weights ``w: (C_out, C_in // groups, *K)``; transposed-convolution
weights ``w: (C_in, C_out // groups, *K)``; bias ``(C_out,)`` or ``None``. The untied layers
(:func:`dense_grid`, :func:`local_correlate`) hold one weight block per output position,
``w: (*S_out, C_out, C_in, *S_in)`` or ``w: (*S_out, C_out, C_in, *K)``, and take a bias
``(C_out,)`` shared by every position, ``(*S_out, C_out)`` (one per position) or ``None``.

Padding modes are defined by an index-reading rule applied one spatial axis at a time: a padded
index ``j`` (which may lie outside ``[0, n)``) reads input element ``source(j)`` or, for
``"zeros"``, the value 0:

=============  =======================  ==========================  ===============
mode           pattern at the left edge  rule for ``j`` outside        NumPy / SciPy
=============  =======================  ==========================  ===============
``zeros``      ``0 0 0 | a b c d``      reads 0                     constant
``reflect``    ``d c b | a b c d``      reflect, edge not repeated  reflect / mirror
``symmetric``  ``c b a | a b c d``      reflect, edge repeated      symmetric / reflect
``replicate``  ``a a a | a b c d``      clamp to ``[0, n)``         edge / nearest
``circular``   ``b c d | a b c d``      ``j mod n``                 wrap / wrap
=============  =======================  ==========================  ===============

Widths larger than the input follow ``numpy.pad`` (repeated reflection, repeated wrapping).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from fc2conv._errors import ArgumentError, ShapeError

__all__ = [
    "PADDING_MODES",
    "avg_pool",
    "conv_transpose",
    "convolve",
    "correlate",
    "dense_grid",
    "local_correlate",
    "max_pool",
    "pad",
]

PADDING_MODES = ("zeros", "reflect", "symmetric", "replicate", "circular")


# ---------------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------------


def _as_float64(name: str, a: object) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype.kind not in "biuf":
        raise ShapeError(f"{name}: expected a real numeric array, got dtype {arr.dtype}")
    return arr.astype(np.float64)


def _check_input(x: np.ndarray) -> int:
    if x.ndim not in (3, 4, 5):
        raise ShapeError(
            f"x: expected shape (N, C, *S) with 1 to 3 spatial dims, got shape {x.shape}"
        )
    return x.ndim - 2


def _per_dim(name: str, value: int | Sequence[int], d: int, minimum: int) -> tuple[int, ...]:
    """An int or a length-d sequence of ints, each at least ``minimum``."""
    if isinstance(value, (int, np.integer)):
        values = (int(value),) * d
    else:
        values = tuple(int(v) for v in value)
        if len(values) != d:
            raise ArgumentError(f"{name}: expected an int or {d} ints, got {value!r}")
    if any(v < minimum for v in values):
        raise ArgumentError(f"{name}: expected values >= {minimum}, got {value!r}")
    return values


def _pairs(value: object, d: int) -> tuple[tuple[int, int], ...]:
    """Numeric padding (int, per-dim tuple, or (before, after) pairs) as d pairs."""
    if isinstance(value, (int, np.integer)):
        pairs = ((int(value), int(value)),) * d
    else:
        items: tuple[Any, ...] = tuple(value)  # type: ignore[arg-type]
        if len(items) != d:
            raise ArgumentError(
                f"padding: expected an int, {d} ints or {d} (before, after) pairs, got {value!r}"
            )
        out = []
        for item in items:
            if isinstance(item, (int, np.integer)):
                out.append((int(item), int(item)))
            else:
                before, after = item
                out.append((int(before), int(after)))
        pairs = tuple(out)
    if any(p < 0 for pair in pairs for p in pair):
        raise ArgumentError(f"padding: expected non-negative values, got {value!r}")
    return pairs


def _conv_padding(
    padding: object,
    sizes: tuple[int, ...],
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    dilation: tuple[int, ...],
) -> tuple[tuple[int, int], ...]:
    """Resolve every padding form of ``correlate`` to (before, after) pairs."""
    d = len(sizes)
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * d
        if padding == "full":
            return tuple((dl * (k - 1), dl * (k - 1)) for k, dl in zip(kernel, dilation))
        if padding == "same":
            pairs = []
            for n, k, s, dl in zip(sizes, kernel, stride, dilation):
                out = -(-n // s)  # ceil(n / s)
                total = max((out - 1) * s + dl * (k - 1) + 1 - n, 0)
                pairs.append((total // 2, total - total // 2))
            return tuple(pairs)
        raise ArgumentError(
            f"padding: expected 'valid', 'same', 'full' or numbers, got {padding!r}"
        )
    return _pairs(padding, d)


def _source_index(j: int, n: int, mode: str) -> int | None:
    """The input index that padded index ``j`` reads on an axis of length ``n``.

    ``None`` means "reads zero" (only for mode ``"zeros"``).
    """
    if 0 <= j < n:
        return j
    if mode == "zeros":
        return None
    if mode == "replicate":
        return min(max(j, 0), n - 1)
    if mode == "circular":
        return j % n
    if mode == "symmetric":  # period 2n: a b c d | d c b a | a b c d ...
        r = j % (2 * n)
        return r if r < n else 2 * n - 1 - r
    if mode == "reflect":  # period 2(n-1): a b c d | c b | a b c d ...
        if n == 1:
            return 0
        period = 2 * (n - 1)
        r = j % period
        return r if r < n else period - r
    raise ArgumentError(f"padding_mode: expected one of {PADDING_MODES}, got {mode!r}")


def pad(x: object, pairs: Sequence[tuple[int, int]], mode: str = "zeros") -> np.ndarray:
    """Pad the trailing ``len(pairs)`` axes of ``x`` by the index-reading rule of ``mode``.

    ``x: (*B, *S)`` with ``len(S) == len(pairs)``; returns ``(*B, *(S + before + after))`` in
    float64. ``pairs[i] = (before, after)`` for spatial axis ``i``.

    >>> pad([1, 2, 3, 4], [(3, 3)], "reflect").tolist()
    [4.0, 3.0, 2.0, 1.0, 2.0, 3.0, 4.0, 3.0, 2.0, 1.0]
    >>> pad([1, 2, 3, 4], [(3, 3)], "symmetric").tolist()
    [3.0, 2.0, 1.0, 1.0, 2.0, 3.0, 4.0, 4.0, 3.0, 2.0]
    >>> pad([1, 2, 3, 4], [(2, 1)], "circular").tolist()
    [3.0, 4.0, 1.0, 2.0, 3.0, 4.0, 1.0]
    """
    x = _as_float64("x", x)
    pairs = tuple((int(b), int(a)) for b, a in pairs)
    d = len(pairs)
    if mode not in PADDING_MODES:
        raise ArgumentError(f"padding_mode: expected one of {PADDING_MODES}, got {mode!r}")
    if d > x.ndim:
        raise ShapeError(f"x: expected at least {d} axes to pad, got shape {x.shape}")
    sizes = x.shape[x.ndim - d :]
    if mode != "zeros" and any(n == 0 for n in sizes):
        raise ShapeError(f"x: cannot pad an empty axis with mode {mode!r}, shape {x.shape}")
    batch = x.shape[: x.ndim - d]
    padded = tuple(n + b + a for n, (b, a) in zip(sizes, pairs))
    out = np.zeros(batch + padded, dtype=np.float64)
    for jpad in np.ndindex(*padded):
        src = []
        for j, n, (b, _) in zip(jpad, sizes, pairs):
            s = _source_index(j - b, n, mode)
            if s is None:
                break
            src.append(s)
        else:
            dst_index: tuple[Any, ...] = (Ellipsis, *jpad)
            src_index: tuple[Any, ...] = (Ellipsis, *src)
            out[dst_index] = x[src_index]
    return out


def _at(position: Sequence[int]) -> tuple[Any, ...]:
    """Index of one spatial position for every sample and channel: ``[:, :, *position]``."""
    return (slice(None), slice(None), *position)


def _out_size(n_padded: int, k: int, s: int, dl: int) -> int:
    return (n_padded - dl * (k - 1) - 1) // s + 1


# ---------------------------------------------------------------------------------------------
# convolution
# ---------------------------------------------------------------------------------------------


def _sliding(x, kernel, stride, padding, dilation, padding_mode):
    """Per-dim stride/dilation, padding pairs, the padded input and the output size."""
    d = x.ndim - 2
    stride = _per_dim("stride", stride, d, 1)
    dilation = _per_dim("dilation", dilation, d, 1)
    if padding_mode not in PADDING_MODES:
        raise ArgumentError(
            f"padding_mode: expected one of {PADDING_MODES}, got {padding_mode!r}"
        )
    pairs = _conv_padding(padding, x.shape[2:], kernel, stride, dilation)
    xpad = pad(x, pairs, padding_mode)
    out_shape = tuple(
        _out_size(n, k, s, dl) for n, k, s, dl in zip(xpad.shape[2:], kernel, stride, dilation)
    )
    if any(m < 1 for m in out_shape):
        raise ShapeError(
            f"x: padded spatial size {xpad.shape[2:]} is smaller than the dilated kernel "
            f"{tuple(dl * (k - 1) + 1 for k, dl in zip(kernel, dilation))}"
        )
    return stride, dilation, pairs, xpad, out_shape


def _receptive_field(xpad, i, stride, dilation, kernel):
    """What output position ``i`` reads: ``xpad[:, :, i*stride + a*dilation]`` for all ``a``."""
    return xpad[
        (
            slice(None),
            slice(None),
            *(
                slice(ii * s, ii * s + dl * (k - 1) + 1, dl)
                for ii, s, dl, k in zip(i, stride, dilation, kernel)
            ),
        )
    ]


def correlate(
    x: object,
    w: object,
    bias: object = None,
    *,
    stride: int | Sequence[int] = 1,
    padding: object = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
) -> np.ndarray:
    """Cross-correlation (deep learning's "convolution"), straight from the formula.

    ``x: (N, C_in, *S)``, ``w: (C_out, C_in // groups, *K)``, ``bias: (C_out,)`` or ``None``;
    returns ``y: (N, C_out, *S_out)`` in float64 with, for output channel ``o`` in group ``g``,

        y[n, o, i] = bias[o] + sum_{c, a} w[o, c, a] * xpad[n, g*C_in/groups + c,
                                                           i*stride + a*dilation]

    where ``xpad`` is ``x`` padded per ``padding`` and ``padding_mode`` and
    ``S_out = (S_padded - dilation*(K-1) - 1) // stride + 1``.

    The d2l ``corr2d`` example:

    >>> X = np.arange(9.0).reshape(1, 1, 3, 3)
    >>> K = np.array([[0.0, 1.0], [2.0, 3.0]]).reshape(1, 1, 2, 2)
    >>> correlate(X, K)[0, 0].tolist()
    [[19.0, 25.0], [37.0, 43.0]]
    >>> correlate(np.array([[[1.0, 2.0, 3.0]]]), np.array([[[1.0, 1.0, 1.0]]]),
    ...           padding="same", padding_mode="circular")[0, 0].tolist()
    [6.0, 6.0, 6.0]
    """
    x = _as_float64("x", x)
    w = _as_float64("w", w)
    d = _check_input(x)
    if w.ndim != x.ndim:
        raise ShapeError(f"w: expected shape (C_out, C_in // groups, *K) with {d} kernel dims, "
                         f"got shape {w.shape}")
    groups = int(groups)
    n_batch, c_in = x.shape[:2]
    c_out, cg = w.shape[:2]
    if groups < 1 or c_in % groups or c_out % groups or cg * groups != c_in:
        raise ShapeError(
            f"groups={groups} incompatible with x channels {c_in} and w shape {w.shape}"
        )
    og = c_out // groups
    kernel = w.shape[2:]
    stride, dilation, _, xpad, out_shape = _sliding(
        x, kernel, stride, padding, dilation, padding_mode
    )
    if bias is None:
        b = np.zeros(c_out)
    else:
        b = _as_float64("bias", bias)
        if b.shape != (c_out,):
            raise ShapeError(f"bias: expected shape ({c_out},), got {b.shape}")

    y = np.zeros((n_batch, c_out, *out_shape), dtype=np.float64)
    for i in np.ndindex(*out_shape):
        window = _receptive_field(xpad, i, stride, dilation, kernel)
        for g in range(groups):
            xg = window[:, g * cg : (g + 1) * cg]  # (N, Cg, *K)
            wg = w[g * og : (g + 1) * og]  # (Og, Cg, *K)
            prod = xg[:, None] * wg[None]  # (N, Og, Cg, *K)
            y[(slice(None), slice(g * og, (g + 1) * og), *i)] = prod.reshape(
                n_batch, og, -1
            ).sum(axis=-1)
    y += b.reshape((1, c_out) + (1,) * d)
    return y


def convolve(
    x: object,
    w: object,
    bias: object = None,
    *,
    stride: int | Sequence[int] = 1,
    padding: object = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
) -> np.ndarray:
    """True convolution: :func:`correlate` with the kernel flipped on every spatial axis.

    ``x: (N, C_in, *S)``, ``w: (C_out, C_in // groups, *K)``, ``bias: (C_out,)`` or ``None``;
    returns ``(N, C_out, *S_out)`` in float64, ``S_out`` as for :func:`correlate`.

    >>> convolve(np.array([[[1.0, 2.0, 3.0]]]), np.array([[[1.0, 10.0]]]),
    ...          padding="full")[0, 0].tolist()
    [1.0, 12.0, 23.0, 30.0]
    """
    w = _as_float64("w", w)
    if w.ndim < 3:
        raise ShapeError(f"w: expected shape (C_out, C_in // groups, *K), got {w.shape}")
    flipped = w[(slice(None), slice(None)) + (slice(None, None, -1),) * (w.ndim - 2)]
    return correlate(
        x,
        flipped,
        bias,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        padding_mode=padding_mode,
    )


def conv_transpose(
    x: object,
    w: object,
    bias: object = None,
    *,
    stride: int | Sequence[int] = 1,
    padding: object = 0,
    output_padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
) -> np.ndarray:
    """Transposed convolution (PyTorch semantics), written as the scatter of its definition.

    ``x: (N, C_in, *M)``, ``w: (C_in, C_out // groups, *K)``, ``bias: (C_out,)`` or ``None``;
    returns ``(N, C_out, *S)`` with, per spatial dim,
    ``S = (M - 1)*stride - pad_before - pad_after + dilation*(K - 1) + output_padding + 1``.
    Every input element scatters its kernel-weighted copy:

        y[n, g*C_out/groups + o, i*stride + a*dilation - pad_before]
            += x[n, g*C_in/groups + c, i] * w[g*C_in/groups + c, o, a]

    ``padding`` is an int, a tuple per spatial dim, or ``(before, after)`` pairs. Positions that
    land outside ``[0, S)`` are dropped; ``output_padding`` extends the end of the output (it
    is not range-checked here, unlike PyTorch, which wants it below ``max(stride, dilation)``).

    >>> conv_transpose(np.array([[[1.0, 2.0]]]), np.array([[[1.0, 10.0, 100.0]]]),
    ...                stride=2)[0, 0].tolist()
    [1.0, 10.0, 102.0, 20.0, 200.0]
    """
    x = _as_float64("x", x)
    w = _as_float64("w", w)
    d = _check_input(x)
    if w.ndim != x.ndim:
        raise ShapeError(f"w: expected shape (C_in, C_out // groups, *K) with {d} kernel dims, "
                         f"got shape {w.shape}")
    groups = int(groups)
    n_batch, c_in = x.shape[:2]
    if groups < 1 or c_in % groups or w.shape[0] != c_in:
        raise ShapeError(
            f"groups={groups} incompatible with x channels {c_in} and w shape {w.shape}"
        )
    cg = c_in // groups
    og = w.shape[1]
    c_out = og * groups
    kernel = w.shape[2:]
    stride = _per_dim("stride", stride, d, 1)
    dilation = _per_dim("dilation", dilation, d, 1)
    output_padding = _per_dim("output_padding", output_padding, d, 0)
    pairs = _pairs(padding, d)
    in_shape = x.shape[2:]
    out_shape = tuple(
        (m - 1) * s - pb - pa + dl * (k - 1) + op + 1
        for m, s, (pb, pa), dl, k, op in zip(
            in_shape, stride, pairs, dilation, kernel, output_padding
        )
    )
    if any(n < 1 for n in out_shape):
        raise ShapeError(f"conv_transpose: output size {out_shape} would be empty")
    if bias is None:
        b = np.zeros(c_out)
    else:
        b = _as_float64("bias", bias)
        if b.shape != (c_out,):
            raise ShapeError(f"bias: expected shape ({c_out},), got {b.shape}")

    y = np.zeros((n_batch, c_out, *out_shape), dtype=np.float64)
    for i in np.ndindex(*in_shape):
        for a in np.ndindex(*kernel):
            target = tuple(
                ii * s + aa * dl - pb
                for ii, aa, s, dl, (pb, _) in zip(i, a, stride, dilation, pairs)
            )
            if not all(0 <= t < n for t, n in zip(target, out_shape)):
                continue
            for g in range(groups):
                xg = x[(slice(None), slice(g * cg, (g + 1) * cg), *i)]  # (N, Cg)
                wg = w[(slice(g * cg, (g + 1) * cg), slice(None), *a)]  # (Cg, Og)
                y[(slice(None), slice(g * og, (g + 1) * og), *target)] += xg @ wg
    y += b.reshape((1, c_out) + (1,) * d)
    return y


# ---------------------------------------------------------------------------------------------
# untied layers: dense on a grid, locally connected
# ---------------------------------------------------------------------------------------------


def _grid_bias(bias: object, out_shape: tuple[int, ...], c_out: int) -> np.ndarray:
    """``bias`` as a ``(*S_out, C_out)`` array: ``None`` is zero, ``(C_out,)`` is shared."""
    full = (*out_shape, c_out)
    if bias is None:
        return np.zeros(full)
    b = _as_float64("bias", bias)
    if b.shape == (c_out,):
        return np.broadcast_to(b, full)
    if b.shape != full:
        raise ShapeError(
            f"bias: expected shape (C_out,) = {(c_out,)} or (*S_out, C_out) = {full}, "
            f"got {b.shape}"
        )
    return b


def dense_grid(x: object, w: object, bias: object = None) -> np.ndarray:
    """Dense layer on a grid: a fully-connected layer whose inputs and outputs live on grids.

    ``x: (N, C_in, *S_in)`` with 1, 2 or 3 spatial dims, ``w: (*S_out, C_out, C_in, *S_in)``
    (as many output as input spatial dims; ``S_out`` may differ from ``S_in``), ``bias``
    ``(*S_out, C_out)``, ``(C_out,)`` or ``None``; returns ``(N, C_out, *S_out)`` in float64
    with every output reading every input:

        y[n, o, p] = bias[p, o] + sum_{c, q} w[p, o, c, q] * x[n, c, q]

    (``bias[o]`` for a shared bias). It is the matrix product of the flattened input with a
    ``(C_in * prod(S_in), C_out * prod(S_out))`` matrix; a correlation is the special case
    whose ``w[p, o, c, q]`` depends only on ``q - p`` and vanishes outside the kernel.

    >>> x = np.array([[[1.0, 2.0, 3.0]]])                   # N=1, C_in=1, S_in=(3,)
    >>> w = np.array([[[[1.0, 1.0, 1.0]]], [[[0.0, 0.0, 1.0]]]])  # S_out=(2,), C_out=1
    >>> dense_grid(x, w)[0, 0].tolist()
    [6.0, 3.0]
    >>> dense_grid(x, w, np.array([10.0]))[0, 0].tolist()   # shared bias
    [16.0, 13.0]
    >>> dense_grid(x, w, np.array([[10.0], [20.0]]))[0, 0].tolist()  # one per position
    [16.0, 23.0]
    >>> dense_grid(x, np.eye(3).reshape(3, 1, 1, 3))[0, 0].tolist()  # identity
    [1.0, 2.0, 3.0]
    """
    x = _as_float64("x", x)
    w = _as_float64("w", w)
    d = _check_input(x)
    if w.ndim != 2 * d + 2:
        raise ShapeError(
            f"w: expected shape (*S_out, C_out, C_in, *S_in) with {d} output and {d} input "
            f"spatial dims ({2 * d + 2} dims) for x of shape {x.shape}, got shape {w.shape}"
        )
    n_batch, c_in = x.shape[:2]
    in_shape = x.shape[2:]
    out_shape = w.shape[:d]
    c_out = w.shape[d]
    if w.shape[d + 1 :] != (c_in, *in_shape):
        raise ShapeError(
            f"w: expected shape (*S_out, C_out, C_in, *S_in) ending in {(c_in, *in_shape)} "
            f"to match x of shape {x.shape}, got shape {w.shape}"
        )
    b = _grid_bias(bias, out_shape, c_out)

    y = np.zeros((n_batch, c_out, *out_shape), dtype=np.float64)
    for p in np.ndindex(*out_shape):
        # output position p reads the whole input x[:, :, *] through its own weights w[p]
        prod = x[:, None] * w[p][None]  # (N, C_out, C_in, *S_in)
        y[_at(p)] = prod.reshape(n_batch, c_out, -1).sum(axis=-1) + b[p]
    return y


def local_correlate(
    x: object,
    w: object,
    bias: object = None,
    *,
    stride: int | Sequence[int] = 1,
    padding: object = 0,
    dilation: int | Sequence[int] = 1,
    padding_mode: str = "zeros",
) -> np.ndarray:
    """Locally connected layer: a correlation with untied weights, one kernel per position.

    ``x: (N, C_in, *S)`` with 1, 2 or 3 spatial dims, ``w: (*S_out, C_out, C_in, *K)``,
    ``bias`` ``(*S_out, C_out)``, ``(C_out,)`` or ``None``; returns ``(N, C_out, *S_out)`` in
    float64 with

        y[n, o, p] = bias[p, o] + sum_{c, a} w[p, o, c, a] * xpad[n, c, p*stride + a*dilation]

    (``bias[o]`` for a shared bias). ``stride``, ``padding`` (every form), ``dilation`` and
    ``padding_mode`` mean what they mean for :func:`correlate`, and ``S_out`` is the same,
    ``(S_padded - dilation*(K-1) - 1) // stride + 1``; ``w.shape[:d]`` must equal it. With the
    same kernel at every position this is :func:`correlate` (``groups=1``).

    >>> x = np.array([[[1.0, 2.0, 3.0, 4.0]]])               # N=1, C_in=1, S=(4,)
    >>> w = np.array([[[[1.0, 0.0]]], [[[0.0, 1.0]]], [[[1.0, 1.0]]]])  # S_out=(3,), K=(2,)
    >>> local_correlate(x, w)[0, 0].tolist()
    [1.0, 3.0, 7.0]
    >>> local_correlate(x, w, np.array([[0.0], [10.0], [20.0]]))[0, 0].tolist()
    [1.0, 13.0, 27.0]
    >>> k = np.array([[[1.0, -1.0]]])                        # one kernel for every position
    >>> local_correlate(x, np.broadcast_to(k, (5, 1, 1, 2)), padding=1)[0, 0].tolist()
    [-1.0, -1.0, -1.0, -1.0, 4.0]
    >>> correlate(x, k, padding=1)[0, 0].tolist()
    [-1.0, -1.0, -1.0, -1.0, 4.0]
    """
    x = _as_float64("x", x)
    w = _as_float64("w", w)
    d = _check_input(x)
    if w.ndim != 2 * d + 2:
        raise ShapeError(
            f"w: expected shape (*S_out, C_out, C_in, *K) with {d} output and {d} kernel "
            f"dims ({2 * d + 2} dims) for x of shape {x.shape}, got shape {w.shape}"
        )
    n_batch, c_in = x.shape[:2]
    c_out = w.shape[d]
    kernel = w.shape[d + 2 :]
    if w.shape[d + 1] != c_in:
        raise ShapeError(
            f"w: expected shape (*S_out, C_out, C_in, *K) with C_in = {c_in} to match x of "
            f"shape {x.shape}, got shape {w.shape}"
        )
    if any(k < 1 for k in kernel):
        raise ShapeError(f"w: expected kernel dims K >= 1, got shape {w.shape}")
    stride, dilation, pairs, xpad, out_shape = _sliding(
        x, kernel, stride, padding, dilation, padding_mode
    )
    if w.shape[:d] != out_shape:
        raise ShapeError(
            f"w: expected shape (*S_out, C_out, C_in, *K) with S_out = {out_shape} (from x "
            f"spatial size {x.shape[2:]}, padding {pairs}, stride {stride}, dilation "
            f"{dilation} and K = {kernel}), got shape {w.shape}"
        )
    b = _grid_bias(bias, out_shape, c_out)

    y = np.zeros((n_batch, c_out, *out_shape), dtype=np.float64)
    for p in np.ndindex(*out_shape):
        window = _receptive_field(xpad, p, stride, dilation, kernel)  # (N, C_in, *K)
        prod = window[:, None] * w[p][None]  # (N, C_out, C_in, *K), position p's own kernel
        y[_at(p)] = prod.reshape(n_batch, c_out, -1).sum(axis=-1) + b[p]
    return y


# ---------------------------------------------------------------------------------------------
# pooling
# ---------------------------------------------------------------------------------------------


def _pool_out_size(n: int, k: int, s: int, p: int, dl: int, ceil_mode: bool) -> int:
    span = n + 2 * p - dl * (k - 1) - 1
    if span < 0:
        raise ShapeError(
            f"x: spatial size {n} with padding {p} is smaller than the pooling window "
            f"{dl * (k - 1) + 1}"
        )
    if not ceil_mode:
        return span // s + 1
    out = -(-span // s) + 1
    if (out - 1) * s >= n + p:  # the last window would start in the right padding or beyond
        out -= 1
    return out


def _pool_args(
    x: np.ndarray, kernel_size: Any, stride: Any, padding: Any, dilation: Any
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    d = _check_input(x)
    kernel = _per_dim("kernel_size", kernel_size, d, 1)
    stride = kernel if stride is None else _per_dim("stride", stride, d, 1)
    padding = _per_dim("padding", padding, d, 0)
    dilation = _per_dim("dilation", dilation, d, 1)
    return kernel, stride, padding, dilation


def max_pool(
    x: object,
    kernel_size: int | Sequence[int],
    *,
    stride: int | Sequence[int] | None = None,
    padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    ceil_mode: bool = False,
) -> np.ndarray:
    """Max pooling (PyTorch semantics): the maximum over each dilated window.

    ``x: (N, C, *S)``; returns ``(N, C, *S_out)`` in float64 where, per spatial dim,
    ``S_out = floor_or_ceil((S + 2*padding - dilation*(kernel_size-1) - 1) / stride) + 1``
    (ceil with ``ceil_mode``, minus one when the last window would start at or beyond
    ``S + padding``). ``stride`` defaults to ``kernel_size``; padding is symmetric and reads
    ``-inf``. A NaN in a window gives NaN.

    >>> max_pool(np.array([[[1.0, 3.0, 2.0, 5.0, 4.0]]]), 2).tolist()
    [[[3.0, 5.0]]]
    >>> max_pool(np.array([[[1.0, 3.0, 2.0, 5.0, 4.0]]]), 2, ceil_mode=True).tolist()
    [[[3.0, 5.0, 4.0]]]
    """
    x = _as_float64("x", x)
    kernel, strides, pads, dils = _pool_args(x, kernel_size, stride, padding, dilation)
    sizes = x.shape[2:]
    out_shape = tuple(
        _pool_out_size(n, k, s, p, dl, bool(ceil_mode))
        for n, k, s, p, dl in zip(sizes, kernel, strides, pads, dils)
    )
    y = np.full(x.shape[:2] + out_shape, -np.inf)
    for i in np.ndindex(*out_shape):
        # window positions per dim that fall inside the input; all others read -inf
        per_dim = [
            [ii * s - p + a * dl for a in range(k) if 0 <= ii * s - p + a * dl < n]
            for ii, s, p, dl, k, n in zip(i, strides, pads, dils, kernel, sizes)
        ]
        values = [x[_at(j)] for j in itertools.product(*per_dim)]
        if values:
            y[_at(i)] = np.max(np.stack(values), axis=0)
    return y


def avg_pool(
    x: object,
    kernel_size: int | Sequence[int],
    *,
    stride: int | Sequence[int] | None = None,
    padding: int | Sequence[int] = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
) -> np.ndarray:
    """Average pooling (PyTorch semantics): the window sum over a divisor.

    ``x: (N, C, *S)``; returns ``(N, C, *S_out)`` in float64, ``S_out`` as for
    :func:`max_pool` with dilation 1. The window of output ``i`` covers
    ``[i*stride - padding, i*stride - padding + kernel_size)`` per dim; its sum runs over the
    positions inside the input. The divisor counts the window's positions inside the padded
    extent ``[-padding, S + padding)`` when ``count_include_pad`` (so ``ceil_mode`` overflow
    past the padding is not counted), or inside ``[0, S)`` otherwise.

    >>> avg_pool(np.array([[[1.0, 2.0, 3.0, 4.0, 6.0]]]), 2, ceil_mode=True).tolist()
    [[[1.5, 3.5, 6.0]]]
    >>> avg_pool(np.array([[[2.0, 4.0]]]), 2, padding=1).tolist()
    [[[1.0, 2.0]]]
    >>> avg_pool(np.array([[[2.0, 4.0]]]), 2, padding=1, count_include_pad=False).tolist()
    [[[2.0, 4.0]]]
    """
    x = _as_float64("x", x)
    kernel, strides, pads, _ = _pool_args(x, kernel_size, stride, padding, 1)
    sizes = x.shape[2:]
    out_shape = tuple(
        _pool_out_size(n, k, s, p, 1, bool(ceil_mode))
        for n, k, s, p in zip(sizes, kernel, strides, pads)
    )
    y = np.zeros(x.shape[:2] + out_shape)
    for i in np.ndindex(*out_shape):
        starts = [ii * s - p for ii, s, p in zip(i, strides, pads)]
        inside = [
            [j for j in range(st, st + k) if 0 <= j < n]
            for st, k, n in zip(starts, kernel, sizes)
        ]
        total = np.zeros(x.shape[:2])
        for j in itertools.product(*inside):
            total += x[_at(j)]
        divisor: int
        if count_include_pad:
            divisor = math.prod(
                len([j for j in range(st, st + k) if -p <= j < n + p])
                for st, k, n, p in zip(starts, kernel, sizes, pads)
            )
        else:
            divisor = math.prod(len(js) for js in inside)
        y[_at(i)] = total / divisor if divisor else np.nan
    return y
