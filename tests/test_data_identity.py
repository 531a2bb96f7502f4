"""Stale results: the content identity of a dataset's splits goes into every stage and run key.

Changing one image re-keys exactly what reads it: a training image every stage and run,
a validation or test image only the training runs; a finished run refuses other data.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from genaug.config import ConfigError
from genaug.data import load_splits
from genaug.data.identity import identity_changes, split_identity, splits_identity
from genaug.experiment import load_experiment, run_experiment
from genaug.experiment.graph import build_graph
from genaug.experiment.runner import plan_jobs

TINY_TRAIN = {
    "recipe": "pocket", "epochs": 1, "width": 0.125, "cpu_threads": 1, "batch_size": 8,
    "augmentation": {"image_size": 16}, "logging": {"tensorboard": False, "progress": False},
}  # fmt: skip


def write_tree(root: Path, per_class: int = 10, classes: tuple[str, ...] = ("cat", "dog")) -> Path:
    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(root / name / f"{i:02d}.png")
    return root


def rewrite(path: Path, value: int) -> None:
    """New pixels for the same file name (and a later modification time)."""
    Image.fromarray(np.full((16, 16, 3), value, dtype=np.uint8)).save(path)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))


def rewrite_keeping_split(path: Path, dataset: dict, split: str, first_value: int) -> None:
    """:func:`rewrite` with the first value from ``first_value`` on whose new pixels keep the image
    in ``split``: folder splits are drawn by content, so an edited image may land in another split."""
    image_id = path.relative_to(Path(dataset["root"])).as_posix()
    for value in range(first_value, first_value + 64):
        rewrite(path, value)
        if image_id in load_splits(dataset)[split].ids:
            return
    raise AssertionError(f"no rewrite of {path} stays in {split}")


def experiment_file(tmp_path: Path, root: Path, **dataset) -> Path:
    data = {
        "name": "t",
        "dataset": {"name": "folder", "root": str(root), "image_size": 16, "labels_per_class": "all",
                    "val_fraction": 0.2} | dataset,
        "seeds": [0],
        "train": TINY_TRAIN,
        "stages": {"edits": {"kind": "generate", "regime": "single", "prompts": ["make it red on blue"],
                             "editor": {"name": "instruct", "steps": 2}, "engine": {"batch_size": 16, "progress": False}},
                   # a leakage check against train and test images: it reads the test split too
                   "unleaked": {"kind": "filter", "input": "edits", "filters": [{"name": "dedupe"}]}},
        "arms": [{"name": "baseline"}, {"name": "edits", "data": "edits"}],
    }  # fmt: skip
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def keys(path: Path, out: Path) -> tuple[str, str, list[str]]:
    """The generate stage's key, the dedupe filter's key, the training runs' folders."""
    experiment = load_experiment(path)
    nodes = build_graph(experiment, out / "artifacts")
    jobs = plan_jobs(experiment, nodes, out, ["baseline", "edits"], [0])
    return nodes["edits"].key, nodes["unleaked"].key, [job.run_dir.name for job in jobs]


def test_split_identity_follows_files_and_arrays(tmp_path):
    root = write_tree(tmp_path / "data")
    splits = load_splits({"name": "folder", "root": root, "image_size": 16})
    before = splits_identity(splits)
    assert {name: entry["images"] for name, entry in before.items()} == {"train": 13, "val": 4, "test": 3}  # drawn by content
    assert splits_identity(load_splits({"name": "folder", "root": root, "image_size": 16})) == before

    rewrite_keeping_split(splits["test"].paths[0], {"name": "folder", "root": root, "image_size": 16}, "test", 7)
    after = splits_identity(load_splits({"name": "folder", "root": root, "image_size": 16}))
    assert [after[s] == before[s] for s in ("train", "val", "test")] == [True, True, False]
    assert identity_changes(before, after) == ["test: 3 images, content changed"]

    # Arrays: the pixels themselves.
    pocket = load_splits("pocket_digits")["train"]
    changed = pocket.subset(np.arange(len(pocket)))
    changed.images = changed.images.copy()
    changed.images[3, 0, 0, 0] ^= 1
    assert split_identity(changed)["digest"] != split_identity(pocket)["digest"]
    assert split_identity(pocket.subset(np.arange(len(pocket))))["digest"] == split_identity(pocket)["digest"]


def test_one_changed_image_rekeys_exactly_what_reads_it(tmp_path):
    root = write_tree(tmp_path / "data")
    path = experiment_file(tmp_path, root)
    stage, dedupe, runs = keys(path, tmp_path / "run")
    splits = load_splits(load_experiment(path).dataset)

    # A test image: the runs test on it and the leakage filter compares with it; the
    # generate stage reads only train images.
    rewrite(splits["test"].paths[1], 11)
    stage_after_test, dedupe_after_test, runs_after_test = keys(path, tmp_path / "run")
    assert stage_after_test == stage and dedupe_after_test != dedupe
    assert all(a != b for a, b in zip(runs_after_test, runs))

    # A validation image: only the runs (they select on it).
    rewrite(splits["val"].paths[0], 12)
    stage_after_val, dedupe_after_val, runs_after_val = keys(path, tmp_path / "run")
    assert stage_after_val == stage and dedupe_after_val == dedupe_after_test
    assert all(a != b for a, b in zip(runs_after_val, runs_after_test))

    # A training image: everything.
    rewrite(splits["train"].paths[0], 13)
    stage_after_train, dedupe_after_train, runs_after_train = keys(path, tmp_path / "run")
    assert stage_after_train != stage and dedupe_after_train != dedupe_after_val
    assert all(a != b for a, b in zip(runs_after_train, runs_after_val))

    # Five images added (the photo folder grows): the split changes, so everything re-keys.
    for i in range(5):
        Image.fromarray(np.full((16, 16, 3), 40 + i, dtype=np.uint8)).save(root / "cat" / f"new{i}.png")
    after_add = keys(path, tmp_path / "run")
    assert after_add[0] != stage_after_train and all(a != b for a, b in zip(after_add[2], runs_after_train))

    # A split parameter alone (test_fraction) re-keys as well; nothing changed: same keys.
    assert keys(experiment_file(tmp_path, root, test_fraction=0.3), tmp_path / "run")[0] != after_add[0]
    assert keys(experiment_file(tmp_path, root), tmp_path / "run") == after_add


def test_a_finished_run_refuses_other_data_and_returns_on_the_same(tmp_path):
    from genaug.training import train
    from genaug.training.trainer import DATA_FILE

    from genaug.config import TrainConfig

    root = write_tree(tmp_path / "data")
    train_config = TrainConfig.model_validate(TINY_TRAIN)
    splits = load_splits({"name": "folder", "root": root, "image_size": 16})
    first = train(train_config, splits, tmp_path / "run")
    recorded = json.loads((tmp_path / "run" / DATA_FILE).read_text())
    assert recorded == splits_identity(splits)
    assert train(train_config, splits, tmp_path / "run").test == first.test  # same data: the finished run

    other = load_splits({"name": "folder", "root": root, "image_size": 16, "test_fraction": 0.4})
    with pytest.raises(ConfigError, match=r"other data.*\n  train: 13 images then, 10 images now") as error:
        train(train_config, other, tmp_path / "run")
    assert "test: 3 images then, 8 images now" in str(error.value)


def test_the_train_command_refuses_a_changed_dataset_with_exit_2(tmp_path, capsys, monkeypatch):
    import sys

    from genaug.cli import main

    root = write_tree(tmp_path / "data")
    args = [
        "genaug", "train", "dataset.name=folder", f"dataset.root={root}", "dataset.image_size=16",
        f"output={tmp_path / 'run'}", *[f"train.{k}={v}" for k, v in
        {"recipe": "pocket", "epochs": 1, "width": 0.125, "batch_size": 8, "cpu_threads": 1,
         "augmentation.image_size": 16, "logging.tensorboard": False, "logging.progress": False}.items()],
    ]  # fmt: skip
    monkeypatch.setattr(sys, "argv", args)
    with pytest.raises(SystemExit) as done:
        main()
    assert done.value.code in (0, None)
    monkeypatch.setattr(sys, "argv", [*args, "dataset.test_fraction=0.4"])
    with pytest.raises(SystemExit) as refused:
        main()
    assert refused.value.code == 2
    err = capsys.readouterr().err
    assert "holds a run on other data" in err and "test: 3 images then, 8 images now" in err


@pytest.mark.slow
def test_a_changed_test_image_reruns_the_runs_not_the_stage_and_the_dry_run_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("GENAUG_HOME", str(tmp_path / "home"))
    root = write_tree(tmp_path / "data")
    path = experiment_file(tmp_path, root)
    out = tmp_path / "run"
    quiet = dict(report=False, progress=False, echo=lambda *_: None)
    first = run_experiment(load_experiment(path), out, **quiet)
    assert [stage["cached"] for stage in first["arms"][1]["stages"]] == [False]

    plan: list[str] = []
    run_experiment(load_experiment(path), out, dry_run=True, echo=plan.append)
    text = "\n".join(plan)  # the plan, then its cost
    assert "training runs: 2 (2 finished, 0 to run)" in text and "estimate: nothing to do" in text
    assert "splits changed" not in text and (out / "splits.json").is_file()

    splits = load_splits(load_experiment(path).dataset)
    rewrite_keeping_split(splits["test"].paths[0], load_experiment(path).dataset.model_dump(), "test", 9)
    plan.clear()
    run_experiment(load_experiment(path), out, dry_run=True, echo=plan.append)
    text = "\n".join(plan)
    assert "cached" in text.split("training runs")[0]  # the generate stage read no test image
    assert "training runs: 2 (0 finished, 2 to run)" in text
    assert text.count("to run because the dataset changed since seed-0-") == 2
    assert "(test: 3 images, content changed)" in text
    assert "  test: 1 edited (" in text and "results of this run are not comparable" in text

    second = run_experiment(load_experiment(path), out, **quiet)
    assert [stage["cached"] for stage in second["arms"][1]["stages"]] == [True]
    assert {arm["runs"][0]["dir"] for arm in second["arms"]}.isdisjoint({arm["runs"][0]["dir"] for arm in first["arms"]})

    rewrite_keeping_split(splits["train"].paths[0], load_experiment(path).dataset.model_dump(), "train", 10)
    plan.clear()
    run_experiment(load_experiment(path), out, dry_run=True, echo=plan.append)
    text = "\n".join(plan)
    assert "to run because the images it reads changed since generate-" in text
    assert "(train: 12 images, content changed)" in text
