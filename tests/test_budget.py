"""Budget parity: exact counts per class, the same subsample for the same seed, recorded; config checks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from genaug.config import ConfigError
from genaug.data.base import RealDataset
from genaug.data.synthetic import load_synthetic_set
from genaug.experiment import load_experiment
from genaug.experiment.budget import BUDGET_FILE, BudgetConfig, BudgetError, class_quota, subsample
from genaug.manifest import SampleRecord, SetWriter

CLASSES = ["zero", "one", "two"]


def real_train(counts: list[int]) -> RealDataset:
    labels = np.repeat(np.arange(len(counts)), counts)
    images = np.zeros((len(labels), 2, 2, 3), dtype=np.uint8)
    return RealDataset("toy", "train", CLASSES, labels, [f"r{i}" for i in range(len(labels))], images=images)


def write_set(folder, per_class: list[int], prefix: str, dropped: int = 0):
    """A set with ``per_class[c]`` kept images of class c (plus ``dropped`` not kept of class 0)."""
    with SetWriter(folder) as writer:
        for label, count in enumerate(per_class):
            for i in range(count + (dropped if label == 0 else 0)):
                item = f"{prefix}{label}_{i:02d}"
                record = SampleRecord(id=item, path=writer.image_path(item, CLASSES[label]), label=label,
                                      class_name=CLASSES[label], method="toy", kept=i < count)
                writer.add(record, np.full((2, 2, 3), 10 * label + i, dtype=np.uint8))
    return folder


def test_quota_rounds_halves_up():
    assert [class_quota(0.5, n) for n in (1, 2, 3, 4, 5)] == [1, 1, 2, 2, 3]
    assert class_quota(3, 7) == 21 and class_quota(0.1, 4) == 0


def test_subsample_has_exact_counts_is_reproducible_and_recorded(tmp_path):
    real = real_train([4, 3, 5])
    a = write_set(tmp_path / "a", [6, 2, 5], "a", dropped=3)
    b = write_set(tmp_path / "b", [3, 4, 5], "b")
    sources = [("ka", a), ("kb", b)]
    record = subsample("arm", sources, tmp_path / "budget-x", BudgetConfig(synthetic_per_real=1.5, seed=7), real)
    # round(1.5 * n): 6, 5 (4.5 rounds up), 8 (7.5 rounds up)
    assert record["per_class"] == {
        "zero": {"real": 4, "available": 9, "chosen": 6},
        "one": {"real": 3, "available": 6, "chosen": 5},
        "two": {"real": 5, "available": 10, "chosen": 8},
    }
    assert record["images"] == 19 and record["synthetic_per_real"] == 1.5 and record["seed"] == 7
    loaded = [load_synthetic_set(tmp_path / "budget-x" / f"set-{i}", class_names=CLASSES) for i in (0, 1)]
    counts = sum(np.bincount(s.labels, minlength=3) for s in loaded)
    assert counts.tolist() == [6, 5, 8]
    assert all(s.ids == sorted(s.ids) for s in loaded)
    assert all(not i.startswith("a0_0") or int(i[-2:]) < 6 for i in loaded[0].ids)  # dropped records are never drawn
    assert [s.ids for s in loaded] == [record["ids"]["set-0"], record["ids"]["set-1"]]
    assert json.loads((tmp_path / "budget-x" / BUDGET_FILE).read_text()) == record
    # Images are linked, not copied, and read back as the source's.
    first = loaded[0]
    assert np.array_equal(np.asarray(first.image(0)), np.asarray(load_synthetic_set(a, class_names=CLASSES).image(
        load_synthetic_set(a, class_names=CLASSES).ids.index(first.ids[0]))))

    again = subsample("arm", sources, tmp_path / "budget-y", BudgetConfig(synthetic_per_real=1.5, seed=7), real)
    assert again["ids"] == record["ids"]
    other = subsample("arm", sources, tmp_path / "budget-z", BudgetConfig(synthetic_per_real=1.5, seed=8), real)
    assert other["ids"] != record["ids"]
    assert {k: v["chosen"] for k, v in other["per_class"].items()} == {"zero": 6, "one": 5, "two": 8}


def test_a_class_short_of_its_share_is_one_line_and_writes_no_record(tmp_path):
    real = real_train([4, 3, 5])
    a = write_set(tmp_path / "a", [4, 2, 5], "a")
    with pytest.raises(BudgetError, match=r"arm 'dm': budget.synthetic_per_real 1 needs 3 synthetic images of class 'one' \(3 real\), its sets keep 2") as error:
        subsample("dm", [("ka", a)], tmp_path / "budget-x", BudgetConfig(synthetic_per_real=1), real)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "budget-x" / BUDGET_FILE).exists()


def write_experiment(tmp_path, **fields):
    data = {"name": "t", "dataset": {"name": "pocket_digits", "labels_per_class": 3}, "seeds": [0],
            "stages": {"edits": {"kind": "generate", "prompts": ["make it red on blue"]}},
            "arms": [{"name": "baseline"}, {"name": "dm", "data": "edits"}]} | fields
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"arms": [{"name": "baseline"}, {"name": "dm", "data": "edits", "budget": "parity"}]},
         "arms dm ask for budget parity: set budget"),
        ({"budget": {"synthetic_per_real": 1}, "arms": [{"name": "baseline", "budget": "parity"}]},
         "budget 'parity' subsamples synthetic data: set 'data'"),
        ({"budget": {"synthetic_per_real": 0}}, "budget.synthetic_per_real"),
        ({"budget": {"synthetic_per_real": 1, "sed": 0}}, "budget.sed"),
        ({"arms": [{"name": "dm", "data": "edits", "budget": "equal"}]}, "budget"),
        ({"metrics": {"k": 0}}, "metrics.k"),
    ],
)
def test_bad_budget_and_metrics_settings_name_the_key(tmp_path, fields, message):
    with pytest.raises(ConfigError, match=message):
        load_experiment(write_experiment(tmp_path, **fields))


def test_parity_arms_get_their_own_sets_and_run_keys(tmp_path):
    from genaug.experiment.graph import build_graph
    from genaug.experiment.runner import plan_jobs

    arms = [{"name": "baseline"}, {"name": "dm", "data": "edits"}, {"name": "dm@parity", "data": "edits", "budget": "parity"},
            {"name": "dm@parity2", "data": "edits", "budget": "parity", "description": "same data, same subsample"}]
    experiment = load_experiment(write_experiment(tmp_path, arms=arms, budget={"synthetic_per_real": 1}))
    identity = {"train": {"digest": "t"}, "val": {"digest": "v"}, "test": {"digest": "x"}}
    nodes = build_graph(experiment, tmp_path / "artifacts", identity)
    jobs = {job.arm: job for job in plan_jobs(experiment, nodes, tmp_path / "run", [a["name"] for a in arms], [0], identity)}
    assert jobs["dm"].sets == (nodes["edits"].dir,)
    assert jobs["dm@parity"].sets[0].parent.name.startswith("budget-") and jobs["dm@parity"].sets[0].name == "set-0"
    assert jobs["dm@parity"].sets == jobs["dm@parity2"].sets
    assert jobs["dm"].run_dir.name != jobs["dm@parity"].run_dir.name
    # Another budget or seed is another subsample.
    other = load_experiment(write_experiment(tmp_path, arms=arms, budget={"synthetic_per_real": 1, "seed": 1}))
    other_jobs = {job.arm: job for job in plan_jobs(other, build_graph(other, tmp_path / "artifacts", identity),
                                                    tmp_path / "run", ["dm", "dm@parity"], [0], identity)}
    assert other_jobs["dm"].run_dir == jobs["dm"].run_dir
    assert other_jobs["dm@parity"].sets != jobs["dm@parity"].sets


def test_metrics_clip_is_the_stages_unless_set(tmp_path):
    from genaug.experiment.set_metrics import metrics_clip

    assert metrics_clip(load_experiment(write_experiment(tmp_path))) == "pocket"
    stages = {"edits": {"kind": "generate", "prompts": ["make it red on blue"]},
              "top": {"kind": "filter", "input": "edits", "clip": "openai/clip-vit-base-patch32"}}
    assert metrics_clip(load_experiment(write_experiment(tmp_path, stages=stages))) == "openai/clip-vit-base-patch32"
    assert metrics_clip(load_experiment(write_experiment(tmp_path, stages=stages, metrics={"clip": "pocket"}))) == "pocket"
