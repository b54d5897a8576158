"""Hypothesis strategies and comparison helpers shared by the oracle-agreement suites.

Used by ``test_vs_reference.py``, ``test_vs_torch.py`` and ``test_vs_scipy.py``. Cases are small
random configurations of the ops; array values come from a NumPy generator seeded by a drawn
integer (cheap to generate, and Hypothesis still shrinks the configuration).

Tolerances follow the standard error bound for a sum of ``L`` products computed in floating
point (Higham, *Accuracy and Stability of Numerical Algorithms*, 3.1):
``|fl(s) - s| <= gamma_L * sum |terms|`` with ``gamma_L ~ L * eps``, whatever the summation
order. ``sum |terms|`` is obtained exactly by running the same (multi)linear op on the absolute
values of its operands; a small floor proportional to the largest such bound covers algorithms
whose error is spread over all outputs (FFT).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from _record import record
from hypothesis import assume
from hypothesis import strategies as st

PADDING_MODES = ("zeros", "reflect", "symmetric", "replicate", "circular")
DTYPES = (np.float32, np.float64)
METHODS = ("auto", "im2col", "shift")
MAX_SIZE = {1: 12, 2: 8, 3: 5}


# ---------------------------------------------------------------------------------------------
# padding arithmetic from the contract (DESIGN.md), used to drive torch / scipy
# ---------------------------------------------------------------------------------------------


def as_tuple(value: int | tuple[int, ...], d: int) -> tuple[int, ...]:
    return (int(value),) * d if isinstance(value, (int, np.integer)) else tuple(value)


def explicit_pairs(padding, sizes, kernel, stride, dilation) -> tuple[tuple[int, int], ...]:
    """(before, after) per spatial dim for every padding form of the contract."""
    d = len(sizes)
    stride = as_tuple(stride, d)
    dilation = as_tuple(dilation, d)
    if padding == "valid":
        return ((0, 0),) * d
    if padding == "full":
        return tuple((dl * (k - 1),) * 2 for k, dl in zip(kernel, dilation))
    if padding == "same":
        out = []
        for n, k, s, dl in zip(sizes, kernel, stride, dilation):
            total = max((-(-n // s) - 1) * s + dl * (k - 1) + 1 - n, 0)
            out.append((total // 2, total - total // 2))
        return tuple(out)
    if isinstance(padding, (int, np.integer)):
        return ((int(padding),) * 2,) * d
    return tuple((p, p) if isinstance(p, (int, np.integer)) else tuple(p) for p in padding)


# ---------------------------------------------------------------------------------------------
# cases
# ---------------------------------------------------------------------------------------------


@dataclass
class Case:
    """One random configuration: arrays plus the keyword arguments of the op."""

    x: np.ndarray
    w: np.ndarray | None
    b: np.ndarray | None
    kwargs: dict[str, Any]
    dtype: Any
    extra: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:  # short, reproducible description for failure reports
        shapes = f"x{self.x.shape} w{None if self.w is None else self.w.shape}"
        return (
            f"Case({shapes}, bias={self.b is not None}, dtype={np.dtype(self.dtype).name}, "
            f"kwargs={self.kwargs}, extra={self.extra})"
        )


def _arrays(seed: int, dtype, *shapes):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


@st.composite
def groups_and_channels(draw, max_channels: int = 4):
    """(C_in, C_out, groups) with groups | C_in and groups | C_out; depthwise included."""
    c_in = draw(st.integers(1, max_channels))
    divisors = [g for g in range(1, c_in + 1) if c_in % g == 0]
    groups = draw(st.sampled_from(divisors))
    if draw(st.booleans()):
        groups = c_in  # depthwise is common enough to deserve a larger share
    c_out = groups * draw(st.integers(1, 2 if groups > 1 else max_channels))
    return c_in, c_out, groups


@st.composite
def padding_forms(draw, d: int, max_pad: int = 2, strings: bool = True):
    forms = ["int", "tuple", "pairs"] + (["valid", "same", "full"] if strings else [])
    form = draw(st.sampled_from(forms))
    if form == "int":
        return draw(st.integers(0, max_pad))
    if form == "tuple":
        return tuple(draw(st.integers(0, max_pad)) for _ in range(d))
    if form == "pairs":
        return tuple(
            (draw(st.integers(0, max_pad + 1)), draw(st.integers(0, max_pad + 1)))
            for _ in range(d)
        )
    return form


def _per_dim_or_int(draw, d: int, lo: int, hi: int):
    """An int, or (half the time) a tuple with one value per dim."""
    if d > 1 and draw(st.booleans()):
        return tuple(draw(st.integers(lo, hi)) for _ in range(d))
    return draw(st.integers(lo, hi))


@st.composite
def geometries(draw, d: int, modes=PADDING_MODES, max_size=None, *, max_kernel: int = 3,
               max_pad: int = 2, torch_limits: bool = False):
    """Kernel, stride, dilation, padding, mode and an input size the dilated kernel fits.

    Returns ``(kernel, stride, dilation, padding, mode, sizes, pairs)`` with ``pairs`` the
    explicit ``(before, after)`` padding. With ``torch_limits`` the padding respects what
    ``torch.nn.functional.pad`` accepts: reflect widths below the input size, circular widths
    at most the input size.
    """
    max_size = max_size or MAX_SIZE
    kernel = tuple(draw(st.integers(1, max_kernel)) for _ in range(d))
    stride = _per_dim_or_int(draw, d, 1, 3)
    dilation = _per_dim_or_int(draw, d, 1, 2)
    padding = draw(padding_forms(d, max_pad=max_pad))
    mode = draw(st.sampled_from(modes))
    strides, dils = as_tuple(stride, d), as_tuple(dilation, d)
    fixed = (
        None if padding == "same" else explicit_pairs(padding, (1,) * d, kernel, strides, dils)
    )
    sizes = []
    for i in range(d):
        span = dils[i] * (kernel[i] - 1) + 1
        lo = 1 if fixed is None else max(1, span - sum(fixed[i]))
        if torch_limits and fixed is not None and mode == "reflect":
            lo = max(lo, max(fixed[i]) + 1)
        if torch_limits and fixed is not None and mode == "circular":
            lo = max(lo, max(fixed[i]))
        assume(lo <= max_size[d])
        sizes.append(draw(st.integers(lo, max_size[d])))
    pairs = explicit_pairs(padding, sizes, kernel, strides, dils)
    if torch_limits and mode == "reflect":
        assume(all(max(p) < n for p, n in zip(pairs, sizes)))
    if torch_limits and mode == "circular":
        assume(all(max(p) <= n for p, n in zip(pairs, sizes)))
    return kernel, stride, dilation, padding, mode, sizes, pairs


@st.composite
def conv_cases(
    draw,
    ranks=(1, 2, 3),
    modes=PADDING_MODES,
    dtypes=DTYPES,
    torch_limits: bool = False,
    max_channels: int = 4,
):
    """A correlate/convolve configuration whose dilated kernel fits the padded input.

    With ``torch_limits`` the padding respects what ``torch.nn.functional.pad`` accepts:
    reflect widths below the input size, circular widths at most the input size.
    """
    d = draw(st.sampled_from(ranks))
    c_in, c_out, groups = draw(groups_and_channels(max_channels))
    geo = draw(geometries(d, modes, {d: MAX_SIZE[d]}, torch_limits=torch_limits))
    kernel, stride, dilation, padding, mode, sizes, pairs = geo
    batch = draw(st.integers(1, 2))
    dtype = draw(st.sampled_from(dtypes))
    with_bias = draw(st.booleans())
    x, w, b = _arrays(
        draw(st.integers(0, 2**32 - 1)),
        dtype,
        (batch, c_in, *sizes),
        (c_out, c_in // groups, *kernel),
        (c_out,),
    )
    kwargs = {
        "stride": stride,
        "padding": padding,
        "dilation": dilation,
        "groups": groups,
        "padding_mode": mode,
    }
    return Case(x, w, b if with_bias else None, kwargs, dtype, {"pairs": pairs})


@st.composite
def conv_transpose_cases(draw, ranks=(1, 2, 3), dtypes=DTYPES, pairs_padding: bool = True):
    """A conv_transpose configuration (zeros padding) with a non-empty output and
    ``output_padding < max(stride, dilation)`` per dim, as PyTorch requires."""
    d = draw(st.sampled_from(ranks))
    c_in, c_out, groups = draw(groups_and_channels())
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(d))
    stride = _per_dim_or_int(draw, d, 1, 3)
    dilation = _per_dim_or_int(draw, d, 1, 2)
    strides, dils = as_tuple(stride, d), as_tuple(dilation, d)
    max_in = {1: 6, 2: 4, 3: 3}[d]
    sizes = tuple(draw(st.integers(1, max_in)) for _ in range(d))
    ops = tuple(draw(st.integers(0, max(s, dl) - 1)) for s, dl in zip(strides, dils))
    output_padding = ops[0] if len(set(ops)) == 1 and draw(st.booleans()) else ops
    # output length before cropping; the padding may remove all but one element of it
    uncropped = [
        (m - 1) * s + dl * (k - 1) + op + 1
        for m, s, dl, k, op in zip(sizes, strides, dils, kernel, ops)
    ]
    if pairs_padding and draw(st.booleans()):
        pairs = []
        for n in uncropped:
            before = draw(st.integers(0, min(2, n - 1)))
            pairs.append((before, draw(st.integers(0, min(2, n - 1 - before)))))
        padding = tuple(pairs)
    else:
        limit = min(2, min((n - 1) // 2 for n in uncropped))
        if d > 1 and draw(st.booleans()):
            padding = tuple(draw(st.integers(0, min(2, (n - 1) // 2))) for n in uncropped)
        else:
            padding = draw(st.integers(0, limit))
        pairs = [(p, p) for p in as_tuple(padding, d)]
    out = tuple(n - pb - pa for n, (pb, pa) in zip(uncropped, pairs))
    assert all(n >= 1 for n in out)
    batch = draw(st.integers(1, 2))
    dtype = draw(st.sampled_from(dtypes))
    with_bias = draw(st.booleans())
    x, w, b = _arrays(
        draw(st.integers(0, 2**32 - 1)),
        dtype,
        (batch, c_in, *sizes),
        (c_in, c_out // groups, *kernel),
        (c_out,),
    )
    kwargs = {
        "stride": stride,
        "padding": padding,
        "output_padding": output_padding,
        "dilation": dilation,
        "groups": groups,
    }
    return Case(x, w, b if with_bias else None, kwargs, dtype, {"out": out})


@st.composite
def pool_cases(draw, kind: str, ranks=(1, 2, 3), dtypes=DTYPES):
    """A max_pool (``kind="max"``) or avg_pool (``kind="avg"``) configuration within PyTorch's
    limits: padding at most ``kernel_size // 2``, output non-empty."""
    d = draw(st.sampled_from(ranks))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(d))
    dils = tuple(draw(st.integers(1, 2)) for _ in range(d)) if kind == "max" else (1,) * d
    # torch 2.13 wants padding <= kernel_size // 2 for both kinds (not the dilated window)
    half = [k // 2 for k in kernel]
    padding = tuple(draw(st.integers(0, h)) for h in half)
    strides = tuple(draw(st.integers(1, 3)) for _ in range(d))
    sizes = []
    for k, dl, p in zip(kernel, dils, padding):
        lo = max(1, dl * (k - 1) + 1 - 2 * p)
        sizes.append(draw(st.integers(lo, MAX_SIZE[d])))
    channels = draw(st.integers(1, 3))
    batch = draw(st.integers(1, 2))
    dtype = draw(st.sampled_from(dtypes))
    (x,) = _arrays(draw(st.integers(0, 2**32 - 1)), dtype, (batch, channels, *sizes))

    def maybe_int(t):
        return t[0] if len(set(t)) == 1 and draw(st.booleans()) else t

    kwargs: dict[str, Any] = {
        "stride": None if draw(st.booleans()) else maybe_int(strides),
        "padding": maybe_int(padding),
        "ceil_mode": draw(st.booleans()),
    }
    if kind == "max":
        kwargs["dilation"] = maybe_int(dils)
    else:
        kwargs["count_include_pad"] = draw(st.booleans())
    return Case(x, None, None, kwargs, dtype, {"kernel_size": maybe_int(kernel)})


# ---------------------------------------------------------------------------------------------
# comparison
# ---------------------------------------------------------------------------------------------


def conv_terms(case: Case, y_shape: tuple[int, ...]) -> int:
    """Longest sum behind any forward value or gradient entry of a correlate/convolve case."""
    x, w = case.x, case.w
    assert w is not None
    k = math.prod(w.shape[2:])
    groups = case.kwargs["groups"]
    # an input element can be read several times through reflect / symmetric / circular padding
    reps = math.prod(
        -(-(n + pb + pa) // n) + 1 for n, (pb, pa) in zip(x.shape[2:], case.extra["pairs"])
    )
    return (
        max(
            w.shape[1] * k,  # forward
            (w.shape[0] // groups) * k * reps,  # grad x
            y_shape[0] * math.prod(y_shape[2:]),  # grad w, grad b
        )
        + 1
    )


def conv_transpose_terms(case: Case, y_shape: tuple[int, ...]) -> int:
    """Longest sum behind any forward value or gradient entry of a conv_transpose case."""
    x, w = case.x, case.w
    assert w is not None
    k = math.prod(w.shape[2:])
    return (
        max(
            w.shape[0] // case.kwargs["groups"] * k,
            w.shape[1] * k,
            x.shape[0] * math.prod(x.shape[2:]),
            y_shape[0] * math.prod(y_shape[2:]),
        )
        + 1
    )


def to_numpy(a) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def compare(
    oracle: str,
    actual,
    desired,
    bound,
    terms: int,
    dtype,
    what: str = "",
    c: float = 4.0,
    check_dtype: bool = True,
    relative_to: str = "desired",
) -> float:
    """Assert ``|actual - desired| <= c * eps * (terms * bound + sqrt(terms) * max(bound))``
    elementwise, record the relative error with the oracle tally and return it.

    ``bound`` is the sum of absolute values of the terms behind each output (the op applied
    to absolute values), ``terms`` the number of terms in the longest such sum. The recorded
    relative error divides by ``max|desired|``, or with ``relative_to="bound"`` by
    ``max(bound)`` (for scalar identities whose value may cancel to near zero).
    """
    actual = np.atleast_1d(to_numpy(actual))
    desired = np.atleast_1d(to_numpy(desired).astype(np.float64))
    bound = np.atleast_1d(to_numpy(bound).astype(np.float64))
    assert actual.shape == desired.shape, f"{what}: shape {actual.shape} != {desired.shape}"
    if check_dtype:
        assert actual.dtype == np.dtype(dtype), f"{what}: dtype {actual.dtype} != {dtype}"
    with np.errstate(invalid="ignore"):
        err = np.abs(actual.astype(np.float64) - desired)
    err[actual == desired] = 0.0  # equal infinities (a max-pool window of padding only)
    err[np.isnan(actual) & np.isnan(desired)] = 0.0
    eps = float(np.finfo(dtype).eps)
    scale = float(np.max(bound, initial=0.0))
    tol = c * eps * (terms * bound + math.sqrt(terms) * scale)
    denominator = scale if relative_to == "bound" else float(np.max(np.abs(desired), initial=0))
    rel = float(np.max(err, initial=0.0)) / max(denominator, np.finfo(np.float64).tiny)
    record(oracle, np.dtype(dtype).name, rel)
    nan_a, nan_d = np.isnan(actual), np.isnan(desired)
    assert np.array_equal(nan_a, nan_d), f"{what}: NaN positions differ"
    ok = (err <= tol) | nan_d
    if not ok.all():
        idx = np.unravel_index(np.argmax(np.where(ok, 0, err - tol)), err.shape)
        raise AssertionError(
            f"{what}: {int((~ok).sum())} of {ok.size} elements out of tolerance; worst at "
            f"{tuple(int(i) for i in idx)}: got {actual[idx]!r}, expected {desired[idx]!r}, "
            f"tol {tol[idx]:.3g}; max rel err {rel:.3g}"
        )
    return rel


def weight_grad_oracle(gy, x_pad, kernel, stride, dilation, groups):
    """``gw[o, c, a] = sum_{n, i} gy[n, o, i] * x_pad[n, g*Cg + c, i*stride + a*dilation]``
    in float64, one kernel offset at a time."""
    gy, x_pad = gy.astype(np.float64), x_pad.astype(np.float64)
    n, c_out, *out = gy.shape
    cg = x_pad.shape[1] // groups
    gw = np.zeros((c_out, cg, *kernel))
    gy_g = gy.reshape(n, groups, c_out // groups, -1)
    for a in np.ndindex(*kernel):
        index = tuple(slice(o * d, o * d + s * (m - 1) + 1, s)
                      for o, s, d, m in zip(a, stride, dilation, out))
        xs = x_pad[(..., *index)].reshape(n, groups, cg, -1)
        gw[(..., *a)] = np.einsum("ngop,ngcp->goc", gy_g, xs).reshape(c_out, cg)
    return gw


def check_vjp_by_probes(oracle: str, case: Case, method: str, seed: int):
    """``correlate_vjp(method=...)``'s input and weight gradients against the float64 oracle
    by exact random-probe identities (the op is linear in x and in w): ``<gx, v> = <gy,
    f(v, w)>`` and ``<gw, u> = <gy, f(x, u)>``; shapes and dtypes checked. Returns
    ``(gy, gx, gw, gb)``."""
    from fc2conv.functional import correlate_vjp
    from fc2conv.functional import reference as ref

    y_ref = ref.correlate(case.x, case.w, case.b, **case.kwargs)
    rng = np.random.default_rng(seed)
    gy = rng.standard_normal(y_ref.shape).astype(case.dtype)
    v, u = rng.standard_normal(case.x.shape), rng.standard_normal(case.w.shape)
    gx, gw, gb = correlate_vjp(gy, case.x, case.w, case.b, **case.kwargs, method=method)
    assert gx.shape == case.x.shape and gx.dtype == case.dtype
    assert gw.shape == case.w.shape and gw.dtype == case.dtype
    terms = conv_terms(case, y_ref.shape)
    ag = np.abs(gy)
    compare(oracle, np.vdot(gx, v), np.vdot(gy, ref.correlate(v, case.w, **case.kwargs)),
            np.vdot(ag, ref.correlate(np.abs(v), np.abs(case.w), **case.kwargs)), terms,
            case.dtype, what=f"{method} gx", check_dtype=False, relative_to="bound")
    compare(oracle, np.vdot(gw, u), np.vdot(gy, ref.correlate(case.x, u, **case.kwargs)),
            np.vdot(ag, ref.correlate(np.abs(case.x), np.abs(u), **case.kwargs)), terms,
            case.dtype, what=f"{method} gw", check_dtype=False, relative_to="bound")
    return gy, gx, gw, gb


def check_unpadded_steps(oracle: str, spec, x, w, gy, y, gx, gw, dtype) -> None:
    """A method's three steps on the *unpadded* input (``padded=False``, the padding read by
    the method), elementwise against float64 oracles: the forward against the reference on
    the zero-padded input, the input gradient against the GEMM method's padded one with the
    padding cut off, the weight gradient against :func:`weight_grad_oracle`."""
    import fc2conv
    from fc2conv import _padding
    from fc2conv.functional import reference as ref

    x_pad = _padding.pad(np, x.astype(np.float64), spec.pads, "zeros")
    kw = {"stride": spec.stride, "dilation": spec.dilation, "groups": spec.groups}
    compare(oracle, y, ref.correlate(x_pad, w, **kw),
            ref.correlate(np.abs(x_pad), np.abs(w), **kw), math.prod(w.shape[1:]) + 1, dtype,
            what="forward")
    shift = fc2conv.algorithms.implementation(spec, "shift")
    want, bound = (_padding.pad_vjp(np, shift.input_grad(np, g.astype(np.float64),
                                                         v.astype(np.float64), spec, "shift"),
                                    spec.in_size, spec.pads, "zeros")
                   for g, v in ((gy, w), (np.abs(gy), np.abs(w))))
    compare(oracle, gx, want, bound, w.shape[0] // spec.groups * math.prod(spec.kernel) + 1,
            dtype, what="input_grad")
    args = (spec.kernel, spec.stride, spec.dilation, spec.groups)
    compare(oracle, gw, weight_grad_oracle(gy, x_pad, *args),
            weight_grad_oracle(np.abs(gy), np.abs(x_pad), *args),
            spec.batch * math.prod(spec.out_size) + 1, dtype, what="weight_grad")
