"""``method="auto"``: the cost model of ``fc2conv.algorithms.select``.

The model's choices are checked for what they must do (switch between methods across a
family of layers, stay on the local methods for small layers and under ``local_methods()``,
consider only the portable methods for other namespaces); the results of ``auto`` on each
side of a switch are checked against ``method="im2col"`` in float64 (itself checked against
the float64 loop reference in ``test_algo_gemm.py``). Whether a choice is the *fastest* is a
benchmark question (``benchmarks/calibrate_select.py``), not a unit test.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

import fc2conv
from fc2conv import _validate
from fc2conv.algorithms import METHODS, implementation, select
from fc2conv.functional import correlate_vjp

STEPS = ("correlate", "input_grad", "weight_grad")


def _spec(shape, c_out, k, padding="same", groups=1, xp=np, method="auto"):
    x = np.zeros(shape, np.float32)
    w = np.zeros((c_out, shape[1] // groups) + (k,) * (len(shape) - 2), np.float32)
    spec = _validate.conv_spec(x, w, None, stride=1, padding=padding, dilation=1,
                               groups=groups, padding_mode="zeros", method=method)
    return spec if xp is np else dataclasses.replace(spec, xp=xp)


# (N, C_in, *S), C_out, k: image filters from small kernels (GEMM or direct) to large (FFT),
# and a 3x3 layer large enough for Winograd to be a candidate
FAMILY = [((1, 1, 256, 256), 1, k) for k in (3, 5, 9, 15, 25, 31)] + [
    ((2, 32, 40, 40), 32, 3), ((4, 128, 14, 14), 128, 3), ((2, 64, 28, 28), 64, 3),
    ((1, 8, 2048), 8, 65)]


def test_auto_switches_across_the_family() -> None:
    """Across the family ``auto`` picks at least four different methods, FFT and a
    Winograd among them, so the exactness test below runs on both sides of its switches
    (with other calibration constants the picks move, but some must still switch)."""
    chosen = {select.choose(_spec(*layer), step) for layer in FAMILY for step in STEPS}
    assert len(chosen) >= 4, chosen
    assert "fft" in chosen and chosen & {"winograd", "winograd2"}


@pytest.mark.parametrize(("shape", "c_out", "k"), FAMILY)
def test_auto_matches_float64_on_each_side_of_a_switch(shape, c_out, k) -> None:
    """Forward and both gradients with the methods ``auto`` picks, in float32, against
    ``im2col`` in float64: within the worst method's error (Winograd F(4x4): 2e-5 of the
    largest output)."""
    rng = np.random.default_rng(k)
    x = rng.standard_normal(shape)
    w = rng.standard_normal((c_out, shape[1]) + (k,) * (len(shape) - 2))
    b = rng.standard_normal(c_out)
    y64 = fc2conv.correlate(x, w, b, padding="same", method="im2col")
    gy = rng.standard_normal(y64.shape)
    grads64 = correlate_vjp(gy, x, w, b, padding="same", method="im2col")
    f32 = [a.astype(np.float32) for a in (x, w, b, gy)]
    y = fc2conv.correlate(*f32[:3], padding="same")
    grads = correlate_vjp(f32[3], *f32[:3], padding="same")
    for name, got, want in zip(("y", "grad_x", "grad_w", "grad_b"), (y, *grads),
                               (y64, *grads64)):
        assert got.dtype == np.float32
        scale = np.abs(want).max()
        assert np.abs(got - want).max() <= 3e-5 * scale, (name, shape, k)


def test_small_layers_and_local_methods_stay_on_per_output_dot_products() -> None:
    """Below 2e7 flops, and inside ``local_methods()`` at any size, ``auto`` picks GEMM,
    direct or jit (every output its own dot product: a NaN stays where it is read)."""
    local = {"im2col", "shift", "direct", "jit"}
    small = _spec((1, 1, 64, 64), 1, 31)
    large = _spec((1, 1, 256, 256), 1, 31)
    assert all(select.choose(small, step) in local for step in STEPS)
    assert select.choose(large, "correlate") == "fft"
    with select.local_methods():
        assert all(select.choose(large, step) in local for step in STEPS)
    assert select.choose(large, "correlate") == "fft"


def test_forced_methods_and_other_namespaces() -> None:
    """A forced method is returned as is; another array namespace chooses among the
    portable GEMM methods only (the other costs were measured on NumPy)."""
    spec = _spec((1, 1, 256, 256), 1, 31, method="direct")
    assert all(select.choose(spec, step) == "direct" for step in STEPS)
    import array_api_strict

    strict = _spec((1, 1, 256, 256), 1, 31, xp=array_api_strict)
    assert all(select.choose(strict, step) in ("im2col", "shift") for step in STEPS)


def test_predictions_are_positive_and_infinite_where_a_method_cannot_run() -> None:
    spec = _spec((2, 32, 40, 40), 32, 5)  # Winograd runs 3-wide kernels only
    assert select.predict(spec, "winograd", "correlate") == math.inf
    assert select.parts(spec, "winograd", "correlate") is None
    for method in ("im2col", "shift", "fft"):
        for step in STEPS:
            assert 0 < select.predict(spec, method, step) < math.inf


def test_the_fitted_constants_name_the_parts_of_the_formulas() -> None:
    """Every ``(method, step)`` has fitted constants, for exactly the parts its module's
    ``terms`` returns (a formula change without a new calibration fails here)."""
    layers = {"direct": _spec((2, 32, 40, 40), 32, 3, groups=32),
              "jit": _spec((2, 32, 40, 40), 32, 3, groups=32)}
    for method in METHODS:
        spec = layers.get(method, _spec((2, 32, 40, 40), 32, 3))
        if method == "jit" and select.parts(spec, method, "correlate") is None:
            continue  # (Numba is not installed)
        implementation(spec, method)  # runs this layer
        for step in STEPS:
            constants = select.SECONDS_PER_UNIT[method, step]
            # (``padding`` has one measured rate for all, PAD_SECONDS_PER_UNIT)
            assert set(constants) == set(select.parts(spec, method, step)) - {"padding"}, (
                method, step)
            assert all(0 <= v < 1e-8 for v in constants.values())
            assert sum(constants.values()) > 0


def test_the_padded_copy_is_charged_to_the_methods_that_need_it() -> None:
    """``padding``: a method that cannot read the zero padding itself is charged the padded
    copy of the input (the crop of its gradient), ``PAD_COPY`` units per padded element;
    ``UNPADDED`` methods (direct, Winograd) are not, unless the padding mode makes every
    method pad; unpadded layers charge nobody."""
    spec = _spec((2, 8, 30, 30), 8, 3, padding=1)
    padded = 2 * 8 * 32 * 32 * select.PAD_COPY
    for step in STEPS:
        assert select.parts(spec, "im2col", step)["padding"] == padded
        assert select.parts(spec, "direct", step)["padding"] == 0
        assert select.parts(spec, "winograd", step)["padding"] == 0
        reflect = dataclasses.replace(spec, padding_mode="reflect")
        assert select.parts(reflect, "direct", step)["padding"] == padded
        assert select.parts(_spec((2, 8, 30, 30), 8, 3, padding=0), "im2col",
                            step)["padding"] == 0
    # the charge is in the prediction, at the measured rate
    unpadded = dataclasses.replace(spec, pads=((0, 0), (0, 0)))  # (same output size)
    extra = (select.predict(spec, "im2col", "correlate")
             - select.predict(unpadded, "im2col", "correlate"))
    assert extra == pytest.approx(padded * select.PAD_SECONDS_PER_UNIT)


def test_depthwise_layers_go_to_the_compiled_loops_when_numba_is_installed(monkeypatch) -> None:
    """DESIGN.md's depthwise layer: ``jit`` for every step (measured 3-6x faster than
    ``direct``), and without Numba ``auto`` never names it."""
    pytest.importorskip("numba")
    from fc2conv.algorithms import jit

    depthwise = _spec((8, 128, 56, 56), 128, 3, groups=128)
    assert all(select.choose(depthwise, step) == "jit" for step in STEPS)
    monkeypatch.setattr(jit, "available", lambda: False)
    select._choose.cache_clear()
    try:
        assert all(select.choose(depthwise, step) != "jit" for step in STEPS)
    finally:
        select._choose.cache_clear()
