"""The command line: thin commands over the library, clear errors, dry runs of the real-scale configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from genaug.cli import app, main

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(arg) for arg in args], catch_exceptions=False)


@pytest.mark.parametrize("name", ["cifar100_diffusemix.yaml", "cub_sdi.yaml", "flowers102_sdi.yaml", "pets_sdi.yaml"])
def test_real_scale_configs_dry_run(tmp_path, name, monkeypatch, capsys):
    """The plan prints; then, offline with an empty Hugging Face cache and no dataset, the dry
    run names what the real run would lack (the dataset root, each hub model) and exits 2."""
    import huggingface_hub.constants as constants

    from genaug.experiment import load_experiment

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr("sys.argv", ["genaug", "run", str(CONFIGS / name), "--dry-run", "--out", str(tmp_path / "run")])
    with pytest.raises(SystemExit) as exit_info:
        main()
    out, err = capsys.readouterr()
    assert exit_info.value.code == 2
    assert "training runs:" in out and "to run" in out
    experiment = load_experiment(CONFIGS / name)
    assert f"in {CONFIGS / name}: dataset.root: {experiment.dataset.root} does not exist" in err
    assert "is not in the Hugging Face cache" in err and "(HF_HUB_OFFLINE is set)" in err
    assert "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_pets_variant_extends_cub_with_its_multiplier(tmp_path):
    from genaug.experiment import load_experiment

    pets = load_experiment(CONFIGS / "pets_sdi.yaml")
    cub = load_experiment(CONFIGS / "cub_sdi.yaml")
    assert pets.dataset.name == "pets" and pets.name == "pets_sdi"
    assert pets.stages["sdi"].params["sample"]["multiplier"] == 60
    assert pets.stages["sdi"].params["clip"] == cub.stages["sdi"].params["clip"] == "openai/clip-vit-large-patch14"
    assert [arm.name for arm in pets.arms] == [arm.name for arm in cub.arms]


def test_demo_dry_run_lists_every_arm(tmp_path):
    result = invoke("demo", "--dry-run", "--out", tmp_path / "demo")
    assert result.exit_code == 0, result.output
    for arm in ("baseline", "dm_single", "dm_random", "dm_all", "shb", "sdi_filtered", "curriculum_linear", "puzzlemix"):
        assert f"  {arm} " in result.output


def test_config_errors_exit_2_with_the_field(tmp_path, capsys, monkeypatch):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\narms: [{name: a, data: nowhere}]\n", encoding="utf-8")
    monkeypatch.setattr("sys.argv", ["genaug", "run", str(bad), "--dry-run"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    assert "no stage named 'nowhere'" in capsys.readouterr().err


def test_fractals_make_writes_the_bank(tmp_path):
    result = invoke("fractals", "make", tmp_path / "bank", "--count", 3, "--size", 16, "--seed", 1)
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "bank").glob("*.png"))) == 3


@pytest.mark.slow
def test_train_command_runs_a_recipe(tmp_path):
    out = tmp_path / "run"
    result = invoke(
        "train", f"output={out}", "dataset.labels_per_class=2", "train.recipe=pocket", "train.epochs=2",
        "train.width=0.125", "train.logging.tensorboard=false", "train.logging.progress=false",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "test top-1" in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and metrics["real_samples"] == 2 * 20


@pytest.mark.slow
def test_generate_shards_from_the_command_line_merge_into_the_unsharded_set(tmp_path, monkeypatch):
    """`genaug generate --shard i/n` for every i, then `genaug merge`: the set one process makes."""
    from genaug.manifest import read_manifest

    monkeypatch.setenv("GENAUG_HOME", str(tmp_path / "home"))
    fields = ["dataset.labels_per_class=1", "editor.steps=2", "regime=all", "engine.batch_size=4", "engine.progress=false",
              "prompts=[make it red on blue, make it white on green]"]  # fmt: skip
    whole = invoke("generate", f"output={tmp_path / 'whole'}", *fields)
    assert whole.exit_code == 0, whole.output
    for i in range(2):
        part = invoke("generate", f"output={tmp_path / 'sharded'}", *fields, "--shard", f"{i}/2")
        assert part.exit_code == 0, part.output
    assert sorted(p.name for p in (tmp_path / "sharded").glob("manifest*")) == ["manifest.0.jsonl", "manifest.1.jsonl"]
    merged = invoke("merge", tmp_path / "sharded")
    assert merged.exit_code == 0 and "20 records" in merged.output, merged.output
    a = {r.id: (tmp_path / "whole" / r.path).read_bytes() for r in read_manifest(tmp_path / "whole")}
    b = {r.id: (tmp_path / "sharded" / r.path).read_bytes() for r in read_manifest(tmp_path / "sharded")}
    assert len(a) == 20 and a == b
    bad = runner.invoke(app, ["generate", f"output={tmp_path / 'x'}", *fields, "--shard", "2/2"])
    assert bad.exit_code != 0 and "shard" in str(bad.exception or bad.output)


def test_help_and_a_config_error_import_no_torch():
    """``genaug --help`` and a one-line config error answer without importing torch (about 2 s here)."""
    import subprocess
    import sys

    probe = (
        "import sys\n"
        "from genaug.cli import main\n"
        "sys.argv = ['genaug', *sys.argv[1:]]\n"
        "try:\n    main()\n"
        "except SystemExit as exit_:\n    print('exit', exit_.code, 'torch' in sys.modules)\n"
    )
    help_ = subprocess.run([sys.executable, "-c", probe, "--help"], capture_output=True, text=True, check=True)
    assert help_.stdout.strip().endswith("exit 0 False")
    missing = subprocess.run([sys.executable, "-c", probe, "run", "/nonexistent/study.yaml"], capture_output=True, text=True, check=True)
    assert missing.stdout.strip() == "exit 2 False"
    assert missing.stderr.strip() == "error: experiment file not found: /nonexistent/study.yaml"


def test_errors_of_modules_that_import_torch_are_still_one_line(monkeypatch, capsys):
    from genaug.experiment.budget import BudgetError
    from genaug.memory import DoesNotFitError
    from genaug.training.checkpoint import UntrustedFileError

    from genaug import cli

    for error in (UntrustedFileError("runs/x/best.safetensors is not a genaug weights file"), DoesNotFitError("generate", "item 3", "2 GiB"),
                  BudgetError("arm 'dm': budget.synthetic_per_real 1 needs 3 synthetic images of class 'one' (3 real), its sets keep 2")):
        def fail(error=error):
            raise error

        monkeypatch.setattr(cli, "app", fail)
        with pytest.raises(SystemExit) as exit_info:
            cli.main()
        assert exit_info.value.code == 2
        assert capsys.readouterr().err.strip() == f"error: {error}"
    monkeypatch.setattr(cli, "app", lambda: (_ for _ in ()).throw(KeyError("not a user error")))
    with pytest.raises(KeyError):
        cli.main()
