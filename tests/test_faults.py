"""Kill -9 at seeded random moments during every resumable stage, rerun, compare with an uninterrupted run.

docs/reliability.md: a stage killed at any moment and run again ends with the same artifacts as
a run that was never interrupted. Each test runs a stage once without interruption, then
kills it at least ten times at random moments (during start-up, mid-batch, mid-write,
mid-checkpoint), runs it to completion and compares: image hashes, manifests (same ids,
no duplicate, no record without its image, no orphan image), weights (every safetensors
tensor equal), metrics. The measured figures (kills per stage, progress at each kill) go to
``$GENAUG_FAULT_FIGURES`` or ``fault_figures.json`` in the pytest temporary folder;
docs/reliability.md quotes them.

The last tests fill or write-protect the output of a generation run: a clear error,
nothing recorded without its image, and a rerun completes once the output takes data again.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fault_helpers import (
    ForkServer,
    assert_same_tensors,
    check_records_have_images,
    count_lines,
    file_digests,
    kill_repeatedly,
    manifest_view,
    run_to_completion,
    write_figures,
    write_generated_set,
)
from generation_helpers import check_set_integrity

pytestmark = pytest.mark.slow

KILLS = 10
PRELOAD = (
    "numpy", "torch", "PIL.Image", "safetensors.torch", "transformers", "diffusers", "genaug.cli", "genaug.config",
    "genaug.manifest", "genaug.generation.stage", "genaug.mixing.stage", "genaug.filtering", "genaug.sdi.train",
    "genaug.sdi.embed", "genaug.training", "genaug.pocket.build", "genaug.experiment", "genaug.experiment.runner",
    "generation_helpers", "training_helpers", "test_sdi_helpers", "fault_helpers",
)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return tmp_path_factory.mktemp("faults")


@pytest.fixture(scope="module")
def server(workspace):
    """One fork server for the module: imports once, forks a fresh child for every run."""
    env = {**os.environ, "GENAUG_HOME": str(workspace / "home"), "OMP_NUM_THREADS": "1", "GENAUG_NUM_THREADS": "1"}
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "GENAUG_POCKET_DIR"):
        env.pop(name, None)
    fork_server = ForkServer(env, PRELOAD)
    yield fork_server
    fork_server.close()


@pytest.fixture(scope="module")
def tiny(workspace):
    """Random tiny diffusion and CLIP folders (plumbing, not quality)."""
    from genaug.generation.tiny import build_tiny_pipeline
    from genaug.sdi.tiny import build_tiny_clip, build_tiny_sd

    return {
        "ip2p": str(build_tiny_pipeline("ip2p", workspace / "models" / "ip2p")),
        "sd": str(build_tiny_sd(workspace / "models" / "sd")),
        "clip": str(build_tiny_clip(workspace / "models" / "clip")),
    }


@pytest.fixture(scope="module")
def figures(workspace):
    """Where the measured figures go: ``$GENAUG_FAULT_FIGURES`` if set, else the temporary folder."""
    return Path(os.environ.get("GENAUG_FAULT_FIGURES", workspace / "fault_figures.json"))


def _assert_same_set(reference: Path, resumed: Path) -> int:
    """Same records (but creation time), same image bytes, and the resumed set is clean."""
    check_set_integrity(resumed)
    assert manifest_view(resumed) == manifest_view(reference)
    ours, theirs = file_digests(resumed / "images"), file_digests(reference / "images")
    assert ours == theirs
    return len(ours)


def test_generation_survives_kill_9_anywhere(server, tiny, workspace, figures):
    """InstructPix2Pix edits of 48 digits in batches of 2, killed 10+ times, equal the uninterrupted set."""
    root = workspace / "generate"
    args = lambda name: [root / name, tiny["ip2p"], 48]  # noqa: E731
    seconds = run_to_completion(server, "fault_helpers:generate_worker", args("reference"), root.with_suffix(".log"))
    killed = kill_repeatedly(server, "fault_helpers:generate_worker", args("resumed"), root.with_suffix(".log"),
                             random.Random(1), kills=KILLS, progress=lambda: count_lines(root / "resumed"), total=48, step=3,
                             jitter=0.1,
                             after_kill=lambda: check_records_have_images(root / "resumed"))
    assert killed.kills >= KILLS, killed
    run_to_completion(server, "fault_helpers:generate_worker", args("resumed"), root.with_suffix(".log"))
    images = _assert_same_set(root / "reference", root / "resumed")
    assert images == 48
    write_figures(figures, "generation", {"kills": killed.kills, "records_at_kill": killed.progress_at_kill,
                                          "images": images, "reference_seconds": round(seconds, 1)})


def test_mixing_survives_kill_9_anywhere(server, workspace, figures):
    """concat, rect and fractal sets of 150 edits in batches of 2, killed 10+ times, equal the uninterrupted sets
    (mixing writes about 1,000 images/s: the run must be long enough for ten kills to land)."""
    root = workspace / "mix"
    write_generated_set(root / "generated", 150)
    args = lambda name: [root / "generated", root / name, 150]  # noqa: E731
    seconds = run_to_completion(server, "fault_helpers:mix_worker", args("reference"), root.with_suffix(".log"))

    def intact() -> None:
        for method in ("concat", "rect", "fractal"):
            check_records_have_images(root / "resumed" / method)

    killed = kill_repeatedly(server, "fault_helpers:mix_worker", args("resumed"), root.with_suffix(".log"),
                             random.Random(2), kills=KILLS, progress=lambda: count_lines(root / "resumed"), total=450, step=4,
                             jitter=0.03, after_kill=intact)
    assert killed.kills >= KILLS, killed
    run_to_completion(server, "fault_helpers:mix_worker", args("resumed"), root.with_suffix(".log"))
    images = sum(_assert_same_set(root / "reference" / m, root / "resumed" / m) for m in ("concat", "rect", "fractal"))
    assert images == 450
    write_figures(figures, "mixing", {"kills": killed.kills, "records_at_kill": killed.progress_at_kill,
                                      "images": images, "reference_seconds": round(seconds, 1)})


def test_filtering_survives_kill_9_anywhere(server, tiny, workspace, figures):
    """The filter rewrites a 40-image manifest; killed 10+ times at random moments, the manifest is
    always whole (old or new, same ids, every image untouched) and the rerun equals an uninterrupted run."""
    root = workspace / "filter"
    write_generated_set(root / "source", 40, size=16)
    for name in ("reference", "resumed"):
        shutil.copytree(root / "source", root / name)
    seconds = run_to_completion(server, "fault_helpers:filter_worker", [root / "reference", tiny["clip"]], root.with_suffix(".log"))
    source_ids, source_images = set(manifest_view(root / "source")), file_digests(root / "source" / "images")

    def intact() -> None:
        assert set(manifest_view(root / "resumed")) == source_ids
        assert file_digests(root / "resumed" / "images") == source_images

    killed = kill_repeatedly(server, "fault_helpers:filter_worker", [root / "resumed", tiny["clip"]], root.with_suffix(".log"),
                             random.Random(3), kills=KILLS, span=1.2 * seconds, restart_when_done=True, after_kill=intact)
    assert killed.kills >= KILLS, killed
    run_to_completion(server, "fault_helpers:filter_worker", [root / "resumed", tiny["clip"]], root.with_suffix(".log"))
    assert _assert_same_set(root / "reference", root / "resumed") == 40
    reference = json.loads((root / "reference" / "filter.json").read_text())
    resumed = json.loads((root / "resumed" / "filter.json").read_text())
    # Which scores came from the score cache differs (a rerun after a finished run reads its own).
    varies = ("created", "seconds", "scores_reused", "scores_made")
    assert {k: v for k, v in resumed.items() if k not in varies} == {k: v for k, v in reference.items() if k not in varies}
    for name, made in resumed["scores_made"].items():
        assert made + sum(resumed["scores_reused"].get(name, {}).values()) == 40
    write_figures(figures, "filtering", {"kills": killed.kills, "attempts": killed.attempts, "ms_at_kill": killed.progress_at_kill,
                                         "records": 40, "reference_seconds": round(seconds, 1)})


def test_projector_training_survives_kill_9_anywhere(server, tiny, workspace, figures):
    """SDI embed + projector training (60 steps, checkpoint every 2), killed 10+ times: same projector tensors
    and a training log with every step once."""
    root = workspace / "projector"
    args = lambda name: [root / name, tiny["sd"], tiny["clip"]]  # noqa: E731
    seconds = run_to_completion(server, "fault_helpers:projector_worker", args("reference"), root.with_suffix(".log"))
    killed = kill_repeatedly(server, "fault_helpers:projector_worker", args("resumed"), root.with_suffix(".log"),
                             random.Random(4), kills=KILLS, progress=lambda: count_lines(root / "resumed", ("log.csv",)),
                             total=61, step=2, jitter=0.05)
    assert killed.kills >= KILLS, killed
    run_to_completion(server, "fault_helpers:projector_worker", args("resumed"), root.with_suffix(".log"))
    weights = sorted(p.relative_to(root / "reference") for p in (root / "reference").rglob("*.safetensors"))
    assert any(p.name == "projector.safetensors" for p in weights)
    tensors = sum(assert_same_tensors(root / "reference" / p, root / "resumed" / p) for p in weights)
    def steps(name: str) -> list[str]:
        return [line.split(",")[0] for line in next((root / name).rglob("log.csv")).read_text().splitlines()[1:]]

    assert steps("resumed") == steps("reference") == [str(step) for step in range(60)], "the log repeats or skips steps"
    write_figures(figures, "projector training", {"kills": killed.kills, "log_csv_lines_at_kill": killed.progress_at_kill,
                                                  "steps": 60, "weight_files": len(weights), "tensors": tensors,
                                                  "reference_seconds": round(seconds, 1)})


def test_classifier_training_survives_kill_9_anywhere(server, workspace, figures):
    """40 epochs of the pocket recipe, checkpoint every epoch, killed 10+ times: same weights and metrics."""
    root = workspace / "classifier"
    seconds = run_to_completion(server, "fault_helpers:classifier_worker", [root / "reference", 40], root.with_suffix(".log"))
    killed = kill_repeatedly(server, "fault_helpers:classifier_worker", [root / "resumed", 40], root.with_suffix(".log"),
                             random.Random(5), kills=KILLS, progress=lambda: count_lines(root / "resumed", ("metrics.csv",)),
                             total=41, step=3, jitter=0.05)
    assert killed.kills >= KILLS, killed
    run_to_completion(server, "fault_helpers:classifier_worker", [root / "resumed", 40], root.with_suffix(".log"))
    weights = sorted(p.relative_to(root / "reference") for p in (root / "reference").rglob("*.safetensors"))
    tensors = sum(assert_same_tensors(root / "reference" / p, root / "resumed" / p) for p in weights)
    assert weights == sorted(p.relative_to(root / "resumed") for p in (root / "resumed").rglob("*.safetensors"))
    reference = json.loads((root / "reference" / "metrics.json").read_text())
    resumed = json.loads((root / "resumed" / "metrics.json").read_text())
    for key in ("test", "best_epoch", "selection"):
        assert resumed[key] == reference[key], key
    epochs = [line.split(",")[0] for line in (root / "resumed" / "metrics.csv").read_text().splitlines()[1:]]
    assert len(epochs) == len(set(epochs)) == 40, "metrics.csv repeats or skips epochs"
    write_figures(figures, "classifier training", {"kills": killed.kills, "metrics_csv_lines_at_kill": killed.progress_at_kill,
                                                   "epochs": 40, "weight_files": len(weights), "tensors": tensors,
                                                   "reference_seconds": round(seconds, 1)})


TINY_POCKET_ARCH = {
    "clip": {"vision": {"patch_size": 4, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64},
             "text": {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64},
             "projection_dim": 16},
    "vae": {"block_out_channels": [8, 16], "layers_per_block": 1, "latent_channels": 4, "norm_num_groups": 4},
    "sd": {"block_out_channels": [16, 32], "attention": [True, True], "layers_per_block": 1, "attention_head_dim": 2,
           "norm_num_groups": 8},
}


def reduced_pocket_spec(steps: int = 15) -> tuple[dict, int]:
    """The committed build spec with tiny architectures, ``steps`` per model, a checkpoint every step and
    a token quality pass; also the number of training-log lines a complete build writes (one per 5 steps)."""
    from genaug.pocket.build import DEFAULT_SPEC

    spec = yaml.safe_load(DEFAULT_SPEC.read_text())
    spec.update(checkpoint_every_s=0, quick={})
    lines = 0
    for name, section in spec.items():
        if isinstance(section, dict) and isinstance(section.get("train"), dict):
            train = section["train"]
            train.update(steps=steps, batch_size=16, warmup=2)
            for key in ("shape_curriculum_steps",):
                if key in train:
                    train[key] = steps // 3
            if name in TINY_POCKET_ARCH:
                section["arch"] = {**section.get("arch", {}), **TINY_POCKET_ARCH[name]}
            lines += -(-steps // 5)
    quality = spec["quality"]
    quality["judge_steps"] = 5
    for part in ("sd", "ip2p"):
        quality[part].update(n=4, steps=2)
    return spec, lines


def test_pocket_build_survives_kill_9_anywhere(server, workspace, figures):
    """``genaug pocket build --quick`` of the build spec reduced to tiny models (40 steps each, a
    checkpoint every step), killed 10+ times: every exported safetensors tensor equals the uninterrupted build's."""
    root = workspace / "pocket"
    root.mkdir()
    spec = root / "spec.yaml"
    reduced, log_lines = reduced_pocket_spec(steps=40)
    spec.write_text(yaml.safe_dump(reduced))
    args = lambda name: ["pocket", "build", "--quick", "--spec", spec, "--out", root / name, "--threads", "1"]  # noqa: E731
    env = lambda name: {"GENAUG_HOME": str(root / f"home-{name}")}  # noqa: E731
    seconds = run_to_completion(server, "fault_helpers:cli_worker", args("reference"), root.with_suffix(".log"), env("reference"))
    killed = kill_repeatedly(server, "fault_helpers:cli_worker", args("resumed"), root.with_suffix(".log"), random.Random(6),
                             kills=KILLS, progress=lambda: count_lines(root / "resumed", ("train_log.jsonl",)), total=log_lines, step=2,
                             jitter=0.5, env=env("resumed"))
    assert killed.kills >= KILLS, killed
    run_to_completion(server, "fault_helpers:cli_worker", args("resumed"), root.with_suffix(".log"), env("resumed"))
    assert (root / "resumed" / "build.json").is_file()
    weights = sorted(p.relative_to(root / "reference") for p in (root / "reference").rglob("*.safetensors"))
    assert len(weights) >= 7  # clip, sd (vae, text encoder, unet), ip2p (vae, text encoder, unet)
    tensors = sum(assert_same_tensors(root / "reference" / p, root / "resumed" / p) for p in weights)
    assert not list((root / "home-resumed" / "pocket-work").glob("*.ckpt")), "checkpoints left after the build"
    write_figures(figures, "pocket build", {"kills": killed.kills, "log_lines_at_kill": killed.progress_at_kill,
                                            "log_lines": log_lines, "weight_files": len(weights), "tensors": tensors,
                                            "reference_seconds": round(seconds, 1)})


EXPERIMENT = {
    "name": "faults",
    "dataset": {"name": "pocket_digits", "labels_per_class": 2},
    "seeds": [0],
    "train": {"recipe": "pocket", "epochs": 2, "width": 0.125, "cpu_threads": 1,
              "logging": {"tensorboard": False, "progress": False}},
    "stages": {"edits": {"kind": "generate", "regime": "single", "prompts": ["make it red on blue"],
                         "editor": {"name": "instruct", "steps": 2}, "engine": {"batch_size": 2, "progress": False}}},
    "arms": [{"name": "baseline"}, {"name": "edits", "data": "edits"}],
}


def test_genaug_run_survives_kill_9_anywhere(server, tiny, workspace, figures):
    """``genaug run`` of a tiny experiment (a generate stage on 20 images, two arms of 2 epochs),
    killed 10+ times: same generated set, same weights, same results."""
    root = workspace / "run"
    root.mkdir()
    experiment = json.loads(json.dumps(EXPERIMENT))
    experiment["stages"]["edits"]["editor"]["model"] = tiny["ip2p"]  # the tiny random pipeline: plumbing, not quality
    (root / "experiment.yaml").write_text(yaml.safe_dump(experiment))
    args = lambda name: ["run", root / "experiment.yaml", "--out", root / name]  # noqa: E731
    env = {"GENAUG_HOME": str(root / "home")}
    seconds = run_to_completion(server, "fault_helpers:cli_worker", args("reference"), root.with_suffix(".log"), env)
    killed = kill_repeatedly(server, "fault_helpers:cli_worker", args("resumed"), root.with_suffix(".log"), random.Random(7),
                             kills=KILLS, progress=lambda: count_lines(root / "resumed"),
                             total=count_lines(root / "reference"), step=3, jitter=0.1, env=env)
    assert killed.kills >= KILLS, killed
    run_to_completion(server, "fault_helpers:cli_worker", args("resumed"), root.with_suffix(".log"), env)

    sets = sorted(p.parent.relative_to(root / "reference") for p in (root / "reference").rglob("manifest.jsonl"))
    assert sets, "the generate stage wrote no set"
    images = sum(_assert_same_set(root / "reference" / s, root / "resumed" / s) for s in sets)
    weights = sorted(p.relative_to(root / "reference") for p in (root / "reference").rglob("*.safetensors"))
    assert weights == sorted(p.relative_to(root / "resumed") for p in (root / "resumed").rglob("*.safetensors"))
    tensors = sum(assert_same_tensors(root / "reference" / p, root / "resumed" / p) for p in weights)

    def accuracies(name: str) -> dict:
        results = json.loads((root / name / "results.json").read_text())
        keys = ("seed", "dir", "top1", "balanced_accuracy", "real_samples", "synthetic_samples")
        return {arm["name"]: [{k: run[k] for k in keys} for run in arm["runs"]] for arm in results["arms"]}

    assert accuracies("resumed") == accuracies("reference")
    assert len(accuracies("resumed")) == 2
    write_figures(figures, "genaug run", {"kills": killed.kills, "lines_at_kill": killed.progress_at_kill,
                                          "images": images, "weight_files": len(weights), "tensors": tensors,
                                          "reference_seconds": round(seconds, 1)})


# ---------------------------------------------------------------------------- full and read-only output

STORAGE_SCRIPT = '''
import resource, signal, sys
sys.path.insert(0, {tests!r})
from genaug.config import EngineConfig
from genaug.generation.engine import run_job
from genaug.manifest import StorageError
from generation_helpers import SeedRenderer
from fault_helpers import seed_items

limit = int(sys.argv[2])
if limit:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
try:
    run_job(seed_items(40), SeedRenderer(size=16), sys.argv[1], experiment_seed=0, engine=EngineConfig(batch_size=4, progress=False))
except StorageError as error:
    print(error, file=sys.stderr)
    sys.exit(3)
'''


def _run_storage_script(tmp_path: Path, set_dir: Path, limit: int = 0) -> subprocess.CompletedProcess:
    script = tmp_path / "storage_script.py"
    script.write_text(STORAGE_SCRIPT.format(tests=str(Path(__file__).parent)))
    env = {**os.environ, "GENAUG_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    return subprocess.run([sys.executable, str(script), str(set_dir), str(limit)], env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def storage_reference(tmp_path_factory):
    """The 40-image set written with room to spare."""
    from genaug.config import EngineConfig
    from genaug.generation.engine import run_job

    from fault_helpers import seed_items
    from generation_helpers import SeedRenderer

    set_dir = tmp_path_factory.mktemp("storage") / "reference"
    run_job(seed_items(40), SeedRenderer(size=16), set_dir, experiment_seed=0, engine=EngineConfig(batch_size=4, progress=False))
    return set_dir


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 48 KiB tmpfs (a dozen 4 KiB pages: about ten images, then the disk is full)."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(mount_point)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs needs root; the RLIMIT_FSIZE test covers a full disk without it")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


def _remount(mount_point: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(mount_point)], check=True)


def test_a_full_disk_is_a_clear_error_and_a_rerun_after_space_returns_completes(tmp_path, small_tmpfs, storage_reference):
    set_dir = small_tmpfs / "set"
    failed = _run_storage_script(tmp_path, set_dir)
    assert failed.returncode == 3, failed.stderr[-2000:]
    assert "No space left on device" in failed.stderr and "run the same command again" in failed.stderr
    recorded = check_records_have_images(set_dir)
    assert 0 < recorded < 40, "the disk should fill part-way"
    _remount(small_tmpfs, "size=4m")
    done = _run_storage_script(tmp_path, set_dir)
    assert done.returncode == 0, done.stderr[-2000:]
    assert _assert_same_set(storage_reference, set_dir) == 40


def test_a_read_only_output_is_a_clear_error_and_a_rerun_when_writable_completes(tmp_path, small_tmpfs, storage_reference):
    """Root ignores file modes (chmod 555 would not stop it), so the output is a file system remounted read-only."""
    _remount(small_tmpfs, "size=4m")
    set_dir = small_tmpfs / "set"
    shutil.copytree(storage_reference, set_dir)
    lines = (set_dir / "manifest.jsonl").read_text().splitlines(keepends=True)
    (set_dir / "manifest.jsonl").write_text("".join(lines[:17]))  # a run that stopped after 17 records
    _remount(small_tmpfs, "ro")
    failed = _run_storage_script(tmp_path, set_dir)
    assert failed.returncode == 3, failed.stderr[-2000:]
    assert "Read-only file system" in failed.stderr and str(set_dir) in failed.stderr
    assert check_records_have_images(set_dir) == 17
    _remount(small_tmpfs, "rw")
    done = _run_storage_script(tmp_path, set_dir)
    assert done.returncode == 0, done.stderr[-2000:]
    assert _assert_same_set(storage_reference, set_dir) == 40


def test_a_file_size_limit_mid_append_is_a_clear_error_and_a_rerun_completes(tmp_path, storage_reference):
    """RLIMIT_FSIZE makes the manifest append fail part-way through a record (its image already
    on disk): the torn line is not a record, and the rerun cuts it off and completes."""
    set_dir = tmp_path / "set"
    failed = _run_storage_script(tmp_path, set_dir, limit=3000)
    assert failed.returncode == 3, failed.stderr[-2000:]
    assert "File too large" in failed.stderr and "run the same command again" in failed.stderr
    assert (set_dir / "manifest.jsonl").stat().st_size == 3000, "the limit should cut a record mid-line"
    recorded = check_records_have_images(set_dir)
    assert 0 < recorded < 40
    done = _run_storage_script(tmp_path, set_dir)
    assert done.returncode == 0, done.stderr[-2000:]
    assert _assert_same_set(storage_reference, set_dir) == 40
