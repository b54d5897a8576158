"""Choosing the algorithm for ``method="auto"``: a cost model with measured constants.

Like ``scipy.signal.choose_conv_method``, the choice is a prediction, not a trial run: every
algorithm module estimates the work of one step of a layer in parts (``terms(spec, method,
step)``: GEMM flops, passes over memory, transforms, NumPy calls, ..., each in GEMM-flop
equivalents; the formulas are in each module's docstring), and :data:`SECONDS_PER_UNIT` turns
each part into seconds for every ``(method, step)``. The constants are fitted by
``benchmarks/calibrate_select.py``: non-negative least squares of the relative error over the
DESIGN.md layer suite, variants of it and image filters (float32, 2 threads), pulled towards
one common constant per ``(method, step)`` so that a part few layers exercise is not
over-fitted. The method with the smallest predicted time among those that can run the layer
wins.

Memory: a method may declare a *fixed workspace* (``fixed_workspace(spec, method, step)``, in
elements), buffers that no blocking shrinks; ``auto`` passes over a method whose fixed workspace
exceeds :data:`WORKSPACE_LIMIT` times the layer's output, like cuDNN's algorithm search under a
workspace limit. Only FFT declares one (its channel-pair spectra): the GEMM methods' columns
are blocked within the output's size, and the others hold a block or a tile.

Each step of a layer is chosen separately (forward, input gradient, weight gradient): Winograd
can win the forward of a 3x3 layer while its weight gradient is cheaper as a GEMM.

For array namespaces other than NumPy only the GEMM methods are considered: the other
algorithms run there too (when ``method=`` forces them) but their costs were measured on NumPy.
Small layers (under 2e7 flops) stay on methods that compute every output as its own dot
product (GEMM, direct), which keep a NaN to the outputs that read it; FFT and Winograd spread
rounding and non-finite values over a tile and are chosen only for larger layers.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib
import math
from collections.abc import Iterator
from typing import Any

import array_api_compat

from .._threads import fft_workers
from .._validate import ConvSpec

__all__ = ["METHODS", "SECONDS_PER_UNIT", "WORKSPACE_LIMIT", "candidates", "choose", "fits",
           "local_methods", "parts", "predict", "reads_padding"]

#: Measured seconds per unit of each part of the estimated work, per ``(method, step)``
#: (the parts are the keys of the modules' ``terms``); from ``benchmarks/calibrate_select.py``
#: on a 2-core Xeon (AVX-512, OpenBLAS SkylakeX kernels); ``direct``'s ``gathers`` (which
#: only strided layers have) alone on the three strided narrow layers of the calibration,
#: the others held fixed, the forward's at the measured rate of its phase gather (a fit
#: wanted ~0 there); ``jit``'s on the ten depthwise and single-channel layers of the
#: calibration set and two strided 1-D single-channel ones (the only layers it runs), the
#: others' unchanged. The ``padding`` part that
#: :func:`parts` adds is not fitted: it costs :data:`PAD_SECONDS_PER_UNIT` whichever method
#: needs it (the measured rate of the padded copy).
SECONDS_PER_UNIT: dict[tuple[str, str], dict[str, float]] = {
    # banded: fitted on calibration run C, all 29 layers (its predictions carry banded.MARGIN)
    ('banded', 'correlate'): {'calls': 9.437e-11, 'passes': 3.323e-11, 'products': 2.890e-12},
    ('banded', 'input_grad'): {'calls': 1.076e-10, 'passes': 1.362e-11, 'products': 4.677e-12},
    ('banded', 'weight_grad'): {
        'calls': 4.663e-11, 'passes': 2.707e-11, 'products': 5.007e-12},
    ('direct', 'correlate'): {
        'calls': 4.761e-11, 'gathers': 1.280e-11, 'passes': 7.159e-12, 'products': 4.831e-11},
    ('direct', 'input_grad'): {
        'calls': 3.720e-11, 'gathers': 3.089e-11, 'passes': 1.060e-11, 'products': 0.000e+00},
    ('direct', 'weight_grad'): {
        'calls': 3.745e-11, 'dots': 3.565e-11, 'gathers': 1.201e-11, 'passes': 1.596e-11,
        'products': 1.949e-11},
    ('fft', 'correlate'): {
        'copies': 5.542e-11, 'mix': 1.503e-11, 'products': 3.786e-11, 'transforms': 1.373e-11},
    ('fft', 'input_grad'): {
        'copies': 4.304e-11, 'mix': 1.338e-11, 'products': 6.435e-11, 'transforms': 1.595e-11},
    ('fft', 'weight_grad'): {
        'copies': 3.872e-11, 'mix': 1.444e-11, 'products': 1.281e-10, 'transforms': 1.754e-11},
    ('im2col', 'correlate'): {'calls': 1.757e-11, 'passes': 1.901e-12, 'products': 4.073e-12},
    ('im2col', 'input_grad'): {'calls': 8.686e-12, 'passes': 1.925e-12, 'products': 4.674e-12},
    ('im2col', 'weight_grad'): {'calls': 4.169e-11, 'passes': 1.641e-12, 'products': 5.029e-12},
    ('jit', 'correlate'): {
        'elements': 1.724e-10, 'loops': 4.934e-10, 'macs': 2.703e-11, 'strided': 9.404e-11},
    ('jit', 'input_grad'): {
        'elements': 2.798e-10, 'loops': 7.509e-10, 'macs': 2.736e-11, 'strided': 7.731e-11},
    ('jit', 'weight_grad'): {
        'elements': 2.732e-10, 'loops': 9.196e-10, 'macs': 3.711e-11, 'strided': 8.996e-11},
    ('shift', 'correlate'): {'calls': 1.506e-11, 'passes': 3.383e-12, 'products': 4.091e-12},
    ('shift', 'input_grad'): {'calls': 9.240e-12, 'passes': 2.065e-12, 'products': 3.807e-12},
    ('shift', 'weight_grad'): {'calls': 1.547e-11, 'passes': 2.755e-12, 'products': 4.557e-12},
    ('winograd', 'correlate'): {
        'calls': 3.962e-11, 'copies': 5.149e-12, 'products': 9.604e-12, 'transforms': 2.023e-13},
    ('winograd', 'input_grad'): {
        'calls': 2.242e-11, 'copies': 0.000e+00, 'products': 8.162e-12, 'transforms': 6.788e-12},
    ('winograd', 'weight_grad'): {
        'calls': 4.319e-11, 'copies': 0.000e+00, 'products': 1.503e-11, 'transforms': 0.000e+00},
    ('winograd2', 'correlate'): {
        'calls': 1.717e-11, 'copies': 8.825e-12, 'products': 6.390e-12, 'transforms': 2.802e-12},
    ('winograd2', 'input_grad'): {
        'calls': 1.625e-11, 'copies': 1.062e-11, 'products': 4.284e-12, 'transforms': 3.678e-12},
    ('winograd2', 'weight_grad'): {
        'calls': 9.819e-12, 'copies': 7.816e-12, 'products': 9.445e-12, 'transforms': 0.000e+00},
}
#: The work of copying one element into (or out of) a padded array, in the modules' units
#: (GEMM flops at 20 GFLOP/s): ~0.4 ns (a 12.8 MB input padded by one: 1.5 ms).
PAD_COPY = 8
PAD_SECONDS_PER_UNIT = 5e-11
_DEFAULT_SECONDS_PER_UNIT = 1 / 2e10  # a GEMM flop at ~20 GFLOP/s: used for unfitted pairs

#: ``auto`` passes over a method whose fixed workspace (:func:`fits`) exceeds this many times
#: the layer's output, where another can run the step (``None``: no limit). Issue 5's target
#: for the default path, peak extra memory <= 2x the output, is this limit; it moves
#: DESIGN.md's large-kernel layer from FFT (~40x the output, 24 ms forward+backward) to
#: ``banded`` (~1x, 40 ms; PyTorch ~95 ms).
WORKSPACE_LIMIT: float | None = 2.0

#: method name -> the module of this package that implements it.
METHODS = {"im2col": "gemm", "shift": "gemm", "fft": "fft", "winograd": "winograd",
            "winograd2": "winograd", "direct": "direct", "jit": "jit", "banded": "banded"}
_PORTABLE = ("im2col", "shift")
# Layers below this many GEMM flops run on a method whose every output is its own dot product
# (GEMM, direct): there the others save little, and the exact method keeps a NaN or inf to the
# outputs that read it and rounding to the dot product's (FFT and Winograd spread both over a
# tile). Large layers are where FFT and Winograd pay off.
_LOCAL_BELOW = 2e7
_LOCAL = ("im2col", "shift", "direct", "jit")
_LOCAL_ONLY = contextvars.ContextVar("fc2conv_local_methods", default=False)


def _module(method: str):  # type: ignore[no-untyped-def]
    return importlib.import_module(f".{METHODS[method]}", __package__)


def parts(spec: ConvSpec, method: str, step: str) -> dict[str, float] | None:
    """The parts of the estimated work of one step (None if ``method`` cannot run it),
    including ``padding``: the padded copy of the input (or the crop of the input
    gradient) that a method which cannot read the padding itself needs."""
    module = _module(method)
    if module.unsupported(spec, method) is not None:
        return None
    found = {name: float(value) for name, value in module.terms(spec, method, step).items()}
    copied = any(any(pair) for pair in spec.pads) and not reads_padding(module, spec)
    found["padding"] = PAD_COPY * spec.batch * spec.in_channels * math.prod(
        spec.padded_size) if copied else 0.0
    return found


def reads_padding(module: Any, spec: ConvSpec) -> bool:
    """Whether the algorithm ``module`` takes the unpadded input and reads the zero padding
    itself (``UNPADDED`` modules, ``padding=False`` steps): no padded copy is made."""
    return spec.padding_mode == "zeros" and getattr(module, "UNPADDED", False)


def predict(spec: ConvSpec, method: str, step: str,
            constants: dict[tuple[str, str], dict[str, float]] | None = None, *,
            margin: bool = True) -> float:
    """Predicted seconds of one step: each part of the work times its measured seconds per
    unit (``inf`` if ``method`` cannot run the step), times the module's ``MARGIN`` if it
    declares one (a method whose fitted model under-predicts some layers) unless
    ``margin=False`` (the fitted model itself, what ``calibrate_select.fit`` fits)."""
    found = parts(spec, method, step)
    if found is None:
        return float("inf")
    per_unit = {"padding": PAD_SECONDS_PER_UNIT,
                **(SECONDS_PER_UNIT if constants is None else constants).get((method, step), {})}
    factor = getattr(_module(method), "MARGIN", 1.0) if margin else 1.0
    return factor * sum(
        value * per_unit.get(name, _DEFAULT_SECONDS_PER_UNIT) for name, value in found.items())


def _gemm_flops(spec: ConvSpec) -> float:
    return (2.0 * spec.batch * spec.out_channels * (spec.in_channels // spec.groups)
            * math.prod(spec.out_size) * math.prod(spec.kernel))


@contextlib.contextmanager
def local_methods() -> Iterator[None]:
    """Within this block ``auto`` picks only methods that compute every output as its own dot
    product (exact zeros stay exact zeros), whatever the layer's size; what ``ladder.to_dense``
    needs to read a layer's sparsity pattern off its outputs."""
    token = _LOCAL_ONLY.set(True)
    try:
        yield
    finally:
        _LOCAL_ONLY.reset(token)


def choose(spec: ConvSpec, step: str = "correlate") -> str:
    """The method ``"auto"`` resolves to for one step of this layer: ``"correlate"``,
    ``"input_grad"`` or ``"weight_grad"`` (a forced ``spec.method`` is returned as is)."""
    if spec.method != "auto":
        return spec.method
    # (the thread count is part of the key: it changes which steps run threaded)
    return _choose(spec, step, _LOCAL_ONLY.get(), fft_workers(), WORKSPACE_LIMIT)


def candidates(spec: ConvSpec, local_only: bool = False) -> tuple[str, ...]:
    """The methods ``auto`` chooses among for this layer (some may not run it): the portable
    GEMM methods for namespaces other than NumPy; the local ones (every output its own dot
    product) for small layers or with ``local_only``; else all."""
    if not array_api_compat.is_numpy_namespace(spec.xp):
        return _PORTABLE
    if local_only or _gemm_flops(spec) < _LOCAL_BELOW:
        return _LOCAL
    return tuple(METHODS)


def fits(spec: ConvSpec, method: str, step: str) -> bool:
    """Whether ``method``'s fixed workspace for this step (the module's ``fixed_workspace``: buffers
    that no blocking shrinks, e.g. FFT's channel-pair spectra) is within
    :data:`WORKSPACE_LIMIT` times the layer's output; methods without one always fit."""
    estimate = getattr(_module(method), "fixed_workspace", None)
    if WORKSPACE_LIMIT is None or estimate is None:
        return True
    return estimate(spec, method, step) <= WORKSPACE_LIMIT * math.prod(spec.output_shape)


@functools.lru_cache(maxsize=4096)
def _choose(spec: ConvSpec, step: str, local_only: bool, workers: int,
            limit: float | None = None) -> str:
    # (``limit``, the WORKSPACE_LIMIT that ``fits`` reads, is here for the cache's key)
    predicted = {method: predict(spec, method, step)
                 for method in candidates(spec, local_only)}
    lean = {m: t for m, t in predicted.items() if t < math.inf and fits(spec, m, step)}
    return min(lean or predicted, key=(lean or predicted).__getitem__)
