"""CLIP-guided semantic hybrid blending (SHB, docs/methods/semantic-hybrid-blending.md).

SHB scores patches of a generated image against the class text with CLIP, and brings
back from the original the ``percentile`` % of pixels least like the class. The module
reads as the method: the patch grid (:func:`patch_grid`), CLIP scores of every patch of
many pairs in large batches (:func:`score_patches`), the similarity map
(:func:`similarity_map`), the mask (:func:`mask_from_map`, :func:`shb_mask`) and the blend
(:func:`hybrid_blend`), joined by :func:`semantic_hybrid_blend`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter

from genaug.clip import patch_starts
from genaug.data.names import class_prompt
from genaug.mixing.concat import convex_combination
from genaug.mixing.fractals import resize_images

if TYPE_CHECKING:
    from genaug.clip import Clip

SHB_PATCH = 32  # px at CLIP's 224 px
SHB_STRIDE = 16  # overlap 0.5
SHB_PERCENTILE = 30.0
SHB_SIGMA = 5 / 3
SHB_PROMPT = "a photo of a {}"
MaskMode = Literal["binary", "soft"]


def patch_grid(h: int, w: int, patch: int = SHB_PATCH, stride: int = SHB_STRIDE) -> list[tuple[int, int]]:
    """Top-left corners ``(y0, x0)`` of the SHB patches, row-major.

    Per axis ``n = max(1, (L - P) // stride + 1)`` patches start at ``i * stride``, the
    last one clamped to end at the edge (:func:`genaug.clip.patch_starts`, the one
    definition CLIP scoring uses too), so the last rows and columns are in a patch; with
    overlap >= 0.5 (``stride <= P / 2``) and two or more patches per axis every pixel is.
    (With one patch on an axis, ``P < L < P + stride``, it sits at the end; the map is
    then constant along that axis anyway.) A patch is rows ``y0 : y0 + P`` cut at the
    image: when ``L <= P`` the single patch is the whole axis. At 224 px with P = 32,
    stride 16 this is the plain 13 x 13 sliding window.
    """
    return [(y, x) for y in patch_starts(h, patch, stride) for x in patch_starts(w, patch, stride)]


def grid_shape(h: int, w: int, patch: int = SHB_PATCH, stride: int = SHB_STRIDE) -> tuple[int, int]:
    """``(gh, gw)``: the number of patches per axis of :func:`patch_grid`."""
    return len(patch_starts(h, patch, stride)), len(patch_starts(w, patch, stride))


def scale_patch(size: int | tuple[int, int]) -> tuple[int, int]:
    """``(P, stride)`` for images of side ``size`` (the shorter side if a pair).

    ``P = min(32, max(1, size // 2))``, ``stride = max(1, P // 2)``: the reference's 32 px
    patch with overlap 0.5 from 64 px up, half the image below, so small images still get
    a 3x3 grid (16 px pocket images: P = 8, stride 4; 32 px CIFAR: P = 16, stride 8).
    """
    side = min(size) if isinstance(size, tuple) else size
    if side < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    patch = min(SHB_PATCH, max(1, side // 2))
    return patch, max(1, patch // 2)


def normalise_grid(similarity: torch.Tensor) -> torch.Tensor:
    """Min-max normalise each (gh, gw) grid to [0, 1]: ``(a - min) / (max - min)``.

    A constant grid (a 1x1 grid in particular) has nothing to rank and becomes all zeros;
    then every pixel is at the percentile and the mask keeps the whole original.
    """
    flat = similarity.flatten(1)
    low = flat.min(dim=1).values.view(-1, 1, 1)
    span = flat.max(dim=1).values.view(-1, 1, 1) - low
    safe = torch.where(span > 0, span, torch.ones_like(span))
    return torch.where(span > 0, (similarity - low) / safe, torch.zeros_like(similarity))


def similarity_map(similarity_grid: torch.Tensor, out_size: tuple[int, int]) -> torch.Tensor:
    """Steps 4-5: ``A``, the min-max normalised grid bilinearly upsampled to ``out_size``.

    ``(N, gh, gw)`` -> ``(N, H, W)`` in [0, 1] (align_corners False), computed in float64
    and rounded to float32. Upsampling a small grid makes plateaus of pixels that are equal
    in exact arithmetic but differ in float64's last bits, depending on which weights made
    them; when the percentile falls on such a plateau, that noise, not the image, would
    decide which of its pixels come back. Rounded to float32 the plateau is one value, and
    the mask does not depend on the last bits of the CLIP scores.
    """
    if similarity_grid.dim() != 3:
        raise ValueError(f"expected an (N, gh, gw) similarity grid, got shape {tuple(similarity_grid.shape)}")
    grid = normalise_grid(similarity_grid.double()).unsqueeze(1)
    return F.interpolate(grid, size=tuple(out_size), mode="bilinear", align_corners=False)[:, 0].float()


def mask_from_map(
    similarity: torch.Tensor,
    percentile: float = SHB_PERCENTILE,
    sigma: float = SHB_SIGMA,
    mode: MaskMode = "binary",
) -> torch.Tensor:
    """Steps 6-7: the SHB mask ``M'`` (N, H, W) float32 from the map ``A`` (N, H, W), 1 = original.

    ``tau`` = the ``percentile`` of each image's ``A`` (numpy, linear interpolation, float64);
    ``M = 1[A <= tau]``, smoothed with ``scipy.ndimage.gaussian_filter`` (``sigma``, mode
    "reflect", truncate 4) per image, clipped to [0, 1]; binary: ``M' = 1[smoothed > 0.5]``,
    soft: ``M' = smoothed``.
    """
    check_mask_params(percentile, sigma, mode)
    values = similarity.double().cpu().numpy()
    tau = np.percentile(values.reshape(len(values), -1), percentile, axis=1)
    least_like_class = (values <= tau[:, None, None]).astype(np.float64)
    # sigma 0 on the batch axis: each image is smoothed on its own.
    smoothed = np.clip(gaussian_filter(least_like_class, sigma=(0, sigma, sigma), mode="reflect"), 0, 1)
    mask = (smoothed > 0.5).astype(np.float32) if mode == "binary" else smoothed.astype(np.float32)
    return torch.from_numpy(mask).to(similarity.device)


def check_mask_params(percentile: float, sigma: float, mode: str) -> None:
    if mode not in ("binary", "soft"):
        raise ValueError(f"mode must be 'binary' or 'soft', got {mode!r}")
    if not 0 <= percentile <= 100:
        raise ValueError(f"percentile must be in [0, 100], got {percentile}")
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")


def shb_mask(
    similarity_grid: torch.Tensor,
    out_size: tuple[int, int],
    percentile: float = SHB_PERCENTILE,
    sigma: float = SHB_SIGMA,
    mode: MaskMode = "binary",
) -> torch.Tensor:
    """The SHB mask ``M'`` (N, H, W) from a grid of patch similarities, 1 = take the original pixel.

    :func:`similarity_map` then :func:`mask_from_map`. ``similarity_grid`` is (N, gh, gw)
    or one (gh, gw) grid (then the result is (H, W)).
    """
    check_mask_params(percentile, sigma, mode)
    single = similarity_grid.dim() == 2
    grid = similarity_grid.unsqueeze(0) if single else similarity_grid
    mask = mask_from_map(similarity_map(grid, out_size), percentile, sigma, mode).to(similarity_grid.device)
    return mask[0] if single else mask


def hybrid_blend(original: torch.Tensor, generated: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``out = original * M + generated * (1 - M)``.

    Images (C, H, W) or (N, C, H, W); ``mask`` (H, W), (N, H, W) or (N, 1, H, W). The
    generated image is first resized to the original's size when they differ (bilinear,
    antialias), as SHB's step 2 does.
    """
    if original.dim() not in (3, 4) or generated.dim() != original.dim():
        raise ValueError(
            "expected matching (C, H, W) or (N, C, H, W) images, "
            f"got {tuple(original.shape)} and {tuple(generated.shape)}"
        )
    if generated.shape[-2:] != original.shape[-2:]:
        batch = generated if generated.dim() == 4 else generated.unsqueeze(0)
        resized = resize_images(batch, tuple(original.shape[-2:]))
        generated = resized if generated.dim() == 4 else resized[0]
    if generated.shape != original.shape:
        raise ValueError(f"original and generated differ beyond size: {tuple(original.shape)}, {tuple(generated.shape)}")
    if mask.dim() == 3 and original.dim() == 4:
        mask = mask.unsqueeze(1)
    # (1 - M) * generated + M * original: the same two products and sum as the formula.
    return convex_combination(generated, original, mask.to(original.device))


# ---------------------------------------------------------------------------- CLIP scoring and the whole method


def class_prompts(class_names: Sequence[str], template: str = SHB_PROMPT) -> list[str]:
    """Step 1's text, one per pair: :func:`genaug.data.names.class_prompt` of ``template``
    ("a photo of a {}") and the class name, e.g. "a photo of a Black footed Albatross"."""
    return [class_prompt(template, name) for name in class_names]


def score_patches(
    generated: torch.Tensor,
    class_names: Sequence[str],
    clip: "Clip",
    patch: int,
    stride: int,
    prompt: str = SHB_PROMPT,
    batch_size: int | None = None,
) -> torch.Tensor:
    """Steps 1, 3 and 4 before normalisation: ``a_ij`` = cosine(patch feature, text feature).

    ``generated``: (N, 3, H, W) uint8. The text feature of each distinct class is computed
    once; every patch of every image goes through CLIP's own preprocessing and the vision
    tower ``batch_size`` patches at a time (:meth:`genaug.clip.Clip.patch_similarity`;
    None: :meth:`genaug.clip.Clip.patch_batch_size`, about 20 MB of pixels per call).
    Returns (N, gh, gw).
    """
    prompts = class_prompts(class_names, prompt)
    row = {text: i for i, text in enumerate(dict.fromkeys(prompts))}
    per_pair = clip.text_embeds(list(row))[[row[text] for text in prompts]]
    return clip.patch_similarity(generated, per_pair, patch_size=patch, stride=stride, batch_size=batch_size)


@dataclass
class HybridBlend:
    """What :func:`semantic_hybrid_blend` returns for N pairs.

    ``images``: the blends (N, C, H, W), in the originals' dtype; ``masks``: ``M'``
    (N, H, W) float32, 1 = the original's pixel; ``replaced_fraction``: (N,) float64, the
    mean of ``M'`` per pair, i.e. the realised share of the generated image replaced by the
    original (about ``percentile`` %); ``heatmaps``: ``A``, the normalised similarity map
    (N, H, W) float32 in [0, 1], when asked; ``patch``, ``stride``: the grid used;
    ``clip_batch_size``: patches per CLIP call, after any out-of-memory halving (None when
    CLIP did not run).
    """

    images: torch.Tensor
    masks: torch.Tensor
    replaced_fraction: torch.Tensor
    heatmaps: torch.Tensor | None
    patch: int
    stride: int
    clip_batch_size: int | None = None


def semantic_hybrid_blend(
    originals: torch.Tensor,
    generated: torch.Tensor,
    class_names: Sequence[str],
    clip: "Clip",
    *,
    patch: int | None = None,
    stride: int | None = None,
    percentile: float = SHB_PERCENTILE,
    sigma: float = SHB_SIGMA,
    mode: MaskMode = "binary",
    prompt: str = SHB_PROMPT,
    batch_size: int | None = None,
    return_heatmaps: bool = False,
) -> HybridBlend:
    """SHB of N (original, generated) pairs (docs/methods/semantic-hybrid-blending.md), all patches scored in large batches.

    ``originals`` (N, 3, H, W) and ``generated`` (N, 3, h, w), both uint8 or both float in
    [0, 1]; ``class_names``: one per pair. ``patch`` and ``stride`` default to
    :func:`scale_patch` of the originals' shorter side (32 / 16 from 64 px up); a
    ``patch`` given without ``stride`` gets ``stride = patch // 2``. ``batch_size``:
    patches per CLIP call (None: :meth:`genaug.clip.Clip.patch_batch_size`). The result
    for a pair does not depend on which other pairs share the call.

    1. text feature of ``prompt`` with the class name (L2-normalised);
    2. the generated image resized to the original's size;
    3. the patch grid over it, each patch through CLIP's own preprocessing;
    4. ``a_ij`` = cosine(patch, text), min-max normalised over the grid;
    5. bilinear upsampling to H x W;
    6. ``M = 1[A <= tau_percentile]``, Gaussian-smoothed (``sigma``), clipped;
    7. binary or soft ``M'``; ``out = original * M' + generated * (1 - M')``.

    A 1 x 1 grid ranks nothing: the originals come back unchanged, without running CLIP.
    """
    check_mask_params(percentile, sigma, mode)
    if originals.dim() != 4 or generated.dim() != 4 or len(originals) != len(generated):
        raise ValueError(
            f"expected (N, C, H, W) originals and generated, got {tuple(originals.shape)} and {tuple(generated.shape)}"
        )
    if originals.dtype != generated.dtype:
        raise ValueError(f"originals and generated must share a dtype, got {originals.dtype} and {generated.dtype}")
    if len(class_names) != len(originals):
        raise ValueError(f"need one class name per pair: {len(originals)} pairs, {len(class_names)} names")
    h, w = originals.shape[-2:]
    patch = scale_patch((h, w))[0] if patch is None else patch
    stride = max(1, patch // 2) if stride is None else stride  # overlap 0.5, as scale_patch
    generated = resize_images(generated, (h, w))  # step 2

    if grid_shape(h, w, patch, stride) == (1, 1):
        masks = torch.ones(len(originals), h, w)
        heatmaps = torch.zeros(len(originals), h, w) if return_heatmaps else None
        return HybridBlend(originals.clone(), masks, torch.ones(len(originals), dtype=torch.float64), heatmaps, patch, stride)

    grids = score_patches(as_uint8(generated), class_names, clip, patch, stride, prompt, batch_size)  # steps 1, 3, 4
    similarity = similarity_map(grids, (h, w))  # steps 4, 5
    masks = mask_from_map(similarity, percentile, sigma, mode)  # steps 6, 7
    images = hybrid_blend(originals, generated, masks.to(originals.device))
    return HybridBlend(
        images=images,
        masks=masks,
        replaced_fraction=masks.double().mean(dim=(1, 2)),
        heatmaps=similarity.float() if return_heatmaps else None,
        patch=patch,
        stride=stride,
        clip_batch_size=clip.batch_size_used(batch_size or clip.patch_batch_size()),
    )


def as_uint8(images: torch.Tensor) -> torch.Tensor:
    """uint8 images as they are; float images in [0, 1] scaled, rounded and clamped to uint8."""
    if images.dtype == torch.uint8:
        return images
    return (images.float() * 255).round().clamp(0, 255).to(torch.uint8)
