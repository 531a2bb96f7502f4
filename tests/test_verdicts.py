"""Verdicts in an experiment: pairing by seed, the matched-compute view, seeds until precise."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from genaug.config import ConfigError
from genaug.experiment import load_experiment, run_experiment
from genaug.experiment.runner import verdict_lines
from genaug.experiment.verdicts import headline

from test_experiment import write_experiment as write_base_experiment

def write_experiment(tmp_path: Path, **fields) -> Path:
    return write_base_experiment(tmp_path, **({"name": "v"} | fields))


def quiet(experiment, out, **kw):
    return run_experiment(experiment, out, report=False, progress=False, echo=lambda *_: None, **kw)


def train_losses(run_dir: Path) -> list[str]:
    with open(run_dir / "metrics.csv", encoding="utf-8") as handle:
        return [row["train_loss"] for row in csv.DictReader(handle)]


@pytest.mark.slow
def test_identical_arms_give_identical_per_seed_results_and_seeds_differ(tmp_path):
    arms = [{"name": "baseline"}, {"name": "twin", "description": "the baseline again, in its own folder"}]
    results = quiet(load_experiment(write_experiment(tmp_path, arms=arms)), tmp_path / "run")
    base, twin = results["arms"]
    assert [run["top1"] for run in base["runs"]] == [run["top1"] for run in twin["runs"]]
    assert base["runs"][0]["dir"] != twin["runs"][0]["dir"]  # trained twice, not shared
    runs = {(arm["name"], run["seed"]): tmp_path / "run" / run["dir"] for arm in results["arms"] for run in arm["runs"]}
    assert train_losses(runs["baseline", 0]) == train_losses(runs["twin", 0])
    assert train_losses(runs["baseline", 0]) != train_losses(runs["baseline", 1])
    (comparison,) = results["comparisons"]
    assert comparison["differences"] == [0.0, 0.0]
    assert (comparison["low"], comparison["high"], comparison["p"]) == (0.0, 0.0, 1.0)
    assert comparison["verdict"] == "too few seeds"  # two seeds never make a verdict


@pytest.mark.slow
def test_matched_view_trains_the_baseline_for_the_matched_steps_and_reuses_equal_runs(tmp_path):
    # 30 real images in batches of 16: 2 steps an epoch, so 2 epochs make 4 steps and 3 make 6.
    arms = [{"name": "baseline"}, {"name": "longer", "train": {"epochs": 3}}]
    path = write_experiment(tmp_path, arms=arms, compute={"matched_steps": 6}, compare=[["baseline", "longer"]])
    out = tmp_path / "run"
    results = quiet(load_experiment(path), out)
    base, longer = results["arms"]
    assert (base["optimizer_steps"], longer["optimizer_steps"]) == (4, 6)
    assert results["views"] == ["natural", "matched"]
    matched = base["views"]["matched"]
    assert matched["optimizer_steps"] == 6 and not matched.get("reused_natural")
    for run in matched["runs"]:
        saved = json.loads((out / run["dir"] / "metrics.json").read_text())
        assert saved["optimizer_steps"] == 6 and run["dir"].startswith("arms/baseline/matched/")
    assert longer["views"]["matched"]["reused_natural"] is True
    assert longer["views"]["matched"]["runs"] == longer["runs"]
    views = sorted((c["view"], c["arm"], c["against"], c["named"]) for c in results["comparisons"])
    assert views == [
        ("matched", "baseline", "longer", True), ("matched", "longer", "baseline", False),
        ("natural", "baseline", "longer", True), ("natural", "longer", "baseline", False),
    ]  # fmt: skip
    named = [c for c in results["comparisons"] if c["named"] and c["view"] == "matched"][0]
    assert named["differences"] == pytest.approx(
        [b["top1"] - l["top1"] for b, l in zip(matched["runs"], longer["runs"])]
    )
    assert any(line.startswith("named comparisons at matched optimizer steps:") for line in verdict_lines(results))
    with open(out / "results.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert rows[1]["matched_steps"] == "6" and rows[0]["optimizer_steps"] == "4"


@pytest.mark.slow
def test_seeds_are_added_in_rounds_until_precise_and_a_rerun_replays_them(tmp_path):
    arms = [{"name": "baseline"}, {"name": "longer", "train": {"epochs": 6}}]
    lines: list[str] = []
    rule = {"min": 2, "max": 4, "halfwidth": 1e-6, "step": 1}
    dataset = {"name": "pocket_digits", "labels_per_class": 10}  # enough to learn something in a few epochs
    experiment = load_experiment(write_experiment(tmp_path, arms=arms, seeds=rule, dataset=dataset))
    assert experiment.seeds == [0, 1] and experiment.seed_rule.max == 4
    out = tmp_path / "run"
    results = run_experiment(experiment, out, report=False, progress=False, echo=lines.append)
    (comparison,) = results["comparisons"]
    assert comparison["halfwidth"] > 1e-6  # these seeds' differences are not all equal
    assert [arm["seeds"] for arm in results["arms"]] == [[0, 1, 2, 3], [0, 1, 2, 3]]
    assert [r["round"] for r in results["seed_rounds"]] == [2, 3]
    assert results["seed_stops"]["longer"].startswith("max seeds (4) reached")
    assert any(line.startswith("round 2: longer +1 seeds") for line in lines)
    runs = sorted((out / "arms").rglob("metrics.json"))
    stamps = [path.stat().st_mtime_ns for path in runs]
    again = run_experiment(experiment, out, report=False, progress=False, echo=lambda *_: None)
    assert [path.stat().st_mtime_ns for path in sorted((out / "arms").rglob("metrics.json"))] == stamps
    assert again["seed_rounds"] == results["seed_rounds"]

    wide = load_experiment(write_experiment(tmp_path, arms=arms, seeds={**rule, "halfwidth": 1e6}, dataset=dataset))
    relaxed = quiet(wide, out)
    assert [arm["seeds"] for arm in relaxed["arms"]] == [[0, 1], [0, 1]] and relaxed["seed_rounds"] == []
    assert relaxed["seed_stops"]["longer"].startswith("precise")


def test_experiment_keys_of_verdicts_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="no arm named 'basline'"):
        load_experiment(write_experiment(tmp_path, compare=[["basline", "baseline"]], arms=[{"name": "baseline"}, {"name": "b"}]))
    with pytest.raises(ConfigError, match="max"):
        load_experiment(write_experiment(tmp_path, seeds={"min": 5, "max": 3}))
    with pytest.raises(ConfigError, match="matched_steps"):
        load_experiment(write_experiment(tmp_path, compute={"matched_steps": 0}))
    with pytest.raises(ConfigError, match="test"):
        load_experiment(write_experiment(tmp_path, stats={"test": "wilcoxon"}))


def _results(deltas: dict[str, list[float]], baseline: list[float], views=("natural",)) -> dict:
    def arm(name, values):
        runs = [{"seed": i, "top1": v} for i, v in enumerate(values)]
        return {"name": name, "runs": runs, "top1_mean": sum(values) / len(values), "top1_std": 1.0,
                "views": {view: {"runs": runs} for view in views}}  # fmt: skip

    arms = [arm("baseline", baseline)] + [arm(name, [b + d for b, d in zip(baseline, ds)]) for name, ds in deltas.items()]
    return {"experiment": "x", "baseline": "baseline", "views": list(views), "arms": arms, "dataset": {"test": 451}}


def test_headline_names_a_best_arm_only_when_resolved():
    from genaug.experiment.verdicts import comparisons

    baseline = [50.0, 52.0, 49.0, 51.0, 50.0, 53.0]
    resolved = _results({"big": [9.0, 10.0, 11.0, 10.0, 9.5, 10.5], "small": [1.0, -1.0, 2.0, 0.0, -2.0, 1.0]}, baseline)
    resolved["comparisons"] = [c.to_json() for c in comparisons(resolved)]
    text = headline(resolved)
    assert text.startswith("Best at the recipe's epochs: big, +10.0 [") and "6 seeds" in text
    unresolved = _results({"small": [1.0, -1.0, 2.0, 0.0, -2.0, 1.0]}, baseline)
    unresolved["comparisons"] = [c.to_json() for c in comparisons(unresolved)]
    text = headline(unresolved)
    assert text.startswith("No arm is resolved better than baseline at the recipe's epochs")
    assert "small +0.2 [" in text and "seeds would resolve" in text


def test_headline_with_too_few_seeds_says_no_verdict():
    from genaug.experiment.verdicts import comparisons

    two = _results({"big": [9.0, 10.0]}, [50.0, 52.0])
    two["comparisons"] = [c.to_json() for c in comparisons(two)]
    assert headline(two).startswith("No verdict at the recipe's epochs: 2 paired seed(s), and a verdict needs 3.")
