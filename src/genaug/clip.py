"""One wrapper over transformers CLIP, used by every stage that needs CLIP.

``Clip.from_pretrained(name)`` takes a hub id (``openai/clip-vit-large-patch14``), a local
folder of a real CLIP, or ``"pocket"`` (the default: pocket CLIP, see
:func:`genaug.pocket.store.pocket_model_dir`). Everything below is the same code for all.

Conventions:

- Images are ``(N, H, W, 3)`` uint8 arrays, lists of such arrays or PIL images. They go
  through the model's own ``CLIPImageProcessor`` (resize, centre crop, normalise).
- :meth:`Clip.image_embeds` returns CLIP's ``image_embeds``: the vision tower's pooled
  output through ``visual_projection`` (what ``CLIPModel(...).image_embeds`` is before
  normalisation). :meth:`Clip.text_embeds` likewise with ``text_projection``. Both are
  L2-normalised unless ``normalize=False``. (transformers 5's ``get_image_features``
  returns an output object; we call the towers and projections directly instead.)
- Results are computed in batches of ``batch_size`` and are equal (to float tolerance)
  to one-at-a-time calls.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F


class Clip:
    """A CLIP model with its processor: embeddings and patch-level similarity."""

    def __init__(self, model, processor, device: str | torch.device = "cpu", name: str = ""):
        self.model = model.eval().to(device)
        self.processor = processor
        self.device = torch.device(device)
        self.name = name

    @classmethod
    def from_pretrained(
        cls, name: str | Path = "pocket", device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
    ) -> "Clip":
        """Load a CLIP: ``"pocket"``, a hub id or a local folder (offline if cached)."""
        from transformers import CLIPModel, CLIPProcessor

        if str(name) == "pocket":
            from genaug.pocket.store import pocket_model_dir

            name = pocket_model_dir("clip")
        model = CLIPModel.from_pretrained(str(name), dtype=dtype)
        processor = CLIPProcessor.from_pretrained(str(name))
        return cls(model, processor, device=device, name=str(name))

    # ------------------------------------------------------------------ preprocessing

    @property
    def input_size(self) -> tuple[int, int]:
        """The (height, width) the vision tower expects after preprocessing."""
        crop = self.processor.image_processor.crop_size
        return int(crop["height"]), int(crop["width"])

    def pixel_values(self, images) -> torch.Tensor:
        """CLIP's own preprocessing of ``images`` -> ``(N, 3, h, w)`` float tensor."""
        if isinstance(images, np.ndarray) and images.ndim == 3:
            images = images[None]
        images = list(images)
        if not images:
            h, w = self.input_size
            return torch.zeros(0, 3, h, w)
        out = self.processor.image_processor(images=images, return_tensors="pt")
        return out["pixel_values"]

    # ------------------------------------------------------------------ embeddings

    @torch.no_grad()
    def image_embeds_from_pixels(self, pixel_values: torch.Tensor, normalize: bool = True, batch_size: int = 256) -> torch.Tensor:
        """Projected image embeddings of already preprocessed pixels, ``(N, D)`` float32 on CPU."""
        dtype = next(self.model.parameters()).dtype
        out = []
        for i in range(0, len(pixel_values), batch_size):
            px = pixel_values[i : i + batch_size].to(self.device, dtype)
            pooled = self.model.vision_model(pixel_values=px).pooler_output
            out.append(self.model.visual_projection(pooled).float().cpu())
        emb = torch.cat(out) if out else torch.zeros(0, self.embed_dim)
        return F.normalize(emb, dim=-1) if normalize else emb

    @torch.no_grad()
    def image_embeds(self, images, normalize: bool = True, batch_size: int = 256) -> torch.Tensor:
        """CLIP ``image_embeds`` of ``images`` (module doc), ``(N, D)``."""
        n = len(images) if not (isinstance(images, np.ndarray) and images.ndim == 3) else 1
        chunks = []
        items = images if n != 1 or not isinstance(images, np.ndarray) or images.ndim == 4 else images[None]
        for i in range(0, n, batch_size):
            chunks.append(self.image_embeds_from_pixels(self.pixel_values(items[i : i + batch_size]), normalize, batch_size))
        return torch.cat(chunks) if chunks else torch.zeros(0, self.embed_dim)

    @torch.no_grad()
    def text_embeds(self, texts: Sequence[str], normalize: bool = True, batch_size: int = 256) -> torch.Tensor:
        """CLIP ``text_embeds`` of ``texts``, ``(N, D)`` (padded to the tokenizer's max length)."""
        tokenizer = self.processor.tokenizer
        out = []
        for i in range(0, len(texts), batch_size):
            tok = tokenizer(
                list(texts[i : i + batch_size]), padding="max_length", max_length=tokenizer.model_max_length,
                truncation=True, return_tensors="pt",
            )
            pooled = self.model.text_model(
                input_ids=tok.input_ids.to(self.device), attention_mask=tok.attention_mask.to(self.device)
            ).pooler_output
            out.append(self.model.text_projection(pooled).float().cpu())
        emb = torch.cat(out) if out else torch.zeros(0, self.embed_dim)
        return F.normalize(emb, dim=-1) if normalize else emb

    @property
    def embed_dim(self) -> int:
        return int(self.model.config.projection_dim)

    @torch.no_grad()
    def similarity(self, images, texts: Sequence[str]) -> torch.Tensor:
        """Cosine similarity ``(N_images, N_texts)``."""
        return self.image_embeds(images) @ self.text_embeds(texts).T

    # ------------------------------------------------------------------ patches

    @torch.no_grad()
    def patch_similarity(
        self,
        images,
        texts: Sequence[str] | torch.Tensor,
        patch_size: int,
        stride: int,
        batch_size: int = 256,
    ) -> torch.Tensor:
        """Cosine similarity of every patch of every image to that image's prompt.

        ``images``: N images of one size ``(H, W)`` (array ``(N, H, W, 3)`` uint8 or list).
        ``texts``: N prompts (one per image, e.g. "a photo of a {class}") or an ``(N, D)``
        tensor of L2-normalised text embeddings. The grid is :func:`patch_starts` per axis;
        every patch goes through CLIP's own preprocessing; all patches of all images are
        embedded together in batches. Returns ``(N, n_rows, n_cols)``.
        """
        arrays = np.stack([np.asarray(im.convert("RGB")) if hasattr(im, "convert") else np.asarray(im) for im in images])
        n, h, w = arrays.shape[:3]
        rows, cols = patch_starts(h, patch_size, stride), patch_starts(w, patch_size, stride)
        ph, pw = min(patch_size, h), min(patch_size, w)
        patches = [arrays[i, r : r + ph, c : c + pw] for i in range(n) for r in rows for c in cols]
        text = texts if isinstance(texts, torch.Tensor) else self.text_embeds(list(texts))
        if len(text) != n:
            raise ValueError(f"need one prompt per image: {n} images, {len(text)} prompts")
        emb = self.image_embeds(patches, batch_size=batch_size).view(n, len(rows) * len(cols), -1)
        sim = (emb * F.normalize(text.float(), dim=-1)[:, None, :]).sum(-1)
        return sim.view(n, len(rows), len(cols))


def patch_starts(size: int, patch_size: int, stride: int) -> list[int]:
    """Patch start offsets along one axis: ``n = max(1, (size - P) // stride + 1)`` patches at
    ``i * stride``, the last one clamped to end at the edge (a patch larger than the image is
    the whole image)."""
    if patch_size >= size:
        return [0]
    n = max(1, (size - patch_size) // stride + 1)
    starts = [i * stride for i in range(n)]
    starts[-1] = size - patch_size
    return sorted(set(starts))


def load_clip(name: str | Path = "pocket", device: str | torch.device = "cpu") -> Clip:
    """Shorthand for :meth:`Clip.from_pretrained`."""
    return Clip.from_pretrained(name, device=device)
