"""Projector training (docs/methods/sdi.md): frozen SD, caches, loss, checkpoints, resume, presets."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from genaug.config import ConfigError, ProjectorTrainConfig
from genaug.sdi.cache import build_context_cache, build_latent_cache, resize_center_crop
from genaug.sdi.conditioning import SDI_PROMPT, encode_text
from genaug.sdi.embed import embed_training_images, embeds_path, image_embeds
from genaug.clip import Clip
from genaug.sdi.models import load_frozen_diffusion
from genaug.sdi.presets import SDI_PRESETS, resolve_train_config
from genaug.sdi.tables import load_table
from genaug.sdi.train import (
    batch_rows,
    build_projector,
    draw_step,
    evaluate_diffusion_loss,
    load_trained_projector,
    projector_dir,
    total_steps,
    train_projector,
    training_pools,
)

from test_sdi_helpers import digits, sdi_config, tiny_models

TESTS = Path(__file__).parent


@pytest.fixture(scope="module")
def data():
    torch.set_num_threads(1)
    return {"train": digits(4)}


def prepared(work_dir: Path, data, **sections):
    config = sdi_config(work_dir, **sections)
    embed_training_images(config, datasets=data)
    return config


def test_presets_follow_the_reference_and_scale_for_the_pocket_world():
    sd15 = resolve_train_config("runwayml/stable-diffusion-v1-5", ProjectorTrainConfig())
    assert sd15.preset == "sd15"
    assert (sd15.hidden, sd15.batch_size, sd15.epochs, sd15.resolution) == (1024, 64, 100, 512)
    assert (sd15.lr, sd15.weight_decay, sd15.embedding_dropout, sd15.pools) == (5e-4, 0.01, 0.05, ["train"])
    pocket = resolve_train_config("pocket:sd", ProjectorTrainConfig(lr=2e-3))
    assert pocket.preset == "pocket" and pocket.resolution == 16 and pocket.lr == 2e-3
    assert pocket.pools == ["train", "pretrain"] == SDI_PRESETS["pocket"]["pools"]


def test_training_pools_use_the_pretrain_pool_only_where_it_exists(tmp_path):
    from genaug.config import SdiConfig

    pocket = SdiConfig(work_dir=tmp_path, dataset={"name": "pocket_digits"})
    assert training_pools(pocket) == ["train", "pretrain"]
    folder = SdiConfig(work_dir=tmp_path, dataset={"name": "folder", "root": tmp_path, "image_size": 16})
    assert training_pools(folder) == ["train"]


def test_embeddings_are_clip_image_embeds_with_their_ids(tmp_path, data):
    config = prepared(tmp_path, data)
    table = load_table(embeds_path(tmp_path, "train"))
    assert table.ids == data["train"].ids and table.labels.tolist() == data["train"].labels.tolist()
    clip = Clip.from_reference(config.clip)
    torch.testing.assert_close(table.features, clip.image_embeds(data["train"].images, normalize=False))
    assert table.info["clip"] == clip.identity and table.info["normalized"] is False
    mtime = embeds_path(tmp_path, "train").stat().st_mtime_ns
    embed_training_images(config, datasets=data)  # same ids, same CLIP: reused
    assert embeds_path(tmp_path, "train").stat().st_mtime_ns == mtime


def test_caches_hold_the_vae_distribution_and_the_prompt_context(data):
    diffusion = load_frozen_diffusion(str(tiny_models()["sd"]))
    latents = build_latent_cache(diffusion.vae, data["train"], 16)
    pixels = torch.from_numpy(data["train"].images).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        distribution = diffusion.vae.encode(pixels).latent_dist
    torch.testing.assert_close(latents.mean, distribution.mean)
    torch.testing.assert_close(latents.std, distribution.std)
    context = build_context_cache(diffusion.tokenizer, diffusion.text_encoder)
    torch.testing.assert_close(context.context, encode_text(diffusion.tokenizer, diffusion.text_encoder, [SDI_PROMPT]))
    assert context.position == 7


def test_resize_center_crop_matches_torchvision():
    import numpy as np
    from PIL import Image
    from torchvision.transforms import CenterCrop, Resize

    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 50, 3), dtype=np.uint8))
    expected = np.asarray(CenterCrop(16)(Resize(16)(image)))
    np.testing.assert_array_equal(resize_center_crop(image, 16), expected)


def test_everything_but_the_projector_stays_frozen(tmp_path, data):
    config = prepared(tmp_path, data, train={"max_steps": 2})
    diffusion = load_frozen_diffusion(config.model)
    before = {name: p.clone() for name, p in diffusion.unet.named_parameters()}
    run = train_projector(config, datasets=data, diffusion=diffusion)
    assert run.steps == 2
    for module in (diffusion.unet, diffusion.vae, diffusion.text_encoder):
        assert not any(p.requires_grad or p.grad is not None for p in module.parameters())
    for name, p in diffusion.unet.named_parameters():
        torch.testing.assert_close(p, before[name], rtol=0, atol=0)
    untrained = build_projector(32, 32, 32, config.train.seed)
    trained = load_trained_projector(tmp_path)
    assert not torch.equal(trained.net[0].weight, untrained.net[0].weight)
    # the latents and the context were cached once, as safetensors
    assert {p.name for p in (projector_dir(tmp_path) / "cache").iterdir()} == {"latents-train.safetensors", "context.safetensors"}


def test_batches_and_draws_are_seeded_per_step():
    rows = [batch_rows(10, 4, seed=0, step=s) for s in range(3)]
    assert sorted(torch.cat(rows).tolist()) == list(range(10))  # one epoch = every row once
    assert torch.equal(batch_rows(10, 4, 0, 1), rows[1])
    assert total_steps(10, ProjectorTrainConfig(epochs=2, batch_size=4)) == 6
    assert total_steps(10, ProjectorTrainConfig(epochs=2, batch_size=4, max_steps=5)) == 5
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    a, b = draw_step(64, (4, 2, 2), 1000, 0.05, g()), draw_step(64, (4, 2, 2), 1000, 0.05, g())
    assert torch.equal(a.noise, b.noise) and torch.equal(a.timesteps, b.timesteps)
    drops = draw_step(100000, (1,), 1000, 0.05, g()).keep
    assert abs((~drops).float().mean().item() - 0.05) < 0.005


def test_resumed_training_equals_uninterrupted_training(tmp_path, data):
    whole = prepared(tmp_path / "whole", data, train={"epochs": 2, "checkpoint_every": 2})
    train_projector(whole, datasets=data)
    parts = prepared(tmp_path / "parts", data, train={"epochs": 2, "checkpoint_every": 2, "max_steps": 3})
    first = train_projector(parts, datasets=data)
    assert first.steps == 3
    state = torch.load(projector_dir(tmp_path / "parts") / "checkpoint" / "state.pt", weights_only=True)
    assert state["step"] == 3 and "optimizer" in state
    resumed = train_projector(parts.model_copy(update={"train": parts.train.model_copy(update={"max_steps": None})}), datasets=data)
    assert resumed.resumed_from == 3 and resumed.steps == 10  # 40 images, batch 8, 2 epochs
    a = load_file(str(projector_dir(tmp_path / "whole") / "projector.safetensors"))
    b = load_file(str(projector_dir(tmp_path / "parts") / "projector.safetensors"))
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0)
    # a finished run is returned, not trained again
    again = train_projector(whole, datasets=data)
    assert again.resumed_from == again.steps == 10


def test_resuming_with_another_recipe_is_refused(tmp_path, data):
    config = prepared(tmp_path, data, train={"max_steps": 1})
    train_projector(config, datasets=data)
    other = config.model_copy(update={"train": config.train.model_copy(update={"lr": 0.1, "max_steps": 2})})
    with pytest.raises(ConfigError, match="lr"):
        train_projector(other, datasets=data)
    train_projector(other, datasets=data, resume=False)  # starting over is allowed


def test_training_reduces_the_diffusion_loss_on_held_out_images(tmp_path, data):
    config = prepared(tmp_path, data, train={"epochs": 5, "lr": 3e-3})
    train_projector(config, datasets=data)
    held_out = digits(2, offset=10)
    diffusion = load_frozen_diffusion(config.model)
    clip = Clip.from_reference(config.clip)
    embeds = image_embeds(clip, held_out)
    latents = build_latent_cache(diffusion.vae, held_out, 16)
    context = build_context_cache(diffusion.tokenizer, diffusion.text_encoder)
    trained, untrained = load_trained_projector(tmp_path), build_projector(32, 32, 32, config.train.seed)
    for seed in range(2):
        assert evaluate_diffusion_loss(trained, diffusion, latents, context, embeds, seed) < evaluate_diffusion_loss(
            untrained, diffusion, latents, context, embeds, seed
        )


WORKER = textwrap.dedent(
    """
    import sys
    import torch
    sys.path.insert(0, {tests!r})
    torch.set_num_threads(1)
    from genaug.sdi.train import train_projector
    from test_sdi_helpers import digits, sdi_config
    config = sdi_config(__import__("pathlib").Path(sys.argv[1]), train={{"epochs": 2}})
    run = train_projector(config, datasets={{"train": digits(4)}})
    sys.stdout.write(f"world {{run.world_size}} steps {{run.steps}}\\n")  # one write: both ranks share the pipe
    """
)


@pytest.mark.slow
@pytest.mark.distributed
def test_two_processes_train_the_same_projector_as_one(tmp_path, data):
    single = prepared(tmp_path / "single", data, train={"epochs": 2})
    train_projector(single, datasets=data)
    prepared(tmp_path / "ddp", data, train={"epochs": 2})
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(tests=str(TESTS)))
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "GENAUG_HOME": str(tmp_path / "home")}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    torchrun = Path(sys.executable).parent / "torchrun"
    done = subprocess.run(
        [str(torchrun), "--nproc_per_node", "2", "--master_port", "29561", str(script), str(tmp_path / "ddp")],
        env=env, capture_output=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    assert b"world 2 steps 10" in done.stdout
    a = load_file(str(projector_dir(tmp_path / "single") / "projector.safetensors"))
    b = load_file(str(projector_dir(tmp_path / "ddp") / "projector.safetensors"))
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-5)
