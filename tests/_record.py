"""Tally of oracle comparisons, printed at the end of the test run.

Tests call ``record(oracle, dtype, err)`` after each comparison; the terminal summary shows how
many cases ran against each oracle and the largest relative error seen per dtype.
"""

from __future__ import annotations

from collections import defaultdict

CASES: dict[str, int] = defaultdict(int)
MAX_ERROR: dict[tuple[str, str], float] = defaultdict(float)


def record(oracle: str, dtype: object, err: float) -> None:
    key = (oracle, str(dtype).replace("torch.", ""))
    CASES[oracle] += 1
    MAX_ERROR[key] = max(MAX_ERROR[key], float(err))
