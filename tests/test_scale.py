"""fc2conv.scale: the ops on chunked Dask arrays equal the in-memory ops on the whole array.

Hypothesis draws the geometry (size, kernel, stride, dilation, padding, mode) and, separately,
the chunking, including chunks much shorter than the halo. Graphs are computed with Dask's
synchronous scheduler (the arithmetic is the same on every scheduler; one test runs the default
threaded one, ``test_scale_distributed.py`` a distributed cluster).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

da = pytest.importorskip("dask.array")
pytest.importorskip("zarr")

import fc2conv
from fc2conv import _filter_cli, analysis, cli, nn, scale
from fc2conv.scale import _plan

MODES = ("zeros", "reflect", "symmetric", "replicate", "circular")


def _close(actual, expected):
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-12)


def _computed(y):
    return y.compute(scheduler="synchronous")


@st.composite
def chunkings(draw, shape):
    """Dask chunks for ``(N, C, *S)``: any sizes along N and S (C is merged by the op)."""
    def split(n):
        sizes, left = [], n
        while left:
            size = draw(st.integers(1, max(1, min(left, n // 2 + 1))))
            sizes.append(size)
            left -= size
        return tuple(sizes)

    return (split(shape[0]), (shape[1],), *(split(n) for n in shape[2:]))


@st.composite
def conv_cases(draw):
    ndim = draw(st.integers(1, 2))
    size = tuple(draw(st.integers(4, 24 if ndim == 1 else 13)) for _ in range(ndim))
    kernel = tuple(draw(st.integers(1, 6)) for _ in range(ndim))
    stride = draw(st.integers(1, 3))
    dilation = draw(st.integers(1, 3))
    padding = draw(st.sampled_from([0, 1, 3, "same", "full", ((2, 0),) * ndim]))
    mode = draw(st.sampled_from(MODES))
    groups = draw(st.sampled_from([1, 2]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    x = rng.standard_normal((draw(st.integers(1, 3)), 2, *size))
    w = rng.standard_normal((2 * draw(st.integers(1, 2)), 2 // groups, *kernel))
    bias = rng.standard_normal(w.shape[0]) if draw(st.booleans()) else None
    kwargs = {"stride": stride, "dilation": dilation, "padding": padding,
              "padding_mode": mode, "groups": groups}
    try:  # geometry the in-memory op rejects (kernel longer than the padded input) is skipped
        expected = fc2conv.correlate(x, w, bias, **kwargs)
    except fc2conv.ShapeError:
        expected = None
    return x, w, bias, kwargs, expected, draw(chunkings(x.shape))


@given(conv_cases(), st.booleans())
def test_correlate_and_convolve_equal_the_whole_array_op(case, flip):
    x, w, bias, kwargs, expected, chunks = case
    if expected is None:
        with pytest.raises(fc2conv.ShapeError):
            scale.correlate(da.from_array(x, chunks=chunks), w, bias, **kwargs)
        return
    if flip:
        expected = fc2conv.convolve(x, w, bias, **kwargs)
    op = scale.convolve if flip else scale.correlate
    _close(_computed(op(da.from_array(x, chunks=chunks), w, bias, **kwargs)), expected)


@st.composite
def pool_cases(draw):
    ndim = draw(st.integers(1, 2))
    size = tuple(draw(st.integers(4, 20 if ndim == 1 else 11)) for _ in range(ndim))
    kernel = draw(st.integers(1, 4))
    kwargs = {"stride": draw(st.sampled_from([None, 1, 2, 3])),
              "padding": draw(st.integers(0, kernel // 2)), "ceil_mode": draw(st.booleans())}
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    x = rng.standard_normal((2, 3, *size))
    return x, kernel, kwargs, draw(chunkings(x.shape)), draw(st.integers(1, 2)), draw(
        st.booleans())


@given(pool_cases())
def test_pooling_equals_the_whole_array_op(case):
    x, kernel, kwargs, chunks, dilation, count_include_pad = case
    lazy = da.from_array(x, chunks=chunks)
    try:
        expected = fc2conv.max_pool(x, kernel, dilation=dilation, **kwargs)
    except fc2conv.ShapeError:
        return
    np.testing.assert_array_equal(
        _computed(scale.max_pool(lazy, kernel, dilation=dilation, **kwargs)), expected)
    expected = fc2conv.avg_pool(x, kernel, count_include_pad=count_include_pad, **kwargs)
    np.testing.assert_array_equal(
        _computed(scale.avg_pool(lazy, kernel, count_include_pad=count_include_pad, **kwargs)),
        expected)


@pytest.mark.parametrize("mode", MODES)
def test_halo_larger_than_the_chunks_merges_chunks_and_stays_exact(mode):
    x = np.random.default_rng(0).standard_normal((1, 1, 64, 120)).astype(np.float32)
    w = np.random.default_rng(1).standard_normal((1, 1, 31, 31)).astype(np.float32)
    y = scale.correlate(da.from_array(x, chunks=(1, 1, 4, 7)), w, padding="same",
                        padding_mode=mode, dilation=(1, 2))
    expected = fc2conv.correlate(x, w, padding="same", padding_mode=mode, dilation=(1, 2))
    # float32 sums of 961 terms (sum |terms| ~ 700): the method "auto" picks per tile (GEMM
    # or FFT) may differ from the whole array's, so they agree to ~eps32 * 700, not bit for bit
    np.testing.assert_allclose(y.compute(), expected, rtol=1e-5, atol=2e-4)
    # Dask shares halos between direct neighbours only: chunks were merged up to the halo.
    assert min(y.chunks[2][1:-1]) >= 15 and min(y.chunks[3][1:-1]) >= 30


def test_same_filter_keeps_the_input_chunks_and_runs_on_the_threaded_scheduler():
    x = da.random.default_rng(0).standard_normal((2, 3, 100, 70), chunks=(1, 3, 32, 32))
    w = np.random.default_rng(1).standard_normal((3, 1, 5, 5))
    y = scale.correlate(x, w, padding="same", padding_mode="circular", groups=3)
    assert y.chunks == x.chunks
    expected = fc2conv.correlate(x.compute(), w, padding="same", padding_mode="circular",
                                 groups=3)
    _close(y.compute(), expected)  # dask's default scheduler for arrays: threads


def test_three_spatial_dims_and_halo_per_side():
    x = np.random.default_rng(0).standard_normal((1, 2, 9, 10, 11))
    w = np.random.default_rng(1).standard_normal((2, 2, 4, 3, 2))
    y = scale.correlate(da.from_array(x, chunks=(1, 1, 4, 3, 5)), w, padding="same",
                        padding_mode="symmetric", stride=(1, 2, 1))
    _close(_computed(y), fc2conv.correlate(x, w, padding="same", padding_mode="symmetric",
                                           stride=(1, 2, 1)))
    # An even kernel under "same": 1 cell of halo before, 2 after (the extra goes after).
    axis = _plan.stage_axes([_stage(x, w, padding="same")], 0)
    plan = _plan.plan_axis(axis, [4 + 1])  # input boundary 4, pre-padded by 1 before
    assert plan.depth == (1, 2)


def _stage(x, w, **kwargs):
    from fc2conv import _validate
    from fc2conv.scale._ops import conv_stage

    return conv_stage(_validate.conv_spec(x, w, None, stride=1, dilation=1, groups=1,
                                          padding_mode="zeros", **kwargs),
                      w, None, flip=False).without_padding()


# ---------------------------------------------------------------------------------------------
# models


def _cnn(mode_a="reflect", mode_b="circular"):
    return nn.Sequential(
        nn.Conv2d(2, 4, 5, padding=2, padding_mode=mode_a, dtype=np.float64, rng=0),
        nn.ReLU(),
        nn.MaxPool2d(2, ceil_mode=True),
        nn.Sequential(nn.Conv2d(4, 3, 3, padding="same", padding_mode=mode_b,
                                dtype=np.float64, rng=1),
                      nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)),
        nn.Conv2d(3, 2, 3, dilation=2, padding=(3, 1), padding_mode="symmetric",
                  dtype=np.float64, rng=2),
    )


@settings(max_examples=max(10, settings.default.max_examples // 4))  # whole models: costlier
@given(st.sampled_from(MODES), st.sampled_from(MODES), st.data())
def test_apply_runs_a_conv_stack_tile_by_tile_exactly(mode_a, mode_b, data):
    model = _cnn(mode_a, mode_b)
    x = np.random.default_rng(0).standard_normal((2, 2, 37, 29))
    chunks = data.draw(chunkings(x.shape))
    y = scale.apply(model, da.from_array(x, chunks=chunks), mode="tiles")
    _close(_computed(y), model(x))


def test_apply_halo_is_the_receptive_field():
    model = nn.Sequential(nn.Conv1d(1, 3, 5, padding=2, rng=0), nn.ReLU(),
                          nn.MaxPool1d(2), nn.Conv1d(3, 1, 3, dilation=2, padding=2, rng=1))
    x = da.zeros((1, 1, 4096), chunks=512, dtype=np.float32)
    stages = scale._model.model_stages(model, x)
    stages = [stages[0].without_padding(), *stages[1:]]
    plan = _plan.plan_axis(_plan.stage_axes(stages, 0), [512 * k + 2 for k in range(1, 8)])
    field = analysis.receptive_field(model)
    # a tile of t outputs reads t*stride + size - stride inputs: the halo is size - stride
    assert sum(plan.depth) == field.size[0] - field.stride[0]
    assert plan.out_chunks == (256,) * 8


def test_apply_batch_mode_runs_a_classifier_over_blocks_of_examples():
    model = nn.Sequential(nn.Conv1d(1, 4, 5, 2, 1, rng=0), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 19, 10, rng=1))
    x = np.random.default_rng(0).standard_normal((10, 1, 40)).astype(np.float32)
    y = scale.apply(model, da.from_array(x, chunks=(3, 1, 20)))
    assert y.shape == (10, 10) and y.chunks[0] == (3, 3, 3, 1)
    np.testing.assert_allclose(y.compute(), model(x), rtol=1e-6, atol=1e-6)
    with pytest.raises(fc2conv.ArgumentError, match="mode='batch'"):
        scale.apply(model, da.from_array(x), mode="tiles")


# ---------------------------------------------------------------------------------------------
# errors


def test_non_floating_input_and_bad_ranks_are_clear_errors():
    w = np.ones((1, 1, 3, 3))
    with pytest.raises(fc2conv.DTypeError, match="x must have dtype float32 or float64"):
        scale.correlate(da.zeros((1, 1, 8, 8), dtype=np.int32), w)
    with pytest.raises(fc2conv.DTypeError, match="x must have dtype"):
        scale.max_pool(da.zeros((1, 1, 8, 8), dtype=np.uint8), 2)
    with pytest.raises(fc2conv.ShapeError, match=r"\(N, C_in, \*S\)"):
        scale.correlate(da.zeros((8, 8)), w)
    with pytest.raises(fc2conv.DTypeError, match="dask.array.Array"):
        scale.correlate([[1.0]], w)
    with pytest.raises(fc2conv.DTypeError, match="parameter 0.weight"):
        scale.apply(nn.Sequential(nn.Linear(4, 2, rng=0)), da.zeros((3, 4)), mode="batch")
    with pytest.raises(fc2conv.ArgumentError, match="mode must be"):
        scale.apply(nn.ReLU(), da.zeros((1, 1, 4)), mode="fast")


def test_importing_fc2conv_needs_no_dask_and_scale_names_the_extra():
    code = (
        "import sys; sys.modules['dask'] = None\n"
        "import fc2conv, fc2conv.nn, fc2conv.analysis\n"
        "try:\n    import fc2conv.scale\nexcept ImportError as e:\n    print(e)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert "pip install 'fc2conv[scale]'" in result.stdout


# ---------------------------------------------------------------------------------------------
# files, kernels and the command


@pytest.mark.parametrize("suffix", [".zarr", ".npy", ".tif"])
def test_write_then_read_round_trips(tmp_path, suffix):
    a = np.random.default_rng(0).standard_normal((30, 20)).astype(np.float32)
    target = tmp_path / f"a{suffix}"
    scale.write(da.from_array(a, chunks=(7, 20)), target)
    np.testing.assert_array_equal(scale.read(target, chunks=8).compute(), a)
    with pytest.raises(fc2conv.ArgumentError, match="overwrite=True"):
        scale.write(a, target)


def test_png_is_written_as_clipped_uint8(tmp_path):
    target = tmp_path / "a.png"
    scale.write(np.array([[-3.0, 7.4], [300.0, 128.6]]), target)
    assert scale.read(target).compute().tolist() == [[0, 7], [255, 129]]
    with pytest.raises(fc2conv.ArgumentError, match="must end in"):
        scale.read(tmp_path / "a.bmp")


def test_named_kernels():
    assert set(scale.KERNELS) == set(_filter_cli._KERNEL_NAMES)
    for name in scale.KERNELS:
        kernel = scale.named_kernel(name)
        assert kernel.ndim == 2
        expected_sum = 1.0 if name in ("box", "gaussian", "sharpen") else 0.0
        assert kernel.sum() == pytest.approx(expected_sum)
    assert scale.named_kernel("gaussian", sigma=5.0).shape == (31, 31)
    with pytest.raises(fc2conv.ArgumentError, match="odd"):
        scale.named_kernel("box", size=4)
    with pytest.raises(fc2conv.ArgumentError, match="fixed size"):
        scale.named_kernel("sobel-x", size=5)


def _filter(*argv):
    return cli.main(["filter", *map(str, argv)])


def test_filter_command_on_a_small_image(tmp_path, capsys):
    from PIL import Image

    rgb = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "in.png")
    assert _filter(tmp_path / "in.png", tmp_path / "out.zarr", "--kernel", "sobel-x",
                   "--chunks", "16,20") == 0
    assert "100% Completed" in capsys.readouterr().out
    x = np.moveaxis(rgb.astype(np.float32), -1, 0)[None]
    w = np.broadcast_to(scale.named_kernel("sobel-x").astype(np.float32), (3, 1, 3, 3))
    expected = fc2conv.correlate(x, w, padding="same", padding_mode="symmetric", groups=3)
    out = scale.read(tmp_path / "out.zarr").compute()
    np.testing.assert_array_equal(out, np.moveaxis(expected[0], 0, -1))

    np.save(tmp_path / "k.npy", np.ones((1, 5)))
    assert _filter(tmp_path / "out.zarr", tmp_path / "out.png", "--kernel", tmp_path / "k.npy",
                   "--padding-mode", "circular", "--quiet") == 0
    assert scale.read(tmp_path / "out.png").shape == (40, 50, 3)
    assert _filter(tmp_path / "in.png", tmp_path / "out.png", "--kernel", "box") == 2
    assert "--overwrite" in capsys.readouterr().err
    assert _filter(tmp_path / "in.png", tmp_path / "x.png", "--kernel", "blur") == 2
    assert "sobel-x" in capsys.readouterr().err
