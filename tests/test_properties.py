"""Property tests of the convolution and pooling ops (Hypothesis, float64).

Every property here follows from the definition in DESIGN.md,

    y[n, o, i] = b[o] + sum_{c, a} w[o, c, a] * x[n, c, i*stride + a*dilation - pad],

and none of them uses another implementation as the oracle: linearity, translation
equivariance (exact with circular padding, away from the border with zeros), the adjoint
identities that tie ``correlate`` to ``conv_transpose`` and to the VJPs, gradients against
central finite differences, convolution as the flipped correlation, and the operator as an
explicit dense matrix (the seed's ``W[i, j, k, l]``) built column by column.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given, note
from hypothesis import strategies as st

import fc2conv
from fc2conv import functional as F

MODES = ("zeros", "reflect", "symmetric", "replicate", "circular")
PADDING_FORMS = ("int", "tuple", "pairs", "valid", "same", "full")
SYMMETRIC_FORMS = ("int", "tuple")
#: how far above its minimum a spatial size may be drawn, by rank (keeps 3-D cases small)
EXTRA = {1: 4, 2: 3, 3: 1}

seeds = st.integers(0, 2**32 - 1)


# --------------------------------------------------------------------------------------------
# configurations
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConvCase:
    """A valid correlate/convolve configuration with everything derived from the formula."""

    batch: int
    c_in: int
    c_out: int
    groups: int
    size: tuple[int, ...]
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    pads: tuple[tuple[int, int], ...]
    padding: Any  # as passed to the op
    stride_arg: Any
    dilation_arg: Any
    padding_mode: str
    seed: int

    @property
    def rank(self) -> int:
        return len(self.size)

    @property
    def eff(self) -> tuple[int, ...]:
        return tuple(d * (k - 1) + 1 for d, k in zip(self.dilation, self.kernel))

    @property
    def out_size(self) -> tuple[int, ...]:
        return tuple(
            (n + pb + pa - e) // s + 1
            for n, (pb, pa), e, s in zip(self.size, self.pads, self.eff, self.stride)
        )

    @property
    def x_shape(self) -> tuple[int, ...]:
        return (self.batch, self.c_in, *self.size)

    @property
    def w_shape(self) -> tuple[int, ...]:
        return (self.c_out, self.c_in // self.groups, *self.kernel)

    @property
    def y_shape(self) -> tuple[int, ...]:
        return (self.batch, self.c_out, *self.out_size)

    @property
    def spatial_axes(self) -> tuple[int, ...]:
        return tuple(range(2, 2 + self.rank))

    def kwargs(self, mode: bool = True) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "stride": self.stride_arg,
            "padding": self.padding,
            "dilation": self.dilation_arg,
            "groups": self.groups,
        }
        if mode:
            kw["padding_mode"] = self.padding_mode
        return kw

    def transpose_output_padding(self) -> tuple[int, ...]:
        """output_padding that makes conv_transpose(y) have x's spatial size (symmetric pads)."""
        ops = []
        for n, m, (p, p2), s, d, k in zip(
            self.size, self.out_size, self.pads, self.stride, self.dilation, self.kernel
        ):
            assert p == p2
            op = n - ((m - 1) * s - 2 * p + d * (k - 1) + 1)
            assert 0 <= op < max(s, d), (op, s, d)
            ops.append(op)
        return tuple(ops)

    def transpose_kwargs(self) -> dict[str, Any]:
        return {
            "stride": self.stride_arg,
            "padding": tuple(p for p, _ in self.pads),
            "output_padding": self.transpose_output_padding(),
            "dilation": self.dilation_arg,
            "groups": self.groups,
        }

    def arrays(self, bias: bool = False):
        rng = np.random.default_rng(self.seed)
        x = rng.standard_normal(self.x_shape)
        w = rng.standard_normal(self.w_shape)
        b = rng.standard_normal(self.c_out) if bias else None
        return rng, x, w, b


def _per_dim(draw, rank, lo, hi):
    vals = tuple(draw(st.integers(lo, hi)) for _ in range(rank))
    if len(set(vals)) == 1 and draw(st.booleans()):
        return vals, vals[0]  # pass a plain int
    return vals, vals


@st.composite
def conv_cases(
    draw,
    modes=MODES,
    forms=PADDING_FORMS,
    ranks=(1, 2, 3),
    max_stride=2,
    max_dilation=2,
    kernels=(1, 2, 3),
    batches=(1, 2),
    max_groups=2,
    size_multiple_of_stride=False,
    max_in_size=None,
):
    rank = draw(st.sampled_from(ranks))
    groups = draw(st.integers(1, max_groups))
    c_in = groups * draw(st.integers(1, 2))
    c_out = groups * draw(st.integers(1, 2))
    batch = draw(st.sampled_from(batches))
    kernel = tuple(draw(st.sampled_from(kernels)) for _ in range(rank))
    stride, stride_arg = _per_dim(draw, rank, 1, max_stride)
    dilation, dilation_arg = _per_dim(draw, rank, 1, max_dilation)
    mode = draw(st.sampled_from(modes))
    form = draw(st.sampled_from(forms))
    eff = [d * (k - 1) + 1 for d, k in zip(dilation, kernel)]

    pads: list[tuple[int, int]] | None
    if form == "int":
        p = draw(st.integers(0, 2))
        padding: Any = p
        pads = [(p, p)] * rank
    elif form == "tuple":
        ps = tuple(draw(st.integers(0, 2)) for _ in range(rank))
        padding, pads = ps, [(p, p) for p in ps]
    elif form == "pairs":
        pads = [(draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(rank)]
        padding = tuple(pads)
    elif form == "valid":
        padding, pads = "valid", [(0, 0)] * rank
    elif form == "full":
        padding, pads = "full", [(e - 1, e - 1) for e in eff]
    else:
        padding, pads = "same", None

    size = []
    for i in range(rank):
        if pads is None:  # "same": padding <= eff - 1
            n_min = eff[i] if mode != "zeros" else 1
        else:
            pb, pa = pads[i]
            n_min = max(eff[i] - pb - pa, 1)
            if mode != "zeros":  # the padded margin never exceeds the signal
                n_min = max(n_min, pb + 1, pa + 1)
        n = draw(st.integers(n_min, n_min + EXTRA[rank]))
        if size_multiple_of_stride:
            n = stride[i] * -(-n // stride[i])
        size.append(n)

    if pads is None:
        pads = []
        for n, e, s in zip(size, eff, stride):
            m = -(-n // s)
            total = max((m - 1) * s + e - n, 0)
            pads.append((total // 2, total - total // 2))

    case = ConvCase(
        batch=batch,
        c_in=c_in,
        c_out=c_out,
        groups=groups,
        size=tuple(size),
        kernel=kernel,
        stride=stride,
        dilation=dilation,
        pads=tuple(pads),
        padding=padding,
        stride_arg=stride_arg,
        dilation_arg=dilation_arg,
        padding_mode=mode,
        seed=draw(seeds),
    )
    if max_in_size is not None:
        assume(math.prod(case.x_shape) <= max_in_size)
    note(repr(case))
    return case


@dataclass(frozen=True)
class TransposeCase:
    batch: int
    c_in: int  # channels of conv_transpose's input = w.shape[0]
    c_out: int
    groups: int
    size: tuple[int, ...]
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    padding: tuple[int, ...]
    output_padding: tuple[int, ...]
    seed: int

    @property
    def out_size(self):
        return tuple(
            (m - 1) * s - 2 * p + d * (k - 1) + op + 1
            for m, s, p, d, k, op in zip(
                self.size,
                self.stride,
                self.padding,
                self.dilation,
                self.kernel,
                self.output_padding,
            )
        )

    def kwargs(self):
        return {
            "stride": self.stride,
            "padding": self.padding,
            "output_padding": self.output_padding,
            "dilation": self.dilation,
            "groups": self.groups,
        }

    def arrays(self, bias=False):
        rng = np.random.default_rng(self.seed)
        x = rng.standard_normal((self.batch, self.c_in, *self.size))
        w = rng.standard_normal((self.c_in, self.c_out // self.groups, *self.kernel))
        b = rng.standard_normal(self.c_out) if bias else None
        return rng, x, w, b


@st.composite
def transpose_cases(draw):
    rank = draw(st.integers(1, 3))
    groups = draw(st.integers(1, 2))
    c_in = groups * draw(st.integers(1, 2))
    c_out = groups * draw(st.integers(1, 2))
    size, kernel, stride, dilation, padding, output_padding = [], [], [], [], [], []
    for _ in range(rank):
        m = draw(st.integers(1, 4 if rank < 3 else 3))
        k = draw(st.integers(1, 3))
        s = draw(st.integers(1, 2))
        d = draw(st.integers(1, 2))
        op = draw(st.integers(0, max(s, d) - 1))
        full = (m - 1) * s + d * (k - 1) + op  # output size minus one before cropping
        p = draw(st.integers(0, min(2, full // 2)))
        size.append(m)
        kernel.append(k)
        stride.append(s)
        dilation.append(d)
        padding.append(p)
        output_padding.append(op)
    case = TransposeCase(
        batch=draw(st.integers(1, 2)),
        c_in=c_in,
        c_out=c_out,
        groups=groups,
        size=tuple(size),
        kernel=tuple(kernel),
        stride=tuple(stride),
        dilation=tuple(dilation),
        padding=tuple(padding),
        output_padding=tuple(output_padding),
        seed=draw(seeds),
    )
    assert all(o >= 1 for o in case.out_size)
    note(repr(case))
    return case


@dataclass(frozen=True)
class PoolCase:
    kind: str
    batch: int
    channels: int
    size: tuple[int, ...]
    kernel: tuple[int, ...]
    kernel_arg: Any
    stride: tuple[int, ...] | None
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    ceil_mode: bool
    count_include_pad: bool
    seed: int

    @property
    def x_shape(self):
        return (self.batch, self.channels, *self.size)

    def kwargs(self):
        kw: dict[str, Any] = {
            "stride": self.stride,
            "padding": self.padding,
            "ceil_mode": self.ceil_mode,
        }
        if self.kind == "max":
            kw["dilation"] = self.dilation
        else:
            kw["count_include_pad"] = self.count_include_pad
        return kw

    def expected_out_size(self):
        """PyTorch's pooling output size (including its ceil_mode rule)."""
        stride = self.stride if self.stride is not None else self.kernel
        out = []
        for n, k, s, p, d in zip(self.size, self.kernel, stride, self.padding, self.dilation):
            span = n + 2 * p - d * (k - 1) - 1
            if self.ceil_mode:
                m = -(-span // s) + 1
                if (m - 1) * s >= n + p:  # last window must start inside input or left pad
                    m -= 1
            else:
                m = span // s + 1
            out.append(m)
        return tuple(out)


@st.composite
def pool_cases(draw, kind):
    rank = draw(st.integers(1, 3))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    kernel_arg = kernel[0] if len(set(kernel)) == 1 and draw(st.booleans()) else kernel
    stride = None
    if draw(st.booleans()):
        stride = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    padding = tuple(draw(st.integers(0, k // 2)) for k in kernel)
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(rank)) if kind == "max" else (1,) * rank
    size = []
    for k, p, d in zip(kernel, padding, dilation):
        # n >= d: a dilated window cannot step over the whole input and see only padding
        # (PyTorch returns -inf there; the contract does not say)
        n_min = max(d * (k - 1) + 1 - 2 * p, d, 1)
        size.append(draw(st.integers(n_min, n_min + EXTRA[rank] + 1)))
    case = PoolCase(
        kind=kind,
        batch=draw(st.integers(1, 2)),
        channels=draw(st.integers(1, 3)),
        size=tuple(size),
        kernel=kernel,
        kernel_arg=kernel_arg,
        stride=stride,
        padding=padding,
        dilation=dilation,
        ceil_mode=draw(st.booleans()),
        count_include_pad=draw(st.booleans()),
        seed=draw(seeds),
    )
    note(repr(case))
    return case


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def inner(a, b) -> float:
    return float(np.sum(np.asarray(a) * np.asarray(b)))


def assert_close(actual, expected, rtol=1e-10, scale=None, what=""):
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    if scale is None:
        scale = float(np.max(np.abs(expected), initial=0.0))
    err = float(np.max(np.abs(actual - expected), initial=0.0))
    assert err <= rtol * max(scale, 1e-300) + 1e-300, (
        f"{what}: max abs error {err:.3g} > {rtol:g} * scale {scale:.3g}"
    )


def assert_inner_equal(lhs_terms, rhs_terms, rtol=1e-10, what=""):
    """<a, b> == <c, d>, with the tolerance scaled by sum |a_i b_i| (cancellation-proof)."""
    (a, b), (c, d) = lhs_terms, rhs_terms
    lhs, rhs = inner(a, b), inner(c, d)
    scale = max(inner(np.abs(a), np.abs(b)), inner(np.abs(c), np.abs(d)), 1e-300)
    assert abs(lhs - rhs) <= rtol * scale, f"{what}: {lhs!r} != {rhs!r} (scale {scale:.3g})"


def check_directional(loss, args, grads, rng, names, n_dirs=2, h=1e-6, rtol=1e-6):
    """Compare <grad, v> with the central difference of ``loss`` along random v.

    ``loss(*args)`` returns ``(value, magnitude)``, where magnitude is sum |terms| and bounds the
    round-off of the difference quotient: each loss carries ~eps * magnitude of it, which the
    quotient divides by h whatever the size of v (a short v, e.g. the one-element bias's
    |v| = 0.007, once made a correct gradient fail by 8.6e-10).
    """
    _, magnitude = loss(*args)
    for i, (g, name) in enumerate(zip(grads, names)):
        if args[i] is None:
            assert g is None, f"gradient for absent {name} should be None"
            continue
        g = np.asarray(g)
        assert g.shape == np.shape(args[i]), (name, g.shape, np.shape(args[i]))
        for _ in range(n_dirs):
            v = rng.standard_normal(np.shape(args[i]))
            plus = list(args)
            minus = list(args)
            plus[i] = args[i] + h * v
            minus[i] = args[i] - h * v
            fd = (loss(*plus)[0] - loss(*minus)[0]) / (2 * h)
            an = inner(g, v)
            roundoff = 8 * np.finfo(np.float64).eps * (magnitude + 1.0) / h
            tol = rtol * abs(an) + 1e-8 * (magnitude + 1.0) * float(np.max(np.abs(v))) + roundoff
            assert abs(fd - an) <= tol, f"d/d{name}: finite difference {fd!r} vs vjp {an!r}"


def flip_kernel(w):
    return np.flip(w, axis=tuple(range(2, w.ndim)))


def group_slices(case: ConvCase):
    cin_g = case.c_in // case.groups
    cout_g = case.c_out // case.groups
    return [
        (slice(g * cin_g, (g + 1) * cin_g), slice(g * cout_g, (g + 1) * cout_g))
        for g in range(case.groups)
    ]


# --------------------------------------------------------------------------------------------
# output shape, linearity
# --------------------------------------------------------------------------------------------


@given(conv_cases())
def test_output_shape_follows_padding_arithmetic(case):
    _, x, w, _ = case.arrays()
    y = fc2conv.correlate(x, w, **case.kwargs())
    assert y.shape == case.y_shape
    assert y.dtype == np.float64
    if case.padding == "same":
        assert y.shape[2:] == tuple(-(-n // s) for n, s in zip(case.size, case.stride))
    if case.padding == "valid":
        assert y.shape[2:] == tuple(
            (n - e) // s + 1 for n, e, s in zip(case.size, case.eff, case.stride)
        )


@given(conv_cases(), st.floats(-3, 3), st.floats(-3, 3))
def test_linear_in_x(case, alpha, beta):
    rng, x1, w, _ = case.arrays()
    x2 = rng.standard_normal(case.x_shape)
    kw = case.kwargs()
    lhs = fc2conv.correlate(alpha * x1 + beta * x2, w, **kw)
    rhs = alpha * fc2conv.correlate(x1, w, **kw) + beta * fc2conv.correlate(x2, w, **kw)
    scale = (abs(alpha) + abs(beta) + 1) * max(np.abs(x1).max(), np.abs(x2).max()) * np.abs(w).sum()
    assert_close(lhs, rhs, scale=scale, what="linearity in x")


@given(conv_cases(), st.floats(-3, 3), st.floats(-3, 3))
def test_linear_in_w(case, alpha, beta):
    rng, x, w1, _ = case.arrays()
    w2 = rng.standard_normal(case.w_shape)
    kw = case.kwargs()
    lhs = fc2conv.correlate(x, alpha * w1 + beta * w2, **kw)
    rhs = alpha * fc2conv.correlate(x, w1, **kw) + beta * fc2conv.correlate(x, w2, **kw)
    scale = (abs(alpha) + abs(beta) + 1) * np.abs(x).max() * max(np.abs(w1).sum(), np.abs(w2).sum())
    assert_close(lhs, rhs, scale=scale, what="linearity in w")


@given(conv_cases())
def test_bias_is_added_per_output_channel(case):
    _, x, w, b = case.arrays(bias=True)
    kw = case.kwargs()
    with_bias = fc2conv.correlate(x, w, b, **kw)
    without = fc2conv.correlate(x, w, **kw)
    expected = without + b.reshape((1, -1) + (1,) * case.rank)
    assert_close(with_bias, expected, rtol=1e-13, scale=np.abs(expected).max() + 1)


@given(conv_cases())
def test_groups_are_independent_convolutions(case):
    _, x, w, _ = case.arrays()
    kw = case.kwargs()
    y = fc2conv.correlate(x, w, **kw)
    kw1 = dict(kw, groups=1)
    parts = [fc2conv.correlate(x[:, ci], w[co], **kw1) for ci, co in group_slices(case)]
    assert_close(y, np.concatenate(parts, axis=1), rtol=1e-12, scale=np.abs(y).max() + 1)


@given(conv_cases(), st.sampled_from(["im2col", "shift"]))
def test_methods_agree(case, method):
    _, x, w, b = case.arrays(bias=True)
    kw = case.kwargs()
    auto = fc2conv.correlate(x, w, b, **kw)
    other = fc2conv.correlate(x, w, b, method=method, **kw)
    assert_close(other, auto, rtol=1e-12, scale=np.abs(auto).max() + 1, what=method)
    conv_auto = fc2conv.convolve(x, w, b, **kw)
    conv_other = fc2conv.convolve(x, w, b, method=method, **kw)
    assert_close(conv_other, conv_auto, rtol=1e-12, scale=np.abs(conv_auto).max() + 1)


@given(conv_cases())
def test_rank_aliases_match_generic_op(case):
    _, x, w, b = case.arrays(bias=True)
    kw = case.kwargs()
    r = case.rank
    for generic, alias in [
        (fc2conv.correlate, getattr(fc2conv, f"correlate{r}d")),
        (fc2conv.convolve, getattr(fc2conv, f"convolve{r}d")),
    ]:
        np.testing.assert_array_equal(alias(x, w, b, **kw), generic(x, w, b, **kw))


# --------------------------------------------------------------------------------------------
# translation equivariance
# --------------------------------------------------------------------------------------------


@given(
    conv_cases(modes=("circular",), forms=("same",), max_stride=1, kernels=(1, 3)),
    st.data(),
)
def test_circular_same_padding_is_exactly_shift_equivariant(case, data):
    _, x, w, b = case.arrays(bias=True)
    shifts = tuple(
        data.draw(st.integers(-n, n), label=f"shift{i}") for i, n in enumerate(case.size)
    )
    kw = case.kwargs()
    axes = case.spatial_axes
    y = fc2conv.correlate(x, w, b, **kw)
    assert y.shape == x.shape[:1] + (case.c_out,) + x.shape[2:]
    y_shifted = fc2conv.correlate(np.roll(x, shifts, axis=axes), w, b, **kw)
    assert_close(y_shifted, np.roll(y, shifts, axis=axes), rtol=1e-12, scale=np.abs(y).max())
    # the same holds for true convolution
    z = fc2conv.convolve(x, w, b, **kw)
    z_shifted = fc2conv.convolve(np.roll(x, shifts, axis=axes), w, b, **kw)
    assert_close(z_shifted, np.roll(z, shifts, axis=axes), rtol=1e-12, scale=np.abs(z).max())


@given(
    conv_cases(modes=("circular",), forms=("same",), size_multiple_of_stride=True),
    st.data(),
)
def test_circular_strided_equivariance_to_shifts_by_stride_multiples(case, data):
    # y[i] = sum_a w[a] x[(i*s + a*d - p) mod n]: shifting x by t*s shifts y by t.
    _, x, w, _ = case.arrays()
    steps = tuple(
        data.draw(st.integers(-(n // s), n // s), label=f"t{i}")
        for i, (n, s) in enumerate(zip(case.size, case.stride))
    )
    axes = case.spatial_axes
    kw = case.kwargs()
    y = fc2conv.correlate(x, w, **kw)
    assert y.shape[2:] == tuple(n // s for n, s in zip(case.size, case.stride))
    x_shift = np.roll(x, tuple(t * s for t, s in zip(steps, case.stride)), axis=axes)
    y_shift = fc2conv.correlate(x_shift, w, **kw)
    assert_close(y_shift, np.roll(y, steps, axis=axes), rtol=1e-12, scale=np.abs(y).max())


@given(conv_cases(modes=("zeros",), max_stride=1), st.data())
def test_zero_padding_is_shift_equivariant_away_from_the_border(case, data):
    _, x, w, _ = case.arrays()
    kw = case.kwargs()
    shifts, out_sl, ref_sl = [], [slice(None)] * 2, [slice(None)] * 2
    for i, (n, e, (pb, _)) in enumerate(zip(case.size, case.eff, case.pads)):
        s = data.draw(st.integers(-(n - 1), n - 1), label=f"shift{i}")
        lo = pb + max(s, 0)  # outputs whose window only sees x' where x'[j] = x[j - s]
        hi = n - e + pb + min(s, 0)
        if lo > hi:
            return
        shifts.append(s)
        out_sl.append(slice(lo, hi + 1))
        ref_sl.append(slice(lo - s, hi + 1 - s))
    axes = case.spatial_axes
    y = fc2conv.correlate(x, w, **kw)
    y_shifted = fc2conv.correlate(np.roll(x, tuple(shifts), axis=axes), w, **kw)
    assert_close(
        y_shifted[tuple(out_sl)],
        y[tuple(ref_sl)],
        rtol=1e-12,
        scale=np.abs(y).max(),
        what="interior equivariance",
    )


# --------------------------------------------------------------------------------------------
# adjoint identities
# --------------------------------------------------------------------------------------------


@given(conv_cases(modes=("zeros",), forms=SYMMETRIC_FORMS))
def test_conv_transpose_is_the_adjoint_of_correlate(case):
    rng, x, w, _ = case.arrays()
    y = rng.standard_normal(case.y_shape)
    cx = fc2conv.correlate(x, w, **case.kwargs())
    ty = fc2conv.conv_transpose(y, w, **case.transpose_kwargs())
    assert ty.shape == x.shape
    assert_inner_equal((cx, y), (x, ty), what="<correlate(x), y> vs <x, conv_transpose(y)>")


@given(conv_cases(modes=("zeros",), forms=SYMMETRIC_FORMS))
def test_conv_transpose_bias_is_added(case):
    rng, _, w, _ = case.arrays()
    y = rng.standard_normal(case.y_shape)
    b = rng.standard_normal(case.c_in)
    kw = case.transpose_kwargs()
    with_bias = fc2conv.conv_transpose(y, w, b, **kw)
    expected = fc2conv.conv_transpose(y, w, **kw) + b.reshape((1, -1) + (1,) * case.rank)
    assert_close(with_bias, expected, rtol=1e-13, scale=np.abs(expected).max() + 1)


@given(conv_cases())
def test_correlate_vjp_is_the_adjoint_for_every_padding_mode(case):
    rng, x, w, b = case.arrays(bias=True)
    kw = case.kwargs()
    y = fc2conv.correlate(x, w, **kw)
    gy = rng.standard_normal(y.shape)
    gx, gw, gb = F.correlate_vjp(gy, x, w, b, **kw)
    assert gx.shape == x.shape and gw.shape == w.shape and gb.shape == b.shape
    assert_inner_equal((y, gy), (x, gx), what="x adjoint")
    assert_inner_equal((y, gy), (w, gw), what="w adjoint")  # y is linear in w as well
    assert_close(
        gb,
        gy.sum(axis=(0, *case.spatial_axes)),
        rtol=1e-12,
        scale=np.abs(gy).sum(),
        what="bias gradient",
    )
    _, _, none = F.correlate_vjp(gy, x, w, **kw)
    assert none is None


@given(conv_cases())
def test_convolve_vjp_is_the_adjoint_for_every_padding_mode(case):
    rng, x, w, _ = case.arrays()
    kw = case.kwargs()
    y = fc2conv.convolve(x, w, **kw)
    gy = rng.standard_normal(y.shape)
    gx, gw, gb = F.convolve_vjp(gy, x, w, **kw)
    assert gb is None
    assert_inner_equal((y, gy), (x, gx), what="x adjoint")
    assert_inner_equal((y, gy), (w, gw), what="w adjoint")


@given(conv_cases(modes=("zeros",), forms=SYMMETRIC_FORMS))
def test_correlate_vjp_x_equals_conv_transpose(case):
    rng, x, w, _ = case.arrays()
    gy = rng.standard_normal(case.y_shape)
    gx, _, _ = F.correlate_vjp(gy, x, w, **case.kwargs())
    ty = fc2conv.conv_transpose(gy, w, **case.transpose_kwargs())
    assert_close(gx, ty, rtol=1e-12, scale=np.abs(ty).max() + 1)


# --------------------------------------------------------------------------------------------
# gradients against finite differences
# --------------------------------------------------------------------------------------------


def _linear_loss(op, gy, **kw):
    def loss(*args):
        out = np.asarray(op(*args, **kw))
        return float(np.sum(out * gy)), float(np.sum(np.abs(out * gy)))

    return loss


@pytest.mark.parametrize("name", ["correlate", "convolve"])
@given(case=conv_cases())
def test_conv_gradients_match_finite_differences(name, case):
    op = getattr(fc2conv, name)
    vjp = getattr(F, f"{name}_vjp")
    rng, x, w, b = case.arrays(bias=True)
    kw = case.kwargs()
    gy = rng.standard_normal(case.y_shape)
    grads = vjp(gy, x, w, b, **kw)
    assert len(grads) == 3
    check_directional(_linear_loss(op, gy, **kw), (x, w, b), grads, rng, ("x", "w", "bias"))


@given(transpose_cases(), st.booleans())
def test_conv_transpose_gradients_match_finite_differences(case, with_bias):
    rng, x, w, b = case.arrays(bias=with_bias)
    kw = case.kwargs()
    y = fc2conv.conv_transpose(x, w, b, **kw)
    assert y.shape == (case.batch, case.c_out, *case.out_size)
    gy = rng.standard_normal(y.shape)
    grads = F.conv_transpose_vjp(gy, x, w, b, **kw)
    assert len(grads) == 3
    check_directional(
        _linear_loss(fc2conv.conv_transpose, gy, **kw), (x, w, b), grads, rng, ("x", "w", "bias")
    )


@given(pool_cases("max"))
def test_max_pool_gradient_matches_finite_differences(case):
    rng = np.random.default_rng(case.seed)
    size = math.prod(case.x_shape)
    # distinct values 0.01 apart: the argmax of every window is stable under the 1e-6 steps
    x = (rng.permutation(size).reshape(case.x_shape) - size / 2) * 0.01
    kw = case.kwargs()
    y = fc2conv.max_pool(x, case.kernel_arg, **kw)
    assert y.shape == case.x_shape[:2] + case.expected_out_size()
    gy = rng.standard_normal(y.shape)
    grads = F.max_pool_vjp(gy, x, case.kernel_arg, **kw)
    assert len(grads) == 1

    def loss(x):
        out = fc2conv.max_pool(x, case.kernel_arg, **kw)
        return float(np.sum(out * gy)), float(np.sum(np.abs(out * gy)))

    check_directional(loss, (x,), grads, rng, ("x",), n_dirs=3)
    # each output's gradient lands on exactly one input: mass is conserved
    assert_close(np.sum(grads[0]), np.sum(gy), rtol=1e-12, scale=np.abs(gy).sum())


@given(pool_cases("avg"))
def test_avg_pool_gradient_matches_finite_differences(case):
    rng = np.random.default_rng(case.seed)
    x = rng.standard_normal(case.x_shape)
    kw = case.kwargs()
    y = fc2conv.avg_pool(x, case.kernel_arg, **kw)
    assert y.shape == case.x_shape[:2] + case.expected_out_size()
    gy = rng.standard_normal(y.shape)
    grads = F.avg_pool_vjp(gy, x, case.kernel_arg, **kw)
    assert len(grads) == 1

    def loss(x):
        out = fc2conv.avg_pool(x, case.kernel_arg, **kw)
        return float(np.sum(out * gy)), float(np.sum(np.abs(out * gy)))

    check_directional(loss, (x,), grads, rng, ("x",), n_dirs=3)
    assert_inner_equal((y, gy), (x, grads[0]), what="avg_pool adjoint")


# --------------------------------------------------------------------------------------------
# pooling properties
# --------------------------------------------------------------------------------------------


@given(pool_cases("max"))
def test_max_pool_commutes_with_increasing_maps(case):
    # fl(2 t + 1) is non-decreasing in t, so max and the map commute exactly
    rng = np.random.default_rng(case.seed)
    x = rng.standard_normal(case.x_shape)
    kw = case.kwargs()
    lhs = fc2conv.max_pool(2 * x + 1, case.kernel_arg, **kw)
    rhs = 2 * fc2conv.max_pool(x, case.kernel_arg, **kw) + 1
    np.testing.assert_array_equal(lhs, rhs)
    # and every pooled value is one of the inputs of its channel
    y = fc2conv.max_pool(x, case.kernel_arg, **kw)
    for n in range(case.batch):
        for c in range(case.channels):
            assert np.isin(y[n, c], x[n, c]).all()


@given(pool_cases("max"))
def test_max_pool_with_unit_kernel_is_identity_subsampling(case):
    rng = np.random.default_rng(case.seed)
    x = rng.standard_normal(case.x_shape)
    stride = case.stride or (1,) * len(case.size)
    y = fc2conv.max_pool(x, 1, stride=stride)
    sub = (slice(None), slice(None)) + tuple(slice(None, None, s) for s in stride)
    np.testing.assert_array_equal(y, x[sub])


@given(pool_cases("avg"))
def test_avg_pool_is_a_depthwise_correlation_with_a_box_kernel(case):
    # count_include_pad=True, floor mode: every window divides by prod(kernel)
    rng = np.random.default_rng(case.seed)
    x = rng.standard_normal(case.x_shape)
    kw = dict(case.kwargs(), ceil_mode=False, count_include_pad=True)
    y = fc2conv.avg_pool(x, case.kernel_arg, **kw)
    box = np.full((case.channels, 1, *case.kernel), 1.0 / math.prod(case.kernel))
    stride = case.stride if case.stride is not None else case.kernel
    z = fc2conv.correlate(x, box, stride=stride, padding=case.padding, groups=case.channels)
    assert_close(y, z, rtol=1e-12, scale=np.abs(x).max())


@given(pool_cases("avg"), st.floats(-100, 100, allow_subnormal=False))
def test_avg_pool_without_padding_count_preserves_constants(case, value):
    x = np.full(case.x_shape, value)
    kw = dict(case.kwargs(), count_include_pad=False)
    y = fc2conv.avg_pool(x, case.kernel_arg, **kw)
    assert y.shape == case.x_shape[:2] + case.expected_out_size()
    assert_close(y, np.full(y.shape, value), rtol=1e-14, scale=abs(value))


@given(pool_cases("avg"), st.floats(-3, 3), st.floats(-3, 3))
def test_avg_pool_is_linear(case, alpha, beta):
    rng = np.random.default_rng(case.seed)
    x1 = rng.standard_normal(case.x_shape)
    x2 = rng.standard_normal(case.x_shape)
    kw = case.kwargs()
    lhs = fc2conv.avg_pool(alpha * x1 + beta * x2, case.kernel_arg, **kw)
    rhs = alpha * fc2conv.avg_pool(x1, case.kernel_arg, **kw) + beta * fc2conv.avg_pool(
        x2, case.kernel_arg, **kw
    )
    assert_close(lhs, rhs, rtol=1e-12, scale=(abs(alpha) + abs(beta) + 1) * 5)


# --------------------------------------------------------------------------------------------
# convolution versus correlation
# --------------------------------------------------------------------------------------------


@given(conv_cases())
def test_convolve_is_correlate_with_flipped_kernel(case):
    _, x, w, b = case.arrays(bias=True)
    kw = case.kwargs()
    assert_close(
        fc2conv.convolve(x, w, b, **kw),
        fc2conv.correlate(x, flip_kernel(w), b, **kw),
        rtol=1e-12,
        scale=np.abs(x).max() * np.abs(w).sum() + np.abs(b).max(),
    )


@given(st.integers(1, 12), st.integers(1, 6), st.sampled_from(["full", "valid", "same"]), seeds)
def test_convolve1d_matches_the_textbook_sum(n, k, padding, seed):
    # (f * g)(i) = sum_a f(a) g(i - a), the seed's discrete convolution
    rng = np.random.default_rng(seed)
    f = rng.standard_normal(k)
    g = rng.standard_normal(n)
    full = np.array(
        [sum(f[a] * g[i - a] for a in range(k) if 0 <= i - a < n) for i in range(n + k - 1)]
    )
    if padding == "full":
        expected = full
    elif padding == "valid":
        if n < k:
            return
        expected = full[k - 1 : n]
    else:
        # "same" pads x by (k-1)//2 before and the rest after, exactly as for correlate, so
        # convolve(x, f) = correlate(x, flip(f)) starts at full[k - 1 - (k-1)//2]
        start = k - 1 - (k - 1) // 2
        expected = full[start : start + n]
    y = fc2conv.convolve(g[None, None], f[None, None], padding=padding)
    assert_close(y[0, 0], expected, rtol=1e-12, scale=np.abs(f).sum() * np.abs(g).max())


# --------------------------------------------------------------------------------------------
# the operator as a dense matrix
# --------------------------------------------------------------------------------------------


def dense_matrix(fn, in_shape):
    """Matrix of the linear map fn by applying it to every basis vector of in_shape."""
    size = math.prod(in_shape)
    cols = []
    for j in range(size):
        e = np.zeros(size)
        e[j] = 1.0
        cols.append(np.asarray(fn(e.reshape(in_shape))).ravel())
    return np.stack(cols, axis=1)


def _source_index(q, n, mode):
    """Index into x that padded position q (q may be outside [0, n)) reads, or None (zero)."""
    if 0 <= q < n:
        return q
    if mode == "zeros":
        return None
    if mode == "replicate":
        return min(max(q, 0), n - 1)
    if mode == "circular":
        return q % n
    if mode == "reflect":  # d c b | a b c d | c b a
        return -q if q < 0 else 2 * (n - 1) - q
    if mode == "symmetric":  # c b a | a b c d | d c b
        return -q - 1 if q < 0 else 2 * n - 1 - q
    raise AssertionError(mode)


@given(conv_cases(ranks=(1, 2, 3), batches=(1,), max_in_size=96))
def test_correlate_equals_its_dense_matrix_and_the_vjp_is_its_transpose(case):
    _rng, x, w, _ = case.arrays()
    kw = case.kwargs()
    M = dense_matrix(lambda e: fc2conv.correlate(e, w, **kw), x.shape)
    y = fc2conv.correlate(x, w, **kw)
    assert M.shape == (y.size, x.size)
    assert_close(M @ x.ravel(), y.ravel(), rtol=1e-12, scale=np.abs(y).max() + 1)
    # locality: each output reads at most C_in/groups * prod(K) inputs
    # (circular/reflect wrap can fold several taps onto one input, never more inputs)
    assert (
        np.count_nonzero(M, axis=1) <= (case.c_in // case.groups) * math.prod(case.kernel)
    ).all()
    # the VJP with respect to x is multiplication by M^T
    Mt = dense_matrix(lambda e: F.correlate_vjp(e, x, w, **kw)[0], y.shape)
    assert_close(Mt, M.T, rtol=1e-12, scale=np.abs(M).max() + 1, what="vjp matrix")


@given(conv_cases(modes=("zeros",), forms=SYMMETRIC_FORMS, batches=(1,), max_in_size=96))
def test_conv_transpose_matrix_is_the_transpose(case):
    _, x, w, _ = case.arrays()
    M = dense_matrix(lambda e: fc2conv.correlate(e, w, **case.kwargs()), x.shape)
    T = dense_matrix(
        lambda e: fc2conv.conv_transpose(e, w, **case.transpose_kwargs()), case.y_shape
    )
    assert T.shape == M.T.shape
    assert_close(T, M.T, rtol=1e-12, scale=np.abs(M).max(), what="conv_transpose matrix")


@given(conv_cases(batches=(1,), max_in_size=96))
def test_dense_matrix_matches_the_index_formula(case):
    # M[(o, i), (c, j)] = sum_a w[o, c', a] * prod_dims [j == src(i*s + a*d - p_before)],
    # with src() the padding mode's index map written out by hand (_source_index)
    _, x, w, _ = case.arrays()
    out_size = case.out_size
    expected = np.zeros((case.c_out, *out_size, case.c_in, *case.size))
    taps = list(itertools.product(*(range(k) for k in case.kernel)))
    for ci, co in group_slices(case):
        for i in itertools.product(*(range(m) for m in out_size)):
            for a in taps:
                j = tuple(
                    _source_index(ii * s + aa * d - pb, n, case.padding_mode)
                    for ii, aa, s, d, (pb, _), n in zip(
                        i, a, case.stride, case.dilation, case.pads, case.size
                    )
                )
                if None in j:
                    continue
                for o in range(co.start, co.stop):
                    for c_local, c in enumerate(range(ci.start, ci.stop)):
                        expected[(o, *i, c, *j)] += w[(o, c_local, *a)]
    M = dense_matrix(lambda e: fc2conv.correlate(e, w, **case.kwargs()), x.shape)
    assert_close(
        M,
        expected.reshape(M.shape),
        rtol=1e-13,
        scale=np.abs(w).max(),
        what=f"{case.padding_mode} matrix",
    )


@given(
    st.integers(2, 9),
    st.sampled_from([1, 3, 5]),
    st.sampled_from(["zeros", "circular"]),
    seeds,
)
def test_translation_invariance_means_toeplitz_or_circulant(n, k, mode, seed):
    # The seed's argument: W[i, k] = V[k - i] does not depend on i, so the dense matrix is
    # Toeplitz (zeros) or circulant (circular padding, "same").
    assume(mode == "zeros" or k <= n)
    w = np.random.default_rng(seed).standard_normal((1, 1, k))
    M = dense_matrix(
        lambda e: fc2conv.correlate(e, w, padding="same", padding_mode=mode), (1, 1, n)
    )
    assert M.shape == (n, n)
    for i in range(n):
        for j in range(n):
            if mode == "circular":
                expected = sum(w[0, 0, a] for a in range(k) if (i + a - k // 2) % n == j)
            else:
                expected = w[0, 0, j - i + k // 2] if 0 <= j - i + k // 2 < k else 0.0
            assert M[i, j] == pytest.approx(expected, abs=1e-14)
    if mode == "circular":
        np.testing.assert_allclose(M, np.roll(np.roll(M, 1, axis=0), 1, axis=1), atol=1e-14)
    else:
        np.testing.assert_allclose(M[1:, 1:], M[:-1, :-1], atol=1e-14)
