"""The fast code paths agree with the float64 oracle (``fc2conv.functional.reference``).

Random small configurations: ranks 1 to 3, batch 1-2, channels 1-4, groups (depthwise
included), asymmetric kernels, stride 1-3, dilation 1-2, every padding form and padding mode,
bias or not, float32 and float64, and every correlation ``method``. The oracle sees exactly the
same input values (float32 inputs are widened exactly to float64), so the only admissible
difference is the rounding error of the fast path, bounded per output element by
``c * eps * L * sum|terms|`` (see ``_strategies.compare``). Gradients (the ``*_vjp``) are
checked through exact random-probe identities with the oracle, which covers what torch cannot:
the symmetric padding mode and (before, after) padding pairs of conv_transpose.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from _strategies import (
    METHODS,
    compare,
    conv_cases,
    conv_terms,
    conv_transpose_cases,
    conv_transpose_terms,
    pool_cases,
)
from hypothesis import given
from hypothesis import strategies as st

import fc2conv
import fc2conv.functional as ff
from fc2conv.functional import reference as ref


def _abs(a):
    return None if a is None else np.abs(a)


def _check_conv(op, ref_op, case, method):
    y = op(case.x, case.w, case.b, **case.kwargs, method=method)
    y_ref = ref_op(case.x, case.w, case.b, **case.kwargs)
    bound = ref_op(_abs(case.x), _abs(case.w), _abs(case.b), **case.kwargs)
    terms = math.prod(case.w.shape[1:]) + 1
    compare("reference", y, y_ref, bound, terms, case.dtype, what=f"{op.__name__} {method}")


# every (rank, method) pair gets its own sample on every run
RANK_METHOD = pytest.mark.parametrize(
    "rank,method", [(r, m) for r in (1, 2, 3) for m in METHODS]
)


@RANK_METHOD
@given(data=st.data())
def test_correlate_matches_reference(rank, method, data) -> None:
    case = data.draw(conv_cases(ranks=(rank,)), label="case")
    _check_conv(fc2conv.correlate, ref.correlate, case, method)


@RANK_METHOD
@given(data=st.data())
def test_convolve_matches_reference(rank, method, data) -> None:
    case = data.draw(conv_cases(ranks=(rank,)), label="case")
    _check_conv(fc2conv.convolve, ref.convolve, case, method)


def _check_vjp(name, ref_op, case, method, seed, terms_of):
    """Gradients against the oracle by exact random-probe identities.

    The op is linear in x (bias off) and in w, so for probes v, u
    ``<gx, v> = <gy, f(v, w)>`` and ``<gw, u> = <gy, f(x, u)>``; a wrong gradient fails
    these for random probes with probability 1. ``gb`` is the sum of ``gy`` per channel.
    """
    vjp = getattr(ff, f"{name}_vjp")
    kw = dict(case.kwargs) if method is None else {**case.kwargs, "method": method}
    y_ref = ref_op(case.x, case.w, case.b, **case.kwargs)
    rng = np.random.default_rng(seed)
    gy = rng.standard_normal(y_ref.shape).astype(case.dtype)
    v = rng.standard_normal(case.x.shape)
    u = rng.standard_normal(case.w.shape)
    gx, gw, gb = vjp(gy, case.x, case.w, case.b, **kw)
    for got, like in ((gx, case.x), (gw, case.w)):
        got = np.asarray(got)
        assert got.shape == like.shape and got.dtype == like.dtype, (got.shape, got.dtype)
    terms = terms_of(case, y_ref.shape)
    ag = np.abs(gy)
    compare("reference", np.vdot(gx, v), np.vdot(gy, ref_op(v, case.w, **case.kwargs)),
            np.vdot(ag, ref_op(np.abs(v), np.abs(case.w), **case.kwargs)), terms, case.dtype,
            what=f"{name}_vjp {method} gx", check_dtype=False, relative_to="bound")
    compare("reference", np.vdot(gw, u), np.vdot(gy, ref_op(case.x, u, **case.kwargs)),
            np.vdot(ag, ref_op(np.abs(case.x), np.abs(u), **case.kwargs)), terms, case.dtype,
            what=f"{name}_vjp {method} gw", check_dtype=False, relative_to="bound")
    if case.b is None:
        assert gb is None
    else:
        axes = (0, *range(2, gy.ndim))
        compare("reference", gb, gy.astype(np.float64).sum(axis=axes), ag.sum(axis=axes),
                terms, case.dtype, what=f"{name}_vjp {method} gb")


@RANK_METHOD
@given(data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_correlate_vjp_matches_reference(rank, method, data, seed) -> None:
    """Every padding mode, symmetric included (which torch cannot check)."""
    case = data.draw(conv_cases(ranks=(rank,)), label="case")
    _check_vjp("correlate", ref.correlate, case, method, seed, conv_terms)


@RANK_METHOD
@given(data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_convolve_vjp_matches_reference(rank, method, data, seed) -> None:
    case = data.draw(conv_cases(ranks=(rank,)), label="case")
    _check_vjp("convolve", ref.convolve, case, method, seed, conv_terms)


@pytest.mark.parametrize("rank", [1, 2, 3])
@given(data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_conv_transpose_vjp_matches_reference(rank, data, seed) -> None:
    """(before, after) padding pairs included (which torch cannot check)."""
    case = data.draw(conv_transpose_cases(ranks=(rank,)), label="case")
    _check_vjp("conv_transpose", ref.conv_transpose, case, None, seed, conv_transpose_terms)


@given(case=conv_cases(ranks=(2,), modes=("zeros",), max_channels=3))
def test_every_method_on_the_same_case(case) -> None:
    """The same 2-D zero-padded case through every method."""
    for method in METHODS:
        _check_conv(fc2conv.correlate, ref.correlate, case, method)


@pytest.mark.parametrize("rank", [1, 2, 3])
@given(data=st.data())
def test_conv_transpose_matches_reference(rank, data) -> None:
    case = data.draw(conv_transpose_cases(ranks=(rank,)), label="case")
    y = fc2conv.conv_transpose(case.x, case.w, case.b, **case.kwargs)
    y_ref = ref.conv_transpose(case.x, case.w, case.b, **case.kwargs)
    bound = ref.conv_transpose(_abs(case.x), _abs(case.w), _abs(case.b), **case.kwargs)
    terms = case.x.shape[1] * math.prod(case.w.shape[2:]) + 1
    compare("reference", y, y_ref, bound, terms, case.dtype, what="conv_transpose")


@pytest.mark.parametrize("rank", [1, 2, 3])
@given(data=st.data())
def test_max_pool_matches_reference(rank, data) -> None:
    case = data.draw(pool_cases("max", ranks=(rank,)), label="case")
    k = case.extra["kernel_size"]
    y = fc2conv.max_pool(case.x, k, **case.kwargs)
    y_ref = ref.max_pool(case.x, k, **case.kwargs)
    # the maximum is one of the inputs: exact agreement
    compare("reference", y, y_ref, np.zeros_like(y_ref), 1, case.dtype, what="max_pool")


@pytest.mark.parametrize("rank", [1, 2, 3])
@given(data=st.data())
def test_avg_pool_matches_reference(rank, data) -> None:
    case = data.draw(pool_cases("avg", ranks=(rank,)), label="case")
    k = case.extra["kernel_size"]
    y = fc2conv.avg_pool(case.x, k, **case.kwargs)
    y_ref = ref.avg_pool(case.x, k, **case.kwargs)
    bound = ref.avg_pool(np.abs(case.x), k, **case.kwargs)
    terms = math.prod((k,) * (case.x.ndim - 2) if isinstance(k, int) else k) + 1
    compare("reference", y, y_ref, bound, terms, case.dtype, what="avg_pool")


def test_max_pool_nan_propagates() -> None:
    x = np.array([[[1.0, np.nan, 3.0, 4.0, 0.5, np.nan]]])
    for dtype in (np.float32, np.float64):
        y = fc2conv.max_pool(x.astype(dtype), 2)
        np.testing.assert_array_equal(y, ref.max_pool(x, 2).astype(dtype))
