"""Pure functions on arrays: the forward ops and their vector-Jacobian products.

Every op ``f`` has ``f_vjp(grad_out, *array_args, **same_keyword_args)`` returning one gradient
per array argument, in order (``None`` for an absent bias).
"""

from .conv import (
    conv_transpose,
    conv_transpose_vjp,
    convolve,
    convolve_vjp,
    correlate,
    correlate_vjp,
)
from .local import dense_grid, dense_grid_vjp, local_correlate, local_correlate_vjp
from .pool import avg_pool, avg_pool_vjp, max_pool, max_pool_vjp

__all__ = [
    "avg_pool",
    "avg_pool_vjp",
    "conv_transpose",
    "conv_transpose_vjp",
    "convolve",
    "convolve_vjp",
    "correlate",
    "correlate_vjp",
    "dense_grid",
    "dense_grid_vjp",
    "local_correlate",
    "local_correlate_vjp",
    "max_pool",
    "max_pool_vjp",
]
