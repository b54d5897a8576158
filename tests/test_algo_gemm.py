"""The GEMM algorithms (``fc2conv.algorithms.gemm``: ``method="im2col"`` and ``"shift"``).

Module-level checks call ``correlate`` / ``input_grad`` / ``weight_grad`` on a padded input
and compare every element with ``fc2conv.functional.reference`` in float64 (forward:
``correlate``; input gradient: ``conv_transpose``, its adjoint; weight gradient: the defining
sum over windows), with the error bound of ``_strategies.compare``. The blocked NumPy loop is
forced to cut the positions into many blocks (a budget of a few positions' columns, blocks
that do not divide ``N * prod(S_out)``, boxes inside one sample), and each variant of a step
(halo or scatter input gradient, column or per-offset weight gradient) runs. Also: the 1x1
paths, the per-thread workspace cache, the peak memory of the blocked loop, :func:`cost`,
and the portable path's budget.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import threading
import tracemalloc

import numpy as np
import pytest
from _strategies import DTYPES, compare, groups_and_channels, weight_grad_oracle
from hypothesis import given, settings
from hypothesis import strategies as st

import fc2conv
from fc2conv import _threads, _validate
from fc2conv.algorithms import gemm
from fc2conv.functional import reference as ref

ORACLE = "reference (gemm)"
METHODS = ("im2col", "shift")


def _spec(x_pad, w, stride=1, dilation=1, groups=1):
    """The spec of a correlation of an already padded input."""
    return _validate.conv_spec(x_pad, w, None, stride=stride, padding=0, dilation=dilation,
                               groups=groups, padding_mode="zeros")


@contextlib.contextmanager
def _small_blocks(budget=None, input_grad=None, weight_grad=None, threads=None, staged=None):
    """Blocks sized by the budget alone (no cache or amortisation minimum), optionally a
    module-wide budget, forced variants of the gradients, ``threads`` worker threads for
    any layer with enough blocks (else the module's own rule), and the two-stage gather
    for every layer and block it can run (``staged=True``) or none (``False``)."""
    with pytest.MonkeyPatch.context() as mp:
        if staged is not None:
            mp.setattr(gemm, "STAGED_MAX_ROW", 1 << 30 if staged else 0)
            mp.setattr(gemm, "STAGED_MIN_COLUMNS", 0)
        if threads is not None:
            mp.setattr(gemm, "fft_workers", lambda: threads)
            mp.setattr(gemm, "PARALLEL_MIN_COLUMNS", 0)
            mp.setattr(gemm, "PARALLEL_MIN_FLOPS", 0)
        mp.setattr(gemm, "CACHE_BYTES", 1)
        mp.setattr(gemm, "MIN_BLOCK", 1)
        mp.setattr(gemm, "AMORTIZE", 0)
        mp.setattr(gemm, "COLUMN_BUDGET", budget)
        mp.setattr(gemm, "_FORCE_INPUT_GRAD", input_grad)
        mp.setattr(gemm, "_FORCE_WEIGHT_GRAD", weight_grad)
        yield


def _check_module(x_pad, w, stride, dilation, groups, dtype, method, budget=None, seed=0):
    """Forward, input gradient and weight gradient against the oracle, elementwise."""
    spec = _spec(x_pad, w, stride, dilation, groups)
    kernel = spec.kernel
    kw = {"stride": stride, "dilation": dilation, "groups": groups}
    y = gemm.correlate(np, x_pad, w, spec, method, budget=budget)
    assert y.dtype == dtype and y.shape == spec.output_shape
    compare(ORACLE, y, ref.correlate(x_pad, w, **kw),
            ref.correlate(np.abs(x_pad), np.abs(w), **kw), math.prod(w.shape[1:]) + 1, dtype,
            what=f"{method} correlate")

    gy = np.random.default_rng(seed).standard_normal(y.shape).astype(dtype)
    covered = tuple((m - 1) * s + d * (k - 1) + 1
                    for m, s, d, k in zip(spec.out_size, spec.stride, spec.dilation, kernel))
    tkw = {**kw, "output_padding": tuple(p - c for p, c in zip(spec.padded_size, covered))}
    gx = gemm.input_grad(np, gy, w, spec, method, budget=budget)
    assert gx.dtype == dtype and gx.shape == x_pad.shape
    compare(ORACLE, gx, ref.conv_transpose(gy, w, **tkw),
            ref.conv_transpose(np.abs(gy), np.abs(w), **tkw),
            w.shape[0] // groups * math.prod(kernel) + 1, dtype, what=f"{method} input_grad")

    gw = gemm.weight_grad(np, gy, x_pad, spec, method, budget=budget)
    assert gw.dtype == dtype and gw.shape == w.shape
    compare(ORACLE, gw, weight_grad_oracle(gy, x_pad, kernel, spec.stride, spec.dilation,
                                            groups),
            weight_grad_oracle(np.abs(gy), np.abs(x_pad), kernel, spec.stride, spec.dilation,
                                groups),
            y.shape[0] * math.prod(y.shape[2:]) + 1, dtype, what=f"{method} weight_grad")


@st.composite
def padded_cases(draw, rank, max_kernel=3):
    """A correlation on an already padded input: (x_pad, w, stride, dilation, groups, dtype)."""
    c_in, c_out, groups = draw(groups_and_channels())
    kernel = tuple(draw(st.integers(1, max_kernel)) for _ in range(rank))
    stride = tuple(draw(st.integers(1, 2)) for _ in range(rank))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(rank))
    largest = {1: 20, 2: 9, 3: 6}[rank]
    size = tuple(draw(st.integers(d * (k - 1) + 1, max(largest, d * (k - 1) + 1)))
                 for k, d in zip(kernel, dilation))
    dtype = draw(st.sampled_from(DTYPES))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x_pad = rng.standard_normal((draw(st.integers(1, 3)), c_in, *size)).astype(dtype)
    w = rng.standard_normal((c_out, c_in // groups, *kernel)).astype(dtype)
    return x_pad, w, stride, dilation, groups, dtype


# ---------------------------------------------------------------------------------------------
# blocks


@given(batch=st.integers(1, 4),
       out=st.lists(st.integers(1, 7), min_size=1, max_size=3).map(tuple),
       cap=st.integers(1, 60))
def test_blocks_cover_every_position_once(batch, out, cap) -> None:
    """Each block is one contiguous run of flat output positions (whole samples or a box of
    one sample) within the cap, and together they cover every position exactly once."""
    p = math.prod(out)
    seen = np.zeros((batch, p), int)
    for n0, n1, start, extent, pos0, length in gemm._blocks(batch, out, cap):
        assert (n1 - n0) * length <= max(cap, 1) or length == 1
        assert length == math.prod(extent)
        box = np.zeros(out, bool)
        box[tuple(slice(i, i + e) for i, e in zip(start, extent))] = True
        flat = np.flatnonzero(box.ravel())
        assert flat[0] == pos0 and flat[-1] == pos0 + length - 1 and flat.size == length
        seen[n0:n1, pos0:pos0 + length] += 1
    assert (seen == 1).all()


def test_blocks_do_not_divide_the_positions() -> None:
    """Partial blocks: boxes of rows inside samples with a shorter last one, groups of
    samples that do not divide the batch, single positions of a row."""
    inside = list(gemm._blocks(2, (5, 3), 7))  # 15 positions per sample, 2 rows per block
    assert [(n0, pos0, length) for n0, _, _, _, pos0, length in inside] == [
        (0, 0, 6), (0, 6, 6), (0, 12, 3), (1, 0, 6), (1, 6, 6), (1, 12, 3)]
    samples = list(gemm._blocks(5, (2, 3), 13))  # 2 samples of 6 positions per block
    assert [(n0, n1) for n0, n1, *_ in samples] == [(0, 2), (2, 4), (4, 5)]
    points = list(gemm._blocks(1, (2, 3, 4), 3))  # rows of 4 > cap: boxes along the last axis
    assert {length for *_, length in points} == {2} and len(points) == 12


# ---------------------------------------------------------------------------------------------
# both methods against the oracle, blocked


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("staged", [False, True])
@given(data=st.data(), per_block=st.integers(1, 7))
def test_blocked_matches_reference(rank, method, staged, data, per_block) -> None:
    """Budgets of a few positions' columns: many blocks, boxes within samples, last blocks
    shorter; ranks 1-3, groups, stride, dilation, float32 and float64; im2col's columns
    gathered in one stage or (where the layer and block allow) two."""
    case = data.draw(padded_cases(rank), label="case")
    x_pad, w = case[0], case[1]
    budget = per_block * x_pad.shape[1] * math.prod(w.shape[2:])
    with _small_blocks(staged=staged):
        _check_module(*case, method=method, budget=budget)


def test_staged_gather_runs_where_it_pays(monkeypatch) -> None:
    """LeNet-2's rows of 10 are gathered in two stages; rows of 28 are not; results agree
    with the one-stage gather (exactness against the oracle: the blocked tests)."""
    calls = []
    staged_block = gemm._Windows._staged_block
    monkeypatch.setattr(gemm._Windows, "_staged_block",
                        lambda self, *args: calls.append(1) or staged_block(self, *args))
    rng = np.random.default_rng(7)
    w = rng.standard_normal((16, 6, 5, 5)).astype(np.float32)
    for size, staged in ((14, True), (32, False)):
        x = rng.standard_normal((64, 6, size, size)).astype(np.float32)
        spec = _spec(x, w)
        gy = rng.standard_normal(spec.output_shape).astype(np.float32)
        calls.clear()
        y = gemm.correlate(np, x, w, spec, "im2col")
        gw = gemm.weight_grad(np, gy, x, spec, "im2col")
        assert bool(calls) == staged, (size, len(calls))
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(gemm, "STAGED_MAX_ROW", 0)
            # (the blocks differ in size, so the weight gradient's sums differ in order)
            np.testing.assert_allclose(y, gemm.correlate(np, x, w, spec, "im2col"),
                                       rtol=1e-5, atol=1e-4)
            np.testing.assert_allclose(gw, gemm.weight_grad(np, gy, x, spec, "im2col"),
                                       rtol=1e-4, atol=1e-2)


@pytest.mark.parametrize(("input_grad", "weight_grad"), [("halo", "im2col"),
                                                          ("scatter", "shift"),
                                                          ("shift", "im2col"),
                                                          ("flat", "shift")])
@pytest.mark.parametrize("rank", [1, 2, 3])
@given(data=st.data(), per_block=st.integers(1, 5))
def test_im2col_variants_match_reference(rank, input_grad, weight_grad, data,
                                         per_block) -> None:
    """Each variant im2col can choose for the gradients (halo and flat at stride 1 only),
    through the module-wide ``COLUMN_BUDGET`` setting."""
    case = data.draw(padded_cases(rank), label="case")
    budget = per_block * case[0].shape[1] * math.prod(case[1].shape[2:])
    with _small_blocks(budget, input_grad, weight_grad):
        _check_module(*case, method="im2col")


@pytest.mark.parametrize(("method", "input_grad", "weight_grad"), [
    ("shift", None, None), ("im2col", "halo", "im2col"), ("im2col", "scatter", "shift"),
    ("im2col", "flat", "im2col"), ("im2col", "shift", "shift")])
@settings(max_examples=15)
@given(data=st.data(), per_block=st.integers(1, 5), threads=st.integers(2, 3))
def test_threaded_blocks_match_reference(method, input_grad, weight_grad, data, per_block,
                                         threads) -> None:
    """Blocks split over worker threads (BLAS single-threaded meanwhile): every step and
    variant, including those whose blocks add into overlapping windows (kept per sample)."""
    case = data.draw(padded_cases(data.draw(st.integers(1, 3), label="rank")), label="case")
    budget = per_block * case[0].shape[1] * math.prod(case[1].shape[2:]) * threads
    with _small_blocks(budget, input_grad, weight_grad, threads=threads):
        _check_module(*case, method=method)


def test_threads_only_where_they_pay(monkeypatch) -> None:
    """Threads for many long blocks (a 3-D layer) or blocks with large products (256
    channels on 14x14), not for small blocks of small products (LeNet) or a layer of one or
    two blocks; the BLAS thread count is restored after a threaded step."""
    monkeypatch.setattr(gemm, "fft_workers", lambda: 2)

    def workers(shape, c_out, k):
        x = np.zeros(shape, np.float32)
        w = np.zeros((c_out, shape[1]) + (k,) * (len(shape) - 2), np.float32)
        spec = _spec(x, w)
        blocked = gemm._Blocked(spec, np.float32, "im2col", None)
        return blocked._plan(spec.in_channels * math.prod(spec.kernel))[1]

    assert workers((2, 16, 34, 34, 34), 32, 3) == 2  # long blocks
    assert workers((8, 256, 16, 16), 256, 3) == 2  # short blocks, but large products
    assert workers((64, 6, 14, 14), 16, 5) == 1  # LeNet: small blocks and products
    assert workers((1, 3, 10, 10), 4, 3) == 1
    before = _threads._blas_threads()
    x = np.random.default_rng(0).standard_normal((2, 16, 34, 34, 34)).astype(np.float32)
    w = np.ones((32, 16, 3, 3, 3), np.float32)
    gemm.correlate(np, x, w, _spec(x, w), "im2col")
    assert _threads._blas_threads() == before


@pytest.mark.parametrize("method", METHODS)
def test_unblocked_suite_like_layer(method) -> None:
    """A layer with the default block sizes (cache-sized blocks, several per sample)."""
    rng = np.random.default_rng(1)
    x_pad = rng.standard_normal((3, 12, 30, 34)).astype(np.float32)
    w = rng.standard_normal((10, 12, 3, 3)).astype(np.float32)
    _check_module(x_pad, w, (1, 1), (1, 1), 1, np.float32, method)


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
@given(data=st.data(), per_block=st.integers(1, 40))
def test_blocked_larger_samples(method, data, per_block) -> None:
    case = data.draw(padded_cases(2, max_kernel=5), label="case")
    budget = per_block * case[0].shape[1] * math.prod(case[1].shape[2:])
    with _small_blocks():
        _check_module(*case, method=method, budget=budget)


def test_public_api_uses_the_budget() -> None:
    """``fc2conv.correlate`` and ``correlate_vjp`` with a tiny module budget agree with the
    unbudgeted result (same arithmetic, other blocks)."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 4, 11, 9))
    w = rng.standard_normal((6, 2, 3, 2))
    kw = {"padding": 1, "stride": (2, 1), "groups": 2, "padding_mode": "reflect"}
    for method in METHODS:
        y = fc2conv.correlate(x, w, method=method, **kw)
        grads = fc2conv.functional.correlate_vjp(np.ones_like(y), x, w, method=method, **kw)
        with _small_blocks(budget=5):
            y2 = fc2conv.correlate(x, w, method=method, **kw)
            grads2 = fc2conv.functional.correlate_vjp(np.ones_like(y), x, w, method=method, **kw)
        np.testing.assert_allclose(y2, y, rtol=1e-12, atol=1e-12)
        for a, b in zip(grads2[:2], grads[:2]):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("kernel", [(3, 2), (1, 1)])
def test_non_contiguous_arrays(method, kernel) -> None:
    """Strided, reversed and Fortran-ordered inputs give the results of contiguous copies."""
    rng = np.random.default_rng(7)
    x_pad = rng.standard_normal((3, 12, 19, 16))[:, ::2, ::2, 1:]  # (3, 6, 10, 15)
    w = rng.standard_normal((4, 3, *kernel))[:, :, ::-1, ::-1]
    gy_shape = _spec(x_pad, w, groups=2).output_shape
    gy = np.asfortranarray(rng.standard_normal(gy_shape))
    spec = _spec(x_pad, w, groups=2)
    for budget in (None, 30):
        got = (gemm.correlate(np, x_pad, w, spec, method, budget=budget),
               gemm.input_grad(np, gy, w, spec, method, budget=budget),
               gemm.weight_grad(np, gy, x_pad, spec, method, budget=budget))
        x_c, w_c, gy_c = (np.ascontiguousarray(a) for a in (x_pad, w, gy))
        want = (gemm.correlate(np, x_c, w_c, spec, method),
                gemm.input_grad(np, gy_c, w_c, spec, method),
                gemm.weight_grad(np, gy_c, x_c, spec, method))
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# 1x1 kernels


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("stride", [1, 2, (1, 3)])
@pytest.mark.parametrize("groups", [1, 2, 6])
@pytest.mark.parametrize("dtype", DTYPES)
def test_pointwise(method, stride, groups, dtype) -> None:
    """1x1 kernels: one product on the input as it is at stride 1, a strided gather
    otherwise; groups up to depthwise."""
    rng = np.random.default_rng(3)
    x_pad = rng.standard_normal((3, 6, 7, 8)).astype(dtype)
    w = rng.standard_normal((12, 6 // groups, 1, 1)).astype(dtype)
    stride = stride if isinstance(stride, tuple) else (stride, stride)
    _check_module(x_pad, w, stride, (1, 1), groups, dtype, method)
    with _small_blocks():
        _check_module(x_pad, w, stride, (1, 1), groups, dtype, method, budget=7)


@pytest.mark.parametrize("batch", [1, 5])
def test_pointwise_threaded(batch, monkeypatch) -> None:
    """1x1 products cut over samples, or over positions for a single sample, on threads."""
    monkeypatch.setattr(gemm, "fft_workers", lambda: 2)
    monkeypatch.setattr(gemm, "PARALLEL_MIN_COLUMNS", 0)
    monkeypatch.setattr(gemm, "PARALLEL_MIN_FLOPS", 0)
    rng = np.random.default_rng(batch)
    x = rng.standard_normal((batch, 6, 7, 9))
    w = rng.standard_normal((4, 3, 1, 1))
    spec = _spec(x, w, groups=2)
    parts, workers = gemm._Blocked(spec, x.dtype, "im2col", None)._pointwise_parts()
    assert workers == 2 and len(parts) >= 3
    _check_module(x, w, 1, 1, 2, np.float64, "im2col")


def test_pointwise_reads_the_input_in_place() -> None:
    """A 1x1 stride-1 layer allocates its output and nothing of the input's size."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((4, 64, 32, 32)).astype(np.float32)
    w = rng.standard_normal((16, 64, 1, 1)).astype(np.float32)
    spec = _spec(x, w)
    gemm.correlate(np, x, w, spec, "im2col")
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        y = gemm.correlate(np, x, w, spec, "im2col")
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert peak <= y.nbytes + 64 * 1024, (peak, y.nbytes)


# ---------------------------------------------------------------------------------------------
# workspaces


def _layer(seed, dtype, shape=(2, 5, 13, 11), c_out=7, k=3, stride=1):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal((c_out, shape[1], *(k,) * (len(shape) - 2))).astype(dtype)
    return x, w, _spec(x, w, stride=stride)


def _all_steps(x, w, spec, method, budget=None):
    y = gemm.correlate(np, x, w, spec, method, budget=budget)
    gy = np.cos(np.arange(y.size, dtype=y.dtype)).reshape(y.shape)
    return (y, gemm.input_grad(np, gy, w, spec, method, budget=budget),
            gemm.weight_grad(np, gy, x, spec, method, budget=budget))


def test_workspace_reuse_gives_identical_results() -> None:
    """Repeated calls reuse the scratch buffers and return bit-identical arrays; calls on
    other shapes and dtypes in between do not disturb them."""
    layers = [_layer(0, np.float32), _layer(1, np.float64, (3, 4, 9, 10), 5, 2),
              _layer(2, np.float32, (2, 3, 17), 4, 5, stride=2),
              _layer(3, np.float64, (1, 2, 5, 6, 7), 3, 3)]
    for method in METHODS:
        with _small_blocks():
            gemm.clear_workspace()
            first = [_all_steps(*layer, method, budget=40) for layer in layers]
            assert gemm.workspace_bytes() > 0
            for _ in range(2):
                for layer, expected in zip(layers[::-1], first[::-1]):
                    for got, want in zip(_all_steps(*layer, method, budget=40), expected):
                        np.testing.assert_array_equal(got, want)


def test_workspace_buffers() -> None:
    """One buffer per tag and dtype, grown on demand, reused when large enough, never the
    same memory for two tags; bounded per thread."""
    gemm.clear_workspace()
    a = gemm.workspace("a", (10, 10), np.float32)
    b = gemm.workspace("b", (10, 10), np.float32)
    c = gemm.workspace("a", (10, 10), np.float64)
    assert not np.shares_memory(a, b) and not np.shares_memory(a, c)
    small = gemm.workspace("a", (5, 3), np.float32)
    assert np.shares_memory(small, a) and small.shape == (5, 3) and small.flags.c_contiguous
    big = gemm.workspace("a", (50, 50), np.float32)
    assert big.shape == (50, 50) and not np.shares_memory(big, b)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(gemm, "WORKSPACE_BYTES", 4000)
        huge = gemm.workspace("c", (2000,), np.float32)  # over the limit: not kept
        assert huge.shape == (2000,)
        assert not any(buf is huge.base for buf in gemm._LOCAL.buffers.values())
        gemm.workspace("d", (900,), np.float32)
        assert gemm.workspace_bytes() <= 4000
    gemm.clear_workspace()
    assert gemm.workspace_bytes() == 0


def test_workspace_is_per_thread() -> None:
    """Threads running layers concurrently (as Dask's do) get their own scratch buffers and
    the results of a single thread."""
    layers = [_layer(i, dtype) for i, dtype in enumerate((np.float32, np.float64) * 2)]
    expected = [_all_steps(*layer, "im2col", budget=30) for layer in layers]
    errors, memory = [], {}

    def work(i):
        try:
            memory[i] = gemm.workspace("probe", (8,), np.float32)
            for _ in range(5):
                for got, want in zip(_all_steps(*layers[i], "im2col", budget=30), expected[i]):
                    np.testing.assert_array_equal(got, want)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    with _small_blocks():
        threads = [threading.Thread(target=work, args=(i,)) for i in range(len(layers))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors, errors
    for i, j in itertools.combinations(memory, 2):
        assert not np.shares_memory(memory[i], memory[j])


# ---------------------------------------------------------------------------------------------
# memory


def _peak(fn):
    fn()  # lazy imports and thread start-up are not the op's memory
    gemm.clear_workspace(all_threads=True)  # (the worker threads' too: traced when remade)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        result = fn()
        return result, tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
        gemm.clear_workspace(all_threads=True)


@pytest.mark.parametrize("staged", [False, True])
@pytest.mark.parametrize("threads", [None, 2])
@pytest.mark.parametrize("budget", [None, 3000])
def test_im2col_peak_memory_within_budget(budget, threads, staged) -> None:
    """The blocked im2col's peak extra memory: the result, plus at most the column budget
    (default: the output's size; threaded, each thread's blocks get its share), plus small
    per-block scratch (the weight-gradient sum and product, per thread; the input gradient's
    zero-extended ``grad_out`` of the block's samples). A one-buffer im2col would need 9x the
    output here. ``staged``: the columns gathered in two stages (their staged rows count in
    the budget)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(gemm, "STAGED_MAX_ROW", 1 << 30 if staged else 0)
        mp.setattr(gemm, "STAGED_MIN_COLUMNS", 0)
        if threads:
            with _small_blocks(budget, threads=threads):  # threads for any layer
                plan = gemm._Blocked(_spec(np.zeros((4, 16, 40, 40), np.float32),
                                           np.zeros((16, 16, 3, 3), np.float32)),
                                     np.float32, "im2col", budget)._plan(16 * 9)
                assert plan[1] == threads
                _check_peak(budget, threads)
        else:
            _check_peak(budget, 1)


def _check_peak(budget, threads) -> None:
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 16, 40, 40)).astype(np.float32)
    w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    spec = _spec(x, w)
    gy = rng.standard_normal(spec.output_shape).astype(np.float32)
    allowed = gemm.column_budget(spec, budget) * 4
    slack = 64 * 1024 * threads  # Python objects: blocks, futures, views
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(gemm, "CACHE_BYTES", 1 << 40)  # the budget alone sizes the blocks
        y, peak = _peak(lambda: gemm.correlate(np, x, w, spec, "im2col", budget=budget))
        assert peak <= y.nbytes + allowed + slack, (peak, y.nbytes, allowed)
        assert peak < 3 * y.nbytes
        _, peak = _peak(lambda: gemm.weight_grad(np, gy, x, spec, "im2col", budget=budget))
        assert peak <= allowed + gy.nbytes // 4 + 4 * threads * w.nbytes + slack, (peak, allowed)
        for variant in ("halo", "flat", "scatter", "shift"):
            mp.setattr(gemm, "_FORCE_INPUT_GRAD", variant)
            gx, peak = _peak(lambda: gemm.input_grad(np, gy, w, spec, "im2col", budget=budget))
            halo = gy.nbytes * 42 * 42 // (38 * 38)  # one block may span all samples
            assert peak <= gx.nbytes + allowed + halo + slack, (variant, peak, allowed)


# ---------------------------------------------------------------------------------------------
# cost model


def test_cost() -> None:
    """Positive and finite; either argument order; a 1x1 layer costs less than a 3x3 one of
    the same shape; the chosen input-gradient variant is the cheaper estimate."""
    x = np.zeros((8, 64, 56, 56), np.float32)
    spec3 = _spec(x, np.zeros((64, 64, 3, 3), np.float32))
    spec1 = _spec(x, np.zeros((64, 64, 1, 1), np.float32))
    for method in METHODS:
        for step in ("correlate", "input_grad", "weight_grad"):
            c3 = gemm.cost(spec3, method, step)
            assert 0 < c3 < math.inf
            assert gemm.cost(spec3, step, method) == c3
            assert gemm.cost(spec1, method, step) < c3
            # the GEMM flops are the floor
            assert c3 >= 2 * 8 * 54 * 54 * 64 * 64 * 9
    assert gemm.cost(spec3, "shift", "correlate") > gemm.cost(spec3, "im2col", "correlate")
    with pytest.raises(ValueError):
        gemm.cost(spec3, "fft")
    with pytest.raises(ValueError):
        gemm.cost(spec3, "im2col", "backward")


# ---------------------------------------------------------------------------------------------
# portable path


def test_portable_path_honours_the_budget() -> None:
    """Other namespaces (torch here) run the portable loop, im2col in chunks of samples."""
    torch = pytest.importorskip("torch")
    import array_api_compat.torch as tx

    rng = np.random.default_rng(6)
    x = rng.standard_normal((5, 4, 9, 8))
    w = rng.standard_normal((6, 2, 3, 3))
    spec = _spec(x, w, stride=(2, 1), groups=2)
    gy = rng.standard_normal(spec.output_shape)
    expected = (gemm.correlate(np, x, w, spec, "im2col"),
                gemm.input_grad(np, gy, w, spec, "im2col"),
                gemm.weight_grad(np, gy, x, spec, "im2col"))
    xt, wt, gyt = (torch.from_numpy(a) for a in (x, w, gy))
    per_sample = 4 * 9 * math.prod(spec.out_size)
    assert gemm._portable_samples(spec, 2 * per_sample) == 2
    for budget in (1, 2 * per_sample, None):
        for method in METHODS:
            got = (gemm.correlate(tx, xt, wt, spec, method, budget=budget),
                   gemm.input_grad(tx, gyt, wt, spec, method, budget=budget),
                   gemm.weight_grad(tx, gyt, xt, spec, method, budget=budget))
            for g, e in zip(got, expected):
                assert isinstance(g, torch.Tensor)
                np.testing.assert_allclose(g.numpy(), e, rtol=1e-12, atol=1e-12)
