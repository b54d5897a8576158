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
from .pool import avg_pool, avg_pool_vjp, max_pool, max_pool_vjp

__all__ = [
    "correlate",
    "convolve",
    "conv_transpose",
    "max_pool",
    "avg_pool",
    "correlate_vjp",
    "convolve_vjp",
    "conv_transpose_vjp",
    "max_pool_vjp",
    "avg_pool_vjp",
]
