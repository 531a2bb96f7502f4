"""A new user's first hour on their own folder: clean errors, honest warnings, the worked example.

Every test drives the real command line (``genaug.cli.main``, exit codes included) on a
small folder of 64 px photos with a broken file, as docs/getting-started.md section 7 does.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from genaug.cli import main

DOCS = Path(__file__).resolve().parents[1] / "docs" / "getting-started.md"
HUB_ID = "timbrooks/instruct-pix2pix"


# ---------------------------------------------------------------------------- helpers


def make_photos(root: Path, per_class: int = 12, size: int = 64) -> Path:
    """Three colour classes of noisy JPEG photos, plus one file that is not an image."""
    rng = np.random.default_rng(0)
    for channel, name in enumerate(["red", "green", "blue"]):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 80, (size, size, 3), dtype=np.uint8)
            pixels[..., channel] += 150
            Image.fromarray(pixels).save(folder / f"{i}.jpg")
    (root / "red" / "broken.jpg").write_bytes(b"not an image")
    return root


def genaug(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """Run ``genaug ARGS`` as the console script does: (exit code, stdout, stderr)."""
    from genaug.warn import forget_warnings

    forget_warnings()
    monkeypatch.setattr(sys, "argv", ["genaug", *map(str, args)])
    code = 0
    try:
        main()
    except SystemExit as exit_info:
        code = exit_info.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def no_hub_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache: no hub model is cached."""
    import huggingface_hub.constants as constants

    home = tmp_path / "hf-home"
    home.mkdir()
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    return home


@pytest.fixture
def unreachable_hub(monkeypatch):
    """Every request to the hub fails in the transport, as it does without a network."""
    import httpx2
    import huggingface_hub
    from huggingface_hub.utils import _http

    requests = []

    def refuse(request):
        requests.append(str(request.url))
        raise httpx2.ConnectError("[Errno -2] Name or service not known", request=request)

    def client_factory():
        return httpx2.Client(transport=httpx2.MockTransport(refuse), event_hooks={"request": [_http.hf_request_event_hook]})

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    huggingface_hub.set_client_factory(client_factory)
    yield requests
    huggingface_hub.set_client_factory(_http.default_client_factory)


@pytest.fixture
def photos(tmp_path, monkeypatch):
    """A working folder holding ``photos/`` (the current directory during the test)."""
    make_photos(tmp_path / "photos")
    monkeypatch.chdir(tmp_path)
    return tmp_path / "photos"


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("warning: ")]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err
    return lines[0]


FOLDER = ["dataset.name=folder", "dataset.root=photos", "dataset.image_size=64"]


# ---------------------------------------------------------------------------- 1. hub models without network


def test_an_uncached_hub_model_without_network_is_one_line_and_leaves_no_output(photos, no_hub_cache, unreachable_hub, monkeypatch, capsys):
    code, out, err = genaug(monkeypatch, capsys, "generate", "output=sets/edits", *FOLDER, f"editor.model={HUB_ID}")
    line = one_error_line(err)
    assert code == 2 and unreachable_hub, "the hub was asked (through the patched transport)"
    assert line.startswith(f"error: on the command line: editor.model: model '{HUB_ID}' is not in the Hugging Face cache")
    assert "cannot be reached (ConnectError" in line
    assert "editor.model=/path/to/folder" in line and f"hf download {HUB_ID}" in line
    assert not (photos.parent / "sets").exists()


def test_offline_mode_fails_before_any_output_in_a_fresh_process(photos, no_hub_cache):
    """The console script itself, HF_HUB_OFFLINE=1 and an empty HF_HOME: one line, exit 2, nothing written."""
    env = {**os.environ, "HF_HOME": str(no_hub_cache), "HF_HUB_OFFLINE": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("HF_HUB_CACHE", None)
    command = [sys.executable, "-c", "from genaug.cli import main; main()", "generate", "output=sets/edits",
               *FOLDER, f"editor.model={HUB_ID}"]  # fmt: skip
    done = subprocess.run(command, cwd=photos.parent, env=env, capture_output=True, text=True, timeout=120)
    line = one_error_line(done.stderr)
    assert done.returncode == 2
    assert f"editor.model: model '{HUB_ID}' is not in the Hugging Face cache ({no_hub_cache}" in line
    assert "(HF_HUB_OFFLINE is set)" in line and "local pipeline folder" in line
    assert not (photos.parent / "sets").exists()


def test_a_run_with_an_unreachable_hub_model_leaves_no_run_folder(photos, no_hub_cache, unreachable_hub, monkeypatch, capsys):
    Path("mine.yaml").write_text(
        "name: mine\ndataset: {name: folder, root: photos, image_size: 64}\n"
        f"stages: {{edits: {{kind: generate, editor: {{model: {HUB_ID}}}}}}}\n"
        "arms: [{name: baseline}, {name: edits, data: edits}]\n"
    )
    code, _, err = genaug(monkeypatch, capsys, "run", "mine.yaml", "--out", "runs/mine")
    line = one_error_line(err)
    assert code == 2 and line.startswith(f"error: in mine.yaml: stages.edits.editor.model: model '{HUB_ID}'")
    assert not Path("runs").exists()


def test_an_unknown_pocket_model_is_one_line_with_the_close_match(photos, monkeypatch, capsys):
    code, _, err = genaug(monkeypatch, capsys, "generate", "output=sets/edits", *FOLDER, "editor.model=pocket:ipp2p")
    line = one_error_line(err)
    assert code == 2
    assert line == (
        "error: on the command line: editor.model: unknown pocket model 'pocket:ipp2p'; did you mean 'pocket:ip2p'? "
        "(allowed: pocket:clip, pocket:sd, pocket:ip2p)"
    )
    assert not Path("sets").exists()


# ---------------------------------------------------------------------------- 3. config errors


EXPERIMENT = """\
name: mine
dataset: {name: folder, root: photos, image_size: 64}
seeds: [0]
train: {recipe: pocket, epochs: 2}
stages:
  edits: {kind: generate, prompts: diffusemix}
arms:
  - {name: baseline}
  - {name: edits, data: edits}
"""


@pytest.mark.parametrize(
    ("change", "overrides", "expected"),
    [
        (("epochs: 2", "epcohs: 2"), [],
         "in mine.yaml: train.epcohs: unknown key 'epcohs'; did you mean 'epochs'? (allowed: augmentation, batch_size,"),
        (None, ["seed=3"],
         "on the command line: seed: unknown key 'seed'; did you mean 'seeds'? (allowed: arms, baseline, budget, compare, compute, dataset, launcher, metrics, name, seed_rule, seeds, stages, stats, train, workers)"),
        (("{name: baseline}", "{name: baseline, train: {lrr: 0.1}}"), [],
         "in mine.yaml: arms[0].train.lrr: unknown key 'lrr'; did you mean 'lr'?"),
        (("prompts: diffusemix", "prompts: diffusemix, regim: all"), [],
         "in mine.yaml: stages.edits.regim: unknown key 'regim'; did you mean 'regime'?"),
        (None, ["train.recipe=pockett"],
         "on the command line: train.recipe: unknown recipe 'pockett'; did you mean 'pocket'? (allowed: cifar, finegrained, pocket"),
        (None, ["dataset.name=foldr"],
         "on the command line: dataset.name: unknown dataset 'foldr'; did you mean 'folder'? (allowed: cars,"),
        (("data: edits", "data: edit"), [],
         "in mine.yaml: arms[1].data: no stage named 'edit'; did you mean 'edits'? (stages: edits)"),
        (("{name: baseline}", "{name: baseline, policy: concatt, data: edits}"), [],
         "in mine.yaml: arms[0].policy: unknown data policy 'concatt'; did you mean 'concat'? (allowed: "),
        # every name is checked by the registry that owns it, before any stage runs
        (("{name: baseline}", "{name: baseline, mixer: cutmx}"), [],
         "in mine.yaml: arms[0].mixer: unknown mixer 'cutmx'; did you mean 'cutmix'? (allowed: "),
        (("{name: baseline}", "{name: baseline, mixer: cutmix, mixer_kwargs: {alhpa: 1}}"), [],
         "in mine.yaml: arms[0].mixer_kwargs.alhpa: unknown key 'alhpa'; did you mean 'alpha'? (allowed: alpha)"),
        (("kind: generate", "kind: generat"), [],
         "in mine.yaml: stages.edits.kind: unknown stage kind 'generat'; did you mean 'generate'? (allowed: "),
        (("prompts: diffusemix}", "prompts: diffusemix}\n  mixed: {kind: mix, input: edits, methods: [fractal], fractal: {alpah: 0.2}}"), [],
         "in mine.yaml: stages.mixed.fractal.alpah: unknown key 'alpah'; did you mean 'alpha'? (allowed: alpha, on)"),
        (("prompts: diffusemix}", "prompts: diffusemix}\n  mixed: {kind: mix, input: edits, methods: [fractl]}"), [],
         "in mine.yaml: stages.mixed.methods: unknown mix method 'fractl'; did you mean 'fractal'? (allowed: "),
        (("prompts: diffusemix", "prompts: diffusemx"), [],
         "in mine.yaml: stages.edits.prompts: unknown prompt preset 'diffusemx'; did you mean 'diffusemix'? (allowed: "),
        (("prompts: diffusemix", "prompts: diffusemix, editor: {name: instruc}"), [],
         "in mine.yaml: stages.edits.editor.name: unknown editor 'instruc'; did you mean 'instruct'? (allowed: "),
    ],
)  # fmt: skip
def test_config_errors_name_the_source_the_key_path_and_the_allowed_values(photos, monkeypatch, capsys, change, overrides, expected):
    text = EXPERIMENT if change is None else EXPERIMENT.replace(*change)
    Path("mine.yaml").write_text(text)
    code, _, err = genaug(monkeypatch, capsys, "run", "mine.yaml", "--dry-run", *overrides)
    line = one_error_line(err)
    assert code == 2
    assert line.startswith(f"error: invalid configuration {expected}"), line
    assert "top level" not in line and "Value error" not in line and "arm 'baseline'" not in line


def test_a_stage_command_tells_a_file_key_from_a_command_line_key(photos, monkeypatch, capsys):
    Path("gen.yaml").write_text("output: sets/edits\nregime: randon\n")
    code, _, err = genaug(monkeypatch, capsys, "generate", "gen.yaml", "engine.batch_sise=4")
    assert code == 2
    assert err.splitlines() == [
        "error: invalid configuration:",
        "  in gen.yaml: regime: Input should be 'single', 'random' or 'all'; did you mean 'random'? (got 'randon')",
        "  on the command line: engine.batch_sise: unknown key 'batch_sise'; did you mean 'batch_size'? "
        "(allowed: batch_size, device, dry_run, dtype, max_regenerations, progress, shard)",
    ]
    assert not Path("sets").exists()


def test_a_recipe_that_does_not_fit_its_overrides_fails_before_training_naming_the_file(photos, monkeypatch, capsys):
    Path("t.yaml").write_text("output: runs/t\ntrain: {recipe: pocket, augmentation: {image_size: 8}}\n")
    code, _, err = genaug(monkeypatch, capsys, "train", "t.yaml")
    assert code == 2 and one_error_line(err) == (
        "error: in t.yaml: recipe 'pocket' with these overrides is invalid: "
        "augmentation.crop: crop 16 does not fit in image_size 8 + 2 * padding 1"
    )
    assert not Path("runs").exists()


def test_quick_arms_that_are_not_arms_name_the_file(photos, monkeypatch, capsys):
    Path("mine.yaml").write_text(EXPERIMENT + "quick: {arms: [baseline, edit]}\n")
    code, _, err = genaug(monkeypatch, capsys, "run", "mine.yaml", "--dry-run", "--quick")
    assert code == 2 and one_error_line(err) == "error: in mine.yaml: quick.arms names unknown arms: edit"


def test_command_line_options_name_themselves_with_a_close_match(photos, monkeypatch, capsys):
    Path("mine.yaml").write_text(EXPERIMENT)
    code, _, err = genaug(monkeypatch, capsys, "run", "mine.yaml", "--dry-run", "--only", "basline")
    assert code == 2 and one_error_line(err) == (
        "error: on the command line: --only: no arm named 'basline'; did you mean 'baseline'? (arms: baseline, edits)"
    )
    code, _, err = genaug(monkeypatch, capsys, "data", "info", "foldr", "root=photos", "image_size=64")
    assert code == 2 and one_error_line(err).startswith(
        "error: invalid configuration on the command line: name: unknown dataset 'foldr'; did you mean 'folder'?"
    )


def test_train_help_lists_the_recipes_and_every_field(monkeypatch, capsys):
    from genaug.config import AugmentationConfig, TrainConfig
    from genaug.training.recipes import RECIPES

    monkeypatch.setenv("COLUMNS", "400")
    code, out, _ = genaug(monkeypatch, capsys, "train", "--help")
    assert code == 0
    for name, preset in RECIPES.items():
        size = preset["augmentation"]["image_size"]
        assert re.search(rf"{name}: {preset['model']}, {preset['epochs']} epochs.*images at {size} x {size} px", out), name
    fields = re.search(r"train\.<field>: (.*?)\.\s*$", out, re.MULTILINE).group(1).split(", ")
    assert fields == list(TrainConfig.model_fields)
    assert re.search(r"train\.augmentation\.<field>: " + ", ".join(AugmentationConfig.model_fields), out)


# ---------------------------------------------------------------------------- 4. dry runs check inputs


def test_a_dry_run_checks_that_the_dataset_root_exists(photos, monkeypatch, capsys):
    Path("mine.yaml").write_text(EXPERIMENT)
    code, out, err = genaug(monkeypatch, capsys, "run", "mine.yaml", "--dry-run", "--out", "runs/mine", "dataset.root=fotos")
    assert code == 2 and "training runs: 2" in out  # the plan, then the problem
    assert one_error_line(err) == "error: on the command line: dataset.root: fotos does not exist"
    assert not Path("runs").exists()
    code, out, err = genaug(monkeypatch, capsys, "run", "mine.yaml", "--dry-run", "--out", "runs/mine")
    assert code == 0 and "error" not in err


@pytest.mark.parametrize("command", ["train", "generate", "mix"])
def test_stage_commands_check_the_dataset_root_before_writing(photos, monkeypatch, capsys, command):
    Path("stage.yaml").write_text("dataset: {name: folder, root: fotos, image_size: 64}\noutput: out\n"
                                  + ("generated: sets/edits\n" if command == "mix" else ""))
    code, _, err = genaug(monkeypatch, capsys, command, "stage.yaml")
    assert code == 2 and one_error_line(err) == "error: in stage.yaml: dataset.root: fotos does not exist"
    assert not Path("out").exists()


def test_a_dry_run_checks_that_models_resolve(photos, no_hub_cache, unreachable_hub, monkeypatch, capsys):
    Path("mine.yaml").write_text(EXPERIMENT.replace("prompts: diffusemix", f"prompts: diffusemix, editor: {{model: {HUB_ID}}}"))
    code, out, err = genaug(monkeypatch, capsys, "run", "mine.yaml", "--dry-run", "dataset.root=nowhere")
    assert code == 2 and "training runs: 2" in out
    lines = [line for line in err.splitlines() if not line.startswith("warning: ")]
    assert len(lines) == 3 and lines[:2] == ["error: 2 problems:", "  on the command line: dataset.root: nowhere does not exist"]
    assert lines[2].startswith(f"  in mine.yaml: stages.edits.editor.model: model '{HUB_ID}' is not in the Hugging Face cache")


# ---------------------------------------------------------------------------- 5. warnings


def test_warnings_for_a_recipe_size_pocket_models_and_prompts_short_classes_and_quick(photos, monkeypatch, capsys):
    Path("mine.yaml").write_text(EXPERIMENT.replace("prompts: diffusemix", "prompts: pocket").replace("image_size: 64}", "image_size: 64, labels_per_class: 20}"))
    code, _, err = genaug(monkeypatch, capsys, "run", "mine.yaml", "--dry-run", "--quick")
    assert code == 0
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert warnings == [
        "warning: mine.yaml has no quick: section; --quick runs the file as it is",
        # the dry run reads the dataset too (its content goes into the keys)
        "warning: dataset.labels_per_class is 20 but 3 of 3 classes hold fewer training images (after the validation "
        "hold-out): 'blue' 10, 'green' 10, 'red' 10; they train on all they have",
        "warning: stages.edits.editor.model is pocket:ip2p, a pocket model trained on 16 px digits, but the dataset is "
        "'folder': expect digit-like images; set stages.edits.editor.model to a hub id or a local model folder",
        "warning: stages.edits.prompts is the 'pocket' preset, written for the pocket digits, but the dataset is "
        "'folder'; set stages.edits.prompts to 'diffusemix', 'class_template' or a list of your own",
        "warning: dataset.image_size is 64 but the 'pocket' recipe trains at 16 px (images are resized to 16 x 16); "
        "set train.augmentation.image_size=64 and train.augmentation.crop=64 to train at the dataset's size",
    ]
    # the data alone shows the class counts
    from genaug.data import load_splits
    from genaug.warn import forget_warnings

    forget_warnings()
    splits = load_splits({"name": "folder", "root": "photos", "image_size": 64, "labels_per_class": 20})
    # 11 red (one broken), 12 green and blue, less val and test (drawn by content: about 0.2 and 0.1)
    assert list(splits["train"].class_counts()) == [10, 10, 10]
    assert capsys.readouterr().err.splitlines() == [
        "warning: dataset.labels_per_class is 20 but 3 of 3 classes hold fewer training images (after the validation "
        "hold-out): 'blue' 10, 'green' 10, 'red' 10; they train on all they have"
    ]


def test_genaug_train_warns_about_the_recipe_size_and_keeps_the_warning_in_its_folder(photos, monkeypatch, capsys):
    code, out, err = genaug(
        monkeypatch, capsys, "train", "output=runs/t", *FOLDER, "train.recipe=pocket", "train.epochs=1", "train.width=0.125",
        "train.logging.progress=false", "train.logging.tensorboard=false",
    )  # fmt: skip
    message = (
        "dataset.image_size is 64 but the 'pocket' recipe trains at 16 px (images are resized to 16 x 16); "
        "set train.augmentation.image_size=64 and train.augmentation.crop=64 to train at the dataset's size"
    )
    assert code == 0 and "(val weights, epoch 1)" in out
    # the training itself warns too: one validation image per class, one broken photo skipped
    training = [
        "the validation split has fewer than 2 images in 3 class(es): blue (1), green (1), red (1); the best epoch "
        "is chosen on noise (raise dataset.val_fraction)",
        "1 input file(s) were skipped while loading the dataset (unreadable or unusable images)",
    ]
    assert err.splitlines() == [f"warning: {line}" for line in [message, *training]]
    assert sorted(Path("runs/t/warnings.log").read_text().splitlines()) == sorted([message, *training])


@pytest.mark.slow
def test_a_run_keeps_the_warnings_it_printed_in_its_folder(photos, monkeypatch, capsys):
    Path("mine.yaml").write_text(EXPERIMENT.replace("image_size: 64}", "image_size: 64, labels_per_class: 20}"))
    code, out, err = genaug(monkeypatch, capsys, "run", "mine.yaml", "--quick", "--only", "baseline", "--out", "runs/mine",
                            "train.width=0.125", "train.epochs=1", "train.logging.tensorboard=false")  # fmt: skip
    assert code == 0, err
    printed = [line.removeprefix("warning: ") for line in err.splitlines() if line.startswith("warning: ")]
    # before anything runs: the file, the data as read, the recipe; then the training's own
    before = printed[:3]
    assert [line.split(" ")[0] for line in before] == ["mine.yaml", "dataset.labels_per_class", "dataset.image_size"]
    assert printed[3:] and not any(line.startswith(("mine.yaml", "dataset.")) for line in printed[3:])
    assert Path("runs/mine/warnings.log").read_text().splitlines() == before


def test_a_matching_setup_warns_about_nothing(photos, monkeypatch, capsys):
    Path("mine.yaml").write_text(
        EXPERIMENT.replace("epochs: 2}", "epochs: 2, augmentation: {image_size: 64, crop: 64}}")
        .replace("prompts: diffusemix", "prompts: diffusemix, editor: {model: pocket:ip2p}")
        .replace("arms:", "quick: {seeds: [0]}\narms:")
    )
    code, _, err = genaug(monkeypatch, capsys, "run", "mine.yaml", "--dry-run", "--quick")
    assert code == 0
    # the pocket model on photos is the one warning left: it is what the file asks for
    assert [line.split(":")[1].strip() for line in err.splitlines()] == ["stages.edits.editor.model is pocket"]


def test_warn_once_prints_once_per_run_and_records_every_time(tmp_path, capsys):
    from genaug.warn import WARNINGS_LOG, forget_warnings, warn_once

    forget_warnings()
    log = tmp_path / WARNINGS_LOG
    assert warn_once("the same thing", log=log) is True
    assert warn_once("the same thing", log=tmp_path / "other" / WARNINGS_LOG) is False  # no folder: not recorded
    assert warn_once("another thing", log=log) is True
    assert warn_once("the same thing", log=log) is False
    assert capsys.readouterr().err == "warning: the same thing\nwarning: another thing\n"
    assert log.read_text().splitlines() == ["the same thing", "another thing"]
    # a worker process of the run inherits what was shown
    child = subprocess.run(
        [sys.executable, "-c", "from genaug.warn import warn_once; print(warn_once('the same thing'), warn_once('new'))"],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert child.stdout.split() == ["False", "True"] and child.stderr == "warning: new\n"
    forget_warnings()


# ---------------------------------------------------------------------------- 6. epochs in plots


def test_the_accuracy_plot_has_whole_epoch_ticks_from_1(tmp_path, monkeypatch):
    from genaug.report import figures
    from genaug.report.run import Curve

    drawn = []
    monkeypatch.setattr(figures, "_save", lambda figure, path: drawn.append(figure) or path)
    epochs = np.array([1, 2, 3])
    curve = Curve(epochs=epochs, mean=np.array([40.0, 50, 55]), low=np.array([38.0, 48, 50]), high=np.array([42.0, 52, 60]), seeds=2)
    figures.accuracy_figure({"baseline": curve}, "baseline", tmp_path / "accuracy.png")
    ticks = [tick for tick in drawn[0].axes[0].get_xticks() if 1 <= tick <= 3]
    assert ticks == [1.0, 2.0, 3.0]


# ---------------------------------------------------------------------------- 7. the worked example of the docs


def doc_section(text: str, title: str) -> str:
    start = text.index(title)
    return text[start : text.index("\n## ", start + 1)]


@pytest.mark.slow
def test_the_getting_started_folder_example_runs_as_written(photos, monkeypatch, capsys):
    """Every command of docs/getting-started.md section 7, with its experiment file, on a folder of photos."""
    from genaug.pocket import pocket_model_dir

    section = doc_section(DOCS.read_text(encoding="utf-8"), "## 7. Your own folder of images")
    commands = re.search(r"```bash\n(.*?)```", section, re.DOTALL).group(1).strip().splitlines()
    experiment = re.search(r"```yaml\n# my_photos.yaml\n(.*?)```", section, re.DOTALL).group(1)
    Path("my_photos.yaml").write_text(experiment)
    shutil.copytree(pocket_model_dir("ip2p"), "models/my-ip2p")  # a diffusers folder saved with save_pretrained

    outputs = {}
    for command in commands:
        args = shlex.split(command)
        assert args[0] == "genaug"
        code, out, err = genaug(monkeypatch, capsys, *args[1:])
        assert code == 0, (command, out, err)
        assert "Loading pipeline components" not in out + err and "Loading weights" not in out + err
        assert "Traceback" not in err
        outputs[command] = out + err

    info = outputs[commands[0]]
    assert "photos/red/broken.jpg: not an image" in info and "1 file(s) skipped" in info
    rows = list(csv.DictReader(open("runs/first/metrics.csv", newline="")))
    assert [int(row["epoch"]) for row in rows] == list(range(1, 11))  # as the progress bar counts them
    best = json.loads(Path("runs/first/metrics.json").read_text())["best_epoch"]
    validated = [row for row in rows if row["val_top1"]]  # the fast path validates some epochs only
    assert best == int(max(validated, key=lambda row: (float(row["val_top1"]), -int(row["epoch"])))["epoch"])
    assert re.search(r"weights, epoch (\d+)\)", " ".join(outputs[commands[1]].split())).group(1) == str(best)
    # the recipe was set to the photos' size: nothing about it; what is left is the training's own
    assert "image_size" not in Path("runs/first/warnings.log").read_text()

    from genaug.manifest import read_manifest

    edits = read_manifest("sets/edits")
    assert len(edits) == 30 and Path(edits[0].model["path"]) == Path("models/my-ip2p").resolve()
    assert len(read_manifest("sets/mixed/fractal")) == 30
    # the dry run reads the photos (their content goes into the keys): the broken one is the only warning
    warned = [line for line in outputs[commands[4]].splitlines() if "warning" in line]
    assert "diffusemix" in outputs[commands[4]] and len(warned) == 1 and "photos/red/broken.jpg" in warned[0]
    results = json.loads(Path("runs/my_photos/results.json").read_text())
    assert [arm["name"] for arm in results["arms"]] == ["baseline", "diffusemix"]
    assert results["arms"][1]["synthetic_samples"] == 30
    assert Path("runs/my_photos/report/index.html").is_file()

    # The Python form of the same steps, as the section shows it: the same results.
    block = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    namespace: dict = {}
    exec(compile(block, "getting-started.md (python)", "exec"), namespace)  # noqa: S102 - the documented code
    first = json.loads(Path("runs/first/metrics.json").read_text())
    assert namespace["result"].test["top1"] == first["test"]["top1"]  # genaug train and train() agree
    python_edits = {(r.id, r.seed, r.prompt) for r in read_manifest("sets/py-edits")}
    assert python_edits == {(r.id, r.seed, r.prompt) for r in edits}
    assert set(namespace["mixed"]) == {"concat", "fractal"}
    assert namespace["results"]["arms"] == json.loads(Path("runs/my_photos/results.json").read_text())["arms"]


def test_pocket_mismatches_name_every_pocket_model_of_each_stage_kind():
    from genaug.checks import pocket_mismatches
    from genaug.config import DatasetConfig, FilterConfig, MixConfig, SdiConfig

    photos, digits = DatasetConfig(name="folder", root="photos", image_size=64), DatasetConfig()
    mix = MixConfig(generated="g", output="o", methods=["concat", "shb"])
    sdi = SdiConfig(work_dir="w", model="runwayml/stable-diffusion-v1-5")
    filters = FilterConfig(set_dir="s", filters=[{"name": "frames"}])
    assert [m.split(" is ")[0] for m in pocket_mismatches(mix, photos, "stages.m.")] == ["stages.m.shb.clip"]
    assert "its scores mean little on other images" in pocket_mismatches(mix, photos)[0]
    assert [m.split(" is ")[0] for m in pocket_mismatches(sdi, photos)] == ["clip"]  # the SD model is a hub id
    assert pocket_mismatches(filters, photos) == []  # the frames filter uses no CLIP
    assert pocket_mismatches(mix, digits) == pocket_mismatches(sdi, digits) == []
