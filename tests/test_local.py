"""The untied layers: ``dense_grid`` and ``local_correlate`` and their VJPs.

* Forward: the fast paths agree with the float64 loop oracle (``fc2conv.functional.reference``)
  over ranks 1-3, batch, channels, stride, dilation, every padding form and mode, bias
  absent / shared ``(C_out,)`` / per position ``(*S_out, C_out)``, float32 and float64. float32
  uses the rounding-error bound of ``_strategies.compare``; float64 must also be within
  ``1e-12`` of the oracle relative to the size of the terms.
* Gradients: (a) entrywise central differences of the oracle in float64 (exact up to rounding:
  the ops are linear in each argument), (b) the adjoint identities
  ``<f(x, w), y> = <x, gx(y)> = <w, gw(y)>`` on the fast paths, through every padding mode
  (the fold of the padding), (c) PyTorch autograd through ``pad + unfold + einsum`` in 2-D.
* Cost: a 512x512 grid with a 3x3 kernel, where a dense ``(P, Q)`` matrix (``512**4``
  entries) could not even be allocated.
* Errors, array-API namespaces (torch, array_api_strict) and the 1d/2d/3d aliases.
"""

from __future__ import annotations

import math
import re
import tracemalloc

import numpy as np
import pytest
from _record import record
from _strategies import (
    DTYPES,
    MAX_SIZE,
    PADDING_MODES,
    Case,
    _arrays,
    as_tuple,
    compare,
    geometries,
)
from hypothesis import given
from hypothesis import strategies as st

import fc2conv
import fc2conv.functional as ff
from fc2conv import DTypeError, ShapeError
from fc2conv.functional import reference as ref

BIAS_KINDS = ("none", "shared", "position")
F64_REL = 1e-12  # float64 agreement, relative to the sum of |terms|


# ---------------------------------------------------------------------------------------------
# cases
# ---------------------------------------------------------------------------------------------


def _bias(kind, shared, per_position):
    return {"none": None, "shared": shared, "position": per_position}[kind]


@st.composite
def local_cases(
    draw,
    ranks=(1, 2, 3),
    modes=PADDING_MODES,
    dtypes=DTYPES,
    max_size=None,
    max_channels: int = 3,
    max_kernel: int = 3,
    torch_limits: bool = False,
):
    """A local_correlate configuration: x, w ``(*S_out, C_out, C_in, *K)`` and a bias.

    Sizes are those of ``_strategies.conv_cases`` with the padding kept narrower in 3-D (the
    oracle loops over output positions). ``torch_limits`` keeps the padding within what
    ``torch.nn.functional.pad`` accepts.
    """
    max_size = max_size or {1: MAX_SIZE[1], 2: 6, 3: 4}
    d = draw(st.sampled_from(ranks))
    c_in = draw(st.integers(1, max_channels))
    c_out = draw(st.integers(1, max_channels))
    kernel, stride, dilation, padding, mode, sizes, pairs = draw(geometries(
        d, modes, max_size, max_kernel=max_kernel, max_pad=2 if d < 3 else 1,
        torch_limits=torch_limits))
    strides, dils = as_tuple(stride, d), as_tuple(dilation, d)
    out = tuple(
        (n + pb + pa - dl * (k - 1) - 1) // s + 1
        for n, (pb, pa), k, s, dl in zip(sizes, pairs, kernel, strides, dils)
    )
    assert all(m >= 1 for m in out)
    batch = draw(st.integers(1, 2))
    dtype = draw(st.sampled_from(dtypes))
    kind = draw(st.sampled_from(BIAS_KINDS))
    x, w, b_shared, b_pos = _arrays(
        draw(st.integers(0, 2**32 - 1)),
        dtype,
        (batch, c_in, *sizes),
        (*out, c_out, c_in, *kernel),
        (c_out,),
        (*out, c_out),
    )
    kwargs = {"stride": stride, "padding": padding, "dilation": dilation, "padding_mode": mode}
    extra = {"pairs": pairs, "out": out, "bias": kind}
    return Case(x, w, _bias(kind, b_shared, b_pos), kwargs, dtype, extra)


@st.composite
def dense_cases(draw, ranks=(1, 2, 3), dtypes=DTYPES, max_size=None, max_channels: int = 3):
    """A dense_grid configuration: ``S_out`` independent of ``S_in``."""
    max_size = max_size or {1: 8, 2: 4, 3: 3}
    d = draw(st.sampled_from(ranks))
    c_in = draw(st.integers(1, max_channels))
    c_out = draw(st.integers(1, max_channels))
    s_in = tuple(draw(st.integers(1, max_size[d])) for _ in range(d))
    s_out = tuple(draw(st.integers(1, max_size[d])) for _ in range(d))
    batch = draw(st.integers(1, 2))
    dtype = draw(st.sampled_from(dtypes))
    kind = draw(st.sampled_from(BIAS_KINDS))
    x, w, b_shared, b_pos = _arrays(
        draw(st.integers(0, 2**32 - 1)),
        dtype,
        (batch, c_in, *s_in),
        (*s_out, c_out, c_in, *s_in),
        (c_out,),
        (*s_out, c_out),
    )
    return Case(x, w, _bias(kind, b_shared, b_pos), {}, dtype, {"out": s_out, "bias": kind})


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------

OPS = {
    "local_correlate": (fc2conv.local_correlate, ff.local_correlate_vjp, ref.local_correlate),
    "dense_grid": (fc2conv.dense_grid, ff.dense_grid_vjp, ref.dense_grid),
}


def _abs(a):
    return None if a is None else np.abs(a)


def _cases(name, **kw):
    return local_cases(**kw) if name == "local_correlate" else dense_cases(**kw)


def _reps(case: Case) -> int:
    """How often one input can be read through one kernel offset (reflect/circular/...)."""
    if "pairs" not in case.extra:
        return 1
    return math.prod(
        -(-(n + pb + pa) // n) + 1 for n, (pb, pa) in zip(case.x.shape[2:], case.extra["pairs"])
    )


def _forward_terms(case: Case) -> int:
    """Terms in one output's sum: C_in * prod(K) (or prod(S_in)) products plus the bias."""
    d = case.x.ndim - 2
    return math.prod(case.w.shape[d + 1:]) + 1


def _grad_terms(case: Case) -> int:
    """Longest sum behind a gradient entry: gx, gw (one per batch) or a shared gb."""
    d = case.x.ndim - 2
    positions = math.prod(case.w.shape[:d])
    c_out = case.w.shape[d]
    reads = c_out * (positions if "pairs" not in case.extra else
                     math.prod(case.w.shape[d + 2:]) * _reps(case))
    return max(reads, case.x.shape[0] * positions) + 1


def _check_f64(actual, desired, bound, what):
    """float64: within ``F64_REL`` of the oracle, relative to the sum of |terms|."""
    err = float(np.max(np.abs(np.asarray(actual) - np.asarray(desired)), initial=0.0))
    scale = float(np.max(np.abs(bound), initial=0.0))
    assert err <= F64_REL * max(scale, np.finfo(np.float64).tiny), (
        f"{what}: float64 error {err:.3g} for terms up to {scale:.3g}"
    )


def _bias_grad_expected(gy, bias):
    """d/d bias of sum(y * gy): gy summed over the batch (per position) or all but C_out."""
    if bias is None:
        return None
    gy = gy.astype(np.float64)
    if bias.ndim == 1:
        return gy.sum(axis=(0, *range(2, gy.ndim)))
    return np.moveaxis(gy.sum(axis=0), 0, -1)


# ---------------------------------------------------------------------------------------------
# 1. forward against the oracle
# ---------------------------------------------------------------------------------------------


def _check_forward(name, case):
    op, vjp, ref_op = OPS[name]
    y = op(case.x, case.w, case.b, **case.kwargs)
    assert type(y) is np.ndarray, type(y)
    assert y.dtype == case.x.dtype, y.dtype
    y_ref = ref_op(case.x, case.w, case.b, **case.kwargs)
    assert y.shape == (case.x.shape[0], case.w.shape[case.x.ndim - 2], *case.extra["out"])
    bound = ref_op(_abs(case.x), _abs(case.w), _abs(case.b), **case.kwargs)
    compare("reference", y, y_ref, bound, _forward_terms(case), case.dtype,
            what=f"{name} {case.extra['bias']} bias")
    if case.dtype == np.float64:
        _check_f64(y, y_ref, bound, name)
    # the VJP returns arrays of the inputs' kind, shape and dtype; grad_bias is exact sums
    gy = np.random.default_rng(7).standard_normal(y.shape).astype(case.dtype)
    gx, gw, gb = vjp(gy, case.x, case.w, case.b, **case.kwargs)
    for g, like in ((gx, case.x), (gw, case.w), (gb, case.b)):
        if like is None:
            assert g is None
            continue
        assert type(g) is np.ndarray and g.dtype == like.dtype and g.shape == like.shape, (
            type(g), g.dtype, g.shape, like.shape,
        )
    if case.b is not None:
        compare("reference", gb, _bias_grad_expected(gy, case.b),
                _bias_grad_expected(np.abs(gy), case.b), y.shape[0] * y[0, 0].size + 1,
                case.dtype, what=f"{name}_vjp grad_bias")


@pytest.mark.parametrize("rank", [1, 2, 3])
@given(data=st.data())
def test_local_correlate_matches_reference(rank, data) -> None:
    case = data.draw(local_cases(ranks=(rank,)), label="case")
    _check_forward("local_correlate", case)


@pytest.mark.parametrize("rank", [1, 2, 3])
@given(data=st.data())
def test_dense_grid_matches_reference(rank, data) -> None:
    case = data.draw(dense_cases(ranks=(rank,)), label="case")
    _check_forward("dense_grid", case)


@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("mode", PADDING_MODES)
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_every_mode_and_dtype_in_every_rank(rank, mode, dtype) -> None:
    """A fixed case per (rank, mode, dtype): stride, dilation, (before, after) pairs wider
    than the input (reflect / circular wrap more than once), per-position bias."""
    rng = np.random.default_rng(rank)
    sizes = (5, 3, 4)[:rank]
    kernel = (3, 2, 2)[:rank]
    kw = {
        "stride": (2, 1, 2)[:rank],
        "dilation": (1, 2, 1)[:rank],
        "padding": ((4, 2), (1, 3), (0, 5))[:rank],
        "padding_mode": mode,
    }
    pairs = kw["padding"]
    out = tuple(
        (n + pb + pa - dl * (k - 1) - 1) // s + 1
        for n, (pb, pa), k, s, dl in zip(sizes, pairs, kernel, kw["stride"], kw["dilation"])
    )
    x = rng.standard_normal((2, 2, *sizes)).astype(dtype)
    w = rng.standard_normal((*out, 3, 2, *kernel)).astype(dtype)
    b = rng.standard_normal((*out, 3)).astype(dtype)
    case = Case(x, w, b, kw, dtype, {"pairs": pairs, "out": out, "bias": "position"})
    _check_forward("local_correlate", case)


# ---------------------------------------------------------------------------------------------
# cross-checks between the ladder's rungs
# ---------------------------------------------------------------------------------------------


@given(case=local_cases(dtypes=(np.float64,)))
def test_tied_weights_give_correlate(case) -> None:
    """Every position's kernel the same (a read-only broadcast view): ``correlate``."""
    d = case.x.ndim - 2
    kernel = case.w[(0,) * d]  # (C_out, C_in, *K)
    w_tied = np.broadcast_to(kernel, case.w.shape)
    shared = None if case.b is None or case.b.ndim != 1 else case.b
    y = fc2conv.local_correlate(case.x, w_tied, shared, **case.kwargs)
    y_conv = fc2conv.correlate(case.x, kernel, shared, **case.kwargs)
    bound = fc2conv.correlate(np.abs(case.x), np.abs(kernel), _abs(shared), **case.kwargs)
    _check_f64(y, y_conv, bound, "tied local_correlate vs correlate")


@given(case=local_cases(dtypes=(np.float64,), modes=("zeros",), max_size={1: 8, 2: 4, 3: 3},
                        max_channels=2, max_kernel=2))
def test_local_correlate_is_a_sparse_dense_grid(case) -> None:
    """Writing each position's kernel into an input-sized image gives dense_grid's weights."""
    d = case.x.ndim - 2
    sizes = case.x.shape[2:]
    pairs = case.extra["pairs"]
    stride = as_tuple(case.kwargs["stride"], d)
    dilation = as_tuple(case.kwargs["dilation"], d)
    out, (c_out, c_in), kernel = case.w.shape[:d], case.w.shape[d:d + 2], case.w.shape[d + 2:]
    w_dense = np.zeros((*out, c_out, c_in, *sizes))
    for p in np.ndindex(*out):
        for a in np.ndindex(*kernel):
            q = [pp * s + aa * dl - pb for pp, s, aa, dl, (pb, _) in
                 zip(p, stride, a, dilation, pairs)]
            if all(0 <= qq < n for qq, n in zip(q, sizes)):  # zero padding: outside reads 0
                w_dense[(*p, slice(None), slice(None), *q)] += case.w[(*p, ..., *a)]
    y = fc2conv.local_correlate(case.x, case.w, case.b, **case.kwargs)
    y_dense = fc2conv.dense_grid(case.x, w_dense, case.b)
    bound = fc2conv.dense_grid(np.abs(case.x), np.abs(w_dense), _abs(case.b))
    _check_f64(y, y_dense, bound, "local_correlate vs dense_grid")


# ---------------------------------------------------------------------------------------------
# 2a. VJPs against central differences of the oracle
# ---------------------------------------------------------------------------------------------


def _oracle_fd(name, case, gy, h=0.5, max_entries=400, seed=0):
    """Central differences of ``<gy, oracle(x, w, b)>`` for entries of x, w and bias.

    Every perturbed copy goes through one oracle call: copies of x are stacked along the
    batch axis, copies of w (and bias) along the C_out axis, and the blocks of the result
    read back. All entries when there are at most ``max_entries``, else a random subset.
    Returns ``{name: (flat indices, differences)}``.
    """
    ref_op = OPS[name][2]
    x, w, b, kw = case.x, case.w, case.b, case.kwargs
    d = x.ndim - 2
    c_out = w.shape[d]
    rng = np.random.default_rng(seed)

    def entries(a):
        n = a.size
        return np.arange(n) if n <= max_entries else np.sort(rng.choice(n, max_entries, False))

    def perturbed(a, idx):
        copies = np.repeat(a[None], 2 * len(idx), axis=0).reshape(2 * len(idx), -1)
        copies[np.arange(len(idx)), idx] += h
        copies[len(idx) + np.arange(len(idx)), idx] -= h
        return copies.reshape(2 * len(idx), *a.shape)

    def differences(ys):  # ys: (2E, *gy.shape) -> (E,)
        e = ys.shape[0] // 2
        return np.tensordot(ys[:e] - ys[e:], gy, axes=gy.ndim) / (2 * h)

    def along_c_out(ws, bs):
        """Oracle on len(ws) weight/bias variants at once: (variants, *gy.shape)."""
        k = len(ws)
        w_all = np.concatenate(list(ws), axis=d)
        b_all = None if bs is None else np.concatenate(list(bs), axis=-1)
        y = ref_op(x, w_all, b_all, **kw)  # (N, k * C_out, *S_out)
        y = y.reshape(y.shape[0], k, c_out, *y.shape[2:])
        return np.moveaxis(y, 1, 0)

    result = {}
    idx = entries(x)
    xs = perturbed(x, idx)
    ys = ref_op(xs.reshape(-1, *x.shape[1:]), w, b, **kw)
    result["x"] = idx, differences(ys.reshape(len(xs), *gy.shape))
    idx = entries(w)
    ws = perturbed(w, idx)
    result["w"] = idx, differences(along_c_out(ws, None if b is None else [b] * len(ws)))
    if b is not None:
        idx = entries(b)
        bs = perturbed(b, idx)
        result["bias"] = idx, differences(along_c_out([w] * len(bs), bs))
    return result


@pytest.mark.parametrize("name", ["local_correlate", "dense_grid"])
@given(data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_vjp_matches_oracle_finite_differences(name, data, seed) -> None:
    small = {1: 6, 2: 4, 3: 3}
    extra = {"max_kernel": 2} if name == "local_correlate" else {}
    case = data.draw(
        _cases(name, dtypes=(np.float64,), max_size=small, max_channels=2, **extra),
        label="case",
    )
    _, vjp, ref_op = OPS[name]
    y_ref = ref_op(case.x, case.w, case.b, **case.kwargs)
    gy = np.random.default_rng(seed).standard_normal(y_ref.shape)
    grads = dict(zip(("x", "w", "bias"), vjp(gy, case.x, case.w, case.b, **case.kwargs)))
    if case.b is None:
        assert grads["bias"] is None
    for what, (idx, fd) in _oracle_fd(name, case, gy, seed=seed).items():
        got = np.asarray(grads[what]).reshape(-1)[idx]
        scale = max(1.0, float(np.max(np.abs(fd), initial=0.0)))
        np.testing.assert_allclose(got, fd, rtol=1e-9, atol=1e-10 * scale,
                                   err_msg=f"{name} grad_{what}, {case!r}")
        record("finite differences", "float64",
               float(np.max(np.abs(got - fd), initial=0.0)) / scale)


# ---------------------------------------------------------------------------------------------
# 2b. adjoint identities on the fast paths (float64)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["local_correlate", "dense_grid"])
@given(data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_adjoint_identities(name, data, seed) -> None:
    """``<f(x, w), y> = <x, gx(y)> = <w, gw(y)>`` with bias None, every padding mode: the
    input gradient must fold the gradient of padded cells back onto their sources."""
    case = data.draw(_cases(name, dtypes=(np.float64,)), label="case")
    op, vjp, _ = OPS[name]
    kw = case.kwargs
    y_fwd = op(case.x, case.w, **kw)
    probe = np.random.default_rng(seed).standard_normal(y_fwd.shape)
    gx, gw, gb = vjp(probe, case.x, case.w, None, **kw)
    assert gb is None
    lhs = np.vdot(y_fwd, probe)
    # |<f(x, w), y>| <= <f(|x|, |w|), |y|>: each side is a sum of at most these terms
    bound = np.vdot(op(np.abs(case.x), np.abs(case.w), **kw), np.abs(probe))
    # vdot adds up to max(x, w, y) sizes products of values that are themselves sums
    terms = max(case.x.size, case.w.size, y_fwd.size) + _grad_terms(case) + _forward_terms(case)
    for what, rhs in (("grad_x", np.vdot(case.x, gx)), ("grad_w", np.vdot(case.w, gw))):
        compare("adjoint", rhs, lhs, bound, terms, np.float64, what=f"{name} {what}",
                check_dtype=False, relative_to="bound")
        _check_f64(rhs, lhs, bound, f"{name} {what} adjoint")


@pytest.mark.parametrize("mode", PADDING_MODES)
def test_adjoint_with_padding_wider_than_the_input(mode) -> None:
    """Reflect/symmetric/circular padding wrapping several times around a short input."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 2, 3, 2))
    kw = {"padding": ((7, 4), (5, 6)), "padding_mode": mode, "stride": (1, 2), "dilation": 2}
    out = ((3 + 11 - 2 * 2 - 1) // 1 + 1, (2 + 11 - 2 * 1 - 1) // 2 + 1)
    w = rng.standard_normal((*out, 3, 2, 3, 2))
    y = fc2conv.local_correlate(x, w, **kw)
    np.testing.assert_allclose(y, ref.local_correlate(x, w, **kw), rtol=1e-12, atol=1e-12)
    probe = rng.standard_normal(y.shape)
    gx, gw, _ = ff.local_correlate_vjp(probe, x, w, **kw)
    lhs = np.vdot(y, probe)
    assert np.vdot(x, gx) == pytest.approx(lhs, rel=1e-12, abs=1e-12)
    assert np.vdot(w, gw) == pytest.approx(lhs, rel=1e-12, abs=1e-12)


# ---------------------------------------------------------------------------------------------
# 2c. against PyTorch autograd (2-D local_correlate, float64)
# ---------------------------------------------------------------------------------------------

TORCH_PAD = {"zeros": "constant", "reflect": "reflect", "replicate": "replicate",
             "circular": "circular"}


def torch_local_correlate2d(torch, x, w, b, pairs, stride, dilation, mode):
    """The same layer from ``pad + unfold + einsum``; ``w: (H_out, W_out, C_out, C_in, *K)``."""
    (top, bottom), (left, right) = pairs
    if top or bottom or left or right:
        x = torch.nn.functional.pad(x, (left, right, top, bottom), mode=TORCH_PAD[mode])
    h_out, w_out, c_out = w.shape[:3]
    cols = torch.nn.functional.unfold(x, tuple(w.shape[-2:]), dilation=dilation, stride=stride)
    assert cols.shape[-1] == h_out * w_out
    y = torch.einsum("lok,nkl->nol", w.reshape(h_out * w_out, c_out, -1), cols)
    y = y.reshape(x.shape[0], c_out, h_out, w_out)
    if b is None:
        return y
    if b.ndim == 1:
        return y + b[:, None, None]
    return y + b.permute(2, 0, 1)


@given(case=local_cases(ranks=(2,), modes=tuple(TORCH_PAD), dtypes=(np.float64,),
                        torch_limits=True),
       seed=st.integers(0, 2**32 - 1))
def test_vjp_matches_torch_autograd_2d(case, seed) -> None:
    torch = pytest.importorskip("torch")
    kw = case.kwargs
    stride, dilation = as_tuple(kw["stride"], 2), as_tuple(kw["dilation"], 2)
    x_t, w_t = torch.from_numpy(case.x).requires_grad_(), torch.from_numpy(case.w).requires_grad_()
    b_t = None if case.b is None else torch.from_numpy(case.b).requires_grad_()
    y_t = torch_local_correlate2d(torch, x_t, w_t, b_t, case.extra["pairs"], stride, dilation,
                                  kw["padding_mode"])
    gy = np.random.default_rng(seed).standard_normal(tuple(y_t.shape))
    y_t.backward(torch.from_numpy(gy))
    y = fc2conv.local_correlate(case.x, case.w, case.b, **kw)
    bound = fc2conv.local_correlate(np.abs(case.x), np.abs(case.w), _abs(case.b), **kw)
    compare("torch", y, y_t, bound, _forward_terms(case), np.float64,
            what="local_correlate forward")
    gx, gw, gb = ff.local_correlate_vjp(gy, case.x, case.w, case.b, **kw)
    gx_b, gw_b, _ = ff.local_correlate_vjp(np.abs(gy), np.abs(case.x), np.abs(case.w), None,
                                           **kw)
    terms = _grad_terms(case)
    compare("torch", gx, x_t.grad, gx_b, terms, np.float64, what="grad_x")
    compare("torch", gw, w_t.grad, gw_b, terms, np.float64, what="grad_w")
    if case.b is None:
        assert gb is None
    else:
        compare("torch", gb, b_t.grad, _bias_grad_expected(np.abs(gy), case.b), terms,
                np.float64, what="grad_bias")


# ---------------------------------------------------------------------------------------------
# 3. cost sanity: no dense (P, Q) matrix
# ---------------------------------------------------------------------------------------------


def test_big_grid_small_kernel_is_local() -> None:
    """x (1, 1, 512, 512), 3x3 kernels at 510x510 positions: a dense (P, Q) matrix would hold
    510**2 * 512**2 ~ 7e10 floats. The result must equal the sum over the 9 shifted views,
    and the memory traced while computing stays a small multiple of w's."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 1, 512, 512))
    w = rng.standard_normal((510, 510, 1, 1, 3, 3))
    tracemalloc.start()
    try:
        y = fc2conv.local_correlate(x, w)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert y.shape == (1, 1, 510, 510)
    views = np.stack([x[0, 0, a:a + 510, c:c + 510] for a in range(3) for c in range(3)], -1)
    expected = np.einsum("ijk,ijk->ij", w.reshape(510, 510, 9), views)
    np.testing.assert_allclose(y[0, 0], expected, rtol=1e-12, atol=1e-12)
    assert peak < 8 * (w.nbytes + x.nbytes), f"peak traced memory {peak / 2**20:.0f} MiB"
    # the VJP: grad_w reads the same views, grad_x scatters w * gy back through them
    gy = rng.standard_normal(y.shape)
    gx, gw, _ = ff.local_correlate_vjp(gy, x, w)
    np.testing.assert_allclose(gw.reshape(510, 510, 9), gy[0, 0, :, :, None] * views,
                               rtol=1e-12, atol=1e-12)
    gx_expected = np.zeros((512, 512))
    for a in range(3):
        for c in range(3):
            gx_expected[a:a + 510, c:c + 510] += w[:, :, 0, 0, a, c] * gy[0, 0]
    np.testing.assert_allclose(gx[0, 0], gx_expected, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# 4. errors
# ---------------------------------------------------------------------------------------------


def _x(*shape, dtype=np.float64):
    return np.ones(shape, dtype=dtype)


X2 = _x(1, 2, 5, 5)
W_LOCAL = _x(3, 3, 4, 2, 3, 3)  # S_out (3, 3) for 5x5, 3x3 kernel, no padding
W_DENSE = _x(3, 3, 4, 2, 5, 5)


def _raises(exc, *patterns, fn, args, kwargs=None):
    with pytest.raises(exc) as info:
        fn(*args, **(kwargs or {}))
    message = str(info.value)
    for pattern in patterns:
        assert re.search(pattern, message), f"{pattern!r} not in {message!r}"
    return message


@pytest.mark.parametrize("name", ["local_correlate", "dense_grid"])
@pytest.mark.parametrize("w_shape", [(3, 3, 4, 2, 3), (4, 2, 3, 3), (3, 3, 3, 4, 2, 3, 3)])
def test_wrong_w_rank(name, w_shape) -> None:
    op, vjp, _ = OPS[name]
    _raises(ShapeError, r"\bw\b", r"6 axes", re.escape(str(w_shape)), fn=op,
            args=(X2, _x(*w_shape)))
    _raises(ShapeError, r"\bw\b", fn=vjp, args=(_x(1, 4, 3, 3), X2, _x(*w_shape)))


def test_local_wrong_c_in() -> None:
    _raises(ShapeError, r"w\.shape\[3\]", r"C_in = 2", fn=fc2conv.local_correlate,
            args=(X2, _x(3, 3, 4, 3, 3, 3)))


def test_dense_wrong_c_in_or_input_size() -> None:
    for w_shape in [(3, 3, 4, 3, 5, 5), (3, 3, 4, 2, 5, 4), (3, 3, 4, 2, 4, 5)]:
        _raises(ShapeError, r"\bw\b", re.escape("(C_in, *S_in) = (2, 5, 5)"),
                fn=fc2conv.dense_grid, args=(X2, _x(*w_shape)))


@pytest.mark.parametrize(
    "w_out, kwargs, expected",
    [
        ((5, 5), {}, (3, 3)),
        ((3, 3), {"padding": 1}, (5, 5)),
        ((3, 3), {"padding": "same", "padding_mode": "reflect"}, (5, 5)),
        ((3, 3), {"stride": 2}, (2, 2)),
        ((3, 3), {"padding": "full", "dilation": (1, 2)}, (7, 9)),
        ((3, 3), {"padding": ((0, 1), (2, 0)), "stride": (1, 2)}, (4, 3)),
    ],
)
def test_local_mismatched_s_out(w_out, kwargs, expected) -> None:
    _raises(ShapeError, r"\bw\b", re.escape(f"S_out = {expected}"),
            re.escape(str((*w_out, 4, 2, 3, 3))), fn=fc2conv.local_correlate,
            args=(X2, _x(*w_out, 4, 2, 3, 3)), kwargs=kwargs)


@pytest.mark.parametrize("name", ["local_correlate", "dense_grid"])
@pytest.mark.parametrize("bias_shape", [(3,), (3, 3), (3, 3, 3), (4, 3, 3), (1, 4), (3, 3, 4, 1)])
def test_bad_bias_shape(name, bias_shape) -> None:
    op, vjp, _ = OPS[name]
    w = W_LOCAL if name == "local_correlate" else W_DENSE
    patterns = (r"\bbias\b", re.escape("(*S_out, C_out) = (3, 3, 4)"),
                re.escape("(C_out,) = (4,)"), re.escape(str(bias_shape)))
    _raises(ShapeError, *patterns, fn=op, args=(X2, w, _x(*bias_shape)))
    _raises(ShapeError, *patterns, fn=vjp, args=(_x(1, 4, 3, 3), X2, w, _x(*bias_shape)))
    # both accepted shapes work
    for good in [(4,), (3, 3, 4)]:
        assert op(X2, w, _x(*good)).shape == (1, 4, 3, 3)


@pytest.mark.parametrize("name", ["local_correlate", "dense_grid"])
@pytest.mark.parametrize("gy_shape", [(1, 4, 3, 2), (1, 3, 3, 3), (2, 4, 3, 3), (4, 3, 3),
                                      (1, 4, 3, 3, 1)])
def test_vjp_grad_out_of_the_wrong_shape(name, gy_shape) -> None:
    vjp = OPS[name][1]
    w = W_LOCAL if name == "local_correlate" else W_DENSE
    _raises(ShapeError, r"\bgrad_out\b", re.escape("(1, 4, 3, 3)"), re.escape(str(gy_shape)),
            fn=vjp, args=(_x(*gy_shape), X2, w))


@pytest.mark.parametrize("name", ["local_correlate", "dense_grid"])
def test_mixed_float32_float64(name) -> None:
    op, vjp, _ = OPS[name]
    w = W_LOCAL if name == "local_correlate" else W_DENSE
    x32, w32 = X2.astype(np.float32), w.astype(np.float32)
    _raises(DTypeError, r"\bw\b", fn=op, args=(x32, w))
    _raises(DTypeError, r"\bw\b", fn=op, args=(X2, w32))
    _raises(DTypeError, r"\bbias\b", fn=op, args=(x32, w32, _x(4)))
    _raises(DTypeError, r"\bbias\b", fn=op, args=(X2, w, _x(4, dtype=np.float32)))
    _raises(DTypeError, r"\bgrad_out\b", fn=vjp, args=(_x(1, 4, 3, 3), x32, w32))
    _raises(DTypeError, fn=vjp, args=(_x(1, 4, 3, 3, dtype=np.float32), X2, w32))


@pytest.mark.parametrize("name", ["local_correlate", "dense_grid"])
@pytest.mark.parametrize("int_dtype", [np.int64, np.int32, np.bool_])
def test_integer_arrays(name, int_dtype) -> None:
    op, vjp, _ = OPS[name]
    w = W_LOCAL if name == "local_correlate" else W_DENSE
    _raises(DTypeError, r"\bx\b", fn=op, args=(X2.astype(int_dtype), w))
    _raises(DTypeError, r"\bw\b", fn=op, args=(X2, w.astype(int_dtype)))
    _raises(DTypeError, r"\bbias\b", fn=op, args=(X2, w, np.ones(4, dtype=int_dtype)))
    _raises(DTypeError, r"\bgrad_out\b", fn=vjp,
            args=(np.ones((1, 4, 3, 3), dtype=int_dtype), X2, w))


@pytest.mark.parametrize("name", ["local_correlate", "dense_grid"])
def test_non_arrays_and_bad_x(name) -> None:
    op, _, _ = OPS[name]
    w = W_LOCAL if name == "local_correlate" else W_DENSE
    _raises(DTypeError, r"\bx\b", fn=op, args=(X2.tolist(), w))
    _raises(DTypeError, r"\bw\b", fn=op, args=(X2, w.tolist()))
    _raises(ShapeError, r"\bx\b", fn=op, args=(X2[0], w))
    _raises(ShapeError, r"\bx\b", fn=op, args=(X2[:0], w))


def test_local_argument_errors() -> None:
    _raises(fc2conv.ArgumentError, "padding_mode", "'replicate'", fn=fc2conv.local_correlate,
            args=(X2, W_LOCAL), kwargs={"padding_mode": "edge"})
    _raises(fc2conv.ArgumentError, "stride", fn=fc2conv.local_correlate, args=(X2, W_LOCAL),
            kwargs={"stride": 0})
    _raises(fc2conv.ArgumentError, "padding", fn=fc2conv.local_correlate, args=(X2, W_LOCAL),
            kwargs={"padding": "half"})
    _raises(ShapeError, r"\bw\b", "spans 7", fn=fc2conv.local_correlate,
            args=(X2, _x(1, 1, 4, 2, 7, 3)))


@pytest.mark.parametrize("name", ["local_correlate", "dense_grid"])
@pytest.mark.parametrize("axis", range(6))
def test_zero_sized_w_axis(name, axis) -> None:
    op, _, _ = OPS[name]
    shape = list((W_LOCAL if name == "local_correlate" else W_DENSE).shape)
    shape[axis] = 0
    _raises(ShapeError, r"\bw\b", "zero-sized", fn=op, args=(X2, _x(*shape)))


# ---------------------------------------------------------------------------------------------
# 5. array-API namespaces
# ---------------------------------------------------------------------------------------------

RTOL = {np.float32: 2e-5, np.float64: 1e-11}

NAMESPACE_CASES = [
    # (op, x shape, kwargs, bias kind)
    ("local_correlate", (2, 3, 9), {"stride": 2, "padding": 1}, "shared"),
    ("local_correlate", (1, 2, 6, 5),
     {"padding": ((2, 1), (0, 3)), "padding_mode": "reflect", "dilation": (1, 2)}, "position"),
    ("local_correlate", (2, 2, 5, 6), {"padding": "same", "padding_mode": "symmetric"}, "none"),
    ("local_correlate", (1, 2, 4, 3, 5),
     {"padding": 1, "padding_mode": "circular", "stride": (1, 2, 2)}, "position"),
    ("dense_grid", (2, 3, 7), {}, "position"),
    ("dense_grid", (2, 2, 4, 3), {}, "shared"),
    ("dense_grid", (1, 2, 3, 2, 3), {}, "none"),
]


def _namespace_arrays(op_name, x_shape, kw, bias_kind, dtype):
    rng = np.random.default_rng(len(x_shape))
    x = rng.standard_normal(x_shape).astype(dtype)
    d = len(x_shape) - 2
    if op_name == "local_correlate":
        kernel = (3, 2, 2)[:d]
        s_out = fc2conv.correlate(x, np.ones((1, x_shape[1], *kernel), dtype), **kw).shape[2:]
        w = rng.standard_normal((*s_out, 4, x_shape[1], *kernel)).astype(dtype)
    else:
        s_out = (3, 2, 2)[:d]
        w = rng.standard_normal((*s_out, 4, *x_shape[1:])).astype(dtype)
    b = _bias(bias_kind, rng.standard_normal(4).astype(dtype),
              rng.standard_normal((*s_out, 4)).astype(dtype))
    gy = rng.standard_normal((x_shape[0], 4, *s_out)).astype(dtype)
    return x, w, b, gy


def _backends():
    out = []
    torch = pytest.importorskip("torch")
    out.append(("torch", torch, lambda a: torch.from_numpy(np.array(a)),
                lambda a: isinstance(a, torch.Tensor), lambda a: a.detach().numpy(),
                {np.float32: torch.float32, np.float64: torch.float64}))
    try:
        import array_api_strict as xps
    except ImportError:  # pragma: no cover - installed in the dev environment
        return out
    out.append(("array_api_strict", xps, lambda a: xps.asarray(np.ascontiguousarray(a)),
                lambda a: type(a).__module__.startswith("array_api_strict"), np.asarray,
                {np.float32: xps.float32, np.float64: xps.float64}))
    return out


@pytest.mark.parametrize("backend_name", ["torch", "array_api_strict"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("case", NAMESPACE_CASES,
                         ids=[f"{c[0]}-{len(c[1]) - 2}d-{i}" for i, c in
                              enumerate(NAMESPACE_CASES)])
def test_array_api_namespaces(backend_name, dtype, case) -> None:
    """Tensors in, tensors of the same kind and dtype out, forward and VJP, with the numbers
    of the NumPy path; the 1d/2d/3d alias goes through the same path."""
    backends = {b[0]: b for b in _backends()}
    if backend_name not in backends:
        pytest.skip(f"{backend_name} not installed")
    _, _, asarray, is_kind, to_numpy, dtypes = backends[backend_name]
    op_name, x_shape, kw, bias_kind = case
    op, vjp, _ = OPS[op_name]
    x, w, b, gy = _namespace_arrays(op_name, x_shape, kw, bias_kind, dtype)

    def conv(*arrays):
        return [None if a is None else asarray(a) for a in arrays]

    def check(result, expected, what):
        if expected is None:
            assert result is None, what
            return
        assert is_kind(result), f"{what}: got {type(result)!r}"
        assert result.dtype == dtypes[dtype], f"{what}: dtype {result.dtype}"
        got = to_numpy(result)
        assert got.shape == expected.shape, (what, got.shape, expected.shape)
        scale = max(float(np.max(np.abs(expected), initial=0.0)), 1.0)
        err = float(np.max(np.abs(got.astype(np.float64) - expected), initial=0.0))
        assert err <= RTOL[dtype] * scale, f"{what}: max abs error {err:.3g}"

    expected = op(x, w, b, **kw)
    assert type(expected) is np.ndarray and expected.dtype == dtype
    check(op(*conv(x, w, b), **kw), expected, op_name)
    alias = getattr(fc2conv, f"{op_name}{len(x_shape) - 2}d")
    check(alias(*conv(x, w, b), **kw), expected, f"{op_name} alias")
    grads = vjp(*conv(gy, x, w, b), **kw)
    assert isinstance(grads, tuple) and len(grads) == 3
    for what, r, e in zip(("grad_x", "grad_w", "grad_bias"), grads, vjp(gy, x, w, b, **kw)):
        check(r, e, f"{op_name}_vjp {what}")


def test_torch_non_contiguous_and_mixed_libraries() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    base = rng.standard_normal((1, 6, 2, 5))  # (N, W, C, H) viewed as (N, C, H, W)
    x_np = np.ascontiguousarray(base.transpose(0, 2, 3, 1))
    x_t = torch.from_numpy(base).permute(0, 2, 3, 1)
    assert not x_t.is_contiguous()
    kw = {"padding": 1, "padding_mode": "replicate", "stride": (2, 1)}
    w = rng.standard_normal((3, 6, 3, 2, 3, 3))
    expected = fc2conv.local_correlate(x_np, w, **kw)
    got = fc2conv.local_correlate(x_t, torch.from_numpy(w), **kw)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=1e-12)
    gx = ff.local_correlate_vjp(torch.ones(expected.shape, dtype=torch.float64), x_t,
                                torch.from_numpy(w), **kw)[0]
    np.testing.assert_allclose(
        gx.numpy(), ff.local_correlate_vjp(np.ones(expected.shape), x_np, w, **kw)[0],
        rtol=1e-12, atol=1e-12,
    )
    with pytest.raises(DTypeError):
        fc2conv.local_correlate(x_t, w, **kw)
    with pytest.raises(DTypeError):
        fc2conv.dense_grid(x_np, torch.ones((2, 3, 2, 5, 6), dtype=torch.float64))
    with pytest.raises(DTypeError):
        ff.local_correlate_vjp(np.ones(expected.shape), x_t, torch.from_numpy(w), **kw)


# ---------------------------------------------------------------------------------------------
# 6. the 1d / 2d / 3d aliases
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["local_correlate", "dense_grid"])
@pytest.mark.parametrize("alias_rank", [1, 2, 3])
@pytest.mark.parametrize("x_rank", [1, 2, 3])
def test_alias_with_wrong_rank(family, alias_rank, x_rank) -> None:
    fn = getattr(fc2conv, f"{family}{alias_rank}d")
    x = _x(1, 2, *(4,) * x_rank)
    if family == "local_correlate":
        w = _x(*(3,) * x_rank, 3, 2, *(2,) * x_rank)
    else:
        w = _x(*(2,) * x_rank, 3, 2, *(4,) * x_rank)
    if alias_rank == x_rank:
        np.testing.assert_array_equal(fn(x, w), getattr(fc2conv, family)(x, w))
    else:
        _raises(ShapeError, r"\bx\b", f"{family}{alias_rank}d", f"{alias_rank + 2} axes",
                fn=fn, args=(x, w))


@pytest.mark.parametrize("bias", ["none", "shared", "per_position"])
def test_untied_layers_return_c_ordered_arrays(bias) -> None:
    """The untied layers' NumPy outputs are C-ordered whatever the bias: their product comes
    out positions-first, and the layers after them ran 2-4x slower on that layout."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((6, 3, 9))
    w_local = rng.standard_normal((7, 5, 3, 3))
    w_dense = rng.standard_normal((7, 5, 3, 9))
    b = {"none": None, "shared": rng.standard_normal(5),
         "per_position": rng.standard_normal((7, 5))}[bias]
    for y, expected in ((fc2conv.local_correlate(x, w_local, b),
                         ref.local_correlate(x, w_local, b)),
                        (fc2conv.dense_grid(x, w_dense, b), ref.dense_grid(x, w_dense, b))):
        assert y.flags.c_contiguous
        np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)
