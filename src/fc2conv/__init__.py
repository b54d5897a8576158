"""fc2conv: from fully-connected layers to convolutions, as fast, tested software.

The functional core: N-D cross-correlation, convolution, transposed convolution and pooling on
NumPy arrays or any array-API array (PyTorch, CuPy, ...), with gradients in
:mod:`fc2conv.functional`.

>>> import numpy as np, fc2conv
>>> x = np.arange(9.0).reshape(1, 1, 3, 3)
>>> fc2conv.correlate2d(x, np.array([[[[0.0, 1.0], [2.0, 3.0]]]]))[0, 0].tolist()
[[19.0, 25.0], [37.0, 43.0]]
"""

from ._aliases import fixed_rank as _fixed_rank
from ._errors import (
    ArgumentError,
    DTypeError,
    Fc2convError,
    MissingDependencyError,
    ShapeError,
)
from .functional import (
    avg_pool,
    conv_transpose,
    convolve,
    correlate,
    dense_grid,
    local_correlate,
    max_pool,
)

__version__ = "0.1.0"

correlate1d, correlate2d, correlate3d = (_fixed_rank(correlate, d) for d in (1, 2, 3))
convolve1d, convolve2d, convolve3d = (_fixed_rank(convolve, d) for d in (1, 2, 3))
conv_transpose1d, conv_transpose2d, conv_transpose3d = (
    _fixed_rank(conv_transpose, d) for d in (1, 2, 3)
)
max_pool1d, max_pool2d, max_pool3d = (_fixed_rank(max_pool, d) for d in (1, 2, 3))
avg_pool1d, avg_pool2d, avg_pool3d = (_fixed_rank(avg_pool, d) for d in (1, 2, 3))
local_correlate1d, local_correlate2d, local_correlate3d = (
    _fixed_rank(local_correlate, d) for d in (1, 2, 3)
)
dense_grid1d, dense_grid2d, dense_grid3d = (_fixed_rank(dense_grid, d) for d in (1, 2, 3))

# doctest collects a module's ``__test__`` strings: this runs the aliases' generated examples.
__test__ = {
    alias.__name__: alias.__doc__
    for alias in (correlate1d, correlate2d, correlate3d, convolve1d, convolve2d, convolve3d,
                  conv_transpose1d, conv_transpose2d, conv_transpose3d, max_pool1d, max_pool2d,
                  max_pool3d, avg_pool1d, avg_pool2d, avg_pool3d, local_correlate1d,
                  local_correlate2d, local_correlate3d, dense_grid1d, dense_grid2d, dense_grid3d)
}

__all__ = [
    "ArgumentError",
    "DTypeError",
    "Fc2convError",
    "MissingDependencyError",
    "ShapeError",
    "__version__",
    "avg_pool",
    "avg_pool1d",
    "avg_pool2d",
    "avg_pool3d",
    "conv_transpose",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "convolve",
    "convolve1d",
    "convolve2d",
    "convolve3d",
    "correlate",
    "correlate1d",
    "correlate2d",
    "correlate3d",
    "dense_grid",
    "dense_grid1d",
    "dense_grid2d",
    "dense_grid3d",
    "local_correlate",
    "local_correlate1d",
    "local_correlate2d",
    "local_correlate3d",
    "max_pool",
    "max_pool1d",
    "max_pool2d",
    "max_pool3d",
]
