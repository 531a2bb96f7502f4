"""The experiment runner: config validation, the content-keyed stage graph, runs, results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from genaug.config import ConfigError
from genaug.experiment import load_experiment, run_experiment
from genaug.experiment.config import apply_quick
from genaug.experiment.graph import build_graph, set_dir, stage_order, upstream
from genaug.experiment.runner import plan_jobs

TINY_TRAIN = {"recipe": "pocket", "epochs": 2, "width": 0.125, "cpu_threads": 1, "logging": {"tensorboard": False, "progress": False}}


def write_experiment(tmp_path: Path, **fields) -> Path:
    data = {
        "name": "t",
        "dataset": {"name": "pocket_digits", "labels_per_class": 3},
        "seeds": [0, 1],
        "train": TINY_TRAIN,
        "arms": [{"name": "baseline"}],
    } | fields
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


STAGES = {
    "edits": {"kind": "generate", "regime": "single", "prompts": ["make it red on blue"], "editor": {"name": "instruct", "steps": 2}},
    "mixed": {"kind": "mix", "input": "edits", "methods": ["concat", "fractal"]},
    "top": {"kind": "filter", "input": "mixed/concat", "filters": [{"name": "frames"}]},
}


# ---------------------------------------------------------------------------- config


def test_arms_stages_and_defaults_parse(tmp_path):
    path = write_experiment(
        tmp_path,
        stages=STAGES,
        arms=[{"name": "baseline"}, {"name": "dm", "data": "mixed/fractal"}, {"name": "both", "data": ["edits", "top"]}],
    )
    experiment = load_experiment(path)
    assert experiment.baseline == "baseline"
    assert [arm.policy for arm in experiment.arms] == ["real_only", "concat", "concat"]
    assert experiment.stages["mixed"].params == {"methods": ["concat", "fractal"]}
    assert experiment.arm("both").data_refs == ["edits", "top"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"arms": [{"name": "a", "data": "nowhere"}]}, "no stage named 'nowhere'"),
        ({"arms": [{"name": "a", "data": "mixed"}]}, "write 'mixed/<method>'"),
        ({"arms": [{"name": "a", "data": "mixed/rect"}]}, "makes no 'rect' set"),
        ({"arms": [{"name": "a", "data": "edits/concat"}]}, "one set; write 'edits'"),
        ({"arms": [{"name": "a"}, {"name": "a"}]}, "repeated: a"),
        ({"arms": [{"name": "../x"}]}, "plain folder name"),
        ({"arms": [{"name": "a", "policy": "concat"}]}, "needs synthetic data"),
        ({"baseline": "zzz"}, "baseline 'zzz' is not an arm"),
        ({"seeds": [1, 1]}, "without repeats"),
        ({"stages": {**STAGES, "edits": {**STAGES["edits"], "output": "/tmp/x"}}}, "stages.edits.output is set by the runner"),
        ({"stages": {**STAGES, "mixed": {"kind": "mix", "methods": ["concat"]}}}, "needs 'input'"),
        ({"stages": {**STAGES, "mixed": {"kind": "mix", "input": "top", "methods": ["concat"]}}}, "reads a generate stage"),
        ({"stages": {**STAGES, "edits": {**STAGES["edits"], "regime": "most"}}}, "regime"),
        ({"arms": [{"name": "a", "train": {"epochs": 0}}]}, "epochs must be >= 1"),
    ],
)
def test_bad_experiments_name_the_problem(tmp_path, change, message):
    fields = {"stages": STAGES} | change
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        load_experiment(write_experiment(tmp_path, **fields))


def test_filter_cycle_is_rejected(tmp_path):
    stages = {"a": {"kind": "filter", "input": "b"}, "b": {"kind": "filter", "input": "a"}}
    with pytest.raises(ConfigError, match="cycle"):
        load_experiment(write_experiment(tmp_path, stages=stages))


def test_quick_section_merges_and_selects_arms():
    data = {
        "train": {"recipe": "pocket", "epochs": 60, "width": 0.25},
        "arms": [{"name": "a"}, {"name": "b"}, {"name": "c"}],
        "quick": {"train": {"epochs": 5}, "arms": ["a", "c"], "seeds": [0]},
    }
    quick = apply_quick(data)
    assert quick["train"] == {"recipe": "pocket", "epochs": 5, "width": 0.25}
    assert [arm["name"] for arm in quick["arms"]] == ["a", "c"]
    assert quick["seeds"] == [0]
    with pytest.raises(ConfigError, match="unknown arms: zz"):
        apply_quick({**data, "quick": {"arms": ["zz"]}})


# ---------------------------------------------------------------------------- graph


def test_keys_follow_content_and_inputs(tmp_path):
    experiment = load_experiment(write_experiment(tmp_path, stages=STAGES))
    nodes = build_graph(experiment, tmp_path / "art")
    assert list(nodes) == stage_order(experiment.stages) == ["edits", "mixed", "top"]
    assert nodes["mixed"].dir == tmp_path / "art" / f"mix-{nodes['mixed'].key}"
    assert set_dir(nodes["mixed"], "fractal") == nodes["mixed"].dir / "fractal"
    assert nodes["mixed"].config.generated == nodes["edits"].dir
    assert nodes["top"].config.set_dir == nodes["top"].dir

    # Same fields under another name: same key and folder (shared artifact).
    twin = {**STAGES, "edits_again": STAGES["edits"]}
    nodes_twin = build_graph(load_experiment(write_experiment(tmp_path, stages=twin)), tmp_path / "art")
    assert nodes_twin["edits_again"].key == nodes["edits"].key

    # An upstream change re-keys everything downstream; a downstream change nothing upstream.
    changed = {**STAGES, "edits": {**STAGES["edits"], "prompts": ["make it blue on red"]}}
    nodes_changed = build_graph(load_experiment(write_experiment(tmp_path, stages=changed)), tmp_path / "art")
    assert all(nodes_changed[name].key != nodes[name].key for name in ("edits", "mixed", "top"))
    filtered = {**STAGES, "top": {**STAGES["top"], "filters": [{"name": "frames"}, {"name": "clip_rank"}]}}
    nodes_filtered = build_graph(load_experiment(write_experiment(tmp_path, stages=filtered)), tmp_path / "art")
    assert [nodes_filtered[n].key == nodes[n].key for n in ("edits", "mixed", "top")] == [True, True, False]


def test_upstream_lists_each_needed_stage_once_inputs_first(tmp_path):
    experiment = load_experiment(write_experiment(tmp_path, stages=STAGES))
    nodes = build_graph(experiment, tmp_path / "art")
    assert [node.name for node in upstream(nodes, ["top", "mixed/fractal", "edits"])] == ["edits", "mixed", "top"]
    assert upstream(nodes, []) == []


def test_training_runs_are_keyed_by_config(tmp_path):
    arms = [{"name": "baseline"}, {"name": "dm", "data": "mixed/fractal"}]
    experiment = load_experiment(write_experiment(tmp_path, stages=STAGES, arms=arms))
    nodes = build_graph(experiment, tmp_path / "art")
    jobs = plan_jobs(experiment, nodes, tmp_path, ["baseline", "dm"], [0, 1])
    assert [(job.arm, job.seed) for job in jobs] == [("baseline", 0), ("baseline", 1), ("dm", 0), ("dm", 1)]
    assert jobs[2].sets == (nodes["mixed"].dir / "fractal",)
    assert jobs[2].config.data_policy == "concat" and jobs[0].config.data_policy == "real_only"
    assert len({job.run_dir for job in jobs}) == 4
    longer = load_experiment(write_experiment(tmp_path, stages=STAGES, arms=arms, train={**TINY_TRAIN, "epochs": 3}))
    again = plan_jobs(longer, build_graph(longer, tmp_path / "art"), tmp_path, ["baseline"], [0])
    assert again[0].run_dir != jobs[0].run_dir


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path):
    experiment = load_experiment(write_experiment(tmp_path, stages=STAGES, arms=[{"name": "b"}, {"name": "dm", "data": "top"}]))
    lines = []
    assert run_experiment(experiment, tmp_path / "run", dry_run=True, echo=lines.append) is None
    text = "\n".join(lines)
    assert "edits" in text and "mixed" in text and "top" in text and "to run" in text
    assert "training runs: 4 (0 finished, 4 to run)" in text
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------- running


@pytest.mark.slow
def test_real_only_arms_run_tabulate_and_resume(tmp_path):
    """Two arms x two seeds of real training; a rerun reuses every run."""
    arms = [{"name": "baseline"}, {"name": "mixup", "mixer": "mixup", "description": "input mixup"}]
    experiment = load_experiment(write_experiment(tmp_path, arms=arms))
    out = tmp_path / "run"
    results = run_experiment(experiment, out, report=False, progress=False, echo=lambda *_: None)
    assert [arm["name"] for arm in results["arms"]] == ["baseline", "mixup"]
    base, mix = results["arms"]
    assert [run["seed"] for run in base["runs"]] == [0, 1]
    top1 = [run["top1"] for run in base["runs"]]
    assert base["top1_mean"] == pytest.approx(sum(top1) / 2)
    assert base["top1_std"] == pytest.approx(abs(top1[0] - top1[1]) / 2**0.5)
    assert base["delta_top1"] == 0.0
    assert mix["delta_top1"] == pytest.approx(mix["top1_mean"] - base["top1_mean"])
    assert base["real_samples"] == 30 and base["synthetic_samples"] == 0
    assert all(run["real_samples"] == 2 * 30 and run["synthetic_samples"] == 0 for run in base["runs"])
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["arms"][1]["description"] == "input mixup"
    assert (out / "results.csv").read_text().splitlines()[0].startswith("arm,description,seeds,top1_mean")

    metrics = {p: p.stat().st_mtime_ns for p in (out / "arms").rglob("metrics.json")}
    assert len(metrics) == 4
    again = run_experiment(experiment, out, report=False, progress=False, echo=lambda *_: None)
    assert {p: p.stat().st_mtime_ns for p in (out / "arms").rglob("metrics.json")} == metrics
    assert again["arms"][0]["top1_mean"] == base["top1_mean"]

    # One arm's parameter changes: only that arm trains again.
    arms[1]["mixer_kwargs"] = {"alpha": 0.4}
    changed = load_experiment(write_experiment(tmp_path, arms=arms))
    run_experiment(changed, out, report=False, progress=False, echo=lambda *_: None)
    after = {p: p.stat().st_mtime_ns for p in (out / "arms").rglob("metrics.json")}
    assert {p: t for p, t in after.items() if p in metrics} == metrics
    new = [p for p in after if p not in metrics]
    assert len(new) == 2 and all(p.parts[-3] == "mixup" for p in new)


@pytest.mark.slow
def test_arm_on_generated_mixed_and_filtered_sets(tmp_path, monkeypatch):
    """generate -> mix -> filter on the pocket models, then training on the filtered set."""
    monkeypatch.setenv("GENAUG_HOME", str(tmp_path / "home"))
    stages = {
        "edits": {**STAGES["edits"], "engine": {"batch_size": 16, "progress": False}},
        "mixed": {**STAGES["mixed"], "fractals": {"count": 8, "size": 16}, "progress": False},
        "top": {**STAGES["top"], "progress": False},
    }
    arms = [{"name": "baseline"}, {"name": "dm", "data": "top", "description": "filtered concat"}]
    experiment = load_experiment(write_experiment(tmp_path, stages=stages, arms=arms, seeds=[0]))
    out = tmp_path / "run"
    results = run_experiment(experiment, out, report=False, progress=False, echo=lambda *_: None)
    dm = results["arms"][1]
    assert [stage["name"] for stage in dm["stages"]] == ["edits", "mixed", "top"]
    assert [stage["cached"] for stage in dm["stages"]] == [False, False, False]
    assert dm["stages"][0]["images"] == 30 and dm["stages"][1]["images"] == 60
    nodes = build_graph(experiment, out / "artifacts")
    from genaug.manifest import read_manifest

    filtered = read_manifest(nodes["top"].dir)
    source = read_manifest(set_dir(nodes["mixed"], "concat"))
    assert [r.id for r in filtered] == [r.id for r in source]
    assert all(set(r.scores) == {"black_fraction", "white_fraction"} for r in filtered)
    assert not any(r.scores for r in source)  # the filter scores a copy; its input stays as it was
    assert dm["synthetic_samples"] == sum(r.kept is not False for r in filtered)
    assert dm["runs"][0]["synthetic_samples"] == 2 * dm["synthetic_samples"]

    again = run_experiment(experiment, out, report=False, progress=False, echo=lambda *_: None)
    assert [stage["cached"] for stage in again["arms"][1]["stages"]] == [True, True, True]
