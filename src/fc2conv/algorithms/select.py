"""Choosing the algorithm for ``method="auto"``.

For now two GEMM formulations compete. im2col does one large GEMM but first copies the input
K times into a column buffer; shift-and-GEMM does K smaller GEMMs with no buffer. The column
copy dominates when the contraction per offset (C_in/G) is already long, or when the buffer
would be large, so im2col is chosen only for short contractions and a buffer within budget.
"""

from __future__ import annotations

import math

from .._validate import ConvSpec

__all__ = ["COLUMN_BUDGET_ELEMENTS", "choose"]

# 32 Mi elements (128 MiB in float32): larger column buffers page-fault more than they save.
COLUMN_BUDGET_ELEMENTS = 1 << 25
# Above this many input channels per group one GEMM per offset is already efficient.
SHIFT_MIN_CHANNELS = 64


def choose(spec: ConvSpec, step: str = "correlate") -> str:
    """The method ``"auto"`` resolves to for one step of this layer: ``"correlate"``,
    ``"input_grad"`` or ``"weight_grad"``."""
    if spec.method != "auto":
        return spec.method
    kernel_volume = math.prod(spec.kernel)
    if kernel_volume == 1:
        return "shift"  # a 1x1 kernel is one GEMM on the (strided) input: nothing to stack
    c_per_group = spec.in_channels // spec.groups
    if c_per_group == 1:
        return "shift"  # depthwise: broadcast multiply-adds beat a stack of tiny GEMMs
    columns = c_per_group * kernel_volume * spec.batch * math.prod(spec.out_size) * spec.groups
    if c_per_group >= SHIFT_MIN_CHANNELS or columns > COLUMN_BUDGET_ELEMENTS:
        return "shift"
    return "im2col"
