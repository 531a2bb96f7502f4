"""Textual inversion (Gal et al., ICLR 2023) as DA-Fusion uses it: one learnt word per class.

Stable Diffusion stays frozen. Each class k gets one new word embedding ``v_k`` (the
width of the text encoder's token embeddings), initialised to the embedding of
``init_word`` ("the" in DA-Fusion's runs). A prompt such as ``"a photo of a class"`` is
encoded with the *input* embedding of its slot word replaced by ``v_k``
(:func:`genaug.diffusion.conditioning.encode_with_input_slot`), and ``v_k`` learns from the
class's real training images with the usual diffusion loss,
``|| eps - unet(sqrt(abar_t) z0 + sqrt(1 - abar_t) eps, t, c(v_k)) ||^2``.

The machinery is SDI's projector training (:mod:`genaug.sdi.train`), shared rather than
copied: the slot position (:func:`~genaug.diffusion.conditioning.class_token_position`) and
:func:`~genaug.diffusion.conditioning.slot_context`, the VAE latent cache
(:mod:`genaug.diffusion.cache`), the seeded step draws (``draw_step``), ``z0`` from the cache
(``cached_latents``) and the loss (``diffusion_loss``). Every step's randomness comes
from ``(seed, class, step)``.

As DA-Fusion's ``fine_tune.py`` (the diffusers textual-inversion script run once per
class): each class's word has its own AdamW optimiser (weight decay 1e-2) and trains on
batches of that class's images only, each mirrored with probability 0.5 and captioned by
one of the 27 ``imagenet_templates_small`` prompts; a class of one image trains on that
image. Mirror images are encoded once into the latent cache beside the originals.
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
from genaug.diffusion.cache import LatentCache, build_latent_cache, load_latent_cache, save_latent_cache
from genaug.diffusion.conditioning import SLOT_WORD, class_token_position, encode_with_input_slot
from genaug.diffusion.frozen import FrozenDiffusion, freeze
from genaug.diffusion.loss import cached_latents, diffusion_loss, draw_step
from genaug.files import save_safetensors
from genaug.runtime import autocast_context
from genaug.seeds import generator_for, training_seed

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


#: The official textual-inversion prompt templates (diffusers' ``imagenet_templates_small``,
#: used by DA-Fusion's ``fine_tune.py`` and Diff-Mix's ``dataset/template.py``), the class
#: word written as :data:`SLOT_WORD`.
TEMPLATES_SMALL = tuple(
    template.format(SLOT_WORD)
    for template in (
        "a photo of a {}", "a rendering of a {}", "a cropped photo of the {}", "the photo of a {}",
        "a photo of a clean {}", "a photo of a dirty {}", "a dark photo of the {}", "a photo of my {}",
        "a photo of the cool {}", "a close-up photo of a {}", "a bright photo of the {}",
        "a cropped photo of a {}", "a photo of the {}", "a good photo of the {}", "a photo of one {}",
        "a close-up photo of the {}", "a rendition of the {}", "a photo of the clean {}",
        "a rendition of a {}", "a photo of a nice {}", "a good photo of a {}", "a photo of the nice {}",
        "a photo of the small {}", "a photo of the weird {}", "a photo of the large {}",
        "a photo of a cool {}", "a photo of a small {}",
    )
)


def training_prompts(settings: InversionSettings, prompt: str) -> tuple[str, ...]:
    """The prompts a training step draws from: the 27 templates (``templates: small``) or ``prompt`` alone."""
    return TEMPLATES_SMALL if settings.templates == "small" else (prompt,)


def encode_prompts(diffusion: FrozenDiffusion, prompts: list[str], words: torch.Tensor) -> torch.Tensor:
    """Each sample's prompt encoded with its slot word's input embedding ``words[i]`` (N, L, D);
    one text-encoder call per distinct prompt."""
    contexts: list[torch.Tensor | None] = [None] * len(prompts)
    for prompt in dict.fromkeys(prompts):
        rows = [i for i, p in enumerate(prompts) if p == prompt]
        position = slot_position(diffusion, prompt)
        encoded = encode_with_input_slot(diffusion.tokenizer, diffusion.text_encoder, prompt, words[rows], position)
        for row, context in zip(rows, encoded):
            contexts[row] = context
    return torch.stack(contexts)


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
    """The diffusion loss of images ``rows`` conditioned on their classes' words under one prompt."""
    z0 = cached_latents(latents, rows, draws, diffusion.scaling_factor, sample_latents)
    context = encode_with_input_slot(diffusion.tokenizer, diffusion.text_encoder, prompt, vectors[labels[rows]], position)
    return diffusion_loss(diffusion.unet, diffusion.noise_scheduler, z0, context, draws.noise, draws.timesteps)


class FlippedView:
    """A dataset's images mirrored left-right (``rgb_batch``, ``ids``, ``len``), for the latent cache."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset
        self.ids = [f"{i}#flip" for i in dataset.ids]

    def __len__(self) -> int:
        return len(self.dataset)

    def rgb_batch(self, rows):
        return [np.ascontiguousarray(image[:, ::-1]) for image in self.dataset.rgb_batch(rows)]


def effective_lr(settings: InversionSettings) -> float:
    """``lr``, times ``batch_size`` when ``scale_lr`` (diffusers' ``--scale_lr`` on one process)."""
    return settings.lr * settings.batch_size if settings.scale_lr else settings.lr


def class_step(num_images: int, settings: InversionSettings, stream: int, step: int, shape, num_timesteps: int, prompts):
    """One step's draws for a class of ``num_images``: image rows (uniform, with replacement, so
    one image fills a batch), flip bits (p ``flip_p``), templates, then the diffusion draws."""
    generator = generator_for(stream, "step", step)
    rows = torch.randint(num_images, (settings.batch_size,), generator=generator)
    flips = torch.rand(settings.batch_size, generator=generator) < settings.flip_p
    picks = torch.randint(len(prompts), (settings.batch_size,), generator=generator)
    draws = draw_step(settings.batch_size, shape, num_timesteps, 0.0, generator)
    return rows, flips, [prompts[int(i)] for i in picks], draws


def learn_class_words(
    diffusion: FrozenDiffusion,
    latents: LatentCache,
    labels,
    num_classes: int,
    settings: InversionSettings,
    seed: int,
    prompt: str,
) -> torch.Tensor:
    """The (K, D) learnt word embeddings, one class at a time as DA-Fusion's ``fine_tune.py``.

    Class k's word ``v_k`` starts at ``init_word``'s embedding and takes ``steps`` AdamW steps
    (lr :func:`effective_lr`, ``weight_decay``) on batches of ``batch_size`` of its own images
    drawn with replacement, each mirrored with probability ``flip_p`` and captioned by a
    template drawn uniformly from :func:`training_prompts`. ``latents`` holds the N images and
    then their mirror images (rows N .. 2N-1) when ``flip_p > 0``. A class without images
    keeps the initial word. Class k's randomness comes from ``(seed, "textual inversion", k)``.
    """
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    count = len(labels)
    if settings.flip_p > 0 and len(latents.mean) != 2 * count:
        raise ValueError(f"textual inversion with flips needs the latents of {count} images and their mirrors, got {len(latents.mean)} rows")
    prompts = training_prompts(settings, prompt)
    initial = word_embedding(diffusion, settings.init_word)
    shape = tuple(latents.mean.shape[1:])
    num_timesteps = int(diffusion.noise_scheduler.config.num_train_timesteps)
    device = next(diffusion.unet.parameters()).device
    words = initial.repeat(num_classes, 1)
    for label in range(num_classes):
        members = torch.nonzero(labels == label).flatten()
        if len(members) == 0:
            continue
        vector = initial.clone()[None].requires_grad_(True)
        optimizer = torch.optim.AdamW([vector], lr=effective_lr(settings), weight_decay=settings.weight_decay)
        stream = training_seed(seed, "textual inversion", label)
        for step in range(settings.steps):
            rows, flips, chosen, draws = class_step(len(members), settings, stream, step, shape, num_timesteps, prompts)
            cache_rows = members[rows] + flips.long() * count
            with autocast_context(settings.precision, device):
                z0 = cached_latents(latents, cache_rows, draws, diffusion.scaling_factor)
                context = encode_prompts(diffusion, chosen, vector.expand(len(rows), -1))
                loss = diffusion_loss(diffusion.unet, diffusion.noise_scheduler, z0, context, draws.noise, draws.timesteps)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        words[label] = vector.detach()[0]
    return words


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

    def loss_of(rows, found):
        return inversion_loss(diffusion, latents, labels, vectors, rows, found, prompt, position, sample_latents=False)

    return mean_draw_loss(diffusion, latents, len(labels), loss_of, seed, draws, batch_size)


def mean_draw_loss(diffusion: FrozenDiffusion, latents: LatentCache, count: int, loss_of, seed: int, draws: int, batch_size: int) -> float:
    """Mean of ``loss_of(rows, step)`` over ``count`` images in batches, ``draws`` seeded (t, noise)
    draws each: the same draws for a given ``seed``, so two models compare pairwise."""
    steps = int(diffusion.noise_scheduler.config.num_train_timesteps)
    total, seen = 0.0, 0
    for draw in range(draws):
        for start in range(0, count, batch_size):
            rows = torch.arange(start, min(start + batch_size, count))
            found = draw_step(len(rows), tuple(latents.mean.shape[1:]), steps, 0.0, generator_for(seed, "eval", draw, start))
            total += float(loss_of(rows, found)) * len(rows)
            seen += len(rows)
    return total / max(seen, 1)


# ---------------------------------------------------------------------------- files


def cached_class_latents(folder: Path, diffusion: FrozenDiffusion, dataset, resolution: int, weights, flips: bool) -> LatentCache:
    """The VAE latents of ``dataset`` (then of its mirror images when ``flips``), read from
    ``folder/latents.safetensors`` when made for the same weights, resolution and images."""
    views = [dataset, FlippedView(dataset)] if flips else [dataset]
    ids = [i for view in views for i in view.ids]
    latent_key = {"weights": weights, "part": "vae", "resolution": resolution}
    latents = load_latent_cache(folder / LATENTS_FILE, latent_key, ids)
    if latents is None:
        parts = [build_latent_cache(diffusion.vae, view, resolution) for view in views]
        latents = LatentCache(torch.cat([p.mean for p in parts]), torch.cat([p.std for p in parts]), ids)
        save_latent_cache(folder / LATENTS_FILE, latents, latent_key)
    return latents


def data_digest(ids, labels) -> str:
    """SHA-256 of the images' ids and labels (what the words were learnt from)."""
    text = json.dumps([[str(i), int(label)] for i, label in zip(ids, np.asarray(labels))])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def words_key(model: dict, dataset, settings, seed: int, prompt: str, resolution: int) -> dict:
    """What learnt words (or fine-tuned weights, :mod:`genaug.generation.lora`) depend on: weights,
    data, settings (a pydantic model), seed, prompt and resolution."""
    return {
        "model": model.get("hash") or model.get("location"),
        "data": data_digest(dataset.ids, dataset.labels),
        "classes": list(dataset.class_names),
        "settings": settings.model_dump(mode="json"),
        "seed": int(seed),
        "prompt": prompt,
        "resolution": int(resolution),
    }


def save_keyed(path: Path, tensors: dict[str, torch.Tensor], key: dict) -> Path:
    """``tensors`` as safetensors at ``path``, what they were made for (``key``) in the metadata."""
    return save_safetensors(path, tensors, {"key": json.dumps(key, sort_keys=True)})


def load_keyed(path: Path, key: dict | None = None) -> dict[str, torch.Tensor] | None:
    """The tensors at ``path`` when saved for ``key`` (any key when None), else None (also when
    the file is missing or unreadable: the caller makes them again)."""
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as handle:
            if key is not None and (handle.metadata() or {}).get("key") != json.dumps(key, sort_keys=True):
                return None
            return {name: handle.get_tensor(name) for name in handle.keys()}
    except Exception:  # noqa: BLE001 - an unreadable file is made again
        return None


def save_words(path: Path, vectors: torch.Tensor, key: dict) -> Path:
    """The word table as safetensors (``words``, (K, D) float32), its key in the metadata."""
    return save_keyed(path, {"words": vectors.detach().float().cpu()}, key)


def load_words(path: Path, key: dict | None = None) -> torch.Tensor | None:
    """The table at ``path`` when it was learnt for ``key`` (any key when None), else None."""
    tensors = load_keyed(path, key)
    return None if tensors is None else tensors.get("words")


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
    latents = cached_class_latents(folder, diffusion, dataset, resolution, key["model"], settings.flip_p > 0)
    vectors = learn_class_words(diffusion, latents, dataset.labels, len(dataset.class_names), settings, seed, prompt)
    return vectors, save_words(path, vectors, key)
