"""A model of the wrong architecture for its stage fails before any work, with one line naming both shapes.

The wrong folders are real ones written by the tiny builder (tiny and pocket sizes), given
to the wrong stage: an SD folder to the InstructPix2Pix editor, an InstructPix2Pix folder
to txt2img / img2img and to SDI, a pipeline whose text encoder is wider than its UNet's
cross-attention, a CLIP of another width than a trained projector reads, a projector whose
tokens are not the UNet's width.
"""

from __future__ import annotations

import shutil

import pytest
import torch

from genaug.config import GenerateConfig
from genaug.generation.architecture import ArchitectureError
from genaug.generation.stage import generate
from genaug.pocket.tiny import make_tiny_pocket, write_tiny_models
from genaug.sdi import build_bank, generate_from_samples, train_projector
from genaug.sdi.embed import embed_training_images, embeds_path
from genaug.sdi.projector import Projector, save_projector
from genaug.sdi.sample import bank_path
from genaug.sdi.train import projector_path

from generation_helpers import pocket_dataset
from test_sdi_helpers import digits, sdi_config, tiny_models


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("arch")
    folders = make_tiny_pocket(root / "tiny", models=["sd", "ip2p"])
    # SD whose text encoder is the pocket-size one (128-d) over the tiny UNet (32-d cross-attention)
    wide = write_tiny_models({"sd": root / "pocket-size-sd"}, sizes="pocket")["sd"]
    mixed = root / "mixed-sd"
    shutil.copytree(folders["sd"], mixed)
    shutil.rmtree(mixed / "text_encoder")
    shutil.copytree(wide / "text_encoder", mixed / "text_encoder")
    return {**folders, "mixed": mixed}


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("GENAUG_HOME", str(tmp_path / "home"))


def generate_config(tmp_path, editor: str, model) -> GenerateConfig:
    return GenerateConfig(output=tmp_path / "out", editor={"name": editor, "model": str(model), "steps": 2},
                          prompts=["make it red on blue"], engine={"progress": False, "device": "cpu"})


def fails_with(call, message: str) -> str:
    with pytest.raises(ArchitectureError) as error:
        call()
    text = str(error.value)
    assert "\n" not in text and text.startswith(message), text
    return text


# ---------------------------------------------------------------------------- editors


def test_a_4_channel_unet_given_to_the_instruct_editor(tmp_path, tiny):
    fails_with(
        lambda: generate(generate_config(tmp_path, "instruct", tiny["sd"]), dataset=pocket_dataset(2)),
        f"editor instruct: UNet at {tiny['sd']}/unet takes 4 input channels; InstructPix2Pix needs 8 (4 latent + 4 image)",
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("editor", ["txt2img", "img2img"])
def test_an_8_channel_unet_given_to_stable_diffusion_editors(tmp_path, tiny, editor):
    text = fails_with(
        lambda: generate(generate_config(tmp_path, editor, tiny["ip2p"]), dataset=pocket_dataset(2)),
        f"editor {editor}: UNet at {tiny['ip2p']}/unet takes 8 input channels; Stable Diffusion needs 4 (the VAE's latent channels)",
    )
    assert text.endswith("this is an InstructPix2Pix UNet: use it with the instruct editor")
    assert not (tmp_path / "out").exists()


def test_a_text_encoder_wider_than_the_unets_cross_attention(tmp_path, tiny):
    fails_with(
        lambda: generate(generate_config(tmp_path, "txt2img", tiny["mixed"]), dataset=pocket_dataset(2)),
        f"editor txt2img: text encoder at {tiny['mixed']}/text_encoder gives 128-d token states; "
        f"the UNet at {tiny['mixed']}/unet cross-attends to 32-d tokens (they must be equal)",
    )
    assert not (tmp_path / "out").exists()


def test_the_right_folders_pass(tmp_path, tiny):
    from genaug.generation.editors import create_editor

    for editor, model in (("instruct", tiny["ip2p"]), ("txt2img", tiny["sd"]), ("img2img", tiny["sd"])):
        create_editor(generate_config(tmp_path, editor, model).editor, sources=lambda item: None)


def test_the_cli_prints_one_line_exits_2_and_writes_nothing(tmp_path, tiny, monkeypatch, capsys):
    from genaug.cli import main

    monkeypatch.setattr("sys.argv", [
        "genaug", "generate", f"output={tmp_path / 'cli'}", "dataset.labels_per_class=1", "editor.name=instruct",
        f"editor.model={tiny['sd']}", "engine.progress=false",
    ])  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: editor instruct: UNet at {tiny['sd']}/unet takes 4 input channels; InstructPix2Pix needs 8 "
                   "(4 latent + 4 image); this is a text-to-image UNet: give an InstructPix2Pix model")
    assert not (tmp_path / "cli").exists()


# ---------------------------------------------------------------------------- SDI


@pytest.fixture
def embedded(tmp_path):
    """An SDI work dir on the tiny 32-d CLIP and SD, with its embedding tables."""
    data = {"train": digits(1, classes=3)}
    config = sdi_config(tmp_path / "work", dataset={"name": "pocket_digits"})
    embed_training_images(config, datasets=data)
    return config, data


def test_a_projector_trained_on_another_clip_width(tmp_path, embedded):
    """A projector for 128-d CLIP embeddings (pocket CLIP) meets 32-d ones (the tiny CLIP): bank and embed refuse."""
    config, data = embedded
    save_projector(projector_path(config.work_dir), Projector(128, 16, 32))
    table = embeds_path(config.work_dir, "train")
    fails_with(
        lambda: build_bank(config),
        f"sdi bank: the projector at {projector_path(config.work_dir)} reads 128-d CLIP image embeddings; "
        f"the embedding table {table} gives 32-d",
    )
    assert not bank_path(config.work_dir).exists()
    before = table.read_bytes()
    fails_with(
        lambda: embed_training_images(config, datasets=data),
        f"sdi embed: the projector at {projector_path(config.work_dir)} reads 128-d CLIP image embeddings; "
        f"CLIP at {tiny_models()['clip']} gives 32-d",
    )
    assert table.read_bytes() == before  # the tables the projector was fitted to are kept


def test_sdi_train_refuses_an_instruct_pix2pix_unet_and_a_projector_for_another_unet(tmp_path, tiny, embedded):
    config, data = embedded
    ip2p = config.model_copy(update={"model": str(tiny["ip2p"])})
    fails_with(lambda: train_projector(ip2p, datasets=data),
               f"sdi train: UNet at {tiny['ip2p']}/unet takes 8 input channels; Stable Diffusion needs 4")
    save_projector(projector_path(config.work_dir), Projector(32, 16, 128))
    fails_with(
        lambda: train_projector(config, datasets=data),
        f"sdi train: the projector at {projector_path(config.work_dir)} writes 128-d; "
        f"the UNet at {tiny_models()['sd']}/unet cross-attends to 32-d tokens",
    )
    assert sorted(path.name for path in (tmp_path / "work" / "projector").iterdir()) == ["projector.safetensors"]  # no caches, no log


def test_sampled_vectors_wider_than_the_unets_tokens(tmp_path):
    from genaug.sdi.tables import FeatureTable, save_table

    path = save_table(tmp_path / "samples.safetensors", FeatureTable(
        torch.zeros(2, 128), torch.tensor([0, 1]), ["sdi-a", "sdi-b"], ["zero", "one"], {"sampler": "gaussian"}))
    config = sdi_config(tmp_path / "work", generate={"output": str(tmp_path / "set")})
    fails_with(
        lambda: generate_from_samples(config, samples=path),
        f"sdi generate: the sampled vectors at {path} are 128-d; the UNet at {tiny_models()['sd']}/unet cross-attends to 32-d",
    )
    assert not (tmp_path / "set").exists()


def test_the_sdi_cli_exits_2_with_the_line(tmp_path, embedded, monkeypatch, capsys):
    from genaug.cli import main

    config, _ = embedded
    save_projector(projector_path(config.work_dir), Projector(128, 16, 32))
    monkeypatch.setattr("sys.argv", [
        "genaug", "sdi", "bank", f"work_dir={config.work_dir}", f"clip={config.clip}", f"model={config.model}",
        "dataset.name=pocket_digits",
    ])  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().startswith("error: sdi bank: the projector at ")
    assert not bank_path(config.work_dir).exists()
