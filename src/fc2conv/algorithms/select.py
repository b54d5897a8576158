"""Choosing the algorithm for ``method="auto"``: a cost model with measured constants.

Like ``scipy.signal.choose_conv_method``, the choice is a prediction, not a trial run: every
algorithm module estimates the work of one step of a layer (``cost(spec, method, step)``, in
GEMM-flop equivalents: the formula is in each module's docstring), and
:data:`SECONDS_PER_UNIT` turns that into seconds for every ``(method, step)``. The constants
are fitted by ``benchmarks/calibrate_select.py`` (geometric mean of measured time / estimated
work over the DESIGN.md layer suite, variants of it and image filters, float32, 2 threads) and
the method with the smallest predicted time among those that can run the layer wins.

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

from .._validate import ConvSpec

__all__ = ["METHODS", "SECONDS_PER_UNIT", "choose", "local_methods", "work"]

#: Measured seconds per unit of estimated work, per ``(method, step)``; from
#: ``benchmarks/calibrate_select.py`` on a 2-core Xeon (AVX-512, OpenBLAS SkylakeX kernels).
SECONDS_PER_UNIT: dict[tuple[str, str], float] = {
    ('direct', 'correlate'): 5.693e-11,
    ('direct', 'input_grad'): 5.681e-11,
    ('direct', 'weight_grad'): 7.737e-11,
    ('fft', 'correlate'): 4.648e-11,
    ('fft', 'input_grad'): 4.576e-11,
    ('fft', 'weight_grad'): 5.092e-11,
    ('im2col', 'correlate'): 7.978e-12,
    ('im2col', 'input_grad'): 8.083e-12,
    ('im2col', 'weight_grad'): 7.539e-12,
    ('shift', 'correlate'): 7.507e-12,
    ('shift', 'input_grad'): 6.542e-12,
    ('shift', 'weight_grad'): 9.417e-12,
    ('winograd', 'correlate'): 9.577e-12,
    ('winograd', 'input_grad'): 9.813e-12,
    ('winograd', 'weight_grad'): 9.838e-12,
    ('winograd2', 'correlate'): 1.042e-11,
    ('winograd2', 'input_grad'): 1.076e-11,
    ('winograd2', 'weight_grad'): 9.643e-12,
}
_DEFAULT_SECONDS_PER_UNIT = 1 / 2e10  # a GEMM flop at ~20 GFLOP/s: used for unfitted pairs

#: method name -> the module of this package that implements it.
METHODS = {"im2col": "gemm", "shift": "gemm", "fft": "fft", "winograd": "winograd",
            "winograd2": "winograd", "direct": "direct"}
_PORTABLE = ("im2col", "shift")
# Layers below this many GEMM flops run on a method whose every output is its own dot product
# (GEMM, direct): there the others save little, and the exact method keeps a NaN or inf to the
# outputs that read it and rounding to the dot product's (FFT and Winograd spread both over a
# tile). Large layers are where FFT and Winograd pay off.
_LOCAL_BELOW = 2e7
_LOCAL = ("im2col", "shift", "direct")
_LOCAL_ONLY = contextvars.ContextVar("fc2conv_local_methods", default=False)


def _module(method: str):  # type: ignore[no-untyped-def]
    return importlib.import_module(f".{METHODS[method]}", __package__)


def work(spec: ConvSpec, method: str, step: str) -> float:
    """Estimated work of one step of ``method`` on ``spec`` (``inf`` if it cannot run)."""
    module = _module(method)
    if module.unsupported(spec, method) is not None:
        return float("inf")
    return float(module.cost(spec, method, step))


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
    return _choose(spec, step, _LOCAL_ONLY.get())


@functools.lru_cache(maxsize=4096)
def _choose(spec: ConvSpec, step: str, local_only: bool) -> str:
    numpy = getattr(spec.xp, "__name__", "") in ("numpy", "array_api_compat.numpy")
    candidates = METHODS if numpy else _PORTABLE
    if numpy and (local_only or _gemm_flops(spec) < _LOCAL_BELOW):
        candidates = _LOCAL
    predicted = {
        method: work(spec, method, step)
        * SECONDS_PER_UNIT.get((method, step), _DEFAULT_SECONDS_PER_UNIT)
        for method in candidates
    }
    return min(predicted, key=predicted.__getitem__)
