"""``fc2conv filter INPUT OUTPUT --kernel NAME|FILE.npy``: filter an image of any size.

The input is read lazily (Zarr chunk by chunk, ``.npy`` memory-mapped), every channel is
correlated with the kernel (``"same"`` size, padding mode of choice at the border) tile by
tile with :func:`fc2conv.scale.correlate`, and the result is streamed to the output, with a
progress bar. This module imports Dask only inside :func:`run_filter`, so ``fc2conv --help``
works without the ``scale`` extra and ``fc2conv filter`` says what to install.

Layouts: a kernel with ``k`` axes filters ``k`` spatial axes. An input with ``k`` axes is one
single-channel image; with ``k + 1`` axes the extra axis is the channel (last for ``.png`` and
``.tif`` files, ``(H, W, C)``; first for ``.zarr``/``.npy``, ``(C, H, W)``); with ``k + 2``
axes it is ``(N, C, *S)``. The output has the input's layout. Integer images are filtered in
float32.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_filter_parser", "run_filter"]

_MODES = ("zeros", "reflect", "symmetric", "replicate", "circular")
_KERNEL_NAMES = ("box", "gaussian", "sharpen", "sobel-x", "sobel-y", "laplacian", "edge-x",
                 "edge-y")


def add_filter_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``filter`` command to the ``fc2conv`` parser's subcommands."""
    parser = subparsers.add_parser(
        "filter", help="filter an image of any size (Zarr, .npy, .png, .tif) with Dask",
        description="Correlate every channel of INPUT with a kernel, tile by tile with Dask "
                    "(needs pip install 'fc2conv[scale]'), and write OUTPUT. "
                    "Formats: .zarr, .npy, .png, .tif/.tiff.")
    parser.add_argument("input", metavar="INPUT", help="image to read (.zarr, .npy, .png, .tif)")
    parser.add_argument("output", metavar="OUTPUT", help="file to write (.zarr, .npy, .png, .tif)")
    parser.add_argument("--kernel", required=True, metavar="NAME|FILE.npy",
                        help=f"one of {', '.join(_KERNEL_NAMES)}, or a .npy array")
    parser.add_argument("--size", type=int, help="width of a box or gaussian kernel (odd)")
    parser.add_argument("--sigma", type=float, help="standard deviation of a gaussian kernel")
    parser.add_argument("--chunks", metavar="N[,N...]",
                        help="tile size along the spatial axes, one number or one per axis "
                             "(default: a Zarr store's chunks, else 1024)")
    parser.add_argument("--padding-mode", choices=_MODES, default="symmetric",
                        help="how the border is extended (default: symmetric, "
                             "scipy.ndimage's 'reflect')")
    parser.add_argument("--convolve", action="store_true",
                        help="flip the kernel (true convolution) instead of correlating")
    parser.add_argument("--scheduler", default="threads",
                        help="threads (default), processes, synchronous, or the address of a "
                             "dask.distributed scheduler (tcp://...)")
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def run_filter(args: argparse.Namespace) -> int:
    """Run ``fc2conv filter``; returns the exit status (2 for bad arguments, with a message)."""
    from ._errors import Fc2convError

    try:
        import dask  # noqa: F401
    except ImportError:
        print("fc2conv filter needs Dask: pip install 'fc2conv[scale]'", file=sys.stderr)
        return 2
    try:
        return _filter(args)
    except (Fc2convError, FileNotFoundError, FileExistsError) as exc:
        print(f"fc2conv filter: error: {exc}", file=sys.stderr)
        return 2


def _filter(args: argparse.Namespace) -> int:
    import numpy as np

    from ._errors import ArgumentError
    from .scale import _io, _ops

    kernel = _load_kernel(args)
    rank = kernel.ndim
    source = Path(args.input)
    if not source.exists():
        raise FileNotFoundError(f"INPUT {str(source)!r} does not exist")
    target = Path(args.output)
    if target.exists() and not args.overwrite:
        raise FileExistsError(f"OUTPUT {str(target)!r} exists; pass --overwrite to replace it")
    channels_last = source.suffix.lower() in (".png", ".tif", ".tiff")
    # Images are small and read whole; .npy is read lazily in Dask's default blocks.
    raw = _io.read(source, chunks=-1 if channels_last else "auto")
    if not rank <= raw.ndim <= rank + 2:
        raise ArgumentError(
            f"a {rank}-D kernel filters inputs with {rank} to {rank + 2} axes; "
            f"{str(source)!r} has shape {raw.shape}")
    x = _to_batch(raw, rank, channels_last)
    if not np.issubdtype(x.dtype, np.floating) or x.dtype.itemsize < 4:
        x = x.astype(np.float32)
    x = x.rechunk(_chunks(args.chunks, x, rank, keep=source.suffix.lower() == ".zarr"))
    channels = x.shape[1]
    w = np.broadcast_to(kernel.astype(x.dtype), (channels, 1, *kernel.shape)).copy()
    op = _ops.convolve if args.convolve else _ops.correlate
    y = op(x, w, padding="same", padding_mode=args.padding_mode, groups=channels)
    y = _from_batch(y, raw.ndim, rank, channels_last)
    if not args.quiet:
        print(f"filtering {str(source)!r} {raw.shape} with a {'x'.join(map(str, kernel.shape))} "
              f"kernel in {y.npartitions} tiles -> {str(target)!r}")
    with _scheduler(args.scheduler, args.quiet):
        _io.write(y, target, overwrite=args.overwrite)
    return 0


def _load_kernel(args: argparse.Namespace) -> Any:
    import numpy as np

    from ._errors import ArgumentError
    from .scale._kernels import KERNELS, named_kernel

    if args.kernel.lower().endswith(".npy"):
        if args.size is not None or args.sigma is not None:
            raise ArgumentError("--size and --sigma apply to named kernels only")
        kernel = np.load(args.kernel)
        if not 1 <= kernel.ndim <= 3 or not np.issubdtype(kernel.dtype, np.number):
            raise ArgumentError(f"--kernel {args.kernel}: need a numeric array with 1 to 3 "
                                f"axes; got shape {kernel.shape}, dtype {kernel.dtype}")
        return kernel.astype(np.float64)
    if args.kernel not in KERNELS:
        raise ArgumentError(f"--kernel must be one of {', '.join(KERNELS)} or a .npy file; "
                            f"got {args.kernel!r}")
    return named_kernel(args.kernel, size=args.size, sigma=args.sigma)


def _to_batch(raw: Any, rank: int, channels_last: bool) -> Any:
    """The stored layout -> ``(N, C, *S)``."""
    if raw.ndim == rank:
        return raw[None, None]
    if raw.ndim == rank + 1:
        return (raw.transpose(rank, *range(rank)) if channels_last else raw)[None]
    return raw


def _from_batch(y: Any, ndim: int, rank: int, channels_last: bool) -> Any:
    """``(N, C, *S)`` -> the stored layout."""
    if ndim == rank:
        return y[0, 0]
    if ndim == rank + 1:
        return y[0].transpose(*range(1, rank + 1), 0) if channels_last else y[0]
    return y


def _chunks(text: str | None, x: Any, rank: int, *, keep: bool) -> dict[int, Any]:
    from ._errors import ArgumentError

    if text is None:  # a Zarr store's chunks are the tiles it was written for: keep them
        return {} if keep else dict.fromkeys(range(2, 2 + rank), 1024)
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        raise ArgumentError(f"--chunks takes N or N,N,...; got {text!r}") from None
    if len(sizes) == 1:
        sizes *= rank
    if len(sizes) != rank or min(sizes) < 1:
        raise ArgumentError(f"--chunks needs 1 or {rank} positive sizes; got {text!r}")
    return {2 + axis: size for axis, size in enumerate(sizes)}


class _scheduler:
    """Run the writes on the chosen scheduler, with a progress bar unless quiet."""

    def __init__(self, name: str, quiet: bool) -> None:
        self.name, self.quiet = name, quiet
        self._stack: list[Any] = []

    def __enter__(self) -> None:
        import dask
        from dask.diagnostics import ProgressBar

        if "://" in self.name:
            from distributed import Client

            client = Client(self.name)
            self._stack.append(client)
            if not self.quiet:
                print(f"on {client.dashboard_link or self.name}")
            return
        if self.name not in ("threads", "processes", "synchronous"):
            from ._errors import ArgumentError

            raise ArgumentError("--scheduler must be threads, processes, synchronous or a "
                                f"tcp:// address; got {self.name!r}")
        self._stack.append(dask.config.set(scheduler=self.name))
        if not self.quiet:
            self._stack.append(ProgressBar(out=sys.stdout))
        for context in self._stack:
            context.__enter__()

    def __exit__(self, *exc: object) -> None:
        for context in reversed(self._stack):
            if hasattr(context, "__exit__"):
                context.__exit__(*exc)
