"""The runner with set metrics and budget parity, on a tiny generated set (slow: runs the pocket models)."""

from __future__ import annotations

import csv
import json

import pytest

from genaug.experiment import load_experiment, run_experiment
from genaug.experiment.runner import metrics_table

from test_experiment import STAGES, write_experiment


@pytest.mark.slow
def test_every_data_arm_gets_cached_set_metrics_and_parity_arms_a_recorded_subsample(tmp_path, monkeypatch):
    monkeypatch.setenv("GENAUG_HOME", str(tmp_path / "home"))
    stages = {"edits": {**STAGES["edits"], "engine": {"batch_size": 16, "progress": False}}}
    arms = [
        {"name": "baseline"},
        {"name": "dm", "data": "edits"},
        {"name": "dm@half", "data": "edits", "budget": "parity", "description": "half a synthetic image per real one"},
    ]
    path = write_experiment(tmp_path, stages=stages, arms=arms, seeds=[0], budget={"synthetic_per_real": 0.5, "seed": 3})
    experiment = load_experiment(path)
    out = tmp_path / "run"
    results = run_experiment(experiment, out, report=False, progress=False, echo=lambda *_: None)
    base, dm, half = results["arms"]
    assert "set_metrics" not in base and "budget" not in dm
    # 3 real images per class: round(0.5 * 3) = 2 of each class's 3 edits.
    assert dm["synthetic_samples"] == 30 and half["synthetic_samples"] == 20
    assert half["budget"]["per_class"] == {name: {"real": 3, "available": 3, "chosen": 2}
                                           for name in results["dataset"]["class_names"]}
    record = json.loads((out / half["budget"]["dir"] / "budget.json").read_text())
    assert record["seed"] == 3 and len(record["ids"]["set-0"]) == 20
    assert half["runs"][0]["synthetic_samples"] == 2 * 20  # two epochs over the subsample
    assert half["images_per_second"] == dm["images_per_second"]  # the stage's rate, not the subsample's

    for entry, images in ((dm, 30), (half, 20)):
        metrics = entry["set_metrics"]
        assert metrics["images"] == images and metrics["real_images"] == 30 and metrics["classes"] == 10
        assert metrics["classifier"] == base["runs"][0]["dir"]  # the baseline's first seed judges
        assert metrics["clip"]["id"] == "pocket:clip"
        for key in ("fd", "fd_class_mean", "precision", "recall", "density", "coverage", "fidelity_clip",
                    "fidelity_classifier", "diversity"):
            assert isinstance(metrics[key], float), key
        assert 0 <= metrics["coverage"] <= 1 and 0 <= metrics["fidelity_classifier"] <= 1
        assert len(metrics["fd_per_class"]) == 10
        assert json.loads((out / metrics["file"]).read_text())["key"] == metrics["key"]
    assert dm["set_metrics"]["key"] != half["set_metrics"]["key"]
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert rows[1]["budget"] == "natural 1x" and rows[2]["budget"] == "parity 0.5x (seed 3)"
    assert float(rows[2]["coverage"]) == half["set_metrics"]["coverage"] and rows[0]["fd"] == ""
    assert metrics_table(results).row_count == 3  # two arms and the real images' reference row

    # A rerun computes nothing again: metrics and the subsample are read back.
    files = {p: p.stat().st_mtime_ns for p in [*(out / "artifacts").glob("metrics-*/metrics.json"),
                                               *(out / "artifacts").glob("budget-*/budget.json")]}
    assert len(files) == 3
    lines = []
    again = run_experiment(experiment, out, report=False, progress=False, echo=lines.append)
    assert {p: p.stat().st_mtime_ns for p in files} == files
    assert not [line for line in lines if line.startswith(("metrics of", "budget parity"))]
    assert again["arms"][2]["set_metrics"] == half["set_metrics"]
