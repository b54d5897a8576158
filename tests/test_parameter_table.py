"""The seed's parameter table: its exact numbers, and every count checked against the arrays the
functional ops actually take (a formula that disagrees with the op's weight shape is wrong).
"""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

import fc2conv
from fc2conv import ArgumentError
from fc2conv.analysis._table import ParameterTable, Row, parameter_table

NAMES = (
    "dense-on-grid (MLP on the image)",
    "translation invariant (shared, full kernel)",
    "locally connected (local, untied)",
    "convolution (shared and local)",
)


def rows_by_name(table: ParameterTable) -> dict[str, Row]:
    return {r.name: r for r in table.rows}


# ---------------------------------------------------------------------------------------------
# the seed's numbers


def test_seed_numbers_for_a_megapixel_image():
    table = parameter_table((1000, 1000), 5)
    dense, shared, local, conv, mlp, rgb = table.rows
    assert [r.name for r in table.rows[:4]] == list(NAMES)
    assert (dense.weights, dense.biases) == (10**12, 10**6)  # "10^12 params"
    assert (shared.weights, shared.biases) == (1999**2, 1)  # the seed's "4 x 10^6"
    assert shared.weights == 3_996_001
    assert (conv.weights, conv.biases) == (121, 1)  # "(2 x 5 + 1)^2 = 121"
    assert (local.weights, local.biases) == (121 * 10**6, 10**6)
    assert mlp.name == "MLP to 1000 hidden units (image as a vector)"
    assert (mlp.weights, mlp.biases) == (10**9, 1000)  # "1 billion parameters"
    assert rgb.name == "same MLP on RGB (3 colour channels)"
    assert rgb.weights == 3 * 10**9  # Bishop's "3 x 10^9 weights"
    # FLOPs: sharing keeps the dense cost, locality cuts it.
    assert dense.flops_per_output == shared.flops_per_output == 2 * 10**6
    assert local.flops_per_output == conv.flops_per_output == 2 * 121
    assert (mlp.flops_per_output, rgb.flops_per_output) == (2 * 10**6, 6 * 10**6)
    assert dense.params == 10**12 + 10**6
    assert round(math.log10(dense.weights / conv.weights)) == 10  # "~10^10 reduction"
    assert (table.in_size, table.delta, table.channels, table.hidden) == ((1000, 1000), 5,
                                                                          (1, 1), 1000)


def test_str_has_separators_and_aligned_columns():
    text = str(parameter_table((1000, 1000), 5))
    assert "1,000,000,000,000" in text and "3,996,001" in text and "3,000,000,000" in text
    lines = text.splitlines()
    header = lines[1]
    assert header.split()[0] == "layer" and header.endswith("FLOPs/output")
    for word in ("weights", "biases", "params", "FLOPs/output"):
        assert word in header
    table_lines = lines[1:lines.index("notes:")]
    # Right-aligned numbers: every table line has the same width.
    assert len({len(line) for line in table_lines}) == 1
    for name in NAMES:
        assert any(line.startswith(name) for line in table_lines)


def test_to_dict_is_json_and_complete():
    table = parameter_table((6, 4), 1, channels=(2, 3), hidden=10)
    data = json.loads(json.dumps(table.to_dict()))
    assert data["in_size"] == [6, 4] and data["channels"] == [2, 3]
    assert data["delta"] == 1 and data["hidden"] == 10
    assert [r["name"] for r in data["rows"]] == [r.name for r in table.rows]
    for row, entry in zip(table.rows, data["rows"]):
        assert entry["params"] == row.params == entry["weights"] + entry["biases"]
        assert entry["flops_per_output"] == row.flops_per_output


def test_rgb_row_only_for_one_input_channel():
    assert len(parameter_table(10, 1).rows) == 6
    assert len(parameter_table(10, 1, channels=(3, 1)).rows) == 5


def test_rows_are_frozen():
    row = parameter_table(10, 1).rows[0]
    with pytest.raises(AttributeError):
        row.weights = 0  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------
# the formulas against the arrays the ops take


@pytest.mark.parametrize(
    ("in_size", "delta", "channels"),
    [((5, 4), 1, (2, 3)), ((7,), 2, (1, 2)), ((3, 4, 2), 1, (2, 1)), ((6, 5), 0, (3, 2)),
     ((4,), 3, (1, 1))],
)
def test_counts_are_the_sizes_of_real_weight_arrays(in_size, delta, channels):
    c_in, c_out = channels
    d, k, hidden = len(in_size), 2 * delta + 1, 7
    rows = parameter_table(in_size, delta, channels=channels, hidden=hidden).rows
    x = np.ones((1, c_in, *in_size))
    out_shape = (1, c_out, *in_size)

    # dense-on-grid: w[*p, o, c, *q], a bias per output position (the seed's U[i, j]).
    w, b = np.zeros((*in_size, c_out, c_in, *in_size)), np.zeros((*in_size, c_out))
    assert (w.size, b.size) == (rows[0].weights, rows[0].biases)
    assert fc2conv.dense_grid(x, w, b).shape == out_shape

    # translation invariant: one kernel covering every offset, 2n - 1 per axis.
    full = tuple(2 * n - 1 for n in in_size)
    w, b = np.zeros((c_out, c_in, *full)), np.zeros(c_out)
    assert (w.size, b.size) == (rows[1].weights, rows[1].biases)
    pad = tuple(n - 1 for n in in_size)
    assert fc2conv.correlate(x, w, b, padding=pad).shape == out_shape

    # locally connected: an ordinary (2 delta + 1)-kernel per output position.
    w, b = np.zeros((*in_size, c_out, c_in, *(k,) * d)), np.zeros((*in_size, c_out))
    assert (w.size, b.size) == (rows[2].weights, rows[2].biases)
    assert fc2conv.local_correlate(x, w, b, padding=delta).shape == out_shape

    # convolution: one (2 delta + 1)-kernel.
    w, b = np.zeros((c_out, c_in, *(k,) * d)), np.zeros(c_out)
    assert (w.size, b.size) == (rows[3].weights, rows[3].biases)
    assert fc2conv.correlate(x, w, b, padding=delta).shape == out_shape

    # MLP on the flattened image: a (hidden, Q C_in) matrix.
    w, b = np.zeros((hidden, x.size)), np.zeros(hidden)
    assert (w.size, b.size) == (rows[4].weights, rows[4].biases)
    assert (x.reshape(1, -1) @ w.T + b).shape == (1, hidden)
    if c_in == 1:
        w = np.zeros((hidden, 3 * x.size))
        assert (w.size, b.size) == (rows[5].weights, rows[5].biases)


def reached_pixels(in_size: tuple[int, ...], kernel: tuple[int, ...]) -> np.ndarray:
    """For a zero-padded "same" correlation, how many taps of each output land on a pixel,
    counted by brute force over positions and offsets."""
    counts = np.zeros(in_size, dtype=int)
    radius = [(k - 1) // 2 for k in kernel]
    for p in itertools.product(*map(range, in_size)):
        for a in itertools.product(*map(range, kernel)):
            q = [pi + ai - r for pi, ai, r in zip(p, a, radius)]
            counts[p] += all(0 <= qi < n for qi, n in zip(q, in_size))
    return counts


@pytest.mark.parametrize("in_size", [(5, 4), (6,), (3, 2, 4)])
def test_full_kernel_reads_every_pixel_from_every_position(in_size):
    # Row b's FLOPs claim: with the (2n - 1)-kernel and padding n - 1, each of the Q outputs
    # multiplies Q real pixels: weight sharing did not reduce compute at all.
    q = math.prod(in_size)
    full = tuple(2 * n - 1 for n in in_size)
    counts = reached_pixels(in_size, full)
    assert (counts == q).all()
    # The op agrees: correlating ones with ones counts the real pixels under each window.
    ones = fc2conv.correlate(np.ones((1, 1, *in_size)), np.ones((1, 1, *full)),
                             padding=tuple(n - 1 for n in in_size))
    np.testing.assert_array_equal(ones[0, 0], counts)
    c_in = 3
    row = parameter_table(in_size, 1, channels=(c_in, 2)).rows[1]
    assert row.flops_per_output == 2 * c_in * counts.max()


@pytest.mark.parametrize(("in_size", "delta"), [((7, 6), 1), ((9,), 2), ((5, 5, 5), 1),
                                                ((4,), 3), ((3, 8), 2)])
def test_local_flops_are_the_best_connected_position(in_size, delta):
    # Rows c and d: 2 C_in (2 delta + 1)^d at an interior position; when the window is wider
    # than the grid, the most taps any position can land on real pixels.
    k = 2 * delta + 1
    counts = reached_pixels(in_size, (k,) * len(in_size))
    table = parameter_table(in_size, delta, channels=(2, 5))
    local, conv = table.rows[2], table.rows[3]
    assert local.flops_per_output == conv.flops_per_output == 2 * 2 * counts.max()
    if all(k <= n for n in in_size):
        assert counts.max() == k ** len(in_size)
        assert "exceeds" not in conv.note
    else:
        assert counts.max() < k ** len(in_size)
        assert "exceeds the grid" in conv.note and "exceeds the grid" in local.note


def test_oversized_window_is_the_full_kernel_in_flops():
    # delta >= n - 1 reads the whole grid from every position: rows b, c and d cost the same.
    rows = parameter_table((4, 3), 3).rows
    assert rows[1].flops_per_output == rows[2].flops_per_output == rows[3].flops_per_output


# ---------------------------------------------------------------------------------------------
# argument checking


@pytest.mark.parametrize(
    ("args", "kwargs", "words"),
    [
        (((10, 10), -1), {}, ["delta", "non-negative", "-1"]),
        (((10, 10), 1.5), {}, ["delta", "integer", "1.5"]),
        (((10, 0), 1), {}, ["in_size", "positive", "(10, 0)"]),
        (((10, -3), 1), {}, ["in_size", "positive"]),
        ((0, 1), {}, ["in_size", "positive"]),
        (((2, 2, 2, 2), 1), {}, ["in_size", "1, 2 or 3", "4"]),
        (((), 1), {}, ["in_size", "1, 2 or 3"]),
        (("100", 1), {}, ["in_size", "'100'"]),
        (((10, 10.0), 1), {}, ["in_size", "positive ints"]),
        (((10, 10), 1), {"channels": (1, 0)}, ["C_out", "positive", "0"]),
        (((10, 10), 1), {"channels": 3}, ["channels", "(C_in, C_out)", "3"]),
        (((10, 10), 1), {"channels": (1, 2, 3)}, ["channels", "pair"]),
        (((10, 10), 1), {"hidden": 0}, ["hidden", "positive", "0"]),
        (((10, 10), True), {}, ["delta", "True"]),
    ],
)
def test_bad_arguments_name_themselves(args, kwargs, words):
    with pytest.raises(ArgumentError) as info:
        parameter_table(*args, **kwargs)
    for word in words:
        assert word in str(info.value)


def test_numpy_integers_are_accepted():
    table = parameter_table(np.array([5, 4]), np.int64(1), channels=(np.int32(2), 3))
    assert table.in_size == (5, 4) and table.delta == 1 and table.channels == (2, 3)
    assert all(type(v) is int for v in (*table.in_size, table.delta, *table.channels))
    assert table.rows == parameter_table((5, 4), 1, channels=(2, 3)).rows
