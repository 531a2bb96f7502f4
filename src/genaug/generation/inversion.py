"""Textual inversion (Gal et al., ICLR 2023) as DA-Fusion uses it: one learnt word per class.

Stable Diffusion stays frozen. Each class k gets one new word embedding ``v_k`` (the
width of the text encoder's token embeddings), initialised to the embedding of
``init_word`` ("the" in DA-Fusion's runs). The prompt ``"a photo of a class"`` is encoded
with the *input* embedding of its slot word replaced by ``v_k``
(:func:`genaug.sdi.conditioning.encode_with_input_slot`), and ``v_k`` learns from the
class's real training images with the usual diffusion loss,
``|| eps - unet(sqrt(abar_t) z0 + sqrt(1 - abar_t) eps, t, c(v_k)) ||^2``.

The machinery is SDI's projector training (:mod:`genaug.sdi.train`), shared rather than
copied: the slot position (:func:`~genaug.sdi.conditioning.class_token_position`) and
:func:`~genaug.sdi.conditioning.slot_context`, the VAE latent cache
(:mod:`genaug.sdi.cache`), the seeded batch rows and step draws (``batch_rows``,
``draw_step``), ``z0`` from the cache (``cached_latents``) and the loss
(``diffusion_loss``). Every step's randomness comes from ``(seed, step)``.

One AdamW optimiser over the (K, D) table; a step draws a batch over all classes' images
together, so a batch trains the words of the classes it holds.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from safetensors import safe_open

from genaug.config import ConfigError
from genaug.files import save_safetensors
from genaug.generation.runtime import autocast_context
from genaug.sdi.cache import LatentCache, build_latent_cache, load_latent_cache, save_latent_cache
from genaug.sdi.conditioning import SLOT_WORD, class_token_position, encode_with_input_slot
from genaug.sdi.models import FrozenDiffusion, freeze
from genaug.sdi.train import batch_rows, cached_latents, diffusion_loss, draw_step
from genaug.training.seeding import generator_for, training_seed

if TYPE_CHECKING:
    from genaug.generation.editors.dafusion import InversionSettings

TOKENS_FILE = "tokens.safetensors"
LATENTS_FILE = "latents.safetensors"


def frozen_parts(pipeline, model) -> FrozenDiffusion:
    """The parts of a loaded SD pipeline that inversion trains against, frozen, and a DDPM
    noise scheduler with the pipeline's training schedule."""
    from diffusers import DDPMScheduler

    return FrozenDiffusion(
        tokenizer=pipeline.tokenizer,
        text_encoder=freeze(pipeline.text_encoder),
        vae=freeze(pipeline.vae),
        unet=freeze(pipeline.unet),
        noise_scheduler=DDPMScheduler.from_config(pipeline.scheduler.config),
        model=model,
    )


def word_embedding(diffusion: FrozenDiffusion, word: str) -> torch.Tensor:
    """The input embedding (D,) of ``word``, which must be one token of the tokenizer."""
    ids = diffusion.tokenizer(word, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise ConfigError(f"textual inversion: init_word {word!r} is {len(ids)} tokens for this tokenizer; give one token")
    return diffusion.text_encoder.get_input_embeddings().weight[ids[0]].detach().float().clone()


def slot_position(diffusion: FrozenDiffusion, prompt: str) -> int:
    """Where the class word sits in ``prompt`` (which holds :data:`SLOT_WORD` once)."""
    return class_token_position(diffusion.tokenizer, prompt, SLOT_WORD)


def inversion_loss(
    diffusion: FrozenDiffusion,
    latents: LatentCache,
    labels: torch.Tensor,
    vectors: torch.Tensor,
    rows: torch.Tensor,
    draws,
    prompt: str,
    position: int,
    sample_latents: bool = True,
) -> torch.Tensor:
    """The diffusion loss of images ``rows`` conditioned on their classes' words."""
    z0 = cached_latents(latents, rows, draws, diffusion.scaling_factor, sample_latents)
    context = encode_with_input_slot(diffusion.tokenizer, diffusion.text_encoder, prompt, vectors[labels[rows]], position)
    return diffusion_loss(diffusion.unet, diffusion.noise_scheduler, z0, context, draws.noise, draws.timesteps)


def learn_class_words(
    diffusion: FrozenDiffusion,
    latents: LatentCache,
    labels,
    num_classes: int,
    settings: InversionSettings,
    seed: int,
    prompt: str,
) -> torch.Tensor:
    """The (K, D) learnt word embeddings; see the module doc."""
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    position = slot_position(diffusion, prompt)
    vectors = word_embedding(diffusion, settings.init_word).repeat(num_classes, 1).requires_grad_(True)
    optimizer = torch.optim.AdamW([vectors], lr=settings.lr, weight_decay=0.0)
    stream = training_seed(seed, "textual inversion")
    shape = tuple(latents.mean.shape[1:])
    steps = int(diffusion.noise_scheduler.config.num_train_timesteps)
    device = next(diffusion.unet.parameters()).device
    for step in range(settings.steps):
        rows = batch_rows(len(labels), settings.batch_size, stream, step)
        draws = draw_step(len(rows), shape, steps, 0.0, generator_for(stream, "step", step))
        with autocast_context(settings.precision, device):
            loss = inversion_loss(diffusion, latents, labels, vectors, rows, draws, prompt, position)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return vectors.detach()


@torch.no_grad()
def evaluate_words(
    diffusion: FrozenDiffusion,
    latents: LatentCache,
    labels,
    vectors: torch.Tensor,
    prompt: str,
    seed: int = 0,
    draws: int = 4,
    batch_size: int = 64,
) -> float:
    """Mean diffusion loss of the images under their classes' words over ``draws`` seeded
    (t, noise) draws per image (latent means): for a given ``seed`` two word tables see the
    same draws, so they compare pairwise (e.g. learnt against initial on held-out images)."""
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    position = slot_position(diffusion, prompt)
    steps = int(diffusion.noise_scheduler.config.num_train_timesteps)
    total, count = 0.0, 0
    for draw in range(draws):
        for start in range(0, len(labels), batch_size):
            rows = torch.arange(start, min(start + batch_size, len(labels)))
            found = draw_step(len(rows), tuple(latents.mean.shape[1:]), steps, 0.0, generator_for(seed, "eval", draw, start))
            loss = inversion_loss(diffusion, latents, labels, vectors, rows, found, prompt, position, sample_latents=False)
            total += float(loss) * len(rows)
            count += len(rows)
    return total / max(count, 1)


# ---------------------------------------------------------------------------- files


def data_digest(ids, labels) -> str:
    """SHA-256 of the images' ids and labels (what the words were learnt from)."""
    text = json.dumps([[str(i), int(label)] for i, label in zip(ids, np.asarray(labels))])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def words_key(model: dict, dataset, settings: InversionSettings, seed: int, prompt: str, resolution: int) -> dict:
    """What learnt words depend on: weights, data, settings, seed, prompt and resolution."""
    return {
        "model": model.get("hash") or model.get("location"),
        "data": data_digest(dataset.ids, dataset.labels),
        "classes": list(dataset.class_names),
        "settings": settings.model_dump(mode="json"),
        "seed": int(seed),
        "prompt": prompt,
        "resolution": int(resolution),
    }


def save_words(path: Path, vectors: torch.Tensor, key: dict) -> Path:
    """The word table as safetensors (``words``, (K, D) float32), its key in the metadata."""
    save_safetensors(path, {"words": vectors.detach().float().cpu()}, {"key": json.dumps(key, sort_keys=True)})
    return path


def load_words(path: Path, key: dict | None = None) -> torch.Tensor | None:
    """The table at ``path`` when it was learnt for ``key`` (any key when None), else None."""
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as handle:
            if key is not None and (handle.metadata() or {}).get("key") != json.dumps(key, sort_keys=True):
                return None
            return handle.get_tensor("words")
    except Exception:  # noqa: BLE001 - an unreadable table is learnt again
        return None


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def learn_or_load_words(
    folder: Path,
    diffusion: FrozenDiffusion,
    dataset,
    settings: InversionSettings,
    seed: int,
    prompt: str,
    resolution: int,
) -> tuple[torch.Tensor, Path]:
    """The words of ``folder/tokens.safetensors`` when learnt for this key, else learnt now
    (the VAE latents cached beside them) and saved; returns the table and its file."""
    key = words_key(diffusion.model.identity, dataset, settings, seed, prompt, resolution)
    path = folder / TOKENS_FILE
    found = load_words(path, key)
    if found is not None:
        return found, path
    latent_key = {"weights": key["model"], "part": "vae", "resolution": resolution}
    latents = load_latent_cache(folder / LATENTS_FILE, latent_key, list(dataset.ids))
    if latents is None:
        latents = build_latent_cache(diffusion.vae, dataset, resolution)
        save_latent_cache(folder / LATENTS_FILE, latents, latent_key)
    vectors = learn_class_words(diffusion, latents, dataset.labels, len(dataset.class_names), settings, seed, prompt)
    return vectors, save_words(path, vectors, key)
