"""One wrapper over transformers CLIP, used by every stage that needs CLIP.

``Clip.from_reference(ref)`` is how stages load CLIP: ``ref`` is a hub id
(``openai/clip-vit-large-patch14``), a local folder of a real CLIP, or ``"pocket"`` (the
default: pocket CLIP, see :func:`genaug.pocket.store.pocket_model_dir`). It resolves the
reference once (:func:`genaug.diffusion.models.resolve_model`) and keeps what records
name as :attr:`Clip.identity` (``id``/``path`` and ``revision``/``hash``).
``Clip.from_pretrained(location)`` loads a folder or hub id without that bookkeeping.
Everything below is the same code for all.

Conventions:

- Images are ``(N, H, W, 3)`` uint8 arrays, lists of such arrays or PIL images. They go
  through the model's own ``CLIPImageProcessor`` (resize, centre crop, normalise).
- :meth:`Clip.image_embeds` returns CLIP's ``image_embeds``: the vision tower's pooled
  output through ``visual_projection`` (what ``CLIPModel(...).image_embeds`` is before
  normalisation). :meth:`Clip.text_embeds` likewise with ``text_projection``. Both are
  L2-normalised unless ``normalize=False``. (transformers 5's ``get_image_features``
  returns an output object; we call the towers and projections directly instead.)
- Results are computed in batches of ``batch_size`` and are equal (to float tolerance)
  to one-at-a-time calls. A batch that runs out of memory is halved and retried
  (:class:`genaug.memory.BatchBackoff`); the halved size caps every later call of this
  :class:`Clip` and is :attr:`Clip.batch_limit`, which stages record. ``stage`` names the
  stage in the one-line error raised when one image or patch does not fit alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from genaug.diffusion.models import clip_reference, resolve_model
from genaug.memory import BatchBackoff
from genaug.pocket.store import pocket_model_dir


class Clip:
    """A CLIP model with its processor: embeddings and patch-level similarity."""

    def __init__(self, model, processor, device: str | torch.device = "cpu", name: str = "", stage: str | None = None,
                 identity: dict | None = None):
        self.model = model.eval().to(device)
        self.processor = processor
        self.device = torch.device(device)
        self.name = name
        self.identity = identity  # what provenance records name (from_reference), None otherwise
        self.stage = stage or f"CLIP {name}".strip()
        self.batch_limit: int | None = None  # set once an out-of-memory error halved a batch

    def batched(self, call: Callable[[int, int], torch.Tensor], count: int, batch_size: int,
                item_name: Callable[[int], str]) -> list[torch.Tensor]:
        """``call(start, stop)`` over ``range(count)`` in chunks of ``batch_size`` (capped by
        :attr:`batch_limit`), halving on out-of-memory; a halving lowers :attr:`batch_limit`."""
        size = min(batch_size, self.batch_limit) if self.batch_limit else batch_size
        backoff = BatchBackoff(self.stage, size, self.device)
        try:
            return backoff.run(call, count, item_name)
        finally:
            if backoff.halvings:
                self.batch_limit = backoff.batch_size

    def batch_size_used(self, asked: int) -> int:
        """Items per CLIP call for calls asked to run ``asked`` at a time (after any halving)."""
        return min(asked, self.batch_limit) if self.batch_limit else asked

    @classmethod
    def from_reference(
        cls,
        ref: str | Path = "pocket",
        device: str | torch.device = "cpu",
        *,
        stage: str | None = None,
        field: str = "clip",
        revision: str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> "Clip":
        """The CLIP a config names: ``"pocket"``, a hub id (at ``revision``, offline when cached) or a folder.

        The reference is resolved once (:func:`genaug.diffusion.models.resolve_model`,
        whose one-line error names ``field``) and its description kept as
        :attr:`identity` for the records. ``stage`` names the stage in out-of-memory errors.
        """
        resolved = resolve_model(clip_reference(str(ref)), revision, field=field)
        clip = cls.from_pretrained(resolved.location, device=device, dtype=dtype, revision=resolved.revision, stage=stage)
        clip.identity = resolved.identity
        return clip

    @classmethod
    def from_pretrained(
        cls,
        name: str | Path = "pocket",
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        revision: str | None = None,
        stage: str | None = None,
    ) -> "Clip":
        """Load a CLIP from a hub id (at ``revision``) or a local folder (offline if cached), or
        ``"pocket"``, without resolving an identity (:meth:`from_reference` does).

        ``stage`` names the stage using it in out-of-memory errors (default "CLIP <name>").
        """
        from transformers import CLIPModel, CLIPProcessor

        if str(name) == "pocket":
            name = pocket_model_dir("clip")
        model = CLIPModel.from_pretrained(str(name), dtype=dtype, revision=revision)
        processor = CLIPProcessor.from_pretrained(str(name), revision=revision)
        return cls(model, processor, device=device, name=str(name), stage=stage)

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
    def image_embeds_from_pixels(
        self, pixel_values: torch.Tensor, normalize: bool = True, batch_size: int = 256,
        item_name: Callable[[int], str] | None = None,
    ) -> torch.Tensor:
        """Projected image embeddings of already preprocessed pixels, ``(N, D)`` float32 on CPU.

        ``item_name(i)`` names row ``i`` in the error raised when it does not fit alone.
        """
        dtype = next(self.model.parameters()).dtype

        def embed(start: int, stop: int) -> torch.Tensor:
            pooled = self.model.vision_model(pixel_values=pixel_values[start:stop].to(self.device, dtype)).pooler_output
            return self.model.visual_projection(pooled).float().cpu()

        out = self.batched(embed, len(pixel_values), batch_size, item_name or (lambda i: f"image {i}"))
        emb = torch.cat(out) if out else torch.zeros(0, self.embed_dim)
        return F.normalize(emb, dim=-1) if normalize else emb

    @torch.no_grad()
    def image_embeds(self, images, normalize: bool = True, batch_size: int = 256) -> torch.Tensor:
        """CLIP ``image_embeds`` of ``images`` (module doc), ``(N, D)``."""
        n = len(images) if not (isinstance(images, np.ndarray) and images.ndim == 3) else 1
        chunks = []
        items = images if n != 1 or not isinstance(images, np.ndarray) or images.ndim == 4 else images[None]
        for i in range(0, n, batch_size):
            pixels = self.pixel_values(items[i : i + batch_size])
            chunks.append(self.image_embeds_from_pixels(pixels, normalize, batch_size, lambda k, i=i: f"image {i + k}"))
        return torch.cat(chunks) if chunks else torch.zeros(0, self.embed_dim)

    @torch.no_grad()
    def text_embeds(self, texts: Sequence[str], normalize: bool = True, batch_size: int = 256) -> torch.Tensor:
        """CLIP ``text_embeds`` of ``texts``, ``(N, D)`` (padded to the tokenizer's max length)."""
        tokenizer = self.processor.tokenizer

        def embed(start: int, stop: int) -> torch.Tensor:
            tok = tokenizer(
                list(texts[start:stop]), padding="max_length", max_length=tokenizer.model_max_length,
                truncation=True, return_tensors="pt",
            )
            pooled = self.model.text_model(
                input_ids=tok.input_ids.to(self.device), attention_mask=tok.attention_mask.to(self.device)
            ).pooler_output
            return self.model.text_projection(pooled).float().cpu()

        out = self.batched(embed, len(texts), batch_size, lambda i: f"text {texts[i]!r}")
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

    def patch_pixel_values(self, patches: torch.Tensor) -> torch.Tensor:
        """CLIP's own preprocessing of a stack of same-size patches, ``(M, 3, h, w)`` uint8.

        Each patch's result equals preprocessing that patch alone (:meth:`pixel_values`).
        With transformers' torchvision image processor (CLIP's default) the stack goes
        through that processor's own steps, in the order its ``_preprocess`` applies them
        to a group of same-size images (resize, centre crop, fused rescale + normalise),
        as one batch: calling the processor itself would first convert and check every
        patch one by one, which costs more than the resize. Any other processor is called
        on the list of patches (channel axis given: it cannot be inferred for patches of
        side 3 or less).
        """
        if patches.dim() != 4 or patches.dtype != torch.uint8:
            raise ValueError(f"expected (M, 3, h, w) uint8 patches, got {patches.dtype} {tuple(patches.shape)}")
        if len(patches) == 0:
            h, w = self.input_size
            return torch.zeros(0, 3, h, w)
        processor = self.processor.image_processor
        if _is_batched_torchvision_processor(processor):
            images = patches.cpu().contiguous()
            if processor.do_resize:
                images = processor.resize(images, processor.size, resample=processor.resample)
            if processor.do_center_crop:
                images = processor.center_crop(images, processor.crop_size)
            return processor.rescale_and_normalize(
                images, processor.do_rescale, processor.rescale_factor, processor.do_normalize,
                _hashable(processor.image_mean), _hashable(processor.image_std),
            )
        out = processor(images=list(patches.cpu()), input_data_format="channels_first", return_tensors="pt")
        return out["pixel_values"]

    def patch_batch_size(self, budget_bytes: int = 20 << 20, most: int = 256) -> int:
        """Patches per CLIP call: as many as keep a call's float32 pixels near ``budget_bytes``.

        34 at 224 px, 256 (``most``) at 16 px. Measured on a CPU, larger calls were no
        faster and calls of 64 patches at 224 px (38 MB of pixels) slower: buffers beyond
        glibc's largest heap block (32 MB) are fresh pages on every call, and touching
        them first costs more than normalising them.
        """
        h, w = self.input_size
        return max(1, min(most, budget_bytes // (3 * h * w * 4)))

    @torch.no_grad()
    def patch_similarity(
        self,
        images,
        texts: Sequence[str] | torch.Tensor,
        patch_size: int,
        stride: int,
        batch_size: int | None = None,
    ) -> torch.Tensor:
        """Cosine similarity of every patch of every image to that image's prompt.

        ``images``: N images of one size ``(H, W)``: an ``(N, H, W, 3)`` uint8 array, a list
        of such arrays or PIL images, or an ``(N, 3, H, W)`` uint8 tensor (genaug.mixing's
        layout). ``texts``: N prompts (one per image, e.g. "a photo of a {class}") or an
        ``(N, D)`` tensor of text embeddings. The grid is :func:`patch_starts` per axis;
        every patch goes through CLIP's own preprocessing. Patches of all images are cut
        with one gather and preprocessed and embedded ``batch_size`` at a time (None:
        :meth:`patch_batch_size`), so the cost is a few large batches however many images
        and patches there are. Returns ``(N, n_rows, n_cols)``.
        """
        pixels = images_as_tensor(images)
        n = len(pixels)
        batch_size = batch_size or self.patch_batch_size()
        text = texts if isinstance(texts, torch.Tensor) else self.text_embeds(list(texts))
        if len(text) != n:
            raise ValueError(f"need one prompt per image: {n} images, {len(text)} prompts")
        patches = extract_patches(pixels, patch_size, stride)
        n_rows, n_cols = patches.shape[1:3]
        flat = patches.reshape(-1, *patches.shape[3:])
        per_image = n_rows * n_cols

        def patch_name(index: int) -> str:
            row, col = divmod(index % per_image, n_cols)
            return f"patch ({row}, {col}) of image {index // per_image} ({patches.shape[-2]}x{patches.shape[-1]} px)"

        emb = torch.cat(
            [self.image_embeds_from_pixels(self.patch_pixel_values(flat[i : i + batch_size]), batch_size=batch_size,
                                           item_name=lambda k, i=i: patch_name(i + k))
             for i in range(0, len(flat), batch_size)]
        ) if len(flat) else torch.zeros(0, self.embed_dim)
        emb = emb.view(n, n_rows * n_cols, -1)
        sim = (emb * F.normalize(text.float(), dim=-1)[:, None, :]).sum(-1)
        return sim.view(n, n_rows, n_cols)


def patch_starts(size: int, patch_size: int, stride: int) -> list[int]:
    """Patch start offsets along one axis (docs/methods/semantic-hybrid-blending.md): ``n = max(1, (size - P) // stride + 1)``
    patches at ``i * stride``, the last one clamped to end at the edge, so no row or column
    is left out of every patch. A patch at least as large as the axis is the whole axis.

    The one definition of the SHB grid; :func:`genaug.mixing.shb.patch_grid` builds on it.
    """
    if min(size, patch_size, stride) < 1:
        raise ValueError(f"size, patch size and stride must be >= 1, got {size}, {patch_size}, {stride}")
    if patch_size >= size:
        return [0]
    n = max(1, (size - patch_size) // stride + 1)
    starts = [i * stride for i in range(n)]
    starts[-1] = size - patch_size
    return sorted(set(starts))


def extract_patches(images: torch.Tensor, patch_size: int, stride: int) -> torch.Tensor:
    """Every grid patch of ``(N, C, H, W)`` images: ``(N, n_rows, n_cols, C, p_h, p_w)``.

    Rows and columns follow :func:`patch_starts`; a patch larger than the image is cut at
    the image (``p_h = min(P, H)``). One index gather, no per-patch loop.
    """
    if images.dim() != 4:
        raise ValueError(f"expected (N, C, H, W) images, got shape {tuple(images.shape)}")
    h, w = images.shape[-2:]
    rows = torch.tensor(patch_starts(h, patch_size, stride), device=images.device)
    cols = torch.tensor(patch_starts(w, patch_size, stride), device=images.device)
    ys = rows[:, None] + torch.arange(min(patch_size, h), device=images.device)  # (n_rows, p_h)
    xs = cols[:, None] + torch.arange(min(patch_size, w), device=images.device)  # (n_cols, p_w)
    patches = images[:, :, ys[:, None, :, None], xs[None, :, None, :]]  # (N, C, n_rows, n_cols, p_h, p_w)
    return patches.permute(0, 2, 3, 1, 4, 5).contiguous()


def images_as_tensor(images) -> torch.Tensor:
    """``(N, 3, H, W)`` uint8 tensor of images given in any of :class:`Clip`'s layouts.

    Arrays and PIL images are channels-last ``(H, W, 3)``; a torch tensor is taken as
    already channels-first ``(N, 3, H, W)``.
    """
    if isinstance(images, torch.Tensor):
        if images.dim() != 4 or images.dtype != torch.uint8:
            raise ValueError(f"expected an (N, 3, H, W) uint8 tensor, got {images.dtype} {tuple(images.shape)}")
        return images
    arrays = np.stack([np.asarray(im.convert("RGB")) if hasattr(im, "convert") else np.asarray(im) for im in images])
    if arrays.dtype != np.uint8 or arrays.ndim != 4:
        raise ValueError(f"expected (H, W, 3) uint8 images, got {arrays.dtype} {arrays.shape[1:]}")
    return torch.from_numpy(arrays).permute(0, 3, 1, 2)


def _is_batched_torchvision_processor(processor) -> bool:
    """A transformers torchvision-backend image processor whose steps are the plain CLIP ones."""
    try:
        from transformers.image_processing_backends import TorchvisionBackend
    except ImportError:
        return False
    return (
        isinstance(processor, TorchvisionBackend)
        and not getattr(processor, "do_pad", None)
        and all(hasattr(processor, name) for name in ("resize", "center_crop", "rescale_and_normalize"))
    )


def _hashable(values):
    return tuple(values) if isinstance(values, list) else values


