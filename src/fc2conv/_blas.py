"""What NumPy's BLAS does on this machine, and a hint when a faster honest setting exists.

Half of fc2conv's speed is the GEMM NumPy's bundled OpenBLAS runs. OpenBLAS picks its kernels
by CPU model when it loads; on CPUs newer than it knows (AMD Zen 4/5 with AVX-512, for one) it
falls back to its AVX2 ``Haswell``/``Zen`` kernels at about half the AVX-512 speed (issue text:
245 vs 460 GFLOP/s for a float32 4096^3 matmul on a Zen 5). The kernel can only be chosen
before NumPy is imported, with the environment variable ``OPENBLAS_CORETYPE``, so fc2conv can
only say so: :func:`report` is what ``fc2conv info`` prints.
"""

from __future__ import annotations

import os
from pathlib import Path

from ._threads import usable_cores

__all__ = ["cpu_flags", "kernel_hint", "report"]

# OpenBLAS cores whose single-precision GEMM uses AVX-512 (names as threadpoolctl reports them).
_AVX512_CORES = {"skylakex", "cooperlake", "sapphirerapids"}


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux); empty where they cannot be read."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def kernel_hint(architecture: str | None, flags: set[str]) -> str | None:
    """The ``OPENBLAS_CORETYPE`` advice for an OpenBLAS core name on a CPU with ``flags``.

    >>> from fc2conv._blas import kernel_hint
    >>> kernel_hint("Haswell", {"avx2", "avx512f"})[:40]
    'OpenBLAS chose its Haswell kernels, but '
    >>> kernel_hint("SkylakeX", {"avx512f"}) is None, kernel_hint("Haswell", {"avx2"}) is None
    (True, True)
    """
    if not architecture or "avx512f" not in flags:
        return None
    if architecture.lower() in _AVX512_CORES:
        return None
    return (f"OpenBLAS chose its {architecture} kernels, but this CPU has AVX-512: start Python "
            "with OPENBLAS_CORETYPE=SkylakeX set (e.g. `export OPENBLAS_CORETYPE=SkylakeX`) for "
            "up to ~1.9x faster GEMMs, hence convolutions (docs/benchmarks.md)")


def report() -> list[str]:
    """Lines describing every BLAS/OpenMP pool NumPy loaded, its kernel and threads, with
    hints; what ``fc2conv info`` prints."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency
        return ["threadpoolctl is not installed: cannot inspect the BLAS"]
    flags, cores = cpu_flags(), usable_cores()
    lines = [(f"CPU: {cores} usable cores, "
             f"{'AVX-512' if 'avx512f' in flags else 'AVX2' if 'avx2' in flags else 'no AVX2'}")]
    forced = os.environ.get("OPENBLAS_CORETYPE")
    for pool in threadpool_info():
        threads, arch = pool.get("num_threads"), pool.get("architecture")
        lines.append(f"{pool.get('internal_api')} {pool.get('version')}: {threads} threads, "
                     f"kernel {arch}" + (f" (OPENBLAS_CORETYPE={forced})" if forced else ""))
        if pool.get("internal_api") == "openblas":
            hint = kernel_hint(arch, flags)
            if hint:
                lines.append("  hint: " + hint)
        if isinstance(threads, int) and threads < cores and pool.get("user_api") == "blas":
            lines.append(f"  hint: the BLAS uses {threads} of {cores} cores (OPENBLAS_NUM_THREADS "
                         "or a threadpoolctl limit); unset it to use them all")
    return lines
