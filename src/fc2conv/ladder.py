"""The derivation, executable: from a dense layer on a grid to a convolution and back.

The seed's argument in four moves, each an exact function between layers of :mod:`fc2conv.nn`:

- :func:`to_dense` materialises any affine layer (convolution with any stride, padding mode,
  dilation or groups; transposed convolution; locally connected; average pooling; a stack of
  those) as its dense-on-grid weight ``W[*p, o, c, *q]`` and bias ``U[*p, o]``;
- :func:`relative_offsets` re-indexes ``W`` by offsets, ``V[i, a] = W[i, i + a]``;
- translation invariance: :func:`share` projects a dense layer onto the layers whose ``V`` does
  not depend on ``i`` (a convolution with a full ``(2H-1) x (2W-1)`` kernel), :func:`tie` does
  the same for a locally connected layer, and :func:`untie` goes back (outputs identical);
- locality: :func:`localize` keeps only ``|a| <= delta`` (a locally connected layer with kernel
  ``2*delta+1``).

:func:`is_translation_invariant` and :func:`locality_radius` read both constraints off a ``W``.
The projections are orthogonal (a mean over the tied entries), so applying one twice changes
nothing and what they discard is orthogonal to everything they keep.

>>> import numpy as np
>>> from fc2conv import ladder, nn
>>> conv = nn.Conv2d(1, 1, 3, padding=1, dtype=np.float64, rng=0)
>>> dense = ladder.to_dense(conv, (6, 6))          # W: (6, 6, 1, 1, 6, 6)
>>> ladder.is_translation_invariant(dense), ladder.locality_radius(dense)
(True, (1, 1))
>>> back = ladder.tie(ladder.localize(dense, 1))   # dense -> locally connected -> conv
>>> bool(np.allclose(back.weight, conv.weight))
True
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import nn
from ._errors import ArgumentError, ShapeError
from ._validate import padding_pairs, per_axis
from .algorithms.select import local_methods

__all__ = [
    "is_translation_invariant",
    "locality_radius",
    "localize",
    "relative_offsets",
    "share",
    "tie",
    "to_dense",
    "untie",
    "walk",
]

_AFFINE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
           nn.ConvTranspose3d, nn.LocallyConnected1d, nn.LocallyConnected2d,
           nn.LocallyConnected3d, nn.DenseGrid1d, nn.DenseGrid2d, nn.DenseGrid3d,
           nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.Sequential)
# Largest number of basis images pushed through a layer at once by to_dense.
_BASIS_CHUNK = 1024


def _family(name: str, ndim: int) -> Any:
    return getattr(nn, f"{name}{ndim}d")


def _dense_weight(layer_or_weight: Any) -> np.ndarray:
    if isinstance(layer_or_weight, nn.Module):
        if not isinstance(layer_or_weight, (nn.DenseGrid1d, nn.DenseGrid2d, nn.DenseGrid3d)):
            raise ArgumentError(
                f"expected a DenseGrid layer or its weight (*S_out, C_out, C_in, *S_in); got "
                f"{type(layer_or_weight).__name__}. Use ladder.to_dense(layer, in_size) first"
            )
        return np.asarray(layer_or_weight.weight)
    w = np.asarray(layer_or_weight)
    if w.ndim not in (4, 6, 8):
        raise ShapeError(
            f"W must have shape (*S_out, C_out, C_in, *S_in) with 1 to 3 spatial dims (4, 6 or "
            f"8 axes); got shape {w.shape}"
        )
    return w


def _check_dense(layer: Any, what: str) -> int:
    if not isinstance(layer, (nn.DenseGrid1d, nn.DenseGrid2d, nn.DenseGrid3d)):
        raise ArgumentError(f"{what} takes a DenseGrid layer; got {type(layer).__name__}")
    return layer.ndim


# ---------------------------------------------------------------------------------------------
# materialise


def to_dense(layer: nn.Module, in_size: Any = None, *, in_channels: int | None = None) -> Any:
    """The dense-on-grid layer computing exactly what an affine ``layer`` computes.

    Pushes the standard basis of the input space through ``layer``: column ``(c, *q)`` of
    ``W`` is ``layer(e_{c,q}) - layer(0)``, and the bias is ``layer(0)``. Works for every
    padding mode, stride, dilation and groups, because it asks the layer itself.

    Args:
        layer: a convolution, transposed convolution, locally connected or dense-on-grid
            layer, an average pooling, or a ``Sequential`` of those (no ReLU, no max pooling:
            ``W`` exists only for affine maps).
        in_size: spatial input size ``S_in`` (not needed for locally connected and dense
            layers, which know theirs).
        in_channels: needed only when ``layer`` has no ``in_channels`` (pooling).

    Returns:
        a ``DenseGrid{d}d`` with ``weight: (*S_out, C_out, C_in, *S_in)`` and a per-position
        ``bias: (*S_out, C_out)`` (None if the layer has no bias at all), in the layer's dtype.

    >>> import numpy as np
    >>> from fc2conv import ladder, nn
    >>> conv = nn.Conv1d(1, 1, 3, padding=1, bias=False, dtype=np.float64, rng=0)
    >>> conv.weight[...] = [1.0, 2.0, 3.0]
    >>> ladder.to_dense(conv, 4).weight[:, 0, 0, :]      # a banded (Toeplitz) matrix
    array([[2., 3., 0., 0.],
           [1., 2., 3., 0.],
           [0., 1., 2., 3.],
           [0., 0., 1., 2.]])
    """
    _check_affine(layer)
    first = layer[0] if isinstance(layer, nn.Sequential) else layer
    size = getattr(first, "in_size", None) if in_size is None else in_size
    c_in = getattr(first, "in_channels", None) if in_channels is None else in_channels
    if size is None:
        raise ArgumentError(f"to_dense needs in_size for a {type(layer).__name__}")
    if c_in is None:
        raise ArgumentError(f"to_dense needs in_channels for a {type(layer).__name__}")
    ndim = first.ndim
    size = per_axis("in_size", size, ndim, minimum=1)
    dtype = _dtype_of(layer)
    in_shape = (c_in, *size)
    out_shape = layer.output_shape(in_shape)
    n_in = math.prod(in_shape)
    columns = np.empty((n_in, *out_shape), dtype=dtype)
    # FFT or Winograd would smear rounding over weights that are exactly zero.
    with local_methods():
        zero = np.asarray(layer(np.zeros((1, *in_shape), dtype=dtype)))[0]
        for start in range(0, n_in, _BASIS_CHUNK):
            stop = min(start + _BASIS_CHUNK, n_in)
            basis = np.zeros((stop - start, n_in), dtype=dtype)
            basis[np.arange(stop - start), np.arange(start, stop)] = 1.0
            columns[start:stop] = np.asarray(layer(basis.reshape(-1, *in_shape))) - zero
    layer.forget_inputs()  # the basis images: no backward will come
    c_out, s_out = out_shape[0], out_shape[1:]
    # columns: (C_in * Q, C_out, *S_out) -> W: (*S_out, C_out, C_in * Q)
    w = np.moveaxis(columns.reshape(n_in, c_out, -1), 0, -1)
    w = np.moveaxis(w, 0, -2).reshape(*s_out, c_out, *in_shape)
    has_bias = any(name.endswith("bias") for name, _ in layer.named_parameters())
    dense = _family("DenseGrid", ndim)(c_in, c_out, size, s_out, bias=has_bias, dtype=dtype)
    dense.weight = np.ascontiguousarray(w)
    if has_bias:
        dense.bias = np.ascontiguousarray(np.moveaxis(zero, 0, -1))
    return dense


def _check_affine(layer: Any) -> None:
    if not isinstance(layer, _AFFINE):
        raise ArgumentError(
            f"to_dense takes an affine layer (conv, transposed conv, locally connected, dense, "
            f"average pooling or a Sequential of those); got {type(layer).__name__}"
        )
    if isinstance(layer, nn.Sequential):
        if len(layer) == 0:
            raise ArgumentError("to_dense got an empty Sequential")
        for i, sub in enumerate(layer):
            if isinstance(sub, nn.Sequential) or not isinstance(sub, _AFFINE):
                raise ArgumentError(
                    f"to_dense: layer {i} of the Sequential is a {type(sub).__name__}, which "
                    "is not affine (or is nested); a dense W exists only for affine maps"
                )


def _dtype_of(layer: nn.Module) -> Any:
    params = layer.parameters()
    return params[0].dtype if params else np.dtype(np.float64)


# ---------------------------------------------------------------------------------------------
# re-index


def relative_offsets(w: Any, *, stride: Any = 1) -> np.ndarray:
    """Re-index a dense weight by offsets: ``V[*i, o, c, *a] = W[*i, o, c, *(stride*i + a)]``.

    ``W: (*S_out, C_out, C_in, *S_in)`` (or a DenseGrid layer) -> ``V: (*S_out, C_out, C_in,
    *R)`` with ``R = S_in + stride*(S_out - 1)`` per axis: offset ``a`` is stored at index
    ``a + stride*(S_out - 1)`` (so for ``S_out = S_in = n`` and stride 1, ``a = 0`` sits at
    ``n - 1`` and ``R = 2n - 1``). Offsets that fall outside the input are 0.

    >>> import numpy as np
    >>> from fc2conv import ladder
    >>> w = np.arange(1.0, 10.0).reshape(3, 1, 1, 3)       # rows [1 2 3], [4 5 6], [7 8 9]
    >>> ladder.relative_offsets(w)[:, 0, 0]                  # columns are offsets -2..2
    array([[0., 0., 1., 2., 3.],
           [0., 4., 5., 6., 0.],
           [7., 8., 9., 0., 0.]])
    """
    w = _dense_weight(w)
    d = (w.ndim - 2) // 2
    s_out, s_in = w.shape[:d], w.shape[d + 2:]
    s = per_axis("stride", stride, d, minimum=1)
    size = tuple(n_in + st * (n_out - 1) for n_in, st, n_out in zip(s_in, s, s_out))
    v = np.zeros((*s_out, *w.shape[d:d + 2], *size), dtype=w.dtype)
    for i in np.ndindex(*s_out):
        # input q = stride*i + a lands at r = a + stride*(S_out-1) = q + stride*(S_out-1-i)
        start = [st * (n_out - 1 - ii) for st, n_out, ii in zip(s, s_out, i)]
        v[i][(Ellipsis, *(slice(b, b + n) for b, n in zip(start, s_in)))] = w[i]
    return v


def _valid_offsets(w_shape: tuple[int, ...], stride: tuple[int, ...]) -> np.ndarray:
    """Mask of the entries of ``relative_offsets`` that come from a real input position."""
    d = (len(w_shape) - 2) // 2
    ones = np.ones((*w_shape[:d], 1, 1, *w_shape[d + 2:]), dtype=bool)
    return relative_offsets(ones, stride=stride)


# ---------------------------------------------------------------------------------------------
# read the constraints off W


def is_translation_invariant(w: Any, *, stride: Any = 1, rtol: float = 1e-6) -> bool:
    """Whether ``W[i, i + a]`` depends on the offset ``a`` only (and the bias is constant).

    That is the seed's translation invariance: ``V[i, a] = V[a]`` for every output position
    ``i`` (a block Toeplitz ``W``; circulant ones, from circular padding, included).
    Accepts ``W: (*S_out, C_out, C_in, *S_in)`` or a DenseGrid layer (whose per-position
    bias must then also be the same everywhere). Entries agree within ``rtol * max|W|``.

    >>> import numpy as np
    >>> from fc2conv import ladder, nn
    >>> ladder.is_translation_invariant(np.ones((4, 1, 1, 4)))     # every row the same sum
    True
    >>> ladder.is_translation_invariant(nn.DenseGrid1d(1, 1, 4, rng=0))
    False
    """
    weight = _dense_weight(w)
    d = (weight.ndim - 2) // 2
    s = per_axis("stride", stride, d, minimum=1)
    v = relative_offsets(weight, stride=s).astype(np.float64)
    valid = np.broadcast_to(_valid_offsets(weight.shape, s), v.shape)
    tol = rtol * max(float(np.abs(weight).max(initial=0.0)), np.finfo(np.float64).tiny)
    positions = tuple(range(d))
    low = np.where(valid, v, np.inf).min(axis=positions)
    high = np.where(valid, v, -np.inf).max(axis=positions)
    spread = np.where(np.isfinite(low), high - low, 0.0)
    if float(spread.max(initial=0.0)) > tol:
        return False
    bias = getattr(w, "bias", None)
    if bias is not None and bias.ndim == d + 1:
        flat = np.asarray(bias, dtype=np.float64).reshape(-1, bias.shape[-1])
        bias_tol = rtol * max(float(np.abs(flat).max(initial=0.0)), np.finfo(np.float64).tiny)
        return bool(np.ptp(flat, axis=0).max(initial=0.0) <= bias_tol)
    return True


def locality_radius(w: Any, *, stride: Any = 1, circular: bool = False,
                    atol: float = 0.0) -> tuple[int, ...]:
    """Per spatial axis, the largest ``|a|`` with ``W[i, stride*i + a] != 0``: the seed's Delta.

    A convolution with kernel ``2*Delta+1`` and ``"same"`` padding gives ``Delta``; a generic
    dense layer gives ``S - 1``. With ``circular=True`` offsets are measured around the torus
    (``a`` and ``a - S_in`` are the same offset), which is what circular padding needs.
    ``W: (*S_out, C_out, C_in, *S_in)`` or a DenseGrid layer; entries with ``|W| <= atol``
    count as zero.

    >>> import numpy as np
    >>> from fc2conv import ladder, nn
    >>> conv = nn.Conv1d(1, 1, 5, padding=2, padding_mode="circular", rng=0)
    >>> w = ladder.to_dense(conv, 8).weight
    >>> ladder.locality_radius(w), ladder.locality_radius(w, circular=True)
    ((7,), (2,))
    """
    weight = _dense_weight(w)
    d = (weight.ndim - 2) // 2
    s = per_axis("stride", stride, d, minimum=1)
    s_out, s_in = weight.shape[:d], weight.shape[d + 2:]
    nonzero = np.abs(weight) > atol
    # positions (i, q) with a nonzero entry, reduced over channels
    mask = nonzero.any(axis=(d, d + 1))
    if not mask.any():
        return (0,) * d
    radius = []
    for axis in range(d):
        i = np.arange(s_out[axis]).reshape([-1 if k == axis else 1 for k in range(2 * d)])
        q = np.arange(s_in[axis]).reshape([-1 if k == d + axis else 1 for k in range(2 * d)])
        a = q - s[axis] * i
        if circular:
            n = s_in[axis]
            a = (a + n // 2) % n - n // 2
        a = np.broadcast_to(np.abs(a), mask.shape)
        radius.append(int(a[mask].max()))
    return tuple(radius)


# ---------------------------------------------------------------------------------------------
# impose the constraints


def localize(dense: Any, delta: Any) -> Any:
    """Locality: keep ``|a| <= delta`` of a dense layer, as a locally connected layer.

    ``dense``: a DenseGrid with ``S_out == S_in`` (output ``i`` is centred on input ``i``).
    Returns a ``LocallyConnected{d}d`` with kernel ``2*delta+1``, stride 1, zero padding
    ``delta``, ``weight[i, o, c, a + delta] = W[i, o, c, i + a]`` (0 where ``i + a`` is
    outside the image, which the zero padding reads anyway) and the same bias. It computes
    exactly ``dense_grid`` with ``W`` masked to the band ``|a| <= delta``; with
    ``delta = S - 1`` nothing is dropped.

    >>> import numpy as np
    >>> from fc2conv import ladder, nn
    >>> dense = nn.DenseGrid2d(1, 1, (5, 5), rng=0)
    >>> ladder.localize(dense, 1).weight.shape                      # (*S, C_out, C_in, 3, 3)
    (5, 5, 1, 1, 3, 3)
    """
    d = _check_dense(dense, "localize")
    if dense.out_size != dense.in_size:
        raise ShapeError(
            f"localize needs a dense layer whose output grid is its input grid (output i "
            f"centred on input i); got in_size {dense.in_size}, out_size {dense.out_size}"
        )
    deltas = per_axis("delta", delta, d, minimum=0)
    for n, dl in zip(dense.in_size, deltas):
        if dl > n - 1:
            raise ArgumentError(
                f"delta={delta!r} exceeds in_size - 1 = {tuple(m - 1 for m in dense.in_size)}: "
                "offsets beyond the image do not exist"
            )
    v = relative_offsets(dense.weight)
    band = tuple(slice(n - 1 - dl, n + dl) for n, dl in zip(dense.in_size, deltas))
    kernel = tuple(2 * dl + 1 for dl in deltas)
    local = _family("LocallyConnected", d)(
        dense.in_channels, dense.out_channels, kernel, dense.in_size, padding=deltas,
        bias=dense.bias is not None, shared_bias=dense.bias is not None and dense.bias.ndim == 1,
        dtype=dense.weight.dtype)
    local.weight = np.ascontiguousarray(v[(Ellipsis, *band)])
    if dense.bias is not None:
        local.bias = dense.bias.copy()
    return local


def share(dense: Any) -> Any:
    """Translation invariance: project a dense layer onto convolutions (full-size kernel).

    ``dense``: a DenseGrid with ``S_out == S_in = S``. Returns a ``Conv{d}d`` with kernel
    ``2S - 1`` and zero padding ``S - 1`` whose kernel entry for offset ``a`` is the mean of
    ``W[i, i + a]`` over every ``i`` where it exists, and whose bias is the mean bias: the
    orthogonal projection of ``(W, U)`` onto the translation-invariant layers. A dense layer
    that already is one (e.g. ``to_dense`` of a convolution) comes back exactly.

    >>> import numpy as np
    >>> from fc2conv import ladder, nn
    >>> conv = ladder.share(nn.DenseGrid2d(1, 1, (10, 10), rng=0))
    >>> conv.weight.shape                                            # (2*10 - 1) ** 2 weights
    (1, 1, 19, 19)
    """
    d = _check_dense(dense, "share")
    if dense.out_size != dense.in_size:
        raise ShapeError(
            f"share needs a dense layer whose output grid is its input grid; got in_size "
            f"{dense.in_size}, out_size {dense.out_size}"
        )
    v = relative_offsets(dense.weight).astype(np.float64)
    valid = _valid_offsets(dense.weight.shape, (1,) * d)
    positions = tuple(range(d))
    count = valid.sum(axis=positions)  # how many positions read each offset (never 0)
    kernel = (v.sum(axis=positions) / count).astype(dense.weight.dtype)
    full = tuple(2 * n - 1 for n in dense.in_size)
    conv = _family("Conv", d)(dense.in_channels, dense.out_channels, full,
                              padding=tuple(n - 1 for n in dense.in_size),
                              bias=dense.bias is not None, dtype=dense.weight.dtype)
    conv.weight = np.ascontiguousarray(kernel)
    if dense.bias is not None:
        conv.bias = _position_mean(dense.bias, d)
    return conv


def tie(local: Any) -> Any:
    """Weight sharing: the convolution closest to a locally connected layer.

    Every kernel tap is replaced by its mean over the output positions (the orthogonal
    projection onto tied weights), and a per-position bias by its mean. With zero padding a
    tap that lands in the padding multiplies 0, so its weight does not affect the layer; such
    taps are left out of the mean, which makes ``tie(localize(to_dense(conv), delta))`` give
    back ``conv`` exactly (as ``tie(untie(conv, S))`` does). Stride, padding, dilation and
    padding mode are kept.

    >>> from fc2conv import ladder, nn
    >>> local = nn.LocallyConnected2d(3, 8, 3, in_size=(16, 16), padding=1, rng=0)
    >>> conv = ladder.tie(local)
    >>> conv.weight.shape, conv.bias.shape
    ((8, 3, 3, 3), (8,))
    """
    if not isinstance(local, (nn.LocallyConnected1d, nn.LocallyConnected2d,
                              nn.LocallyConnected3d)):
        raise ArgumentError(f"tie takes a LocallyConnected layer; got {type(local).__name__}")
    d = local.ndim
    conv = _family("Conv", d)(local.in_channels, local.out_channels, local.kernel_size,
                              stride=local.stride, padding=local.padding,
                              dilation=local.dilation, bias=local.bias is not None,
                              padding_mode=local.padding_mode, dtype=local.weight.dtype)
    taps = _real_taps(local)  # (*S_out, *K): which taps read a pixel of the image
    expand = (Ellipsis, None, None, *(slice(None),) * d)  # -> (*S_out, 1, 1, *K)
    total = np.where(taps[expand], local.weight.astype(np.float64), 0.0).sum(axis=tuple(range(d)))
    count = np.maximum(taps.sum(axis=tuple(range(d))), 1)  # a tap no position uses gets 0
    conv.weight = np.ascontiguousarray((total / count).astype(local.weight.dtype))
    if local.bias is not None:
        conv.bias = _position_mean(local.bias, d)
    return conv


def _real_taps(local: Any) -> np.ndarray:
    """``(*S_out, *K)`` mask: tap ``a`` of position ``p`` reads a real pixel (not zero padding)."""
    d = local.ndim
    if local.padding_mode != "zeros":
        return np.ones((*local.out_size, *local.kernel_size), dtype=bool)
    pads = padding_pairs(local.padding, local.in_size, local.kernel_size, local.stride,
                         local.dilation)
    mask = np.ones((), dtype=bool)
    for axis, (n, m, k, s, dl, (before, _)) in enumerate(zip(
            local.in_size, local.out_size, local.kernel_size, local.stride, local.dilation,
            pads)):
        index = np.arange(m)[:, None] * s + np.arange(k)[None, :] * dl - before
        inside = (index >= 0) & (index < n)  # (S_out[axis], K[axis])
        shape = [1] * (2 * d)
        shape[axis], shape[d + axis] = m, k
        mask = mask & inside.reshape(shape)
    return mask


def untie(conv: Any, in_size: Any) -> Any:
    """A locally connected layer holding ``conv``'s kernel at every position (same outputs).

    Groups become zeros between channels of different groups; the bias is copied to every
    position. Stride, padding, dilation and padding mode are kept.

    >>> import numpy as np
    >>> from fc2conv import ladder, nn
    >>> conv = nn.Conv2d(2, 4, 3, padding=1, groups=2, rng=0)
    >>> local = ladder.untie(conv, (8, 8))
    >>> local.weight.shape
    (8, 8, 4, 2, 3, 3)
    >>> x = np.random.default_rng(0).standard_normal((1, 2, 8, 8)).astype(np.float32)
    >>> bool(np.allclose(local(x), conv(x), atol=1e-6))
    True
    """
    if not isinstance(conv, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        raise ArgumentError(f"untie takes a Conv layer; got {type(conv).__name__}")
    d = conv.ndim
    local = _family("LocallyConnected", d)(
        conv.in_channels, conv.out_channels, conv.kernel_size, in_size, stride=conv.stride,
        padding=conv.padding, dilation=conv.dilation, bias=conv.bias is not None,
        padding_mode=conv.padding_mode, dtype=conv.weight.dtype)
    g = conv.groups
    og, cg = conv.out_channels // g, conv.in_channels // g
    full = np.zeros((conv.out_channels, conv.in_channels, *conv.kernel_size),
                    dtype=conv.weight.dtype)
    for group in range(g):  # block diagonal: group g's outputs read only group g's inputs
        full[group * og:(group + 1) * og, group * cg:(group + 1) * cg] = \
            conv.weight[group * og:(group + 1) * og]
    local.weight = np.ascontiguousarray(np.broadcast_to(full, local.weight.shape))
    if conv.bias is not None:
        local.bias = np.ascontiguousarray(np.broadcast_to(conv.bias, local.bias.shape))
    return local


def _position_mean(a: np.ndarray, d: int) -> np.ndarray:
    """Mean over the leading ``d`` position axes, in float64 (exact for identical entries)."""
    if a.ndim == 1:  # already shared
        return a.copy()
    return np.ascontiguousarray(a.astype(np.float64).mean(axis=tuple(range(d))).astype(a.dtype))


def walk(size: tuple[int, ...], delta: int, channels: tuple[int, int] = (1, 1),
         seed: int = 0, shift: tuple[int, ...] | None = None) -> dict[str, list[dict]]:
    """Walk the ladder on random images: the numbers ``fc2conv ladder`` prints, per rung.

    ``down``: a random dense-on-grid layer, :func:`localize` to a locally connected one,
    :func:`tie` to a convolution; each step is a projection, so ``vs_above`` (relative
    output change) is large for a random layer. ``up``: a random circular convolution,
    :func:`untie`, :func:`to_dense`; each step is exact, ``vs_above`` ~ 1e-16.
    """
    from .analysis import count_flops, count_params, shift_error

    ndim = len(size)
    c_in, c_out = channels
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((4, c_in, *size))
    offsets = shift if shift is not None else tuple(max(1, n // 4) for n in size)
    # zero padding is equivariant away from the border: compare there only
    margin = tuple(abs(o) + delta for o in offsets)
    interior = (Ellipsis, *(slice(m, n - m) for m, n in zip(margin, size)))

    def describe(name: str, layer: nn.Module, above: nn.Module | None,
                 circular: bool = False) -> dict:
        y = layer(x)
        dense = layer if isinstance(layer, nn.DenseGrid1d | nn.DenseGrid2d | nn.DenseGrid3d) \
            else to_dense(layer, size)
        shifted = np.roll(x, offsets, axis=tuple(range(2, 2 + ndim)))
        moved = np.roll(y, offsets, axis=tuple(range(2, 2 + ndim)))
        inner = np.linalg.norm((layer(shifted) - moved)[interior])
        return {
            "rung": name,
            "params": count_params(layer),
            "flops": count_flops(layer, (c_in, *size)),
            "vs_above": None if above is None else float(
                np.linalg.norm(y - above(x)) / np.linalg.norm(above(x))),
            "shift_error": shift_error(layer, x, offsets),
            "shift_error_interior": float(inner / np.linalg.norm(y[interior])),
            "translation_invariant": is_translation_invariant(dense),
            "radius": locality_radius(dense, circular=circular),
        }

    dense = getattr(nn, f"DenseGrid{ndim}d")(c_in, c_out, size, dtype=np.float64, rng=seed)
    local = localize(dense, delta)
    conv = tie(local)
    down = [describe("dense-on-grid (random W)", dense, None),
            describe(f"locally connected = localize(dense, {delta})", local, dense),
            describe("convolution = tie(locally connected)", conv, local)]
    conv_c = getattr(nn, f"Conv{ndim}d")(c_in, c_out, 2 * delta + 1, padding=delta,
                                         padding_mode="circular", dtype=np.float64, rng=seed)
    local_c = untie(conv_c, size)
    dense_c = to_dense(local_c)
    up = [describe("convolution (random, circular padding)", conv_c, None, True),
          describe("locally connected = untie(conv)", local_c, conv_c, True),
          describe("dense-on-grid = to_dense(locally connected)", dense_c, local_c, True)]
    return {"down": down, "up": up, "shift": list(offsets)}
