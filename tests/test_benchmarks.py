"""The arithmetic of ``benchmarks/calibrate_select.py`` (not its timings, which are a
benchmark's business): the fit of the cost model's constants and the report of ``auto``'s
picks, per step and per layer."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("scipy")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import calibrate_select as cs
from bench_conv import SUITE

from fc2conv.algorithms import select

CASES = [c for c in SUITE + cs.EXTRA if c.name in ("lenet1", "lenet2", "resnet-mid",
                                                    "depthwise", "mid-5x5", "dw-s2-28")]


def _synthetic(scale: dict[tuple[str, str], float] | None = None,
               margin: bool = True) -> list[dict]:
    """Results whose every timing is the model's prediction (times ``scale[method, step]``;
    with ``margin=False`` the fitted model's, without a method's ``MARGIN``)."""
    results = []
    for case in CASES:
        spec = cs._layer(case)[3]
        found = {}
        for method in select.METHODS:
            for step in cs.STEPS:
                parts = select.parts(spec, method, step)
                if parts is None:
                    continue
                seconds = select.predict(spec, method, step, margin=margin) * (scale or {}).get(
                    (method, step), 1.0)
                found[method, step] = (seconds, parts)
        results.append({"case": case, "spec": spec, "found": found})
    return results


def test_fit_reproduces_timings_made_by_the_model() -> None:
    """Timings that are exactly the model's predictions are fitted back to within a few
    per cent (the constants themselves need not come back: parts can be collinear)."""
    results = _synthetic(margin=False)
    fitted = cs.fit(results)
    for result in results:
        for (method, step), (seconds, _) in result["found"].items():
            again = select.predict(result["spec"], method, step, fitted, margin=False)
            assert again == pytest.approx(seconds, rel=0.05), (result["case"].name, method,
                                                                step)


def test_report_flags_slow_picks_per_step_and_per_layer(capsys) -> None:
    """When the method ``auto`` picks measures 1.5x slower than it predicts (and so than the
    next one), the report returns that ratio, flags the step and the layer's forward +
    backward; with timings equal to the predictions nothing is flagged."""
    assert cs.report(_synthetic(), select.SECONDS_PER_UNIT) == pytest.approx(1.0)
    assert "<-" not in capsys.readouterr().out
    spec = cs._layer(next(c for c in CASES if c.name == "resnet-mid"))[3]
    pick = select.choose(spec, "correlate")
    results = _synthetic({(pick, "correlate"): 10.0})
    worst = cs.report(results, select.SECONDS_PER_UNIT)
    out = capsys.readouterr().out
    assert worst > 1.1
    flagged = [line.split()[0] for line in out.splitlines() if line.endswith("<-")]
    assert flagged.count("resnet-mid") == 2  # its forward, and its forward + backward


def test_bad_arguments_get_a_parser_error(capsys) -> None:
    """Held-out layers are for checking, not fitting; unknown cases and rounds are named."""
    for argv, message in ((["--held-out"], "pass --check"),
                          (["--check", "--cases", "nope"], "unknown case(s) ['nope']"),
                          (["--check", "--repeat", "0"], "--repeat takes")):
        with pytest.raises(SystemExit):
            cs.main(argv)
        assert message in capsys.readouterr().err
