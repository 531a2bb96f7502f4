"""Untrusted files: a pickle planted where weights are expected is refused without running.

A pickle can run any code when it is loaded. genaug reads weights only through
safetensors or ``torch.load(weights_only=True)`` (docs/reliability.md), so a planted pickle is an
error, not an exploit. Every payload here writes a marker file when unpickled; each test
first proves that an unsafe load would run it, then that genaug's load refuses it and the
marker never appears.
"""

from __future__ import annotations

import pickle
import re
import shutil
from pathlib import Path

import pytest
import torch

SRC = Path(__file__).resolve().parents[1] / "src" / "genaug"


class Payload:
    """Unpickling this runs ``exec``: it writes ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('code ran')",))


def plant(path: Path, marker: Path, *, legacy: bool = False) -> Path:
    """Write a malicious pickle at ``path``: torch's zip format (a dict holding the payload) or a bare pickle."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if legacy:
        path.write_bytes(pickle.dumps(Payload(marker)))
    else:
        torch.save({"step": 3, "optimizer": Payload(marker)}, path)
    return path


def test_the_payload_runs_when_loaded_unsafely(tmp_path):
    """Without this the other tests could pass with a payload that does nothing."""
    marker = tmp_path / "marker"
    torch.load(plant(tmp_path / "a.pt", marker), weights_only=False)
    assert marker.read_text() == "code ran"
    marker.unlink()
    pickle.loads(plant(tmp_path / "b.pt", marker, legacy=True).read_bytes())
    assert marker.is_file()


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A real two-epoch training run (the pocket recipe at width 0.125) with its checkpoint and best weights."""
    from genaug.config import TrainConfig
    from genaug.training import train

    from training_helpers import pocket_splits

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("run") / "run"
    splits = pocket_splits(labels_per_class=2, val_per_class=2)
    config = TrainConfig(recipe="pocket", epochs=2, width=0.125, batch_size=16, cpu_threads=1,
                         logging={"progress": False, "tensorboard": False})
    train(config, splits, out)
    return {"dir": out, "config": config, "splits": splits}


@pytest.mark.parametrize("target", ["checkpoint/state.pt", "checkpoint/model.safetensors"])
@pytest.mark.parametrize("legacy", [False, True], ids=["torch-zip", "bare-pickle"])
def test_a_pickle_in_a_trainer_checkpoint_is_refused_on_resume(tmp_path, finished_run, target, legacy):
    from genaug.training import train
    from genaug.training.checkpoint import UntrustedFileError

    run = tmp_path / "run"
    shutil.copytree(finished_run["dir"], run)
    (run / "metrics.json").unlink()  # unfinished: the next call resumes from the checkpoint
    marker = tmp_path / "marker"
    plant(run / target, marker, legacy=legacy)
    with pytest.raises(UntrustedFileError, match=re.escape(target.split("/")[-1])):
        train(finished_run["config"], finished_run["splits"], run)
    assert not marker.exists(), "the planted pickle ran"


def test_a_pickle_as_a_classifiers_best_weights_is_refused(tmp_path, finished_run):
    from genaug.filtering import load_classifier
    from genaug.training.checkpoint import UntrustedFileError

    run = tmp_path / "run"
    shutil.copytree(finished_run["dir"], run)
    load_classifier(run)  # the genuine run loads
    marker = tmp_path / "marker"
    plant(run / "best.safetensors", marker)
    with pytest.raises(UntrustedFileError, match="best.safetensors"):
        load_classifier(run)
    assert not marker.exists()


@pytest.mark.parametrize("legacy", [False, True], ids=["torch-zip", "bare-pickle"])
def test_a_pickle_as_the_sdi_projector_is_refused(tmp_path, legacy):
    from genaug.sdi.projector import Projector, load_projector, save_projector

    genuine = tmp_path / "projector.safetensors"
    save_projector(genuine, Projector(8, 4, 16))
    assert isinstance(load_projector(genuine), Projector)
    marker = tmp_path / "marker"
    with pytest.raises(ValueError, match="not a projector written by genaug"):
        load_projector(plant(tmp_path / "evil.safetensors", marker, legacy=legacy))
    assert not marker.exists()


@pytest.fixture(scope="module")
def pocket(tmp_path_factory):
    from genaug.pocket.tiny import make_tiny_pocket

    torch.set_num_threads(1)
    return make_tiny_pocket(tmp_path_factory.mktemp("pocket"))


def swap_for_pickle(folder: Path, stem: str, marker: Path) -> Path:
    """Copy a model folder, replacing its ``<stem>.safetensors`` by a planted ``<stem>.bin``."""
    (folder / f"{stem}.safetensors").unlink()
    return plant(folder / f"{stem}.bin", marker)


def test_a_pickle_in_a_pocket_clip_folder_is_refused(tmp_path, pocket):
    from genaug.clip import Clip

    clip = tmp_path / "clip"
    shutil.copytree(pocket["clip"], clip)
    marker = tmp_path / "marker"
    swap_for_pickle(clip, "model", marker)
    (clip / "pytorch_model.bin").write_bytes((clip / "model.bin").read_bytes())  # the name transformers looks for
    with pytest.raises(Exception) as error:  # transformers' own error type; what matters is that nothing ran
        Clip.from_pretrained(str(clip))
    assert "weights_only" in str(error.value) or "Weights only" in str(error.value) or "safetensors" in str(error.value)
    assert not marker.exists()


@pytest.mark.parametrize("loader", ["genaug-editor", "diffusers-default"])
def test_a_pickle_in_a_pocket_unet_folder_is_refused(tmp_path, pocket, loader):
    """The editors load with ``use_safetensors=True`` (a .bin is not even looked at); diffusers'
    own default falls back to .bin but only through ``torch.load(weights_only=True)``."""
    sd = tmp_path / "sd"
    shutil.copytree(pocket["sd"], sd)
    marker = tmp_path / "marker"
    (sd / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    plant(sd / "unet" / "diffusion_pytorch_model.bin", marker)
    with pytest.raises(Exception):
        if loader == "genaug-editor":
            from genaug.config import EditorConfig
            from genaug.generation.editors import create_editor

            create_editor(EditorConfig(name="img2img", model=str(sd), steps=2), device="cpu").pipeline
        else:
            from diffusers import StableDiffusionPipeline

            StableDiffusionPipeline.from_pretrained(sd)
    assert not marker.exists()


def test_a_pickle_as_a_pocket_build_checkpoint_is_refused(tmp_path):
    from genaug.pocket import train as pt
    from genaug.training.checkpoint import UntrustedFileError

    marker = tmp_path / "marker"
    with pytest.raises(UntrustedFileError, match=r"vae-0123\.ckpt is not plain training state"):
        pt.load_stage_checkpoint(plant(tmp_path / "vae-0123.ckpt", marker))
    assert not marker.exists()


def test_no_unsafe_loader_in_the_code_base():
    """Every torch.load passes weights_only=True; no pickle.load outside the CIFAR reader's
    restricted unpickler; no trust_remote_code; numpy never loads pickles."""
    problems = []
    for path in sorted(SRC.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        name = path.relative_to(SRC).as_posix()
        for match in re.finditer(r"torch\.load\(([^)]*)\)", text):
            if "weights_only=True" not in match.group(1):
                problems.append(f"{name}: {match.group(0)}")
        if re.search(r"pickle\.loads?\(", text):
            problems.append(f"{name}: pickle.load")
        if "trust_remote_code=True" in text:
            problems.append(f"{name}: trust_remote_code=True")
        if "allow_pickle=True" in text:
            problems.append(f"{name}: allow_pickle=True")
    assert not problems, problems
