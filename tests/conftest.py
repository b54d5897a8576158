"""Shared test settings: Hypothesis profiles and the oracle tally.

Profiles: ``ci`` (default, 100 examples per test, a representative sample that keeps CI
within minutes on 2 cores) and ``full`` (``FC2CONV_FULL=1``: 400 examples per test, and the
``slow`` tests run too).
"""

from __future__ import annotations

import os

import pytest
from _record import CASES, MAX_ERROR
from hypothesis import HealthCheck, settings

FULL = os.environ.get("FC2CONV_FULL") == "1"

settings.register_profile(
    "ci",
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.register_profile(
    "full",
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.load_profile("full" if FULL else "ci")


def pytest_collection_modifyitems(config, items):
    if FULL or config.getoption("-m"):
        return
    skip_slow = pytest.mark.skip(reason="slow sample: run with FC2CONV_FULL=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


def pytest_terminal_summary(terminalreporter):
    if not CASES:
        return
    terminalreporter.section("oracle comparisons")
    for oracle in sorted(CASES):
        errors = ", ".join(
            f"max rel err {dtype}: {err:.3g}"
            for (name, dtype), err in sorted(MAX_ERROR.items())
            if name == oracle
        )
        terminalreporter.write_line(f"{oracle}: {CASES[oracle]} cases; {errors}")
