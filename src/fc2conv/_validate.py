"""Argument checking shared by every op: the one place error messages are written.

Each public op turns its raw arguments into a small frozen *spec* here (spatial rank, per-axis
stride/dilation/padding, output shape, array namespace). The compute code below this layer
can then trust its inputs and never re-checks them.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import array_api_compat

from . import _padding
from ._errors import ArgumentError, DTypeError, ShapeError

__all__ = [
    "ConvSpec",
    "PoolSpec",
    "check_arrays",
    "check_grad_out",
    "check_padding_mode",
    "check_spatial_rank",
    "conv_spec",
    "conv_transpose_spec",
    "dense_grid_spec",
    "local_spec",
    "pool_spec",
]

PADDING_MODES = ("zeros", "reflect", "symmetric", "replicate", "circular")
METHODS = ("auto", "im2col", "shift", "fft", "winograd", "winograd2", "direct", "jit",
           "banded")
# What users of SciPy and NumPy type, so the error can point them to our name.
_MODE_SYNONYMS = {
    "constant": "zeros",
    "zero": "zeros",
    "mirror": "reflect",
    "nearest": "replicate",
    "edge": "replicate",
    "wrap": "circular",
    "grid-wrap": "circular",
}


@dataclass(frozen=True)
class ConvSpec:
    """Everything a correlation kernel needs, checked and resolved to per-axis tuples."""

    xp: Any
    ndim: int  # spatial rank
    batch: int
    in_channels: int
    out_channels: int
    groups: int
    in_size: tuple[int, ...]
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    pads: tuple[tuple[int, int], ...]
    padding_mode: str
    out_size: tuple[int, ...]
    method: str = "auto"

    @property
    def padded_size(self) -> tuple[int, ...]:
        return tuple(n + b + a for n, (b, a) in zip(self.in_size, self.pads))

    @property
    def output_shape(self) -> tuple[int, ...]:
        return (self.batch, self.out_channels, *self.out_size)


@dataclass(frozen=True)
class PoolSpec:
    """A pooling window, checked and resolved to per-axis tuples."""

    xp: Any
    ndim: int
    in_size: tuple[int, ...]
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    padding: tuple[int, ...]
    out_size: tuple[int, ...]
    # Padded extent each window may read: the symmetric padding plus, with ceil_mode, the
    # overflow of the last window past the padded input.
    pads: tuple[tuple[int, int], ...]

    @property
    def padded_size(self) -> tuple[int, ...]:
        return tuple(n + b + a for n, (b, a) in zip(self.in_size, self.pads))

    def output_shape(self, x_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (*x_shape[:2], *self.out_size)


# ---------------------------------------------------------------------------------------------
# arrays


def _namespace(name: str, value: Any) -> Any:
    if isinstance(value, (list, tuple)) or not hasattr(value, "shape"):
        raise DTypeError(
            f"{name} must be an array (NumPy, or any array-API array such as a torch tensor); "
            f"got {type(value).__name__}. Wrap Python data with numpy.asarray(..., dtype=float)."
        )
    try:
        return array_api_compat.array_namespace(value)
    except TypeError as exc:
        raise DTypeError(
            f"{name} must be an array-API array; got {type(value).__module__}."
            f"{type(value).__name__} ({exc})"
        ) from None


def check_arrays(**arrays: Any) -> Any:
    """Check that the named arrays share one namespace and one real floating dtype.

    Returns the array namespace. Only ``bias`` may be ``None`` (absent).
    """
    present = {name: a for name, a in arrays.items() if not (name == "bias" and a is None)}
    namespaces = {name: _namespace(name, a) for name, a in present.items()}
    first_name, xp = next(iter(namespaces.items()))
    for name, other in namespaces.items():
        if other is not xp:
            raise DTypeError(
                f"{name} is a {type(present[name]).__module__} array but {first_name} is a "
                f"{type(present[first_name]).__module__} array; pass arrays of one library"
            )
    first = present[first_name]
    for name, a in present.items():
        if not (a.dtype == xp.float32 or a.dtype == xp.float64):
            raise DTypeError(
                f"{name} must have dtype float32 or float64; got {a.dtype}. "
                f"Convert it first, e.g. {name}.astype(float32)"
            )
        if a.dtype != first.dtype:
            raise DTypeError(
                f"{name} has dtype {a.dtype} but {first_name} has dtype {first.dtype}; "
                "mixed precision is not promoted silently, convert one of them"
            )
    return xp


def _check_batched(name: str, x: Any, *, channel_word: str = "C_in") -> int:
    shape = tuple(x.shape)
    if not 3 <= len(shape) <= 5:
        raise ShapeError(
            f"{name} must have shape (N, {channel_word}, *S) with 1, 2 or 3 spatial dims "
            f"(3 to 5 axes); got shape {shape} ({len(shape)} axes)"
            + (f". For a single example use {name}[None]" if len(shape) == 2 else "")
        )
    if shape[0] == 0:
        raise ShapeError(f"{name} has an empty batch (shape {shape}); N must be at least 1")
    if any(s == 0 for s in shape[1:]):
        raise ShapeError(f"{name} has a zero-sized channel or spatial axis: shape {shape}")
    return len(shape) - 2


def check_spatial_rank(name: str, x: Any, ndim: int, op: str) -> None:
    """Used by the 1d/2d/3d aliases."""
    shape = tuple(getattr(x, "shape", ()))
    if len(shape) != ndim + 2:
        raise ShapeError(
            f"{op} expects {name} of shape (N, C, {', '.join('S' + str(i) for i in range(ndim))})"
            f" ({ndim + 2} axes); got shape {shape}"
        )


def check_grad_out(grad_out: Any, expected_shape: tuple[int, ...], xp: Any, dtype: Any) -> None:
    check_arrays(grad_out=grad_out)
    if array_api_compat.array_namespace(grad_out) is not xp:
        raise DTypeError("grad_out must be an array of the same library as x")
    if tuple(grad_out.shape) != tuple(expected_shape):
        raise ShapeError(
            f"grad_out must have the forward output's shape {tuple(expected_shape)}; "
            f"got {tuple(grad_out.shape)}"
        )
    if grad_out.dtype != dtype:
        raise DTypeError(f"grad_out has dtype {grad_out.dtype} but x has dtype {dtype}")


# ---------------------------------------------------------------------------------------------
# scalar arguments


def _int(name: str, value: Any) -> int:
    if isinstance(value, bool):
        raise ArgumentError(f"{name} must be an integer; got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise ArgumentError(f"{name} must be an integer; got {value!r}") from None


def per_axis(name: str, value: Any, ndim: int, *, minimum: int) -> tuple[int, ...]:
    """An int or a sequence of ``ndim`` ints, each at least ``minimum``."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != ndim:
            raise ArgumentError(
                f"{name} must be an int or a tuple of {ndim} ints (one per spatial dim); "
                f"got {value!r} with {len(value)} entries"
            )
        values = tuple(_int(name, v) for v in value)
    else:
        values = (_int(name, value),) * ndim
    if any(v < minimum for v in values):
        word = "positive" if minimum == 1 else "non-negative"
        raise ArgumentError(f"{name} must be {word}; got {value!r}")
    return values


def padding_pairs(
    padding: Any,
    in_size: tuple[int, ...],
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    dilation: tuple[int, ...],
    *,
    allow_strings: Sequence[str] = ("valid", "same", "full"),
) -> tuple[tuple[int, int], ...]:
    """Resolve every accepted form of ``padding`` to one ``(before, after)`` pair per axis."""
    ndim = len(in_size)
    if isinstance(padding, str):
        if padding not in allow_strings:
            raise ArgumentError(
                f"padding must be an int, a tuple, (before, after) pairs or one of "
                f"{', '.join(map(repr, allow_strings))}; got {padding!r}"
            )
        return _padding.resolve_string(padding, in_size, kernel, stride, dilation)
    if isinstance(padding, Sequence) and len(padding) and all(
        isinstance(p, Sequence) and not isinstance(p, str) for p in padding
    ):
        if len(padding) != ndim or any(len(p) != 2 for p in padding):
            raise ArgumentError(
                f"padding given as (before, after) pairs needs {ndim} pairs of 2 ints; "
                f"got {padding!r}"
            )
        pairs = tuple((_int("padding", b), _int("padding", a)) for b, a in padding)
        if any(v < 0 for pair in pairs for v in pair):
            raise ArgumentError(f"padding must be non-negative; got {padding!r}")
        return pairs
    sym = per_axis("padding", padding, ndim, minimum=0)
    return tuple((p, p) for p in sym)


def _choice(name: str, value: Any, allowed: Sequence[str], synonyms: dict[str, str] | None = None):
    if isinstance(value, str) and value in allowed:
        return value
    hint = ""
    if synonyms and isinstance(value, str) and value in synonyms:
        hint = f" (SciPy/NumPy's {value!r} is called {synonyms[value]!r} here)"
    raise ArgumentError(
        f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}{hint}"
    )


def check_padding_mode(padding_mode: Any) -> str:
    """The canonical name of a padding mode (SciPy/NumPy names get a hint in the error)."""
    return _choice("padding_mode", padding_mode, PADDING_MODES, _MODE_SYNONYMS)


def _out_len(padded: int, k: int, s: int, d: int) -> int:
    return (padded - d * (k - 1) - 1) // s + 1


def _check_kernel_fits(kernel, dilation, padded, in_size, pads, what="kernel"):
    for axis, (k, d, p) in enumerate(zip(kernel, dilation, padded)):
        span = d * (k - 1) + 1
        if span > p:
            raise ShapeError(
                f"w: the {what} spans {span} along spatial axis {axis} (size {k}, dilation {d}) "
                f"but the padded input is only {p} long (input {in_size[axis]}, padding "
                f"{pads[axis]}); use a smaller kernel or more padding"
            )


# ---------------------------------------------------------------------------------------------
# op specs


def conv_spec(
    x: Any,
    w: Any,
    bias: Any,
    *,
    stride: Any,
    padding: Any,
    dilation: Any,
    groups: Any,
    padding_mode: Any,
    method: Any = "auto",
) -> ConvSpec:
    """Check the arguments of ``correlate``/``convolve``; ``w: (C_out, C_in // groups, *K)``."""
    xp, _, groups = _conv_arrays(x, w, bias, groups, "(C_out, C_in // groups, *K)")
    batch, c_in, *in_size = (int(s) for s in x.shape)
    c_out, c_per_group, *kernel = (int(s) for s in w.shape)
    if c_in % groups or c_out % groups:
        raise ShapeError(
            f"groups={groups} must divide both C_in={c_in} (x.shape[1]) and "
            f"C_out={c_out} (w.shape[0])"
        )
    if c_per_group != c_in // groups:
        raise ShapeError(
            f"w.shape[1] must be C_in // groups = {c_in} // {groups} = {c_in // groups}; got "
            f"w of shape {tuple(w.shape)} for x of shape {tuple(x.shape)}"
        )
    _check_bias(bias, c_out)
    method = _choice("method", method, METHODS)
    return _correlation_spec(
        xp, batch, c_in, c_out, groups, tuple(in_size), tuple(kernel), stride=stride,
        padding=padding, dilation=dilation, padding_mode=padding_mode, method=method,
    )


def _correlation_spec(xp: Any, batch: int, c_in: int, c_out: int, groups: int,
                      in_size: tuple[int, ...], kernel: tuple[int, ...], *, stride: Any,
                      padding: Any, dilation: Any, padding_mode: Any,
                      method: str = "auto") -> ConvSpec:
    """The window geometry shared by tied and untied correlations: per-axis stride, dilation
    and padding, a kernel that fits, and the output size."""
    ndim = len(in_size)
    stride_t = per_axis("stride", stride, ndim, minimum=1)
    dilation_t = per_axis("dilation", dilation, ndim, minimum=1)
    mode = check_padding_mode(padding_mode)
    pads = padding_pairs(padding, in_size, kernel, stride_t, dilation_t)
    padded = tuple(n + b + a for n, (b, a) in zip(in_size, pads))
    _check_kernel_fits(kernel, dilation_t, padded, in_size, pads)
    out = tuple(_out_len(p, k, s, d) for p, k, s, d in zip(padded, kernel, stride_t, dilation_t))
    return ConvSpec(
        xp=xp, ndim=ndim, batch=batch, in_channels=c_in, out_channels=c_out, groups=groups,
        in_size=in_size, kernel=kernel, stride=stride_t, dilation=dilation_t,
        pads=pads, padding_mode=mode, out_size=out, method=method,
    )


def conv_transpose_spec(
    x: Any,
    w: Any,
    bias: Any,
    *,
    stride: Any,
    padding: Any,
    output_padding: Any,
    dilation: Any,
    groups: Any,
) -> ConvSpec:
    """Check the arguments of ``conv_transpose``; ``w: (C_in, C_out // groups, *K)``.

    The returned spec describes the *forward correlation* whose adjoint conv_transpose is:
    it maps the transpose's output (``in_size`` of the spec) to its input (``out_size``).
    """
    xp, ndim, groups = _conv_arrays(x, w, bias, groups, "(C_in, C_out // groups, *K)")
    batch, c_in, *m_size = (int(s) for s in x.shape)
    w_in, c_out_per_group, *kernel = (int(s) for s in w.shape)
    if w_in != c_in:
        raise ShapeError(
            f"w.shape[0] must equal C_in = x.shape[1] = {c_in} for conv_transpose "
            f"(w: (C_in, C_out // groups, *K)); got w of shape {tuple(w.shape)}"
        )
    if c_in % groups:
        raise ShapeError(f"groups={groups} must divide C_in={c_in} (x.shape[1])")
    c_out = c_out_per_group * groups
    _check_bias(bias, c_out)
    stride_t = per_axis("stride", stride, ndim, minimum=1)
    dilation_t = per_axis("dilation", dilation, ndim, minimum=1)
    pads = padding_pairs(padding, tuple(m_size), tuple(kernel), stride_t, dilation_t,
                         allow_strings=("valid",))
    out_pad = per_axis("output_padding", output_padding, ndim, minimum=0)
    for op, s, d in zip(out_pad, stride_t, dilation_t):
        if op >= max(s, d):
            raise ArgumentError(
                f"output_padding must be smaller than max(stride, dilation) on every axis; got "
                f"output_padding={output_padding!r}, stride={stride!r}, dilation={dilation!r}"
            )
    n_size = tuple(
        (m - 1) * s - b - a + d * (k - 1) + op + 1
        for m, s, (b, a), d, k, op in zip(m_size, stride_t, pads, dilation_t, kernel, out_pad)
    )
    if any(n < 1 for n in n_size):
        raise ShapeError(
            f"conv_transpose output would be empty: size {n_size} for x of shape "
            f"{tuple(x.shape)}, kernel {tuple(kernel)}, padding {pads}; reduce the padding"
        )
    return ConvSpec(
        xp=xp, ndim=ndim, batch=batch, in_channels=c_out, out_channels=c_in, groups=groups,
        in_size=n_size, kernel=tuple(kernel), stride=stride_t, dilation=dilation_t,
        pads=pads, padding_mode="zeros", out_size=tuple(m_size),
    )


def _conv_arrays(x: Any, w: Any, bias: Any, groups: Any, w_layout: str) -> tuple[Any, int, int]:
    """What every convolution checks first: arrays, ranks, groups. Returns (xp, ndim, groups)."""
    xp = check_arrays(x=x, w=w, bias=bias)
    ndim = _check_batched("x", x)
    if w.ndim != x.ndim:
        raise ShapeError(
            f"w must have shape {w_layout} with {ndim} kernel dims to match x "
            f"of shape {tuple(x.shape)}; got shape {tuple(w.shape)}"
        )
    if any(s == 0 for s in w.shape):
        raise ShapeError(f"w has a zero-sized axis: shape {tuple(w.shape)}")
    groups = _int("groups", groups)
    if groups < 1:
        raise ArgumentError(f"groups must be a positive integer; got {groups}")
    return xp, ndim, groups


def _check_bias(bias: Any, c_out: int) -> None:
    if bias is not None and tuple(bias.shape) != (c_out,):
        raise ShapeError(
            f"bias must have shape (C_out,) = ({c_out},); got shape {tuple(bias.shape)}"
        )


def _check_position_bias(bias: Any, out_size: tuple[int, ...], c_out: int) -> bool:
    """Bias of an untied layer: ``(*S_out, C_out)`` or shared ``(C_out,)``. True if per position."""
    if bias is None:
        return False
    shape = tuple(int(s) for s in bias.shape)
    if shape == (c_out,):
        return False
    if shape == (*out_size, c_out):
        return True
    raise ShapeError(
        f"bias must have shape (*S_out, C_out) = {(*out_size, c_out)} (one per output position) "
        f"or (C_out,) = ({c_out},) (shared); got shape {shape}"
    )


def _untied_arrays(x: Any, w: Any, bias: Any, layout: str) -> tuple[Any, int]:
    """What the untied ops check first: ``w`` holds one block per output position."""
    xp = check_arrays(x=x, w=w, bias=bias)
    ndim = _check_batched("x", x)
    if w.ndim != 2 * ndim + 2:
        raise ShapeError(
            f"w must have shape {layout} ({2 * ndim + 2} axes for {ndim} spatial dims, x of "
            f"shape {tuple(x.shape)}); got shape {tuple(w.shape)}"
        )
    if any(s == 0 for s in w.shape):
        raise ShapeError(f"w has a zero-sized axis: shape {tuple(w.shape)}")
    return xp, ndim


def local_spec(
    x: Any,
    w: Any,
    bias: Any,
    *,
    stride: Any,
    padding: Any,
    dilation: Any,
    padding_mode: Any,
) -> tuple[ConvSpec, bool]:
    """Check ``local_correlate``'s arguments; ``w: (*S_out, C_out, C_in, *K)``.

    Returns the spec (``groups=1``) and whether the bias is per position.
    """
    layout = "(*S_out, C_out, C_in, *K)"
    xp, ndim = _untied_arrays(x, w, bias, layout)
    batch, c_in, *in_size = (int(s) for s in x.shape)
    w_out = tuple(int(s) for s in w.shape[:ndim])
    c_out, w_c_in = int(w.shape[ndim]), int(w.shape[ndim + 1])
    kernel = tuple(int(s) for s in w.shape[ndim + 2:])
    if w_c_in != c_in:
        raise ShapeError(
            f"w.shape[{ndim + 1}] must be C_in = {c_in} (w is {layout}); got w of shape "
            f"{tuple(w.shape)} for x of shape {tuple(x.shape)}"
        )
    spec = _correlation_spec(xp, batch, c_in, c_out, 1, tuple(in_size), kernel, stride=stride,
                             padding=padding, dilation=dilation, padding_mode=padding_mode)
    if spec.out_size != w_out:
        raise ShapeError(
            f"w holds one kernel per output position, so w.shape[:{ndim}] must be S_out = "
            f"{spec.out_size} (x of shape {tuple(x.shape)}, kernel {kernel}, stride "
            f"{spec.stride}, dilation {spec.dilation}, padding {spec.pads}); got w of shape "
            f"{tuple(w.shape)}"
        )
    return spec, _check_position_bias(bias, spec.out_size, c_out)


@dataclass(frozen=True)
class DenseGridSpec:
    """Shapes of a dense-on-grid product ``w: (*S_out, C_out, C_in, *S_in)``."""

    xp: Any
    batch: int
    in_channels: int
    out_channels: int
    in_size: tuple[int, ...]
    out_size: tuple[int, ...]
    bias_per_position: bool

    @property
    def output_shape(self) -> tuple[int, ...]:
        return (self.batch, self.out_channels, *self.out_size)


def dense_grid_spec(x: Any, w: Any, bias: Any) -> DenseGridSpec:
    """Check ``dense_grid``'s arguments; ``w: (*S_out, C_out, C_in, *S_in)``."""
    layout = "(*S_out, C_out, C_in, *S_in)"
    xp, ndim = _untied_arrays(x, w, bias, layout)
    batch, c_in, *in_size = (int(s) for s in x.shape)
    shape = tuple(int(s) for s in w.shape)
    if shape[ndim + 1:] != (c_in, *in_size):
        raise ShapeError(
            f"w must have shape {layout} with (C_in, *S_in) = {(c_in, *in_size)} taken from x "
            f"of shape {tuple(x.shape)}; got w of shape {shape}"
        )
    out_size, c_out = shape[:ndim], shape[ndim]
    per_position = _check_position_bias(bias, out_size, c_out)
    return DenseGridSpec(xp=xp, batch=batch, in_channels=c_in, out_channels=c_out,
                         in_size=tuple(in_size), out_size=out_size,
                         bias_per_position=per_position)


def pool_spec(
    x: Any,
    kernel_size: Any,
    *,
    stride: Any,
    padding: Any,
    dilation: Any,
    ceil_mode: bool,
) -> PoolSpec:
    """Check pooling arguments (PyTorch's rules: padding at most half the window)."""
    xp = check_arrays(x=x)
    ndim = _check_batched("x", x, channel_word="C")
    in_size = tuple(int(s) for s in x.shape[2:])
    kernel = per_axis("kernel_size", kernel_size, ndim, minimum=1)
    stride_t = kernel if stride is None else per_axis("stride", stride, ndim, minimum=1)
    dilation_t = per_axis("dilation", dilation, ndim, minimum=1)
    if isinstance(padding, str):
        raise ArgumentError(f"padding must be an int or a tuple of {ndim} ints; got {padding!r}")
    pad = per_axis("padding", padding, ndim, minimum=0)
    for p, k in zip(pad, kernel):
        # PyTorch's limit: more padding would allow windows that see only padding.
        if p > k // 2:
            raise ArgumentError(
                f"padding must be at most half the pooling window (kernel_size // 2); got "
                f"padding={padding!r} for kernel_size={kernel_size!r}"
            )
    out, pads = [], []
    for n, k, s, d, p in zip(in_size, kernel, stride_t, dilation_t, pad):
        span = d * (k - 1) + 1
        if span > n + 2 * p:
            raise ShapeError(
                f"kernel_size: the pooling window spans {span} but x is only {n} long "
                f"(+{2 * p} padding) on some axis; x has shape {tuple(x.shape)}"
            )
        if ceil_mode:
            o = -(-(n + 2 * p - span) // s) + 1
            if (o - 1) * s >= n + p:  # last window would start in the right padding
                o -= 1
        else:
            o = (n + 2 * p - span) // s + 1
        out.append(o)
        overflow = max((o - 1) * s + span - (n + 2 * p), 0)
        pads.append((p, p + overflow))
    return PoolSpec(
        xp=xp, ndim=ndim, in_size=in_size, kernel=kernel, stride=stride_t,
        dilation=dilation_t, padding=pad, out_size=tuple(out), pads=tuple(pads),
    )

