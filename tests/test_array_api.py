"""fc2conv on array-API arrays other than NumPy: array_api_strict and PyTorch CPU tensors.

Each op and VJP must return arrays of the input's kind and dtype, with the same numbers as
the NumPy path (DESIGN.md: "Every op accepts any array that the array API standard covers
... and returns the same kind").
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import fc2conv
from fc2conv import functional as F

xps = pytest.importorskip("array_api_strict")
torch = pytest.importorskip("torch")

# --------------------------------------------------------------------------------------------
# namespaces
# --------------------------------------------------------------------------------------------


class Backend:
    name: str

    def asarray(self, a: np.ndarray) -> Any:
        raise NotImplementedError

    def is_kind(self, a) -> bool:
        raise NotImplementedError

    def dtype_of(self, np_dtype) -> Any:
        raise NotImplementedError

    def to_numpy(self, a) -> np.ndarray:
        raise NotImplementedError


class StrictBackend(Backend):
    name = "array_api_strict"

    def asarray(self, a):
        return xps.asarray(np.ascontiguousarray(a))

    def is_kind(self, a):
        return (
            isinstance(a, xps._array_object.Array)
            if hasattr(xps, "_array_object")
            else (type(a).__module__.startswith("array_api_strict"))
        )

    def dtype_of(self, np_dtype):
        return {np.float32: xps.float32, np.float64: xps.float64}[np_dtype]

    def to_numpy(self, a):
        try:
            return np.asarray(a)
        except (TypeError, ValueError, RuntimeError):  # pragma: no cover - older strict
            return np.from_dlpack(a)


class TorchBackend(Backend):
    name = "torch"

    def asarray(self, a):
        return torch.from_numpy(np.array(a))  # owns a copy

    def is_kind(self, a):
        return isinstance(a, torch.Tensor)

    def dtype_of(self, np_dtype):
        return {np.float32: torch.float32, np.float64: torch.float64}[np_dtype]

    def to_numpy(self, a):
        assert a.device.type == "cpu"
        return a.detach().numpy()


BACKENDS = [StrictBackend(), TorchBackend()]
DTYPES = [np.float32, np.float64]
RTOL = {np.float32: 2e-5, np.float64: 1e-11}


def check_same(backend, dtype, result, expected, what=""):
    """result is of the backend's kind and dtype and matches the NumPy array expected."""
    assert backend.is_kind(result), f"{what}: got {type(result)!r}, want {backend.name}"
    assert result.dtype == backend.dtype_of(dtype), f"{what}: dtype {result.dtype}"
    got = backend.to_numpy(result)
    assert got.shape == expected.shape, (what, got.shape, expected.shape)
    assert expected.dtype == dtype, (what, expected.dtype)
    scale = max(float(np.max(np.abs(expected), initial=0.0)), 1.0)
    err = float(np.max(np.abs(got.astype(np.float64) - expected.astype(np.float64)), initial=0.0))
    assert err <= RTOL[dtype] * scale, f"{what}: max abs error {err:.3g} (scale {scale:.3g})"


def data(shape, dtype, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def convert(backend, *arrays):
    return [None if a is None else backend.asarray(a) for a in arrays]


backend_ids = [b.name for b in BACKENDS]
dtype_ids = ["float32", "float64"]

# --------------------------------------------------------------------------------------------
# configurations: every padding mode, stride, dilation, groups, ranks 1-3, each method
# --------------------------------------------------------------------------------------------

CONV_CASES = [
    # (x shape, w shape, with bias, kwargs)
    ((2, 3, 9), (4, 3, 3), True, {}),
    ((2, 4, 10), (4, 2, 3), False, {"stride": 2, "padding": 1, "groups": 2, "method": "im2col"}),
    ((1, 2, 7, 6), (3, 2, 3, 3), True, {"padding": 1, "padding_mode": "zeros", "stride": 2}),
    (
        (2, 2, 7, 6),
        (2, 2, 3, 2),
        True,
        {"padding": "same", "padding_mode": "reflect", "dilation": 2},
    ),
    (
        (1, 4, 6, 7),
        (6, 2, 3, 3),
        False,
        {"padding": (1, 2), "padding_mode": "symmetric", "groups": 2, "method": "shift"},
    ),
    (
        (2, 2, 5, 6),
        (3, 2, 2, 3),
        True,
        {"padding": ((1, 0), (2, 1)), "padding_mode": "replicate", "stride": (1, 2)},
    ),
    ((1, 3, 6, 5), (2, 3, 3, 3), True, {"padding": "full", "padding_mode": "circular"}),
    (
        (1, 2, 8),
        (2, 1, 3),
        True,
        {"padding": "same", "padding_mode": "circular", "groups": 2, "dilation": 2, "stride": 3},
    ),
    (
        (1, 2, 5, 4, 6),
        (4, 1, 2, 3, 3),
        True,
        {
            "stride": (2, 1, 2),
            "padding": 1,
            "dilation": (1, 1, 2),
            "groups": 2,
            "padding_mode": "reflect",
        },
    ),
    ((2, 2, 4, 4, 4), (2, 2, 3, 1, 2), False, {"padding": "valid", "method": "im2col"}),
    ((2, 3, 5, 4), (4, 3, 1, 1), True, {"stride": 2}),  # 1x1: "auto" picks shift-and-GEMM
]
conv_ids = [f"{len(c[0]) - 2}d-{i}" for i, c in enumerate(CONV_CASES)]

TRANSPOSE_CASES = [
    ((2, 3, 6), (3, 2, 3), True, {}),
    ((1, 4, 5), (4, 1, 3), False, {"stride": 2, "padding": 1, "output_padding": 1, "groups": 2}),
    (
        (2, 2, 4, 3),
        (2, 3, 3, 2),
        True,
        {"stride": (2, 3), "padding": (1, 0), "output_padding": (1, 2)},
    ),
    ((1, 4, 3, 4), (4, 1, 2, 3), True, {"dilation": 2, "output_padding": 1, "groups": 4}),
    ((1, 2, 3, 3, 2), (2, 2, 2, 2, 3), True, {"stride": 2, "padding": (0, 1, 1)}),
]
transpose_ids = [f"{len(c[0]) - 2}d-{i}" for i, c in enumerate(TRANSPOSE_CASES)]

MAX_POOL_CASES = [
    ((2, 3, 9), 3, {}),
    ((2, 3, 9), 3, {"stride": 2, "padding": 1, "dilation": 2, "ceil_mode": True}),
    ((1, 2, 7, 6), (2, 3), {"stride": (2, 1), "padding": (1, 1)}),
    ((1, 2, 7, 6), 3, {"stride": 2, "padding": 1, "ceil_mode": True}),
    ((1, 2, 5, 4, 6), 2, {"stride": (1, 2, 2), "dilation": (2, 1, 1)}),
]
AVG_POOL_CASES = [
    ((2, 3, 9), 3, {}),
    ((2, 3, 9), 3, {"stride": 2, "padding": 1, "count_include_pad": False, "ceil_mode": True}),
    ((1, 2, 7, 6), (2, 3), {"stride": (2, 1), "padding": (1, 1)}),
    ((1, 2, 7, 6), 3, {"stride": 2, "padding": 1, "ceil_mode": True, "count_include_pad": True}),
    ((1, 2, 5, 4, 6), 2, {"stride": (1, 2, 2), "padding": (1, 0, 1), "count_include_pad": False}),
]


# --------------------------------------------------------------------------------------------
# forward ops
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS, ids=backend_ids)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_ids)
@pytest.mark.parametrize("op_name", ["correlate", "convolve"])
@pytest.mark.parametrize("case", CONV_CASES, ids=conv_ids)
def test_conv(backend, dtype, op_name, case):
    x_shape, w_shape, with_bias, kw = case
    op = getattr(fc2conv, op_name)
    x, w = data(x_shape, dtype, 0), data(w_shape, dtype, 1)
    b = data(w_shape[:1], dtype, 2) if with_bias else None
    expected = op(x, w, b, **kw)
    assert isinstance(expected, np.ndarray) and expected.dtype == dtype
    result = op(*convert(backend, x, w, b), **kw)
    check_same(backend, dtype, result, expected, op_name)
    # the rank alias goes through the same path
    alias = getattr(fc2conv, f"{op_name}{len(x_shape) - 2}d")
    check_same(backend, dtype, alias(*convert(backend, x, w, b), **kw), expected, "alias")


@pytest.mark.parametrize("backend", BACKENDS, ids=backend_ids)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_ids)
@pytest.mark.parametrize("case", TRANSPOSE_CASES, ids=transpose_ids)
def test_conv_transpose(backend, dtype, case):
    x_shape, w_shape, with_bias, kw = case
    x, w = data(x_shape, dtype, 0), data(w_shape, dtype, 1)
    groups = kw.get("groups", 1)
    b = data((w_shape[1] * groups,), dtype, 2) if with_bias else None
    expected = fc2conv.conv_transpose(x, w, b, **kw)
    assert expected.dtype == dtype
    result = fc2conv.conv_transpose(*convert(backend, x, w, b), **kw)
    check_same(backend, dtype, result, expected, "conv_transpose")


@pytest.mark.parametrize("backend", BACKENDS, ids=backend_ids)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_ids)
@pytest.mark.parametrize("case", MAX_POOL_CASES)
def test_max_pool(backend, dtype, case):
    x_shape, k, kw = case
    x = data(x_shape, dtype, 0)
    expected = fc2conv.max_pool(x, k, **kw)
    assert expected.dtype == dtype
    result = fc2conv.max_pool(backend.asarray(x), k, **kw)
    check_same(backend, dtype, result, expected, "max_pool")
    # max pooling selects inputs: the values agree exactly
    np.testing.assert_array_equal(backend.to_numpy(result), expected)


@pytest.mark.parametrize("backend", BACKENDS, ids=backend_ids)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_ids)
@pytest.mark.parametrize("case", AVG_POOL_CASES)
def test_avg_pool(backend, dtype, case):
    x_shape, k, kw = case
    x = data(x_shape, dtype, 0)
    expected = fc2conv.avg_pool(x, k, **kw)
    assert expected.dtype == dtype
    result = fc2conv.avg_pool(backend.asarray(x), k, **kw)
    check_same(backend, dtype, result, expected, "avg_pool")


# --------------------------------------------------------------------------------------------
# vector-Jacobian products
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS, ids=backend_ids)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_ids)
@pytest.mark.parametrize("op_name", ["correlate", "convolve"])
@pytest.mark.parametrize("case", CONV_CASES, ids=conv_ids)
def test_conv_vjp(backend, dtype, op_name, case):
    x_shape, w_shape, with_bias, kw = case
    kw = {k: v for k, v in kw.items()}
    op = getattr(fc2conv, op_name)
    vjp = getattr(F, f"{op_name}_vjp")
    x, w = data(x_shape, dtype, 0), data(w_shape, dtype, 1)
    b = data(w_shape[:1], dtype, 2) if with_bias else None
    gy = data(op(x, w, b, **kw).shape, dtype, 3)
    expected = vjp(gy, x, w, b, **kw)
    result = vjp(*convert(backend, gy, x, w, b), **kw)
    assert isinstance(result, tuple) and len(result) == 3
    for name, r, e in zip(("gx", "gw", "gb"), result, expected):
        if e is None:
            assert r is None, name
        else:
            check_same(backend, dtype, r, e, f"{op_name}_vjp {name}")


@pytest.mark.parametrize("backend", BACKENDS, ids=backend_ids)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_ids)
@pytest.mark.parametrize("case", TRANSPOSE_CASES, ids=transpose_ids)
def test_conv_transpose_vjp(backend, dtype, case):
    x_shape, w_shape, with_bias, kw = case
    x, w = data(x_shape, dtype, 0), data(w_shape, dtype, 1)
    groups = kw.get("groups", 1)
    b = data((w_shape[1] * groups,), dtype, 2) if with_bias else None
    gy = data(fc2conv.conv_transpose(x, w, b, **kw).shape, dtype, 3)
    expected = F.conv_transpose_vjp(gy, x, w, b, **kw)
    result = F.conv_transpose_vjp(*convert(backend, gy, x, w, b), **kw)
    assert isinstance(result, tuple) and len(result) == 3
    for name, r, e in zip(("gx", "gw", "gb"), result, expected):
        if e is None:
            assert r is None, name
        else:
            check_same(backend, dtype, r, e, f"conv_transpose_vjp {name}")


@pytest.mark.parametrize("backend", BACKENDS, ids=backend_ids)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_ids)
@pytest.mark.parametrize(
    "kind, case",
    [("max", c) for c in MAX_POOL_CASES] + [("avg", c) for c in AVG_POOL_CASES],
)
def test_pool_vjp(backend, dtype, kind, case):
    x_shape, k, kw = case
    pool = getattr(fc2conv, f"{kind}_pool")
    vjp = getattr(F, f"{kind}_pool_vjp")
    # distinct values so that max pooling's argmax is the same in every library
    size = int(np.prod(x_shape))
    x = (np.random.default_rng(0).permutation(size).reshape(x_shape) / size).astype(dtype)
    gy = data(pool(x, k, **kw).shape, dtype, 3)
    (expected,) = vjp(gy, x, k, **kw)
    result = vjp(*convert(backend, gy, x), k, **kw)
    assert isinstance(result, tuple) and len(result) == 1
    check_same(backend, dtype, result[0], expected, f"{kind}_pool_vjp")


@pytest.mark.parametrize("backend", BACKENDS, ids=backend_ids)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_ids)
@pytest.mark.parametrize("method", ["im2col", "shift"])
@pytest.mark.parametrize("rank", [1, 2, 3])
def test_every_method_in_every_namespace(backend, dtype, method, rank):
    x = data((2, 4) + (5,) * rank, dtype, 0)
    w = data((6, 2) + (3, 2, 1)[:rank], dtype, 1)
    b = data((6,), dtype, 2)
    kw = {"stride": 2, "padding": 1, "groups": 2, "padding_mode": "circular", "method": method}
    expected = fc2conv.correlate(x, w, b, **kw)
    check_same(
        backend, dtype, fc2conv.correlate(*convert(backend, x, w, b), **kw), expected, method
    )
    gy = data(expected.shape, dtype, 3)
    grads = F.correlate_vjp(*convert(backend, gy, x, w, b), **kw)
    for name, r, e in zip(("gx", "gw", "gb"), grads, F.correlate_vjp(gy, x, w, b, **kw)):
        check_same(backend, dtype, r, e, f"{method} {name}")


# --------------------------------------------------------------------------------------------
# odds and ends
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_ids)
def test_torch_non_contiguous_input(dtype):
    base = data((2, 7, 3, 6), dtype, 0)  # (N, W, C, H) -> view as (N, C, H, W)
    x_np = np.ascontiguousarray(base.transpose(0, 2, 3, 1))
    x_t = torch.from_numpy(base).permute(0, 2, 3, 1)
    assert not x_t.is_contiguous()
    w = data((4, 3, 3, 3), dtype, 1)
    expected = fc2conv.correlate(x_np, w, padding=1, padding_mode="reflect", stride=2)
    result = fc2conv.correlate(
        x_t, torch.from_numpy(w), padding=1, padding_mode="reflect", stride=2
    )
    check_same(TorchBackend(), dtype, result, expected, "non-contiguous")
    # NumPy views likewise
    got = fc2conv.correlate(
        base.transpose(0, 2, 3, 1), w, padding=1, padding_mode="reflect", stride=2
    )
    np.testing.assert_allclose(got, expected, rtol=RTOL[dtype], atol=RTOL[dtype])


def test_torch_tensor_requiring_grad_gives_a_tensor():
    x = torch.randn(1, 2, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 2, 3, dtype=torch.float64)
    y = fc2conv.correlate(x, w, padding=1)
    assert isinstance(y, torch.Tensor) and y.shape == (1, 3, 6)
    expected = fc2conv.correlate(x.detach().numpy(), w.numpy(), padding=1)
    np.testing.assert_allclose(y.detach().numpy(), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS, ids=backend_ids)
def test_mixed_precision_is_rejected_in_every_namespace(backend):
    x = backend.asarray(data((1, 2, 6), np.float32, 0))
    w = backend.asarray(data((3, 2, 3), np.float64, 1))
    with pytest.raises(fc2conv.DTypeError):
        fc2conv.correlate(x, w)


@pytest.mark.parametrize("backend", BACKENDS, ids=backend_ids)
def test_integer_arrays_are_rejected_in_every_namespace(backend):
    x = backend.asarray(np.ones((1, 2, 6), dtype=np.int64))
    w = backend.asarray(np.ones((3, 2, 3), dtype=np.float64))
    with pytest.raises(fc2conv.DTypeError, match=r"\bx\b"):
        fc2conv.correlate(x, w)


@pytest.mark.parametrize("backend", BACKENDS, ids=backend_ids)
def test_errors_are_the_same_in_every_namespace(backend):
    x = backend.asarray(data((1, 2, 6), np.float64, 0))
    w = backend.asarray(data((3, 2, 3), np.float64, 1))
    with pytest.raises(fc2conv.ArgumentError, match="stride"):
        fc2conv.correlate(x, w, stride=0)
    with pytest.raises(fc2conv.ShapeError, match="bias"):
        fc2conv.correlate(x, w, backend.asarray(np.zeros(2)))
    with pytest.raises(fc2conv.ShapeError, match="grad_out"):
        F.correlate_vjp(backend.asarray(np.zeros((1, 3, 5))), x, w)


def test_strict_namespace_is_the_one_returned():
    # results carry the array_api_strict namespace, not a NumPy array in disguise
    x = xps.asarray(data((1, 1, 5), np.float64, 0))
    w = xps.asarray(data((1, 1, 2), np.float64, 1))
    y = fc2conv.correlate(x, w)
    assert y.__array_namespace__() is xps
    assert not isinstance(y, np.ndarray)
