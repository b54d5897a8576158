"""Bad input raises the documented exception, with a message naming the argument and value.

Contract (DESIGN.md and fc2conv._errors): every error for bad input derives from
``fc2conv.Fc2convError`` and from ``ValueError`` (ShapeError, ArgumentError) or ``TypeError``
(DTypeError); the message names the argument and the value received. NaN and Inf in the data
are not errors: they propagate per IEEE.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import fc2conv
from fc2conv import ArgumentError, DTypeError, Fc2convError, ShapeError
from fc2conv import functional as F

rng = np.random.default_rng(0)


def arr(*shape, dtype=np.float64):
    return rng.standard_normal(shape).astype(dtype)


X1 = arr(2, 4, 7)  # (N, C_in, L)
W1 = arr(6, 4, 3)  # (C_out, C_in, K)
X2 = arr(2, 4, 6, 5)
W2 = arr(6, 4, 3, 3)


class AnyOf(tuple):
    """Several acceptable renderings of a received value (e.g. a whole tuple or its bad entry)."""


def _value_pattern(value) -> str:
    """A loose regex for how a value may be printed: numbers in order, strings verbatim."""
    if isinstance(value, AnyOf):
        return "|".join(f"(?:{_value_pattern(v)})" for v in value)
    if isinstance(value, str):
        return re.escape(value)
    if isinstance(value, (tuple, list)):
        flat = re.findall(r"-?\d+(?:\.\d+)?", str(value))
        return r"\D{0,8}".join(re.escape(v) for v in flat)
    return r"(?<![\w.])" + re.escape(str(value)) + r"(?![\w])"


def check_raises(exc, name, value=..., *, fn, args=(), kwargs=None):
    """Call fn, expect exc; the message must name ``name`` (and the received value)."""
    with pytest.raises(exc) as info:
        fn(*args, **(kwargs or {}))
    err = info.value
    assert isinstance(err, Fc2convError), f"{type(err).__name__} is not an Fc2convError"
    msg = str(err)
    names = name if isinstance(name, (tuple, list)) else (name,)
    assert any(re.search(rf"(?<![\w]){re.escape(n)}(?![\w])", msg) for n in names), (
        f"message does not name {names}: {msg!r}"
    )
    if value is not ...:
        assert re.search(_value_pattern(value), msg), (
            f"message does not show the received value {value!r}: {msg!r}"
        )
    return err


# --------------------------------------------------------------------------------------------
# exception classes
# --------------------------------------------------------------------------------------------


def test_exception_hierarchy():
    assert issubclass(ShapeError, Fc2convError) and issubclass(ShapeError, ValueError)
    assert issubclass(ArgumentError, Fc2convError) and issubclass(ArgumentError, ValueError)
    assert issubclass(DTypeError, Fc2convError) and issubclass(DTypeError, TypeError)
    assert fc2conv.Fc2convError is Fc2convError


# --------------------------------------------------------------------------------------------
# shapes
# --------------------------------------------------------------------------------------------

CONV_OPS = [fc2conv.correlate, fc2conv.convolve]
ALL_CONV_OPS = [fc2conv.correlate, fc2conv.convolve, fc2conv.conv_transpose]


@pytest.mark.parametrize("op", ALL_CONV_OPS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("shape", [(7,), (4, 7), (1, 1, 2, 2, 2, 2)])
def test_x_with_wrong_rank(op, shape):
    # the received value of an array argument: its shape (or at least its rank)
    check_raises(ShapeError, "x", AnyOf((shape, len(shape))), fn=op, args=(arr(*shape), W1))


@pytest.mark.parametrize("op", ALL_CONV_OPS, ids=lambda f: f.__name__)
def test_w_rank_differs_from_x(op):
    check_raises(ShapeError, "w", AnyOf(((6, 4, 3, 3), 4)), fn=op, args=(X1, W2))
    check_raises(ShapeError, "w", AnyOf(((6, 4), 2)), fn=op, args=(X1, arr(6, 4)))


@pytest.mark.parametrize("op", CONV_OPS, ids=lambda f: f.__name__)
def test_channel_mismatch(op):
    # w.shape[1] * groups = 3 != C_in = 4
    check_raises(ShapeError, ("w", "x"), fn=op, args=(X1, arr(6, 3, 3)))
    check_raises(ShapeError, ("w", "x"), fn=op, args=(X1, arr(6, 1, 3)), kwargs={"groups": 2})


def test_conv_transpose_channel_mismatch():
    # conv_transpose: x channels must equal w.shape[0]
    check_raises(ShapeError, ("w", "x"), fn=fc2conv.conv_transpose, args=(X1, arr(3, 2, 3)))


@pytest.mark.parametrize("op", CONV_OPS, ids=lambda f: f.__name__)
def test_c_out_not_divisible_by_groups(op):
    # C_in = 4 = w.shape[1] * groups, but C_out = 3 is not a multiple of groups = 2
    check_raises(
        (ShapeError, ArgumentError),
        "groups",
        2,
        fn=op,
        args=(X1, arr(3, 2, 3)),
        kwargs={"groups": 2},
    )


@pytest.mark.parametrize("op", CONV_OPS, ids=lambda f: f.__name__)
def test_c_in_not_divisible_by_groups(op):
    x = arr(1, 3, 7)  # C_in = 3 with groups = 2
    check_raises(
        (ShapeError, ArgumentError),
        "groups",
        2,
        fn=op,
        args=(x, arr(4, 1, 3)),
        kwargs={"groups": 2},
    )


def test_conv_transpose_channels_not_divisible_by_groups():
    # x channels = w.shape[0] = 3, groups = 2
    check_raises(
        (ShapeError, ArgumentError),
        "groups",
        2,
        fn=fc2conv.conv_transpose,
        args=(arr(1, 3, 5), arr(3, 2, 3)),
        kwargs={"groups": 2},
    )


@pytest.mark.parametrize("op", CONV_OPS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("groups", [0, -1])
def test_groups_not_positive(op, groups):
    check_raises(
        (ArgumentError, ShapeError),
        "groups",
        groups,
        fn=op,
        args=(X1, W1),
        kwargs={"groups": groups},
    )


@pytest.mark.parametrize("op", CONV_OPS, ids=lambda f: f.__name__)
def test_groups_not_an_int(op):
    check_raises(
        (ArgumentError, DTypeError), "groups", 1.5, fn=op, args=(X1, W1), kwargs={"groups": 1.5}
    )


@pytest.mark.parametrize("op", CONV_OPS, ids=lambda f: f.__name__)
def test_kernel_larger_than_padded_input(op):
    x = arr(1, 1, 3)
    check_raises(ShapeError, ("w", "kernel", "x"), fn=op, args=(x, arr(1, 1, 5)))
    # fits once padded: 3 + 2*1 = 5
    assert op(x, arr(1, 1, 5), padding=1).shape == (1, 1, 1)
    # dilation makes a 3-tap kernel span 5
    check_raises(
        ShapeError,
        ("w", "kernel", "x", "dilation"),
        fn=op,
        args=(x, arr(1, 1, 3)),
        kwargs={"dilation": 2},
    )
    check_raises(ShapeError, ("w", "kernel", "x"), fn=op, args=(arr(1, 1, 4, 2), arr(1, 1, 3, 3)))


@pytest.mark.parametrize("pool", [fc2conv.max_pool, fc2conv.avg_pool], ids=lambda f: f.__name__)
def test_pool_kernel_larger_than_input(pool):
    check_raises(ShapeError, ("kernel_size", "x", "kernel"), fn=pool, args=(arr(1, 1, 3), 5))


@pytest.mark.parametrize("op", ALL_CONV_OPS, ids=lambda f: f.__name__)
def test_empty_batch(op):
    check_raises(ShapeError, "x", fn=op, args=(arr(0, 4, 7), W1))


@pytest.mark.parametrize("pool", [fc2conv.max_pool, fc2conv.avg_pool], ids=lambda f: f.__name__)
def test_pool_empty_batch_and_wrong_rank(pool):
    check_raises(ShapeError, "x", fn=pool, args=(arr(0, 2, 6), 2))
    check_raises(ShapeError, "x", AnyOf(((4, 6), 2)), fn=pool, args=(arr(4, 6), 2))
    check_raises(ShapeError, "x", fn=pool, args=(arr(1, 1, 2, 2, 2, 2), 2))


@pytest.mark.parametrize("op", CONV_OPS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("bias_shape", [(5,), (7,), (6, 1), (4,)])
def test_bias_wrong_shape(op, bias_shape):
    # C_out = 6; (4,) is C_in
    b = rng.standard_normal(bias_shape)
    check_raises(ShapeError, "bias", AnyOf((bias_shape,)), fn=op, args=(X1, W1, b))


@pytest.mark.parametrize("bias_shape", [(3,), (6,), (4, 1)])
def test_conv_transpose_bias_wrong_shape(bias_shape):
    # conv_transpose(x, W1): C_out = w.shape[1] * groups = 4; (6,) is w.shape[0]
    b = rng.standard_normal(bias_shape)
    check_raises(
        ShapeError,
        "bias",
        AnyOf((bias_shape,)),
        fn=fc2conv.conv_transpose,
        args=(arr(2, 6, 7), W1, b),
    )


# --------------------------------------------------------------------------------------------
# stride, dilation, padding, output_padding
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("op", ALL_CONV_OPS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("arg", ["stride", "dilation"])
@pytest.mark.parametrize("value", [0, -1, (1, 0)])
def test_stride_dilation_not_positive(op, arg, value):
    x, w = (X2, W2) if isinstance(value, tuple) else (X1, W1)
    if op is fc2conv.conv_transpose:
        x = arr(*(2, 6) + x.shape[2:])
    shown = AnyOf((value, 0)) if isinstance(value, tuple) else value
    check_raises(ArgumentError, arg, shown, fn=op, args=(x, w), kwargs={arg: value})


@pytest.mark.parametrize("op", ALL_CONV_OPS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("arg", ["stride", "dilation"])
@pytest.mark.parametrize("value", [1.5, "2", (1.0, 2)])
def test_stride_dilation_not_int(op, arg, value):
    x, w = (X2, W2) if isinstance(value, tuple) else (X1, W1)
    if op is fc2conv.conv_transpose:
        x = arr(*(2, 6) + x.shape[2:])
    check_raises(
        ArgumentError, arg, AnyOf((value, 1.5, 1.0, "'2'")), fn=op, args=(x, w), kwargs={arg: value}
    )


@pytest.mark.parametrize("op", CONV_OPS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("value", [-1, (1, -1), ((0, 1), (-1, 0))])
def test_negative_padding(op, value):
    check_raises(
        ArgumentError,
        "padding",
        AnyOf((value, -1)),
        fn=op,
        args=(X2, W2),
        kwargs={"padding": value},
    )


def test_conv_transpose_negative_padding():
    check_raises(
        ArgumentError,
        "padding",
        -1,
        fn=fc2conv.conv_transpose,
        args=(arr(2, 6, 7), W1),
        kwargs={"padding": -1},
    )


@pytest.mark.parametrize("op", CONV_OPS, ids=lambda f: f.__name__)
@pytest.mark.parametrize(
    "arg, value",
    [
        ("stride", (1, 1, 1)),
        ("dilation", (1, 1, 1)),
        ("padding", (1, 1, 1)),
        ("padding", ((1, 1), (1, 1), (1, 1))),
        ("padding", ((1, 1, 1), (0, 0))),
    ],
)
def test_wrong_length_tuple(op, arg, value):
    check_raises(
        ArgumentError, arg, AnyOf((value, value[0])), fn=op, args=(X2, W2), kwargs={arg: value}
    )


def test_wrong_length_tuple_1d():
    check_raises(
        ArgumentError,
        "stride",
        (1, 1),
        fn=fc2conv.correlate,
        args=(X1, W1),
        kwargs={"stride": (1, 1)},
    )


@pytest.mark.parametrize(
    "arg, value",
    [
        ("stride", (1, 2, 1)),
        ("output_padding", (0, 0, 0)),
        ("padding", (0, 0, 0)),
        ("dilation", (1, 1, 1)),
    ],
)
def test_conv_transpose_wrong_length_tuple(arg, value):
    check_raises(
        ArgumentError,
        arg,
        value,
        fn=fc2conv.conv_transpose,
        args=(arr(2, 6, 6, 5), W2),
        kwargs={arg: value},
    )


@pytest.mark.parametrize("op", CONV_OPS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("value", ["bogus", "SAME-ish", ""])
def test_unknown_padding_string(op, value):
    check_raises(ArgumentError, "padding", value, fn=op, args=(X1, W1), kwargs={"padding": value})


@pytest.mark.parametrize("op", CONV_OPS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("value", ["bogus", "wrapped", "zero"])
def test_unknown_padding_mode(op, value):
    check_raises(
        ArgumentError,
        "padding_mode",
        value,
        fn=op,
        args=(X1, W1),
        kwargs={"padding": 1, "padding_mode": value},
    )


@pytest.mark.parametrize("op", CONV_OPS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("value", ["bogus", "winograd-ish"])
def test_unknown_method(op, value):
    check_raises(ArgumentError, "method", value, fn=op, args=(X1, W1), kwargs={"method": value})


@pytest.mark.parametrize(
    "stride, dilation, output_padding", [(2, 1, 2), (1, 1, 1), (2, 3, 3), ((2, 2), 1, (0, 2))]
)
def test_conv_transpose_output_padding_too_large(stride, dilation, output_padding):
    x = arr(2, 6, 4, 4)
    shown = AnyOf((output_padding, 2)) if isinstance(output_padding, tuple) else output_padding
    check_raises(
        ArgumentError,
        "output_padding",
        shown,
        fn=fc2conv.conv_transpose,
        args=(x, W2),
        kwargs={"stride": stride, "dilation": dilation, "output_padding": output_padding},
    )


def test_conv_transpose_output_padding_below_limit_is_fine():
    # output_padding < max(stride, dilation) is allowed, also through dilation alone
    x = arr(2, 6, 4, 4)
    assert fc2conv.conv_transpose(x, W2, stride=2, output_padding=1).shape == (2, 4, 10, 10)
    assert fc2conv.conv_transpose(x, W2, dilation=2, output_padding=1).shape == (2, 4, 9, 9)


def test_conv_transpose_negative_output_padding():
    check_raises(
        ArgumentError,
        "output_padding",
        -1,
        fn=fc2conv.conv_transpose,
        args=(arr(2, 6, 7), W1),
        kwargs={"stride": 2, "output_padding": -1},
    )


# --------------------------------------------------------------------------------------------
# pooling arguments
# --------------------------------------------------------------------------------------------

POOLS = [fc2conv.max_pool, fc2conv.avg_pool]


@pytest.mark.parametrize("pool", POOLS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("kernel, padding", [(2, 2), (3, 2), ((3, 3), (1, 2)), (1, 1)])
def test_pool_padding_larger_than_half_the_kernel(pool, kernel, padding):
    shown = AnyOf((padding, 2)) if isinstance(padding, tuple) else padding
    check_raises(
        ArgumentError, "padding", shown, fn=pool, args=(X2, kernel), kwargs={"padding": padding}
    )


@pytest.mark.parametrize("pool", POOLS, ids=lambda f: f.__name__)
def test_pool_padding_of_half_the_kernel_is_fine(pool):
    assert pool(X2, 3, padding=1).shape == (2, 4, 2, 2)
    assert pool(X2, 2, padding=1).shape == (2, 4, 4, 3)


@pytest.mark.parametrize("pool", POOLS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("value", [0, -2, (2, 0)])
def test_pool_kernel_size_not_positive(pool, value):
    shown = AnyOf((value, 0)) if isinstance(value, tuple) else value
    check_raises(ArgumentError, "kernel_size", shown, fn=pool, args=(X2, value))


@pytest.mark.parametrize("pool", POOLS, ids=lambda f: f.__name__)
def test_pool_kernel_size_wrong_length(pool):
    check_raises(ArgumentError, "kernel_size", (2, 2, 2), fn=pool, args=(X2, (2, 2, 2)))


@pytest.mark.parametrize("pool", POOLS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("value", [0, -1])
def test_pool_stride_not_positive(pool, value):
    check_raises(ArgumentError, "stride", value, fn=pool, args=(X2, 2), kwargs={"stride": value})


@pytest.mark.parametrize("pool", POOLS, ids=lambda f: f.__name__)
def test_pool_negative_padding(pool):
    check_raises(ArgumentError, "padding", -1, fn=pool, args=(X2, 3), kwargs={"padding": -1})


def test_max_pool_dilation_not_positive():
    check_raises(
        ArgumentError, "dilation", 0, fn=fc2conv.max_pool, args=(X2, 2), kwargs={"dilation": 0}
    )


@pytest.mark.parametrize("pool", POOLS, ids=lambda f: f.__name__)
def test_pool_integer_dtype(pool):
    check_raises(DTypeError, "x", fn=pool, args=(np.arange(32).reshape(1, 2, 4, 4), 2))


@pytest.mark.parametrize("pool", POOLS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("x", [None, [[[1.0, 2.0]]], 3.0])
def test_pool_non_array(pool, x):
    check_raises(DTypeError, "x", fn=pool, args=(x, 1))


# --------------------------------------------------------------------------------------------
# dtypes and non-arrays
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("op", ALL_CONV_OPS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8])
def test_integer_x(op, dtype):
    x = np.ones((2, 6 if op is fc2conv.conv_transpose else 4, 7), dtype=dtype)
    check_raises(DTypeError, "x", fn=op, args=(x, W1))


@pytest.mark.parametrize("op", ALL_CONV_OPS, ids=lambda f: f.__name__)
def test_integer_w(op):
    x = arr(2, 6, 7) if op is fc2conv.conv_transpose else X1
    check_raises(DTypeError, "w", fn=op, args=(x, np.ones(W1.shape, dtype=np.int64)))


@pytest.mark.parametrize("op", ALL_CONV_OPS, ids=lambda f: f.__name__)
def test_mixed_float32_float64(op):
    x = arr(2, 6, 7) if op is fc2conv.conv_transpose else X1
    check_raises(DTypeError, ("x", "w", "dtype"), fn=op, args=(x.astype(np.float32), W1))
    check_raises(DTypeError, ("x", "w", "dtype"), fn=op, args=(x, W1.astype(np.float32)))


@pytest.mark.parametrize("op", ALL_CONV_OPS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("bad", [None, [[[1.0, 2.0, 3.0]]], 2.0, "x"], ids=repr)
def test_non_array_x(op, bad):
    check_raises(DTypeError, "x", fn=op, args=(bad, arr(1, 1, 1)))


@pytest.mark.parametrize("op", ALL_CONV_OPS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("bad", [None, [[[1.0]]], 2.0], ids=repr)
def test_non_array_w(op, bad):
    check_raises(DTypeError, "w", fn=op, args=(arr(1, 1, 3), bad))


@pytest.mark.parametrize("dtype", [np.complex128, np.float16, np.bool_])
def test_other_dtypes_of_x(dtype):
    # only float32 and float64 are supported (DESIGN.md)
    check_raises(DTypeError, "x", fn=fc2conv.correlate, args=(X1.astype(dtype), W1))


@pytest.mark.parametrize(
    "bias",
    [np.zeros(6, dtype=np.int64), np.zeros(6, dtype=np.float32), [0.0] * 6],
    ids=["int64", "float32", "list"],
)
def test_bias_dtype_or_type(bias):
    check_raises(DTypeError, "bias", fn=fc2conv.correlate, args=(X1, W1, bias))


def test_numpy_integer_arguments_are_accepted():
    y = fc2conv.correlate(X1, W1, stride=np.int64(2), padding=np.int32(1), groups=np.int64(1))
    assert y.shape == (2, 6, 4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float32_and_float64_are_accepted(dtype):
    y = fc2conv.correlate(X1.astype(dtype), W1.astype(dtype))
    assert y.dtype == dtype


# --------------------------------------------------------------------------------------------
# the 1d / 2d / 3d aliases
# --------------------------------------------------------------------------------------------

ALIAS_FAMILIES = ["correlate", "convolve", "conv_transpose", "max_pool", "avg_pool"]


@pytest.mark.parametrize("family", ALIAS_FAMILIES)
@pytest.mark.parametrize("alias_rank", [1, 2, 3])
@pytest.mark.parametrize("x_rank", [1, 2, 3])
def test_alias_with_wrong_rank(family, alias_rank, x_rank):
    fn = getattr(fc2conv, f"{family}{alias_rank}d")
    spatial = (5,) * x_rank
    x = arr(1, 2, *spatial)
    if family in ("max_pool", "avg_pool"):
        args = (x, 2)
    else:
        args = (x, arr(2, 2, *(1,) * x_rank))
    if alias_rank == x_rank:
        fn(*args)  # the matching rank works
    else:
        check_raises(ShapeError, "x", fn=fn, args=args)


# --------------------------------------------------------------------------------------------
# vjp functions
# --------------------------------------------------------------------------------------------


def test_correlate_vjp_bad_grad_out():
    y_shape = fc2conv.correlate(X1, W1).shape  # (2, 6, 5)
    for bad_shape in [(2, 6, 4), (2, 5, 5), (1, 6, 5), (2, 6, 5, 1), (6, 5)]:
        check_raises(
            ShapeError, "grad_out", bad_shape, fn=F.correlate_vjp, args=(arr(*bad_shape), X1, W1)
        )
    assert y_shape == (2, 6, 5)


def test_convolve_vjp_bad_grad_out():
    check_raises(
        ShapeError,
        "grad_out",
        (2, 6, 7),
        fn=F.convolve_vjp,
        args=(arr(2, 6, 7), X1, W1),
        kwargs={"padding": 0},
    )
    # with stride 2 the output is (2, 6, 3)
    check_raises(
        ShapeError,
        "grad_out",
        (2, 6, 4),
        fn=F.convolve_vjp,
        args=(arr(2, 6, 4), X1, W1, arr(6)),
        kwargs={"stride": 2},
    )


def test_conv_transpose_vjp_bad_grad_out():
    x = arr(2, 6, 7)
    # conv_transpose(x, W1) has shape (2, 4, 9)
    check_raises(
        ShapeError, "grad_out", (2, 4, 7), fn=F.conv_transpose_vjp, args=(arr(2, 4, 7), x, W1)
    )
    check_raises(
        ShapeError, "grad_out", (2, 6, 9), fn=F.conv_transpose_vjp, args=(arr(2, 6, 9), x, W1)
    )


@pytest.mark.parametrize("vjp", [F.max_pool_vjp, F.avg_pool_vjp], ids=lambda f: f.__name__)
def test_pool_vjp_bad_grad_out(vjp):
    # pool(X2, 2) has shape (2, 4, 3, 2)
    check_raises(ShapeError, "grad_out", (2, 4, 3, 3), fn=vjp, args=(arr(2, 4, 3, 3), X2, 2))
    check_raises(ShapeError, "grad_out", (2, 4, 6), fn=vjp, args=(arr(2, 4, 6), X2, 2))


@pytest.mark.parametrize("vjp", [F.correlate_vjp, F.convolve_vjp], ids=lambda f: f.__name__)
def test_conv_vjp_validates_like_the_forward_op(vjp):
    gy = arr(2, 6, 5)
    check_raises(ArgumentError, "stride", 0, fn=vjp, args=(gy, X1, W1), kwargs={"stride": 0})
    check_raises(
        ArgumentError,
        "padding_mode",
        "bogus",
        fn=vjp,
        args=(gy, X1, W1),
        kwargs={"padding_mode": "bogus"},
    )
    check_raises(ShapeError, "x", fn=vjp, args=(gy, arr(4, 7), W1))
    check_raises(ShapeError, "bias", fn=vjp, args=(gy, X1, W1, arr(5)))
    check_raises(DTypeError, "x", fn=vjp, args=(gy, None, W1))
    check_raises(DTypeError, "w", fn=vjp, args=(gy, X1, np.ones(W1.shape, dtype=np.int64)))


def test_conv_transpose_vjp_validates_like_the_forward_op():
    x = arr(2, 6, 7)
    gy = arr(2, 4, 9)
    # (7 - 1) * 2 + 2 + 2 + 1 = 17 would be the output length if output_padding were allowed
    check_raises(
        ArgumentError,
        "output_padding",
        2,
        fn=F.conv_transpose_vjp,
        args=(arr(2, 4, 17), x, W1),
        kwargs={"stride": 2, "output_padding": 2},
    )
    check_raises(ShapeError, "bias", fn=F.conv_transpose_vjp, args=(gy, x, W1, arr(6)))


@pytest.mark.parametrize("vjp", [F.max_pool_vjp, F.avg_pool_vjp], ids=lambda f: f.__name__)
def test_pool_vjp_validates_like_the_forward_op(vjp):
    gy = arr(2, 4, 3, 2)
    # (2, 4, 5, 4) would be the output shape with padding 2, if it were allowed
    check_raises(
        ArgumentError, "padding", 2, fn=vjp, args=(arr(2, 4, 5, 4), X2, 2), kwargs={"padding": 2}
    )
    check_raises(ArgumentError, "kernel_size", 0, fn=vjp, args=(gy, X2, 0))
    check_raises(DTypeError, "x", fn=vjp, args=(gy, None, 2))


def test_grad_out_dtype_differs_from_x():
    gy = arr(2, 6, 5).astype(np.float32)
    check_raises(DTypeError, "grad_out", fn=F.correlate_vjp, args=(gy, X1, W1))


def test_grad_out_not_an_array():
    check_raises(DTypeError, "grad_out", fn=F.correlate_vjp, args=(None, X1, W1))


# --------------------------------------------------------------------------------------------
# NaN and Inf propagate, they do not raise
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["auto", "im2col", "shift"])
def test_nan_in_x_poisons_only_the_outputs_that_read_it(method):
    x = rng.standard_normal((2, 3, 11))
    x[1, 0, 5] = np.nan
    w = rng.standard_normal((4, 3, 3))
    y = fc2conv.correlate(x, w, padding=1, method=method)
    expected_nan = np.zeros(y.shape, dtype=bool)
    expected_nan[1, :, 4:7] = True  # outputs 4, 5, 6 read input 5 (padding 1, kernel 3)
    np.testing.assert_array_equal(np.isnan(y), expected_nan)


@pytest.mark.parametrize("method", ["auto", "im2col", "shift"])
def test_nan_respects_groups(method):
    x = rng.standard_normal((1, 4, 6, 6))
    x[0, 3, 2, 2] = np.nan  # channel 3 belongs to group 1 of 2
    w = rng.standard_normal((4, 2, 3, 3))
    y = fc2conv.correlate(x, w, groups=2, method=method)
    expected_nan = np.zeros(y.shape, dtype=bool)
    expected_nan[0, 2:, 0:3, 0:3] = True  # valid: output (i, j) reads rows i..i+2, cols j..j+2
    np.testing.assert_array_equal(np.isnan(y), expected_nan)


@pytest.mark.parametrize("method", ["auto", "im2col", "shift"])
def test_inf_in_x_propagates(method):
    x = np.abs(rng.standard_normal((1, 1, 9))) + 0.1
    x[0, 0, 0] = np.inf
    w = np.abs(rng.standard_normal((2, 1, 3))) + 0.1  # positive: +inf, never inf - inf
    y = fc2conv.correlate(x, w, padding=1, method=method)
    assert np.isposinf(y[0, :, :2]).all()
    assert np.isfinite(y[0, :, 2:]).all()


def test_nan_in_w_poisons_its_output_channel():
    w = rng.standard_normal((3, 4, 3))
    w[1, 2, 0] = np.nan
    y = fc2conv.correlate(X1, w)
    assert np.isnan(y[:, 1]).all()
    assert np.isfinite(y[:, [0, 2]]).all()


def test_nan_in_bias():
    b = np.array([0.0, np.nan, 1.0, 0.0, 0.0, 0.0])
    y = fc2conv.correlate(X1, W1, b)
    assert np.isnan(y[:, 1]).all() and np.isfinite(y[:, [0, 2, 3, 4, 5]]).all()


def test_nan_in_convolve_and_conv_transpose():
    x = rng.standard_normal((1, 2, 8))
    x[0, 1, 3] = np.nan
    w = rng.standard_normal((2, 2, 3))
    y = fc2conv.convolve(x, w)  # valid: outputs 1..3 read input 3
    assert np.isnan(y[0, :, 1:4]).all() and np.isfinite(y[0, :, [0, 4, 5]]).all()
    t = fc2conv.conv_transpose(x, w)  # full scatter: input 3 reaches outputs 3..5
    assert np.isnan(t[0, :, 3:6]).all()
    assert np.isfinite(t[0, :, [0, 1, 2, 6, 7, 8, 9]]).all()


def test_max_pool_nan_in_a_window():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    x[0, 0, 0, 1] = np.nan
    y = fc2conv.max_pool(x, 2)
    assert np.isnan(y[0, 0, 0, 0])
    np.testing.assert_array_equal(y[0, 0].ravel()[1:], [7.0, 13.0, 15.0])
    # overlapping windows: every window containing the NaN is NaN
    y = fc2conv.max_pool(x, 2, stride=1)
    assert np.isnan(y[0, 0, 0, :2]).all()
    assert np.isfinite(y[0, 0, 0, 2]) and np.isfinite(y[0, 0, 1:]).all()


def test_max_pool_nan_as_largest_and_inf():
    x = np.array([[[1.0, np.inf, 2.0, 3.0, -np.inf, -np.inf]]])
    np.testing.assert_array_equal(fc2conv.max_pool(x, 2), [[[np.inf, 3.0, -np.inf]]])


def test_avg_pool_nan_and_inf():
    x = np.array([[[1.0, np.nan, 2.0, 3.0, np.inf, 4.0]]])
    y = fc2conv.avg_pool(x, 2)
    assert np.isnan(y[0, 0, 0]) and y[0, 0, 1] == 2.5 and np.isposinf(y[0, 0, 2])


def test_vjp_with_nan_does_not_raise():
    x = X1.copy()
    x[0, 0, 0] = np.nan
    gy = np.ones((2, 6, 5))
    gx, gw, gb = F.correlate_vjp(gy, x, W1, np.zeros(6))
    assert np.isfinite(gx).all()  # gx does not depend on x
    assert np.isnan(gw).any() and np.isfinite(gb).all()
