"""Warnings when training goes wrong (warnings.log, metrics.json, results, report), and keep_checkpoint."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from genaug.config import TrainConfig
from genaug.data import load_splits
from genaug.data.base import RealDataset
from genaug.training import train
from genaug.training.health import (
    add_warning,
    loss_warning,
    uniform_loss,
    validation_warning,
    warmup_warning,
)
from genaug.training.losses import create_loss
from genaug.warn import WARNINGS_LOG
from training_helpers import pocket_splits, tiny_net

QUIET = {"logging": {"tensorboard": False, "progress": False}, "cpu_threads": 1}


def config(**fields) -> TrainConfig:
    return TrainConfig.model_validate({"recipe": "pocket", "epochs": 2, "batch_size": 16, **QUIET} | fields)


# ---------------------------------------------------------------------------- the checks


def test_uniform_loss_is_the_loss_of_equal_logits():
    assert uniform_loss(create_loss("ce"), 10) == pytest.approx(math.log(10), rel=1e-6)
    # BCE on softmax, averaged over K entries: -(log(1/K) + (K-1) log(1 - 1/K)) / K
    k = 4
    assert uniform_loss(create_loss("bce_softmax"), k) == pytest.approx(-(math.log(1 / k) + (k - 1) * math.log(1 - 1 / k)) / k, rel=1e-6)


def test_loss_warnings_for_nan_and_divergence_only():
    uniform = math.log(10)
    assert loss_warning(1.2, uniform, 3, 10) is None
    assert loss_warning(3.0 * uniform, uniform, 3, 10) is None
    diverged = loss_warning(3.01 * uniform, uniform, 3, 10)
    assert diverged.startswith("training loss diverged in epoch 4 of 10")
    assert loss_warning(float("nan"), uniform, 0, 10).startswith("training loss is not finite (nan) in epoch 1 of 10")
    assert loss_warning(float("inf"), uniform, 0, 10).startswith("training loss is not finite (inf)")
    # Once per kind: later epochs do not repeat it.
    warnings: list[str] = []
    assert add_warning(warnings, loss_warning(float("nan"), uniform, 0, 10))
    assert not add_warning(warnings, loss_warning(float("nan"), uniform, 1, 10))
    assert add_warning(warnings, diverged) and not add_warning(warnings, diverged) and len(warnings) == 2


def test_validation_warning_names_classes_under_two_images():
    def split(labels):
        return RealDataset("d", "val", ["a", "b", "c"], np.array(labels), [str(i) for i in range(len(labels))],
                           images=np.zeros((len(labels), 2, 2, 3), np.uint8))  # fmt: skip

    assert validation_warning(split([0, 0, 1, 1, 2, 2])) is None
    assert validation_warning(None) is None
    message = validation_warning(split([0, 0, 0, 1]))
    assert "fewer than 2 images in 2 class(es): b (1), c (0)" in message


def test_warmup_warning_when_warmup_is_as_long_as_training():
    assert warmup_warning(config(lr_schedule="step", warmup_epochs=1, epochs=2)) is None
    assert "warmup_epochs (2) >= epochs (2)" in warmup_warning(config(lr_schedule="step", warmup_epochs=2, epochs=2))
    assert warmup_warning(config(lr_schedule="cosine", warmup_epochs=5, epochs=2)) is None
    curriculum = config(epochs=2, data_policy="curriculum", data_policy_kwargs={"schedule": "warmup", "warmup_epochs": 3})
    assert "data_policy_kwargs.warmup_epochs (3) >= epochs (2)" in warmup_warning(curriculum)


# ---------------------------------------------------------------------------- in a run


def test_a_diverging_run_with_a_thin_validation_split_says_so_in_warnings_log_and_metrics(tmp_path):
    splits = pocket_splits(labels_per_class=3, val_per_class=1)
    run = tmp_path / "run"
    result = train(config(lr=1e6, lr_schedule="step", warmup_epochs=3, epochs=3), splits, run, model=tiny_net())
    kinds = [w.split(":")[0].split(" in epoch")[0] for w in result.warnings]
    assert any(w.startswith("the validation split has fewer than 2 images in 10 class(es)") for w in result.warnings)
    assert any(w.startswith("warmup_epochs (3) >= epochs (3)") for w in result.warnings)
    assert any(k in ("training loss diverged", "training loss is not finite (nan)") for k in kinds), result.warnings
    logged = (run / WARNINGS_LOG).read_text().splitlines()
    assert logged == result.warnings
    assert json.loads((run / "metrics.json").read_text())["warnings"] == result.warnings

    healthy = train(config(), pocket_splits(), tmp_path / "healthy", model=tiny_net())
    assert healthy.warnings == [] and (tmp_path / "healthy" / WARNINGS_LOG).read_text() == ""


def test_skipped_images_are_counted_in_the_run(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(tmp_path / "data" / name / f"{i}.png")
    (tmp_path / "data" / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (tmp_path / "data" / "b" / "empty.jpg").write_bytes(b"")
    splits = load_splits({"name": "folder", "root": tmp_path / "data", "image_size": 16, "val_fraction": 0.34})
    result = train(config(augmentation={"image_size": 16}), splits, tmp_path / "run", model=tiny_net(num_classes=2))
    assert result.skipped_images == 2
    assert any("2 input file(s) were skipped while loading the dataset" in warning for warning in result.warnings)
    assert "skipped while loading" in (tmp_path / "run" / WARNINGS_LOG).read_text()


def test_keep_checkpoint_false_keeps_only_the_selected_weights(tmp_path):
    splits = pocket_splits(labels_per_class=3, val_per_class=2)
    kept = tmp_path / "kept"
    train(config(), splits, kept, model=tiny_net())
    assert (kept / "checkpoint" / "model.safetensors").is_file() and (kept / "best.safetensors").is_file()

    lean = tmp_path / "lean"
    result = train(config(keep_checkpoint=False), splits, lean, model=tiny_net())
    assert not any(path.name.startswith("checkpoint") for path in lean.iterdir())
    assert (lean / "best.safetensors").is_file() and (lean / "metrics.json").is_file()
    # Asking for it later on the finished run: the same result, and a kept checkpoint goes too.
    assert train(config(keep_checkpoint=False), splits, kept, model=tiny_net()).test == train(config(), splits, kept).test
    assert not (kept / "checkpoint").exists()
    assert result.test["top1"] >= 0


def test_experiments_drop_checkpoints_by_default_and_the_flag_does_not_rekey(tmp_path):
    from genaug.experiment import load_experiment
    from genaug.experiment.config import train_config
    from genaug.experiment.graph import build_graph
    from genaug.experiment.runner import plan_jobs

    import yaml

    def experiment(train_fields):
        path = tmp_path / "e.yaml"
        path.write_text(yaml.safe_dump({"name": "e", "seeds": [0], "train": {"recipe": "pocket", **train_fields},
                                        "arms": [{"name": "baseline"}]}))  # fmt: skip
        return load_experiment(path)

    default, keeping = experiment({}), experiment({"keep_checkpoint": True})
    assert train_config(default, default.arms[0], 0).keep_checkpoint is False
    assert train_config(keeping, keeping.arms[0], 0).keep_checkpoint is True
    jobs = [plan_jobs(e, build_graph(e, tmp_path / "art"), tmp_path, ["baseline"], [0])[0] for e in (default, keeping)]
    assert jobs[0].run_dir == jobs[1].run_dir


def test_the_report_lists_skipped_inputs_and_run_warnings_escaped(tmp_path):
    from genaug.report import write_report

    arm = {"name": "dm", "description": "", "runs": [{"seed": 0, "top1": 50.0}], "top1_mean": 50.0,
           "warnings": ["(seed 0, 1): training loss diverged in epoch 4 of 10: <b>lower lr</b>"]}  # fmt: skip
    results = {"experiment": "e", "seeds": [0, 1], "baseline": "dm", "dataset": {"name": "folder", "skipped": 3},
               "arms": [arm]}  # fmt: skip
    (tmp_path / "results.json").write_text(json.dumps(results))
    html = write_report(tmp_path).read_text()
    assert '<section id="warnings">' in html and 'href="#warnings"' in html
    assert "3 input file(s) were skipped while loading the dataset" in html
    assert "dm (seed 0, 1): training loss diverged in epoch 4 of 10: &lt;b&gt;lower lr&lt;/b&gt;" in html

    del results["dataset"]["skipped"], arm["warnings"]
    (tmp_path / "results.json").write_text(json.dumps(results))
    assert '<section id="warnings">' not in write_report(tmp_path).read_text()
