"""``fc2conv tour --quick``: runs end to end and writes a valid results.json, figures and
weights."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest

from fc2conv import cli, train
from fc2conv._tour import TourSettings, edge_kernel_example
from fc2conv.models import MNIST1D_MODELS, mnist1d_model


@pytest.fixture(scope="module")
def tour(tmp_path_factory):
    out = tmp_path_factory.mktemp("tour")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert cli.main(["tour", "--quick", "--out", str(out), "--no-progress"]) == 0
    return out, json.loads((out / "results.json").read_text()), printed.getvalue()


def test_quick_tour_writes_results(tour):
    _out, results, _ = tour
    assert results["settings"]["quick"] is True and results["settings"]["steps"] == 300
    table = results["mnist1d"]["table"]
    assert {(r["model"], r["variant"]) for r in table} == {
        (m, v) for m in MNIST1D_MODELS for v in ("normal", "shuffled")}
    params = {r["model"]: r["params"] for r in table}
    assert params["cnn"] == 5210 and params["mlp"] == 15210 and params["logistic"] == 410
    for row in table:
        assert 0.0 <= row["test_acc_mean"] <= 1.0 and row["seconds_mean"] > 0
        assert row["test_acc"] == [pytest.approx(row["test_acc_mean"])]
    published = {(r["model"], r["variant"]): r["published"] for r in table}
    assert published[("cnn", "normal")] == 0.94 and published[("cnn", "shuffled")] == 0.56
    assert published[("lc", "normal")] is None
    # even 300 steps separate the CNN from logistic regression
    acc = {(r["model"], r["variant"]): r["test_acc_mean"] for r in table}
    assert acc[("cnn", "normal")] > acc[("logistic", "normal")] + 0.2
    assert len(results["mnist1d"]["runs"]) == 10


def test_quick_tour_sections(tour):
    _, results, _ = tour
    assert results["ladder"]["exact"] and results["ladder"]["max_up_change"] < 1e-12
    assert [round(w, 5) for w in results["edge_kernel"]["learned"]] == [0.98847, -0.98847]
    assert results["parameter_table"]["rows"][0]["weights"] == 10**12
    assert set(results["shift"]) == set(MNIST1D_MODELS)
    assert results["shift"]["mlp"]["feature_shift_error"] is None
    assert results["shift"]["cnn"]["feature_shift_error"] >= 0
    sizes = {(r["model"], r["train_size"]) for r in results["sample_efficiency"]}
    assert sizes == {(m, n) for m in ("mlp", "lc", "cnn") for n in (250, 1000, 4000)}


def test_quick_tour_files(tour):
    out, results, _ = tour
    assert set(results["figures"]) == {"first_layers", "feature_maps", "sample_efficiency",
                                       "training_curves"}
    for path in results["figures"].values():
        with open(path, "rb") as file:
            assert file.read(8) == b"\x89PNG\r\n\x1a\n"
    # the weights load into a fresh model of the same architecture and reproduce the accuracy
    cnn = mnist1d_model("cnn", rng=99)
    meta = train.load_checkpoint(results["weights"]["cnn"], cnn)
    assert meta["model"] == "cnn"
    from fc2conv.data import mnist1d

    data = mnist1d()
    accuracy = float(np.mean(cnn(data.x_test).argmax(1) == data.y_test))
    assert accuracy == pytest.approx(meta["test_acc"])
    assert not list(out.glob("**/*.tmp"))


def test_tour_prints_the_table_beside_the_published_one(tour):
    *_, printed = tour
    table = printed[printed.index("4. MNIST-1D"):printed.index("5. Shift")]
    assert "pub" in table and "GRU (published only)" in table
    cnn_line = next(line for line in table.splitlines() if "CNN (paper's ConvBase)" in line)
    assert "5,210" in cnn_line and " 94 " in cnn_line and " 56 " in cnn_line
    assert "--quick: 300 steps" in table
    for section in ("1. From a fully-connected", "2. The ladder", "3. Learning a kernel",
                    "6. Sample efficiency", "results.json", "Tour finished"):
        assert section in printed


def test_tour_rejects_bad_arguments(capsys, tmp_path):
    for args in (["--seeds", "0"], ["--steps", "-1"]):
        with pytest.raises(SystemExit):
            cli.main(["tour", *args, "--out", str(tmp_path)])
        assert "must be positive" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_settings():
    quick = TourSettings.make(quick=True)
    assert quick.steps == 300 and quick.sizes == (250, 1000, 4000)
    full = TourSettings.make(seeds=3)
    assert full.steps == 6000 and full.seeds == (0, 1, 2)
    assert full.sizes == (250, 500, 1000, 2000, 4000)


def test_edge_kernel_example_is_exact():
    result = edge_kernel_example(steps=10)
    np.testing.assert_allclose(result["learned"], result["expected"], rtol=1e-12)
    assert result["losses"][0] > result["losses"][-1]
