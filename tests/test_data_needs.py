"""Checks before work: what each method declares it needs of the data stops a run in one line
before any stage runs (images per class, image size, empty classes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from genaug.config import ConfigError
from genaug.data import load_splits
from genaug.data.needs import DataNeeds, image_side, need_problems
from genaug.experiment import load_experiment, run_experiment

TINY_TRAIN = {
    "recipe": "pocket", "epochs": 1, "width": 0.125, "cpu_threads": 1, "batch_size": 8,
    "augmentation": {"image_size": 16}, "logging": {"tensorboard": False, "progress": False},
}  # fmt: skip


def tree(root: Path, counts: dict[str, int], side: int = 16) -> Path:
    rng = np.random.default_rng(0)
    for name, count in counts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(root / name / f"{i:02d}.png")
    return root


def experiment(tmp_path: Path, root: Path, stages: dict | None = None, train: dict | None = None, **dataset) -> Path:
    data = {
        "name": "needs",
        "dataset": {"name": "folder", "root": str(root), "image_size": 16, "test_fraction": 0.2} | dataset,
        "seeds": [0],
        "train": TINY_TRAIN | (train or {}),
        "stages": stages or {},
        "arms": [{"name": "baseline"}] + [{"name": name, "data": name} for name in (stages or {})],
    }
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def stops_in_one_line(path: Path, out: Path, pattern: str) -> str:
    """Both the dry run and the run raise one line matching ``pattern``; nothing is written."""
    plan: list[str] = []
    with pytest.raises(ConfigError) as dry:
        run_experiment(load_experiment(path), out, dry_run=True, echo=plan.append)
    with pytest.raises(ConfigError) as real:
        run_experiment(load_experiment(path), out, report=False, progress=False, echo=lambda *_: None)
    for error in (dry, real):
        message = str(error.value)
        assert "\n" not in message and __import__("re").search(pattern, message), message
    assert not out.exists()  # no stage ran, nothing was written
    return str(real.value)


DAFUSION = {"kind": "generate", "editor": {"name": "dafusion", "steps": 2}, "engine": {"progress": False}}


def test_dafusion_declares_one_image_per_class_and_a_one_image_class_passes_the_checks(tmp_path):
    # DA-Fusion runs 1-shot (the paper does): its declared need is one image per class, so a
    # one-image class passes the checks before work, and a class with none is stopped.
    from genaug.generation.editors import EDITORS

    [declared] = EDITORS["dafusion"].data_needs(None)
    assert declared.per_class == 1
    root = tree(tmp_path / "data", {"cat": 12, "lone": 2, "dog": 12})  # 'lone' keeps one image in train
    splits = load_splits({"name": "folder", "root": str(root), "image_size": 16, "test_fraction": 0.2})
    assert need_problems(splits["train"], declared) == []
    plan: list[str] = []
    assert run_experiment(load_experiment(experiment(tmp_path, root, {"words": DAFUSION})), tmp_path / "run",
                          dry_run=True, echo=plan.append) is None  # fmt: skip
    assert not any("needs at least" in line for line in plan)


def test_the_need_mechanism_counts_each_class_that_has_images():
    splits = load_splits("pocket_digits")
    train = splits["train"]
    assert need_problems(train, DataNeeds(who="x", per_class=10)) == []
    [line] = need_problems(train, DataNeeds(who="stages.s.editor e", per_class=11, why="because"))
    assert line.startswith("stages.s.editor e needs at least 11 real training images per class (because); 10 class(es)")
    [line] = need_problems(train, DataNeeds(who="y", classes=11))
    assert line == "y needs at least 11 classes; the dataset has 10"
    assert image_side(train) == 16


def test_an_empty_class_stops_the_run_unless_allowed(tmp_path):
    root = tree(tmp_path / "data", {"cat": 12, "dog": 12})
    (root / "empty").mkdir()
    stops_in_one_line(experiment(tmp_path, root), tmp_path / "run", r"1 class\(es\) have no training image: 'empty'")
    plan: list[str] = []
    run_experiment(load_experiment(experiment(tmp_path, root, allow_empty_classes=True)), tmp_path / "run", dry_run=True, echo=plan.append)
    assert "training runs: 1 (0 finished, 1 to run)" in "\n".join(plan)


def test_16_px_data_with_a_64_px_recipe_stops_before_any_stage(tmp_path):
    root = tree(tmp_path / "data", {"cat": 12, "dog": 12}, side=16)
    path = experiment(tmp_path, root, {"words": DAFUSION}, train={"augmentation": {"image_size": 64, "crop": 64}}, image_size=64)
    stops_in_one_line(path, tmp_path / "run", r"train \(recipe 'pocket'\) needs images of at least 64 px .*images are 16 px \(arms 'baseline', 'words'\)")


def test_the_file_is_validated_before_its_quick_section_is_merged_and_after(tmp_path):
    root = tree(tmp_path / "data", {"cat": 4, "dog": 4})
    path = experiment(tmp_path, root, train={"epochs": -3})
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    path.write_text(yaml.safe_dump({**data, "quick": {"train": {"epochs": 1}}}), encoding="utf-8")
    for quick in (False, True):
        with pytest.raises(ConfigError, match="epochs must be >= 1, got -3"):
            load_experiment(path, quick=quick)
    path.write_text(yaml.safe_dump({**data, "train": TINY_TRAIN, "quick": {"train": {"epochs": -3}}}), encoding="utf-8")
    assert load_experiment(path).train["epochs"] == 1
    with pytest.raises(ConfigError, match="epochs must be >= 1, got -3"):
        load_experiment(path, quick=True)


# ---------------------------------------------------------------------------- standalone commands


def command_error(monkeypatch, capsys, *argv: str) -> str:
    """Run ``genaug <argv>``; it must exit 2 with one error line (besides warnings), which is returned."""
    from genaug.cli import main

    monkeypatch.setattr("sys.argv", ["genaug", *map(str, argv)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and "Traceback" not in err
    lines = [line for line in err.splitlines() if not line.startswith("warning: ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_standalone_generate_stops_on_an_empty_class_and_on_its_editors_needs(tmp_path, monkeypatch, capsys):
    from genaug.cli import app
    from genaug.generation.editors import EDITORS
    from typer.testing import CliRunner

    monkeypatch.setenv("GENAUG_HOME", str(tmp_path / "home"))
    root = tree(tmp_path / "data", {"cat": 12, "dog": 4})
    (root / "empty").mkdir()
    out = tmp_path / "set"
    fields = [f"dataset.root={root}", "dataset.name=folder", "dataset.image_size=16", "dataset.labels_per_class=all",
              "editor.steps=2", "regime=single", "prompts=[make it red]", "engine.progress=false"]  # fmt: skip
    err = command_error(monkeypatch, capsys, "generate", f"output={out}", *fields)
    assert "on the command line: dataset: 1 class(es) have no training image: 'empty'" in err
    assert "dataset.allow_empty_classes: true" in err and not out.exists()

    # The same opt-in as `genaug run`: then the editor's declared needs are checked, one line.
    needs = DataNeeds(who="editor instruct", per_class=5, why="a declared need")
    monkeypatch.setattr(EDITORS["instruct"], "data_needs", classmethod(lambda cls, config: [needs]))
    err = command_error(monkeypatch, capsys, "generate", f"output={out}", *fields, "dataset.allow_empty_classes=true")
    train = load_splits({"name": "folder", "root": str(root), "image_size": 16, "labels_per_class": "all", "allow_empty_classes": True})["train"]
    counts = dict(zip(train.class_names, train.class_counts().tolist()))
    assert counts["empty"] == 0 and 0 < counts["dog"] < 5 <= counts["cat"]
    assert err.endswith("editor instruct needs at least 5 real training images per class (a declared need); "
                        f"1 class(es) have fewer: 'dog' {counts['dog']}")  # fmt: skip
    assert not out.exists()

    monkeypatch.setattr(EDITORS["instruct"], "data_needs", classmethod(lambda cls, config: []))
    result = CliRunner().invoke(app, ["generate", f"output={out}", *fields, "dataset.allow_empty_classes=true"], catch_exceptions=False)
    assert result.exit_code == 0 and f"{len(train)} images made" in result.output, result.output


def test_standalone_train_stops_on_an_empty_class_and_on_a_recipe_larger_than_the_data(tmp_path, monkeypatch, capsys):
    root = tree(tmp_path / "data", {"cat": 8, "dog": 8})
    (root / "empty").mkdir()
    out = tmp_path / "run"
    fields = ["train.recipe=pocket", "train.epochs=1", "train.width=0.125", "train.logging.tensorboard=false",
              "train.logging.progress=false"]  # fmt: skip
    dataset = {"name": "folder", "root": str(root), "image_size": 16, "test_fraction": 0.25}
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({"output": str(out), "dataset": dataset}), encoding="utf-8")
    err = command_error(monkeypatch, capsys, "train", config, *fields)
    assert f"in {config}: dataset: 1 class(es) have no training image: 'empty'" in err and not out.exists()

    err = command_error(monkeypatch, capsys, "train", config, *fields, "dataset.allow_empty_classes=true",
                        "train.augmentation.image_size=64", "train.augmentation.crop=64")  # fmt: skip
    assert err.startswith("error: on the command line: train (recipe 'pocket') needs images of at least 64 px")
    assert err.endswith("the dataset's images are 16 px")
    assert not out.exists()
