"""The worked examples of Dive into Deep Learning, ch. 7.1-7.5, as exact-value tests.

Every expected number below was written down from the book or computed by hand (the
arithmetic is in the comments); none is produced by fc2conv itself.
"""

from __future__ import annotations

import numpy as np
import pytest

import fc2conv
from fc2conv import functional as F


def as4d(a):
    """(H, W) -> (1, 1, H, W) float64, the book's ``X.reshape((1, 1) + X.shape)``."""
    a = np.asarray(a, dtype=np.float64)
    return a.reshape((1, 1) + a.shape)


# --------------------------------------------------------------------------------------------
# 7.2 Convolutions for images
# --------------------------------------------------------------------------------------------


def test_7_2_corr2d_example():
    X = np.arange(9.0).reshape(3, 3)
    K = np.array([[0.0, 1.0], [2.0, 3.0]])
    # 0*0 + 1*1 + 2*3 + 3*4 = 19, 0*1 + 1*2 + 2*4 + 3*5 = 25, ...
    expected = np.array([[19.0, 25.0], [37.0, 43.0]])
    Y = fc2conv.correlate2d(as4d(X), as4d(K))
    assert Y.shape == (1, 1, 2, 2)
    np.testing.assert_array_equal(Y[0, 0], expected)
    np.testing.assert_array_equal(fc2conv.correlate(as4d(X), as4d(K))[0, 0], expected)


def test_7_2_conv2d_layer_with_bias():
    # Conv2D.forward: corr2d(x, weight) + bias
    X = np.arange(9.0).reshape(3, 3)
    K = np.array([[0.0, 1.0], [2.0, 3.0]])
    Y = fc2conv.correlate2d(as4d(X), as4d(K), np.array([0.5]))
    np.testing.assert_array_equal(Y[0, 0], [[19.5, 25.5], [37.5, 43.5]])


def _edge_image():
    X = np.ones((6, 8))
    X[:, 2:6] = 0.0
    return X


def test_7_2_edge_detection():
    X = _edge_image()
    K = np.array([[1.0, -1.0]])
    Y = fc2conv.correlate2d(as4d(X), as4d(K))[0, 0]
    expected = np.zeros((6, 7))
    expected[:, 1] = 1.0  # white -> black edge
    expected[:, 5] = -1.0  # black -> white edge
    assert Y.shape == (6, 7)
    np.testing.assert_array_equal(Y, expected)


def test_7_2_edge_detector_misses_horizontal_edges():
    X = _edge_image()
    K = np.array([[1.0, -1.0]])
    Y = fc2conv.correlate2d(as4d(X.T), as4d(K))[0, 0]
    assert Y.shape == (8, 5)
    np.testing.assert_array_equal(Y, np.zeros((8, 5)))


def test_7_2_learning_the_kernel_with_the_vjp():
    # 7.2.4: learn K from (X, Y) with a bias-free (1, 2) conv and squared loss.
    X = as4d(_edge_image())
    Y = fc2conv.correlate2d(X, as4d([[1.0, -1.0]]))
    w = np.random.default_rng(0).standard_normal((1, 1, 1, 2))
    lr = 3e-2
    losses = []
    for _ in range(60):
        Y_hat = fc2conv.correlate2d(X, w)
        diff = Y_hat - Y
        losses.append(float(np.sum(diff**2)))
        _, gw, _ = F.correlate_vjp(2 * diff, X, w)
        w = w - lr * gw
    assert losses[-1] < 1e-6 * max(losses[0], 1.0)
    np.testing.assert_allclose(w.reshape(2), [1.0, -1.0], atol=1e-3)


def test_7_2_cross_correlation_vs_convolution():
    # Flipping the kernel turns cross-correlation into convolution (7.2.5).
    X = np.arange(9.0).reshape(3, 3)
    K = np.array([[0.0, 1.0], [2.0, 3.0]])
    # convolution with K == correlation with K[::-1, ::-1] = [[3, 2], [1, 0]]:
    # 3*0 + 2*1 + 1*3 + 0*4 = 5, 3*1 + 2*2 + 1*4 + 0 = 11, 3*3+2*4+1*6 = 23, 3*4+2*5+1*7 = 29
    expected = np.array([[5.0, 11.0], [23.0, 29.0]])
    np.testing.assert_array_equal(fc2conv.convolve2d(as4d(X), as4d(K))[0, 0], expected)
    np.testing.assert_array_equal(fc2conv.convolve(as4d(X), as4d(K))[0, 0], expected)


# --------------------------------------------------------------------------------------------
# 7.3 Padding and stride
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kernel, padding, stride, expected_shape",
    [
        ((3, 3), 1, 1, (8, 8)),
        ((5, 3), (2, 1), 1, (8, 8)),
        ((3, 3), 1, 2, (4, 4)),
        ((3, 5), (0, 1), (3, 4), (2, 2)),
    ],
)
def test_7_3_output_shapes(kernel, padding, stride, expected_shape):
    X = np.random.default_rng(0).uniform(size=(1, 1, 8, 8))
    w = np.random.default_rng(1).uniform(size=(1, 1, *kernel))
    Y = fc2conv.correlate2d(X, w, padding=padding, stride=stride)
    assert Y.shape == (1, 1) + expected_shape


def test_7_3_padding_values():
    # 3x3 ones kernel with padding 1 on a 3x3 ones image counts the in-image neighbours.
    Y = fc2conv.correlate2d(np.ones((1, 1, 3, 3)), np.ones((1, 1, 3, 3)), padding=1)
    np.testing.assert_array_equal(Y[0, 0], [[4.0, 6.0, 4.0], [6.0, 9.0, 6.0], [4.0, 6.0, 4.0]])


def test_7_3_stride_values():
    # X = arange(16) 4x4, K = ones 2x2, stride 2: sums of the four 2x2 blocks
    X = np.arange(16.0).reshape(1, 1, 4, 4)
    Y = fc2conv.correlate2d(X, np.ones((1, 1, 2, 2)), stride=2)
    # 0+1+4+5 = 10, 2+3+6+7 = 18, 8+9+12+13 = 42, 10+11+14+15 = 50
    np.testing.assert_array_equal(Y[0, 0], [[10.0, 18.0], [42.0, 50.0]])


# --------------------------------------------------------------------------------------------
# 7.4 Multiple input and multiple output channels
# --------------------------------------------------------------------------------------------

X_MULTI = np.array(
    [
        [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]],
        [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]],
    ]
)
K_MULTI = np.array([[[0.0, 1.0], [2.0, 3.0]], [[1.0, 2.0], [3.0, 4.0]]])


def test_7_4_multiple_input_channels():
    # channel 0: [[19, 25], [37, 43]]; channel 1: 1*1+2*2+3*4+4*5 = 37, 47, 67, 77
    Y = fc2conv.correlate2d(X_MULTI[None], K_MULTI[None])
    assert Y.shape == (1, 1, 2, 2)
    np.testing.assert_array_equal(Y[0, 0], [[56.0, 72.0], [104.0, 120.0]])


def test_7_4_multiple_output_channels():
    K = np.stack([K_MULTI, K_MULTI + 1, K_MULTI + 2])
    assert K.shape == (3, 2, 2, 2)
    # K + 1 adds the window sums over both channels: 8+12 = 20, 12+16 = 28, 20+24 = 44, 24+28 = 52
    expected = np.array(
        [
            [[56.0, 72.0], [104.0, 120.0]],
            [[76.0, 100.0], [148.0, 172.0]],
            [[96.0, 128.0], [192.0, 224.0]],
        ]
    )
    Y = fc2conv.correlate2d(X_MULTI[None], K)
    assert Y.shape == (1, 3, 2, 2)
    np.testing.assert_array_equal(Y[0], expected)


def test_7_4_1x1_convolution_is_a_matmul_over_channels():
    rng = np.random.default_rng(0)
    X = rng.normal(0, 1, (3, 3, 3))
    K = rng.normal(0, 1, (2, 3, 1, 1))
    expected = (K.reshape(2, 3) @ X.reshape(3, 9)).reshape(2, 3, 3)
    Y = fc2conv.correlate2d(X[None], K)
    assert Y.shape == (1, 2, 3, 3)
    np.testing.assert_allclose(Y[0], expected, rtol=1e-12, atol=1e-12)


def test_7_4_1x1_convolution_small_integers():
    # [[1, 2], [3, -1]] applied pixelwise to channels (a, b): (a + 2b, 3a - b)
    X = np.array([[[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [-1.0, 2.0]]])[None]
    K = np.array([[1.0, 2.0], [3.0, -1.0]]).reshape(2, 2, 1, 1)
    Y = fc2conv.correlate2d(X, K)
    np.testing.assert_array_equal(Y[0, 0], [[1.0, 4.0], [1.0, 8.0]])
    np.testing.assert_array_equal(Y[0, 1], [[3.0, 5.0], [10.0, 10.0]])


# --------------------------------------------------------------------------------------------
# 7.5 Pooling
# --------------------------------------------------------------------------------------------


def test_7_5_max_and_avg_pooling():
    X = as4d(np.arange(9.0).reshape(3, 3))
    np.testing.assert_array_equal(
        fc2conv.max_pool2d(X, (2, 2), stride=1)[0, 0], [[4.0, 5.0], [7.0, 8.0]]
    )
    # (0+1+3+4)/4 = 2, (1+2+4+5)/4 = 3, (3+4+6+7)/4 = 5, (4+5+7+8)/4 = 6
    np.testing.assert_array_equal(
        fc2conv.avg_pool2d(X, (2, 2), stride=1)[0, 0], [[2.0, 3.0], [5.0, 6.0]]
    )
    np.testing.assert_array_equal(
        fc2conv.max_pool(X, (2, 2), stride=1)[0, 0], [[4.0, 5.0], [7.0, 8.0]]
    )
    np.testing.assert_array_equal(
        fc2conv.avg_pool(X, (2, 2), stride=1)[0, 0], [[2.0, 3.0], [5.0, 6.0]]
    )


X16 = np.arange(16.0).reshape(1, 1, 4, 4)


def test_7_5_default_stride_equals_window():
    Y = fc2conv.max_pool2d(X16, 3)
    assert Y.shape == (1, 1, 1, 1)
    np.testing.assert_array_equal(Y, [[[[10.0]]]])


def test_7_5_padding_and_stride():
    Y = fc2conv.max_pool2d(X16, 3, padding=1, stride=2)
    np.testing.assert_array_equal(Y, [[[[5.0, 7.0], [13.0, 15.0]]]])


def test_7_5_rectangular_window():
    Y = fc2conv.max_pool2d(X16, (2, 3), stride=(2, 3), padding=(0, 1))
    np.testing.assert_array_equal(Y, [[[[5.0, 7.0], [13.0, 15.0]]]])


def test_7_5_multiple_channels():
    X = np.concatenate([X16, X16 + 1], axis=1)
    Y = fc2conv.max_pool2d(X, 3, padding=1, stride=2)
    assert Y.shape == (1, 2, 2, 2)
    np.testing.assert_array_equal(Y, [[[[5.0, 7.0], [13.0, 15.0]], [[6.0, 8.0], [14.0, 16.0]]]])


def test_7_5_avg_pool_2x2_stride_2():
    # (0+1+4+5)/4 = 2.5, (2+3+6+7)/4 = 4.5, (8+9+12+13)/4 = 10.5, (10+11+14+15)/4 = 12.5
    Y = fc2conv.avg_pool2d(X16, 2)
    np.testing.assert_array_equal(Y, [[[[2.5, 4.5], [10.5, 12.5]]]])


def test_7_5_avg_pool_padding_counts():
    # 3x3 window, padding 1, stride 2 on X16: windows rows {-1,0,1} x cols {-1,0,1} etc.
    # top-left in-image sum 0+1+4+5 = 10; top-right (rows 0-1, cols 1-3) 1+2+3+5+6+7 = 24;
    # bottom-left (rows 1-3, cols 0-1) 4+5+8+9+12+13 = 51; bottom-right rows 1-3 cols 1-3:
    # 5+6+7+9+10+11+13+14+15 = 90
    sums = np.array([[10.0, 24.0], [51.0, 90.0]])
    counts = np.array([[4.0, 6.0], [6.0, 9.0]])
    Y = fc2conv.avg_pool2d(X16, 3, padding=1, stride=2)
    np.testing.assert_allclose(Y[0, 0], sums / 9, rtol=1e-15)
    Y = fc2conv.avg_pool2d(X16, 3, padding=1, stride=2, count_include_pad=False)
    np.testing.assert_allclose(Y[0, 0], sums / counts, rtol=1e-15)


# --------------------------------------------------------------------------------------------
# 7.1 The seed's derivation: from a fully-connected layer to a convolution
# --------------------------------------------------------------------------------------------

DELTA = 1


def _seed_arrays():
    rng = np.random.default_rng(7)
    X = rng.standard_normal((6, 7))
    V = rng.standard_normal((2 * DELTA + 1, 2 * DELTA + 1))  # V[a + Δ, b + Δ]
    u = float(rng.standard_normal())
    return X, V, u


def _H_loops(X, V, u, zero_pad):
    """H[i, j] = u + sum_{a,b=-Δ..Δ} V[a, b] X[i+a, j+b] by explicit loops."""
    h, w = X.shape
    rows = range(h) if zero_pad else range(DELTA, h - DELTA)
    cols = range(w) if zero_pad else range(DELTA, w - DELTA)
    H = np.zeros((len(rows), len(cols)))
    for oi, i in enumerate(rows):
        for oj, j in enumerate(cols):
            acc = u
            for a in range(-DELTA, DELTA + 1):
                for b in range(-DELTA, DELTA + 1):
                    if 0 <= i + a < h and 0 <= j + b < w:
                        acc += V[a + DELTA, b + DELTA] * X[i + a, j + b]
            H[oi, oj] = acc
    return H


def test_seed_tied_local_layer_is_correlate_with_zero_padding():
    X, V, u = _seed_arrays()
    H = fc2conv.correlate(as4d(X), as4d(V), np.array([u]), padding=DELTA)
    assert H.shape == (1, 1, 6, 7)
    np.testing.assert_allclose(H[0, 0], _H_loops(X, V, u, zero_pad=True), rtol=1e-12, atol=1e-12)


def test_seed_tied_local_layer_interior_is_valid_correlate():
    X, V, u = _seed_arrays()
    H = fc2conv.correlate(as4d(X), as4d(V), np.array([u]))  # padding 0 = "valid"
    assert H.shape == (1, 1, 4, 5)
    np.testing.assert_allclose(H[0, 0], _H_loops(X, V, u, zero_pad=False), rtol=1e-12, atol=1e-12)
    H_padded = fc2conv.correlate(as4d(X), as4d(V), np.array([u]), padding=DELTA)
    np.testing.assert_allclose(H_padded[0, 0, DELTA:-DELTA, DELTA:-DELTA], H[0, 0], rtol=1e-12)


def test_seed_dense_W_with_tied_weights_is_the_convolution():
    # W[i, j, k, l] = V[k - i, l - j] when |k - i|, |l - j| <= Δ, else 0 (translation invariance
    # + locality); H = U + sum_{k,l} W[i, j, k, l] X[k, l] is then fc2conv.correlate.
    X, V, u = _seed_arrays()
    h, w = X.shape
    W = np.zeros((h, w, h, w))
    for i in range(h):
        for j in range(w):
            for k in range(max(i - DELTA, 0), min(i + DELTA + 1, h)):
                for l in range(max(j - DELTA, 0), min(j + DELTA + 1, w)):
                    W[i, j, k, l] = V[k - i + DELTA, l - j + DELTA]
    H_dense = u + np.einsum("ijkl,kl->ij", W, X)
    H = fc2conv.correlate(as4d(X), as4d(V), np.array([u]), padding="same")
    np.testing.assert_allclose(H[0, 0], H_dense, rtol=1e-12, atol=1e-12)
    # the parameter count drops from (h*w)^2 to (2Δ+1)^2 (plus one bias)
    assert W.size == (6 * 7) ** 2 and V.size == (2 * DELTA + 1) ** 2


def test_seed_discrete_convolution_definition():
    # (f * g)(i, j) = sum_{a,b} f(a, b) g(i - a, j - b) over all overlaps = convolve, "full"
    rng = np.random.default_rng(3)
    f = rng.standard_normal((2, 3))
    g = rng.standard_normal((4, 5))
    out = np.zeros((4 + 2 - 1, 5 + 3 - 1))
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            for a in range(2):
                for b in range(3):
                    if 0 <= i - a < 4 and 0 <= j - b < 5:
                        out[i, j] += f[a, b] * g[i - a, j - b]
    Y = fc2conv.convolve(as4d(g), as4d(f), padding="full")
    assert Y.shape == (1, 1, 5, 7)
    np.testing.assert_allclose(Y[0, 0], out, rtol=1e-12, atol=1e-12)


def test_seed_shifted_input_shifts_the_hidden_representation():
    # "a shift in the input X should simply lead to a shift in the hidden representation H"
    X = np.zeros((1, 1, 9, 9))
    X[0, 0, 2:4, 2:5] = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
    V = as4d([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])
    H = fc2conv.correlate(X, V, padding=1)
    H_shift = fc2conv.correlate(np.roll(X, (3, 2), axis=(2, 3)), V, padding=1)
    np.testing.assert_array_equal(H_shift, np.roll(H, (3, 2), axis=(2, 3)))
