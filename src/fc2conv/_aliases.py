"""The 1d/2d/3d names: thin aliases of the N-D ops that also check the spatial rank."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from ._validate import check_spatial_rank


def fixed_rank(op: Callable[..., Any], ndim: int) -> Callable[..., Any]:
    name = f"{op.__name__}{ndim}d"

    @functools.wraps(op)
    def alias(x: Any, *args: Any, **kwargs: Any) -> Any:
        check_spatial_rank("x", x, ndim, name)
        return op(x, *args, **kwargs)

    spatial = ", ".join(f"S{i}" for i in range(ndim))
    example_shape = (2, 3) + (8,) * ndim
    alias.__name__ = alias.__qualname__ = name
    alias.__doc__ = (
        f"{op.__name__} with exactly {ndim} spatial dim{'s' * (ndim > 1)}: "
        f"``x: (N, C, {spatial})``.\n\n"
        f"Same arguments and result as :func:`fc2conv.{op.__name__}`; a shape error if ``x`` "
        f"has another rank.\n\n"
        f">>> import numpy as np, fc2conv\n"
        f">>> x = np.ones({example_shape})\n"
        f">>> fc2conv.{name}(x, {_example_args(op.__name__, ndim)}).shape\n"
        f"{_example_result(op.__name__, ndim)}\n"
    )
    return alias


def _example_args(op_name: str, ndim: int) -> str:
    if op_name in ("max_pool", "avg_pool"):
        return "2"
    if op_name == "conv_transpose":
        return f"np.ones({(3, 4) + (3,) * ndim}), stride=2"
    if op_name == "local_correlate":
        return f"np.ones({(8,) * ndim + (4, 3) + (3,) * ndim}), padding=1"
    if op_name == "dense_grid":
        return f"np.ones({(8,) * ndim + (4, 3) + (8,) * ndim})"
    return f"np.ones({(4, 3) + (3,) * ndim}), padding=1"


def _example_result(op_name: str, ndim: int) -> str:
    if op_name in ("max_pool", "avg_pool"):
        return str((2, 3) + (4,) * ndim)
    if op_name == "conv_transpose":
        return str((2, 4) + (17,) * ndim)
    return str((2, 4) + (8,) * ndim)
