"""The ``fc2conv`` command.

``fc2conv tour`` runs the whole derivation, training included, and writes results and figures;
``fc2conv demo`` runs the derivation's key facts on small arrays in a second; ``fc2conv params``
prints the seed's parameter table for any image size; ``fc2conv ladder`` walks the ladder
dense-on-grid -> locally connected -> convolution on a random image, down (projections) and up
(exact embeddings); ``fc2conv filter`` filters an image of any size tile by tile on Dask;
``fc2conv info`` shows what the numbers will be computed with.
"""

from __future__ import annotations

import argparse
import platform
import sys
from collections.abc import Sequence

import numpy as np

from . import __version__, _blas, convolve, correlate, max_pool
from ._filter_cli import add_filter_parser, run_filter
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


def _params(args: argparse.Namespace) -> None:
    from .analysis import parameter_table

    print(parameter_table(tuple(args.size), args.delta, channels=tuple(args.channels),
                          hidden=args.hidden))


def _ladder(args: argparse.Namespace) -> None:
    size, delta = tuple(args.size), args.delta
    from .ladder import walk

    rows = walk(size, delta, tuple(args.channels), args.seed)
    grid = " x ".join(map(str, size))
    print(f"fc2conv ladder: random {grid} images, C_in = {args.channels[0]} -> C_out = "
          f"{args.channels[1]}, delta = {delta}, shift {tuple(rows['shift'])}, float64\n")
    header = (f"{'rung':44} {'params':>9} {'FLOPs':>10} {'vs above':>9} {'shift err':>9} "
              f"{'interior':>9}  W: shift-inv., radius")
    titles = {"down": "Down: each constraint is a projection (output changes: 'vs above')",
              "up": "Up: each embedding is exact (same outputs)"}
    for part in ("down", "up"):
        print(titles[part])
        print(header)
        for row in rows[part]:
            above = "-" if row["vs_above"] is None else f"{row['vs_above']:.1e}"
            print(f"{row['rung']:44} {row['params']:>9,} {row['flops']:>10,} {above:>9} "
                  f"{row['shift_error']:>9.1e} {row['shift_error_interior']:>9.1e}  "
                  f"{'yes' if row['translation_invariant'] else 'no':3}  {row['radius']}")
        print()
    print("shift err: ||f(roll x) - roll f(x)|| / ||f(x)|| over the whole image; interior: away "
          "from the border\n(|shift| + delta). radius: the largest |offset| with W[i, i+a] != 0 "
          "(around the torus\nfor circular padding).")


def _info() -> None:
    import scipy

    print(f"fc2conv {__version__}, Python {platform.python_version()}, "
          f"NumPy {np.__version__}, SciPy {scipy.__version__}")
    print(f"machine: {platform.machine()}, {platform.processor() or 'cpu'}")
    for line in _blas.report():
        print(line)
    from importlib import metadata

    try:
        numba = f"Numba {metadata.version('numba')}: method='jit' runs depthwise layers"
    except metadata.PackageNotFoundError:
        numba = ("Numba not installed: depthwise layers run on NumPy ('direct'); "
                 "pip install 'fc2conv[jit]' compiles them (several times faster)")
    print(numba)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="fc2conv",
        description="From fully-connected layers to convolutions: N-D convolution, pooling and "
                    "their gradients for NumPy and any array-API library.",
    )
    parser.add_argument("--version", action="version", version=f"fc2conv {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    tour = commands.add_parser(
        "tour", help="the whole derivation, run: parameter table, ladder, edge kernel, "
                     "MNIST-1D table (logistic/MLP/LC/CNN), equivariance, sample efficiency")
    tour.add_argument("--out", default="fc2conv-tour", metavar="DIR",
                      help="where results.json, figures and weights go (default: "
                           "./fc2conv-tour)")
    tour.add_argument("--quick", action="store_true",
                      help="a smaller version (300 steps, 3 sizes) that runs in under a minute")
    tour.add_argument("--seeds", type=int, default=1,
                      help="seeds per model: mean +- std over them (default: 1; the full "
                           "reproduction uses 3)")
    tour.add_argument("--steps", type=int, default=None,
                      help="training steps per model (default: 6000, the paper's; --quick: 300)")
    tour.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    commands.add_parser("demo", help="run the derivation's key facts on small examples")
    commands.add_parser("info", help="show library versions, the BLAS, its kernel and threads, "
                                     "with a hint when a faster setting exists")
    params = commands.add_parser(
        "params", help="the seed's parameter table: dense vs shared vs local vs conv")
    params.add_argument("--size", type=int, nargs="+", default=[1000, 1000], metavar="N",
                        help="image size, 1 to 3 numbers (default: 1000 1000)")
    params.add_argument("--delta", type=int, default=5,
                        help="locality radius: kernel 2*delta+1 (default: 5)")
    params.add_argument("--channels", type=int, nargs=2, default=[1, 1],
                        metavar=("C_IN", "C_OUT"), help="input and output channels (default 1 1)")
    params.add_argument("--hidden", type=int, default=1000,
                        help="hidden units of the image-as-a-vector MLP row (default: 1000)")
    walk = commands.add_parser(
        "ladder", help="walk dense -> locally connected -> conv on a random image")
    walk.add_argument("--size", type=int, nargs="+", default=[12, 12], metavar="N",
                      help="image size, 1 to 3 numbers (default: 12 12)")
    walk.add_argument("--delta", type=int, default=1, help="locality radius (default: 1)")
    walk.add_argument("--channels", type=int, nargs=2, default=[1, 1],
                      metavar=("C_IN", "C_OUT"), help="input and output channels (default 1 1)")
    walk.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    add_filter_parser(commands)
    args = parser.parse_args(argv)
    if args.command == "filter":
        return run_filter(args)
    if args.command in ("params", "ladder"):
        if not 1 <= len(args.size) <= 3:
            parser.error(f"--size takes 1 to 3 numbers; got {len(args.size)}")
        if min(args.size) < 1 or min(args.channels) < 1 or args.delta < 0:
            parser.error("--size and --channels must be positive and --delta non-negative")
    if args.command == "ladder" and args.delta > min(args.size) - 1:
        parser.error(f"--delta must be below the image size; got {args.delta} for "
                     f"{tuple(args.size)}")
    if args.command == "tour" and (args.seeds < 1 or (args.steps is not None
                                                       and args.steps < 1)):
        parser.error(f"--seeds and --steps must be positive; got --seeds {args.seeds}, "
                     f"--steps {args.steps}")
    if args.command == "tour":
        from ._tour import TourSettings, run_tour

        run_tour(args.out, settings=TourSettings.make(quick=args.quick, seeds=args.seeds,
                                                      steps=args.steps),
                 progress=not args.no_progress)
    elif args.command == "demo":
        _demo()
    elif args.command == "params":
        _params(args)
    elif args.command == "ladder":
        _ladder(args)
    elif args.command == "info":
        _info()
    else:
        parser.print_help()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
