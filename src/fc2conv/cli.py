"""The ``fc2conv`` command.

``fc2conv demo`` runs the derivation's key facts on small arrays in a second; ``fc2conv info``
shows what the numbers will be computed with (library versions, BLAS, threads).
"""

from __future__ import annotations

import argparse
import platform
import sys
from collections.abc import Sequence

import numpy as np

from . import __version__, convolve, correlate, max_pool
from ._padding import NUMPY_MODE, SCIPY_MODE, pad
from ._validate import PADDING_MODES


def _demo() -> None:
    out = print
    out("fc2conv demo: the convolution core on the examples of the derivation\n")

    out("1. H[i,j] = u + sum_{a,b} V[a,b] X[i+a, j+b]  (cross-correlation, d2l 7.2)")
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    v = np.array([[[[0.0, 1.0], [2.0, 3.0]]]])
    out(f"   X = {x[0, 0].tolist()}\n   V = {v[0, 0].tolist()}")
    out(f"   correlate(X, V) = {correlate(x, v)[0, 0].tolist()}")
    out(f"   convolve(X, V)  = {convolve(x, v)[0, 0].tolist()}   (V flipped: true convolution)\n")

    out("2. A learned-looking feature: the edge detector V = [1, -1] on a black stripe")
    img = np.ones((1, 1, 6, 8))
    img[..., 2:6] = 0.0
    edges = correlate(img, np.array([[[[1.0, -1.0]]]]))
    out("   " + "\n   ".join(" ".join(f"{val:+.0f}" for val in row) for row in edges[0, 0]) + "\n")

    out("3. Translation invariance of V gives shift equivariance: f(shift(x)) == shift(f(x))")
    rng = np.random.default_rng(0)
    image = rng.standard_normal((1, 1, 32, 32))
    kernel = rng.standard_normal((1, 1, 5, 5))
    shift = (3, -5)
    for mode in ("circular", "zeros"):
        def f(a, mode=mode):
            return correlate(a, kernel, padding="same", padding_mode=mode)
        lhs = f(np.roll(image, shift, axis=(2, 3)))
        rhs = np.roll(f(image), shift, axis=(2, 3))
        err = np.abs(lhs - rhs)
        interior = err[..., 8:-8, 8:-8].max()
        out(f"   padding_mode={mode!r:11} max error {err.max():.2e}, away from the border "
            f"{interior:.2e}")
    pooled = [max_pool(correlate(np.roll(image, s, axis=3), kernel, padding="same",
                                 padding_mode="circular"), 32).item() for s in (0, 7)]
    out(f"   global max pooling after it is shift invariant: {pooled[0]:.6f} == {pooled[1]:.6f}\n")

    out("4. The five padding modes on the signal [1 2 3 4], two cells each side")
    signal = np.array([[[1.0, 2.0, 3.0, 4.0]]])
    for mode in PADDING_MODES:
        padded = pad(np, signal, ((2, 2),), mode)[0, 0]
        out(f"   {mode:10} {' '.join(f'{val:.0f}' for val in padded):24} "
            f"(SciPy {SCIPY_MODE[mode]!r}, NumPy {NUMPY_MODE[mode]!r})")


def _info() -> None:
    import scipy

    print(f"fc2conv {__version__}, Python {platform.python_version()}, "
          f"NumPy {np.__version__}, SciPy {scipy.__version__}")
    print(f"machine: {platform.machine()}, {platform.processor() or 'cpu'}")
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        config: dict = dict(np.show_config(mode="dicts") or {})
        blas = config.get("Build Dependencies", {}).get("blas", {})
        print(f"BLAS: {blas.get('name', 'unknown')} {blas.get('version', '')}")
        return
    for pool in threadpool_info():
        print(f"{pool.get('internal_api')}: {pool.get('version')}, "
              f"{pool.get('num_threads')} threads, kernel {pool.get('architecture')}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="fc2conv",
        description="From fully-connected layers to convolutions: N-D convolution, pooling and "
                    "their gradients for NumPy and any array-API library.",
    )
    parser.add_argument("--version", action="version", version=f"fc2conv {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("demo", help="run the derivation's key facts on small examples")
    commands.add_parser("info", help="show library versions, BLAS and threads")
    args = parser.parse_args(argv)
    if args.command == "demo":
        _demo()
    elif args.command == "info":
        _info()
    else:
        parser.print_help()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
