"""Measure the inductive biases: parameters, FLOPs, receptive fields, equivariance.

>>> import numpy as np, fc2conv
>>> from fc2conv import analysis, nn
>>> [row.weights for row in analysis.parameter_table((1000, 1000), 5).rows[:4]]
[1000000000000, 3996001, 121000000, 121]
>>> conv = nn.Conv2d(1, 4, 3, padding=1, padding_mode="circular", dtype=np.float64, rng=0)
>>> x = np.random.default_rng(0).standard_normal((2, 1, 16, 16))
>>> analysis.shift_error(conv, x, (3, -5)) < 1e-12                # exactly equivariant
True
"""

from ._counts import ReceptiveField, count_flops, count_params, receptive_field
from ._equivariance import invariance_error, shift, shift_error
from ._table import ParameterTable, Row, parameter_table

__all__ = [
    "ParameterTable",
    "ReceptiveField",
    "Row",
    "count_flops",
    "count_params",
    "invariance_error",
    "parameter_table",
    "receptive_field",
    "shift",
    "shift_error",
]
