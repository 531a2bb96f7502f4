"""What projector training computes once instead of every step (benchmarks/RESULTS.md, docs/methods/sdi.md).

The VAE, the text encoder and the prompt are frozen, so their outputs never change:

- each training image's latent distribution ``N(mean, std^2)`` from the VAE encoder, at
  the training resolution (resize the short side, centre crop, scale to [-1, 1]). A step
  draws ``z = mean + std * eps`` (a fresh sample, as the reference's per-step
  ``latent_dist.sample()``) or takes ``mean``, then multiplies by the VAE's scaling factor;
- the prompt's text context (1, L, D) and the slot position of "class" in it.

Both live in ``<work_dir>/projector/cache/`` as safetensors, keyed by the weights, the
resolution and the image ids, so a step costs only the UNet.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors import safe_open

from genaug.data.base import RealDataset
from genaug.files import save_safetensors
from genaug.memory import BatchBackoff
from genaug.diffusion.conditioning import SDI_PROMPT, SLOT_WORD, class_token_position, encode_text


@dataclass
class LatentCache:
    """Per image: the VAE encoder's latent mean and standard deviation (unscaled), (N, C, h, w)."""

    mean: torch.Tensor
    std: torch.Tensor
    ids: list[str]


@dataclass
class ContextCache:
    """The prompt's text-encoder output (1, L, D) and the position of its slot token."""

    context: torch.Tensor
    position: int
    prompt: str


# ---------------------------------------------------------------------------- images


def resize_center_crop(image: Image.Image | np.ndarray, size: int) -> np.ndarray:
    """Resize the short side to ``size`` (bilinear), then the centre ``size x size`` crop (uint8 RGB).

    torchvision's ``Resize(size)`` + ``CenterCrop(size)`` rounding, as the reference's transform.
    """
    if isinstance(image, np.ndarray):
        if image.shape[:2] == (size, size):
            return image
        image = Image.fromarray(image)
    image = image.convert("RGB")
    width, height = image.size
    scale = size / min(width, height)
    new_w, new_h = (size, max(size, int(height * scale))) if width <= height else (max(size, int(width * scale)), size)
    if (new_w, new_h) != (width, height):
        image = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
    top, left = int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))
    return np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.uint8)


def vae_pixels(images: list[np.ndarray]) -> torch.Tensor:
    """uint8 (H, W, 3) images -> float (N, 3, H, W) in [-1, 1] (``x / 127.5 - 1``)."""
    batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float()
    return batch / 127.5 - 1.0


# ---------------------------------------------------------------------------- encoding


@torch.no_grad()
def encode_latent_distribution(vae, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The VAE encoder's ``latent_dist`` (mean, std) of pixels in [-1, 1]."""
    device, dtype = next(vae.parameters()).device, next(vae.parameters()).dtype
    distribution = vae.encode(pixels.to(device, dtype)).latent_dist
    return distribution.mean.float().cpu(), distribution.std.float().cpu()


@torch.no_grad()
def build_latent_cache(vae, dataset: RealDataset, resolution: int, batch_size: int = 32) -> LatentCache:
    """Encode every image of ``dataset`` once (see the module doc), ``batch_size`` at a time
    (halved on out-of-memory: each image's distribution depends on its pixels only)."""

    def encode(start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        rows = range(start, stop)
        images = [resize_center_crop(image, resolution) for image in dataset.rgb_batch(rows)]
        return encode_latent_distribution(vae, vae_pixels(images))

    backoff = BatchBackoff("sdi train (latent cache)", batch_size, next(vae.parameters()).device)
    parts = backoff.run(encode, len(dataset), lambda i: f"image {dataset.ids[i]}")
    return LatentCache(torch.cat([mean for mean, _ in parts]), torch.cat([std for _, std in parts]), list(dataset.ids))


@torch.no_grad()
def build_context_cache(tokenizer, text_encoder, prompt: str = SDI_PROMPT, word: str = SLOT_WORD) -> ContextCache:
    """The prompt's context and slot position (:mod:`genaug.diffusion.conditioning`)."""
    position = class_token_position(tokenizer, prompt, word)
    context = encode_text(tokenizer, text_encoder, [prompt]).float().cpu()
    return ContextCache(context, position, prompt)


# ---------------------------------------------------------------------------- files


def _save(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    save_safetensors(path, tensors, metadata)


def _key(**parts) -> str:
    return json.dumps(parts, sort_keys=True, default=str)


def save_latent_cache(path: Path, cache: LatentCache, key: dict) -> None:
    _save(path, {"mean": cache.mean, "std": cache.std}, {"key": _key(**key), "ids": json.dumps(cache.ids)})


def load_latent_cache(path: Path, key: dict, ids: list[str]) -> LatentCache | None:
    """The cache at ``path`` when it was made with ``key`` for exactly ``ids``, else None."""
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            if metadata.get("key") != _key(**key) or json.loads(metadata.get("ids", "[]")) != list(ids):
                return None
            return LatentCache(handle.get_tensor("mean"), handle.get_tensor("std"), list(ids))
    except Exception:  # noqa: BLE001 - an unreadable cache is simply remade
        return None


def save_context_cache(path: Path, cache: ContextCache, key: dict) -> None:
    _save(path, {"context": cache.context}, {"key": _key(**key), "position": str(cache.position), "prompt": cache.prompt})


def load_context_cache(path: Path, key: dict) -> ContextCache | None:
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            if metadata.get("key") != _key(**key):
                return None
            return ContextCache(handle.get_tensor("context"), int(metadata["position"]), metadata["prompt"])
    except Exception:  # noqa: BLE001
        return None
