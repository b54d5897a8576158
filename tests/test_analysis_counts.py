"""count_params, count_flops and receptive_field against independent counts."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fc2conv import ArgumentError, ladder, nn
from fc2conv.analysis import count_flops, count_params, parameter_table, receptive_field

F64 = np.float64


def mnist1d_cnn():
    return nn.Sequential(nn.Conv1d(1, 25, 5, 2, 1), nn.ReLU(), nn.Conv1d(25, 25, 3, 2, 1),
                         nn.ReLU(), nn.Conv1d(25, 25, 3, 2, 1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(125, 10))


def test_published_parameter_counts():
    """Greydanus & Kobak's MNIST-1D models: CNN 5,210 parameters, MLP 15,210."""
    assert count_params(mnist1d_cnn()) == 5210
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(40, 100), nn.ReLU(),
                        nn.Residual(nn.Sequential(nn.Linear(100, 100), nn.ReLU())),
                        nn.Linear(100, 10))
    assert count_params(mlp) == 15210


@given(st.integers(2, 6), st.integers(2, 6), st.integers(0, 2), st.integers(1, 2),
       st.integers(1, 3))
def test_rung_counts_match_the_parameter_table(h, w, delta, c_in, c_out):
    """The table's formulas, and the layers the ladder builds, count the same parameters."""
    delta = min(delta, h - 1, w - 1)
    rows = {row.name.split(" (")[0]: row
            for row in parameter_table((h, w), delta, channels=(c_in, c_out)).rows}
    dense = nn.DenseGrid2d(c_in, c_out, (h, w), dtype=F64, rng=0)
    assert count_params(dense) == rows["dense-on-grid"].params
    assert count_params(ladder.share(dense)) == rows["translation invariant"].params
    local = ladder.localize(dense, delta)
    assert count_params(local) == rows["locally connected"].params
    assert count_params(ladder.tie(local)) == rows["convolution"].params


def test_flops_of_each_layer_type():
    conv = nn.Conv2d(4, 8, 3, stride=2, padding=1, groups=2)
    # 8 x 4 x 4 outputs, each 2 * (4 / 2) * 9 FLOPs, plus a bias add
    assert count_flops(conv, (4, 8, 8)) == 8 * 16 * (2 * 2 * 9 + 1)
    local = nn.LocallyConnected1d(2, 3, 5, 20, bias=False)
    assert count_flops(local, (2, 20)) == 3 * 16 * 2 * 2 * 5
    dense = nn.DenseGrid2d(1, 2, (3, 4), out_size=(2, 2))
    assert count_flops(dense, (1, 3, 4)) == 2 * 4 * (2 * 12 + 1)
    convt = nn.ConvTranspose1d(2, 4, 3, stride=2, bias=False)
    # every one of the 2 x 5 input values scatters a 4 x 3 kernel
    assert count_flops(convt, (2, 5)) == 2 * 10 * 4 * 3
    assert count_flops(nn.Linear(10, 3), (10,)) == 2 * 30 + 3
    assert count_flops(nn.MaxPool2d(2), (3, 8, 8)) == 3 * 16 * 4
    assert count_flops(nn.ReLU(), (3, 8, 8)) == 192
    assert count_flops(nn.Flatten(), (3, 8, 8)) == 0
    block = nn.Residual(nn.Sequential(nn.Linear(5, 5, bias=False), nn.ReLU()))
    assert count_flops(block, (5,)) == 50 + 5 + 5


def test_flops_count_real_multiplies_of_a_dense_layer():
    """A dense-on-grid layer's FLOPs are 2 per stored weight: each weight is used once."""
    dense = nn.DenseGrid2d(2, 3, (4, 5), bias=False)
    assert count_flops(dense, (2, 4, 5)) == 2 * dense.weight.size
    conv = nn.Conv2d(2, 3, 3, padding=1, bias=False)
    dense_of_conv = ladder.to_dense(conv, (4, 5))
    # the conv counts every tap, padding included: at least the nonzeros of its dense W
    assert count_flops(conv, (2, 4, 5)) >= 2 * np.count_nonzero(dense_of_conv.weight)
    assert count_flops(conv, (2, 4, 5)) == 2 * 3 * 20 * 2 * 9


def test_mnist1d_cnn_flops_and_errors():
    cnn = mnist1d_cnn()
    expected = (25 * 19 * (2 * 5 + 1) + 25 * 19 + 25 * 10 * (2 * 25 * 3 + 1) + 25 * 10
                + 25 * 5 * (2 * 25 * 3 + 1) + 25 * 5 + 2 * 125 * 10 + 10)
    assert count_flops(cnn, (1, 40)) == expected
    with pytest.raises(ArgumentError, match="fc2conv.nn"):
        count_flops(lambda x: x, (1, 40))
    with pytest.raises(ArgumentError, match="fc2conv.nn"):
        count_params(np.zeros(3))


def empirical_field(model, in_shape):
    """Extent of the input pixels that influence the centre output, via a backward pass."""
    x = 1.0 + np.random.default_rng(0).random((1, *in_shape))  # positive: ReLUs pass
    y = model(x)
    grad = np.zeros_like(y)
    grad[(0, 0, *(s // 2 for s in y.shape[2:]))] = 1.0
    gx = np.abs(model.backward(grad)[0]).sum(axis=0)
    extent = []
    for axis in range(gx.ndim):
        touched = np.nonzero(gx.sum(axis=tuple(a for a in range(gx.ndim) if a != axis)))[0]
        extent.append(int(touched.max() - touched.min() + 1))
    return tuple(extent)


@given(st.lists(st.tuples(st.integers(1, 4), st.integers(1, 2), st.integers(1, 2),
                          st.booleans()), min_size=1, max_size=3), st.integers(1, 2))
def test_receptive_field_is_what_backward_reaches(layers, ndim):
    """A stack of convs (positive weights: no cancellation) and average pools: the input
    pixels the centre output's gradient reaches span exactly the receptive field."""
    stack, c = [], 1
    for k, s, d, pool in layers:
        if pool:
            stack.append(getattr(nn, f"AvgPool{ndim}d")(k, stride=s))
        else:
            conv = getattr(nn, f"Conv{ndim}d")(c, 2, k, stride=s, dilation=d, dtype=F64, rng=k)
            conv.weight[...] = 0.5 + np.random.default_rng(k).random(conv.weight.shape)
            stack += [conv, nn.ReLU()]  # ReLU after a positive conv of |x| keeps every path
            c = 2
    model = nn.Sequential(*stack)
    field = receptive_field(model)
    expected_stride = tuple(math.prod(layer.stride[a] for layer in stack
                                      if hasattr(layer, "stride")) for a in range(ndim))
    assert field.stride == expected_stride
    size = tuple(3 * f + 2 for f in field.size)  # room for the whole field
    assert empirical_field(model, (1, *size)) == field.size


def test_receptive_field_of_known_stacks():
    assert receptive_field(mnist1d_cnn()) == ((17,), (8,))
    vgg = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.Conv2d(1, 1, 3, padding=1),
                        nn.MaxPool2d(2), nn.Conv2d(1, 1, 3, padding=1))
    assert receptive_field(vgg) == ((10, 10), (2, 2))
    dense = nn.Sequential(nn.Conv1d(1, 1, 3), nn.DenseGrid1d(1, 1, 8))
    assert receptive_field(dense).size == (10,)  # the dense layer sees its whole input
    nested = nn.Sequential(nn.Sequential(nn.Conv1d(1, 1, 3), nn.Flatten()), nn.Linear(6, 2))
    assert receptive_field(nested) == ((3,), (1,))
    with pytest.raises(ArgumentError, match="fractional"):
        receptive_field(nn.ConvTranspose1d(1, 1, 3, stride=2))
    with pytest.raises(ArgumentError, match="no spatial layer"):
        receptive_field(nn.Sequential(nn.Flatten(), nn.Linear(3, 2)))
