"""Diff-Mix's fine-tuning: textual inversion and a DreamBooth LoRA on the UNet, learnt together.

As Diff-Mix's ``train_lora.py`` (Wang et al., CVPR 2024): every class k gets a new word
``v_k`` (initialised to ``init_word``'s embedding), and LoRA adapters of rank ``rank`` are
added to the query, key, value and output projections of every attention layer of the
UNet (peft through diffusers' ``unet.add_adapter``; ``lora_alpha = rank``, so the update
is ``B A x`` unscaled, as the official ``LoRAAttnProcessor``). One AdamW optimiser
(weight decay ``weight_decay``) holds two parameter groups, the LoRA weights at ``lr``
(their gradient clipped to norm ``max_grad_norm``) and the words at ``ti_lr``; a step draws ``batch_size`` images of the whole set, mirrored with
probability ``flip_p``, captions each ``"a photo of a <class word>"`` and minimises the
diffusion loss ``|| eps - unet_lora(z_t, t, c(v_y)) ||^2`` (:func:`genaug.diffusion.loss.diffusion_loss`).
Text encoder, VAE and the UNet's own weights stay frozen.

Files, in ``<folder>``: ``finetune.safetensors`` (the LoRA tensors by parameter name and
``words`` (K, D)), its key (model, data, settings, seed, prompt, resolution) in the
metadata, and while training a checkpoint in ``training-<i>-of-<n>/`` (one folder per shard
process) every ``checkpoint_every`` steps (weights as safetensors, optimiser state
readable with ``weights_only=True``). A rerun, resume or shard
with the same key reads the file; a run killed during training continues from the
checkpoint, and because every step's randomness comes from ``(seed, step)`` it ends with
the same weights as an uninterrupted run.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from genaug.checkpoint import find_checkpoint, load_checkpoint, save_checkpoint
from genaug.diffusion.cache import LatentCache
from genaug.diffusion.frozen import FrozenDiffusion
from genaug.diffusion.loss import cached_latents, diffusion_loss, draw_step
from genaug.generation.inversion import (
    cached_class_latents,
    encode_prompts,
    evaluate_words,
    load_keyed,
    save_keyed,
    word_embedding,
    words_key,
)
from genaug.runtime import autocast_context
from genaug.seeds import generator_for

if TYPE_CHECKING:
    from genaug.generation.editors.diffmix import FineTuneSettings

FINETUNE_FILE = "finetune.safetensors"
#: The attention projections that get LoRA adapters (those of the official ``LoRAAttnProcessor``).
LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
ADAPTER = "diffmix"


def add_lora(unet, rank: int, seed: int) -> list[torch.nn.Parameter]:
    """Add the LoRA adapters to ``unet`` (A drawn from ``(seed, "lora init")``, B zero, so the
    UNet is unchanged until trained), replacing any it already holds (a pipeline reused by
    another run); returns the new trainable parameters."""
    from peft import LoraConfig

    if ADAPTER in (getattr(unet, "peft_config", None) or {}):
        unet.delete_adapters(ADAPTER)
    config = LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=LORA_TARGETS)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(generator_for(seed, "lora init").initial_seed())
        unet.add_adapter(config, adapter_name=ADAPTER)
    params = [p for name, p in unet.named_parameters() if "lora_" in name]
    for p in params:
        p.requires_grad_(True)
    return params


def lora_state(unet) -> dict[str, torch.Tensor]:
    return {name: p.detach().float().cpu() for name, p in unet.named_parameters() if "lora_" in name}


def load_lora_state(unet, state: dict[str, torch.Tensor]) -> None:
    """Copy saved LoRA tensors into ``unet``'s adapters (names must match exactly)."""
    own = dict(unet.named_parameters())
    missing = sorted(set(state) - set(own)) + sorted(name for name in own if "lora_" in name and name not in state)
    if missing:
        raise ValueError(f"the saved LoRA does not fit this UNet (first mismatch: {missing[0]})")
    with torch.no_grad():
        for name, tensor in state.items():
            own[name].copy_(tensor.to(own[name].device, own[name].dtype))


def load_finetune(path: Path, key: dict | None = None) -> tuple[dict[str, torch.Tensor], torch.Tensor] | None:
    """(LoRA tensors, words) of ``path`` when made for ``key`` (any key when None), else None."""
    tensors = load_keyed(path, key)
    if tensors is None:
        return None
    words = tensors.pop("words")
    return tensors, words


def train_finetune(
    diffusion: FrozenDiffusion,
    latents: LatentCache,
    labels,
    num_classes: int,
    settings: FineTuneSettings,
    seed: int,
    prompt: str,
    checkpoint_dir: Path | None = None,
    recipe: dict | None = None,
) -> torch.Tensor:
    """Add the adapters to ``diffusion.unet`` and train them with the class words (module doc);
    returns the (K, D) words. ``latents``: the N images then their mirrors when ``flip_p > 0``.
    With ``checkpoint_dir``, a checkpoint made for ``recipe`` is resumed and one is written
    every ``checkpoint_every`` steps."""
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    count = len(labels)
    unet = diffusion.unet
    lora = add_lora(unet, settings.rank, seed)
    words = word_embedding(diffusion, settings.init_word).repeat(num_classes, 1).requires_grad_(True)
    optimizer = torch.optim.AdamW(
        [{"params": lora, "lr": settings.lr}, {"params": [words], "lr": settings.ti_lr}],
        weight_decay=settings.weight_decay,
    )
    start = 0
    if checkpoint_dir is not None and (folder := find_checkpoint(checkpoint_dir)) is not None:
        weights, state = load_checkpoint(folder)
        if state.get("recipe") == json.dumps(recipe, sort_keys=True):
            with torch.no_grad():
                words.copy_(weights.pop("words"))
            load_lora_state(unet, weights)
            optimizer.load_state_dict(state["optimizer"])
            start = int(state["step"])
    shape = tuple(latents.mean.shape[1:])
    num_timesteps = int(diffusion.noise_scheduler.config.num_train_timesteps)
    device = next(unet.parameters()).device
    for step in range(start, settings.steps):
        generator = generator_for(seed, "diffmix finetune", step)
        rows = torch.randint(count, (settings.batch_size,), generator=generator)
        flips = torch.rand(settings.batch_size, generator=generator) < settings.flip_p
        draws = draw_step(settings.batch_size, shape, num_timesteps, 0.0, generator)
        with autocast_context(settings.precision, device):
            z0 = cached_latents(latents, rows + flips.long() * count, draws, diffusion.scaling_factor)
            context = encode_prompts(diffusion, [prompt] * len(rows), words[labels[rows]])
            loss = diffusion_loss(unet, diffusion.noise_scheduler, z0, context, draws.noise, draws.timesteps)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(lora, settings.max_grad_norm)  # the official script clips the LoRA weights only
        optimizer.step()
        done = step + 1
        if checkpoint_dir is not None and done < settings.steps and done % settings.checkpoint_every == 0:
            state = {"epoch": 0, "step": done, "optimizer": optimizer.state_dict(), "recipe": json.dumps(recipe, sort_keys=True)}
            save_checkpoint(checkpoint_dir, {**lora_state(unet), "words": words.detach().cpu()}, state)
    for p in lora:
        p.requires_grad_(False)
    return words.detach()


def learn_or_load_finetune(
    folder: Path,
    diffusion: FrozenDiffusion,
    dataset,
    settings: FineTuneSettings,
    seed: int,
    prompt: str,
    resolution: int,
    process: str = "0-of-1",
) -> tuple[torch.Tensor, Path]:
    """Fine-tune ``diffusion.unet`` (in place: its adapters stay for generation) or load the
    weights saved for the same key; returns the words and the file. Checkpoints go to
    ``<folder>/training-<process>``, one folder per shard process, so shards started
    together never write the same checkpoint (each trains the same weights; the last to
    finish replaces the file atomically with identical content)."""
    key = words_key(diffusion.model.identity, dataset, settings, seed, prompt, resolution)  # the same dependencies as the words
    path = Path(folder) / FINETUNE_FILE
    found = load_finetune(path, key)
    if found is not None:
        state, words = found
        add_lora(diffusion.unet, settings.rank, seed)
        load_lora_state(diffusion.unet, state)
        return words, path
    latents = cached_class_latents(folder, diffusion, dataset, resolution, key["model"], settings.flip_p > 0)
    checkpoints = Path(folder) / f"training-{process}"
    words = train_finetune(diffusion, latents, dataset.labels, len(dataset.class_names), settings, seed, prompt,
                           checkpoint_dir=checkpoints, recipe=key)
    save_keyed(path, {**lora_state(diffusion.unet), "words": words.float().cpu()}, key)
    shutil.rmtree(checkpoints, ignore_errors=True)
    return words, path


#: ``evaluate_finetune(diffusion, latents, labels, words, prompt, seed=0, draws=4, batch_size=64)``:
#: the mean diffusion loss of the images (latent means) under their classes' words with the UNet
#: as it is (with or without adapters), over ``draws`` seeded (t, noise) draws per image; the
#: words' own evaluation, since it runs the UNet it is given.
evaluate_finetune = evaluate_words
