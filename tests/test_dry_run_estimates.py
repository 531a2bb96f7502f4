"""The dry run estimates cost and time before anything has run, for any model whose config files it can read.

- Cost: a model's architecture is read from its own config files (``model_index.json``,
  ``unet/config.json``, ``vae/config.json``...): the pocket models in the pocket store, any
  local diffusers folder, and the hub models with shipped configs.
- Time: before any run of the experiment has finished, the training runs' optimizer steps
  times a training step of the recipe's model timed now, plus the stages' counted FLOPs at
  this machine's measured rate, labelled as the cost model's estimate.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from genaug.rehearsal import cost

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_pocket_models_and_local_folders_have_an_architecture(tmp_path):
    from genaug.pocket.store import pocket_model_dir

    # a local diffusers folder holding only the pocket SD's config files (no weights)
    folder = tmp_path / "my-sd"
    shutil.copytree(pocket_model_dir("sd"), folder, ignore=shutil.ignore_patterns("*.safetensors"))
    assert not list(folder.rglob("*.safetensors"))
    assert cost.model_folder("pocket:sd") == pocket_model_dir("sd") and cost.model_folder(str(folder)) == folder
    # the pocket SD: a 2-level VAE (16 px images on 8 x 8 latents), UNet sample_size 8
    assert cost.vae_scale("pocket:sd") == 2 and cost.native_size("pocket:sd") == 16
    assert cost.unet_flops(str(folder), 8, 2) == cost.unet_flops("pocket:sd", 8, 2) == 2 * cost.unet_flops("pocket:sd", 8, 1) > 0
    # InstructPix2Pix's UNet takes 8 channels: more FLOPs than SD's at the same shapes
    assert cost.unet_flops("pocket:ip2p", 8, 1) > cost.unet_flops("pocket:sd", 8, 1)
    assert cost.vit_flops("pocket") == cost.vit_flops("pocket:clip") > 0
    with pytest.raises(ValueError, match="no architecture known for 'someone/unknown-model'"):
        cost.model_folder("someone/unknown-model")
    assert not cost.has_architecture(str(tmp_path / "missing"))


def test_the_time_estimate_adds_each_runs_steps_and_the_stages_flops():
    from genaug.experiment import load_experiment
    from genaug.experiment.config import train_config

    experiment = load_experiment(CONFIGS / "demo.yaml", quick=True)
    estimate = cost.estimate_experiment(experiment, arms=["baseline", "edits_only"])
    jobs = [SimpleNamespace(arm=arm, config=train_config(experiment, experiment.arm(arm), seed))
            for arm in ("baseline", "edits_only") for seed in experiment.seeds]
    # the matched view (260 steps): baseline trains once more; edits_only's natural runs make 260 steps already
    jobs += [SimpleNamespace(arm=arm, view="matched", config=train_config(experiment, experiment.arm(arm), 0).model_copy(update={"steps": 260}))
             for arm in ("baseline", "edits_only")]
    cpu = {"flops_per_second": 1e11, "source": "test"}
    measured = []

    def step_seconds(config, classes, size):
        measured.append((config.model, config.batch_size, classes, size))
        return 0.05

    result = cost.time_estimate(estimate, jobs, ["edit_random"], workers=2, cpu=cpu, step_seconds=step_seconds)
    # quick demo: 20 epochs; baseline 100 real images a epoch (7 batches of 16), edits_only 200 (13)
    assert result["steps"] == 2 * 20 * 7 + 2 * 20 * 13 + 260 and result["runs"] == 5 and result["workers"] == 2
    assert result["train_seconds"] == pytest.approx(result["steps"] * 0.05 / 2)
    assert measured == [("preactresnet18", 16, 10, 16)]  # one model, timed once
    edit = next(row for row in estimate["rows"] if row["stage"] == "edit_random")
    assert result["stage_seconds"] == pytest.approx(edit["flops"] / 1e11)
    text = cost.time_estimate_text(result)
    assert text.startswith("time estimate (cost model, before any run has finished): about ")
    assert "1,060 optimizer steps at 50.0 ms per step" in text


def test_a_training_step_is_timed_on_the_recipes_model():
    from genaug.experiment import load_experiment
    from genaug.experiment.config import train_config
    from genaug.training import resolve_recipe

    experiment = load_experiment(CONFIGS / "demo.yaml", quick=True)
    config = resolve_recipe(train_config(experiment, experiment.arm("baseline"), 0))
    seconds = cost.train_step_seconds(config, 10, 16, repeats=2)
    assert 0 < seconds < 60


def test_dry_run_of_the_quick_demo_prints_a_time_estimate_and_the_pocket_cost(tmp_path):
    from typer.testing import CliRunner

    from genaug.cli import app

    result = CliRunner().invoke(app, ["run", str(CONFIGS / "demo.yaml"), "--quick", "--dry-run", "--out", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "no architecture known" not in out and "cost estimate: none" not in out
    assert "cost estimate of 'demo'" in out
    table = out.split("cost estimate of 'demo'", 1)[1].splitlines()
    edit = next(line for line in table if line.strip().startswith("edit_random"))
    assert edit.split()[1] == "100"  # 100 real images, one random prompt each, made by pocket:ip2p
    assert "time estimate (cost model, before any run has finished): about " in out
    # 4 arms x 2 seeds, and the matched view's extra runs of the two arms whose natural runs make 140 steps, not 260
    assert "training 12 run(s), 2,640 optimizer steps at " in out and "ms per step of preactresnet18" in out
    assert not (tmp_path / "demo").exists()  # a dry run writes nothing
