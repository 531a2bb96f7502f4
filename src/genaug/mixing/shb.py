"""The model-free parts of CLIP-guided semantic hybrid blending (SHB, METHODS.md 3).

SHB scores patches of a generated image against the class text with CLIP, and brings
back from the original the ``percentile`` % of pixels least like the class. Here: the
patch grid, the mask from a grid of patch similarities, and the blend. The CLIP scoring
and the full ``semantic_hybrid_blend`` live with the CLIP wrapper.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter

from genaug.mixing.concat import convex_combination
from genaug.mixing.fractals import resize_images

SHB_PATCH = 32  # px at CLIP's 224 px
SHB_STRIDE = 16  # overlap 0.5
SHB_PERCENTILE = 30.0
SHB_SIGMA = 5 / 3
MaskMode = Literal["binary", "soft"]


def _starts(length: int, patch: int, stride: int) -> list[int]:
    count = max(1, (length - patch) // stride + 1)
    return [max(0, min(i * stride, length - patch)) for i in range(count)]


def patch_grid(h: int, w: int, patch: int = SHB_PATCH, stride: int = SHB_STRIDE) -> list[tuple[int, int]]:
    """Top-left corners ``(y0, x0)`` of the SHB patches, row-major.

    Per axis ``n = max(1, (L - P) // stride + 1)`` patches start at
    ``max(0, min(i * stride, L - P))``. The patch is rows ``y0 : y0 + P`` cut at the image,
    so when ``L < P`` the single patch is the whole axis. With this count
    ``i * stride <= L - P`` whenever ``L >= P``, so the clamp never moves a start: patches
    are the plain sliding window and the last ``(L - P) % stride`` rows (or columns) are in
    no patch (none at 224 px with P = 32, stride 16; 8 rows at L = 40). The similarity map
    is upsampled over the whole image anyway (:func:`shb_mask`).
    """
    if min(h, w, patch, stride) < 1:
        raise ValueError(f"sizes, patch and stride must be >= 1, got h={h}, w={w}, patch={patch}, stride={stride}")
    return [(y, x) for y in _starts(h, patch, stride) for x in _starts(w, patch, stride)]


def grid_shape(h: int, w: int, patch: int = SHB_PATCH, stride: int = SHB_STRIDE) -> tuple[int, int]:
    """``(gh, gw)``: the number of patches per axis of :func:`patch_grid`."""
    return len(_starts(h, patch, stride)), len(_starts(w, patch, stride))


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


def shb_mask(
    similarity_grid: torch.Tensor,
    out_size: tuple[int, int],
    percentile: float = SHB_PERCENTILE,
    sigma: float = SHB_SIGMA,
    mode: MaskMode = "binary",
) -> torch.Tensor:
    """The SHB mask ``M'`` (N, H, W), 1 = take the original pixel.

    1. ``A`` = the min-max normalised grid (:func:`normalise_grid`), bilinearly upsampled
       to ``out_size`` (align_corners False);
    2. ``tau`` = the ``percentile`` of each image's ``A`` (numpy, linear interpolation);
    3. ``M = 1[A <= tau]``, smoothed with ``scipy.ndimage.gaussian_filter`` (``sigma``,
       mode "reflect", truncate 4) per image, clipped to [0, 1];
    4. binary: ``M' = 1[smoothed > 0.5]``; soft: ``M' = smoothed``.

    ``similarity_grid`` is (N, gh, gw) or one (gh, gw) grid (then the result is (H, W)).
    """
    if mode not in ("binary", "soft"):
        raise ValueError(f"mode must be 'binary' or 'soft', got {mode!r}")
    if not 0 <= percentile <= 100:
        raise ValueError(f"percentile must be in [0, 100], got {percentile}")
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    single = similarity_grid.dim() == 2
    grid = similarity_grid.unsqueeze(0) if single else similarity_grid
    if grid.dim() != 3:
        raise ValueError(f"expected an (N, gh, gw) similarity grid, got shape {tuple(similarity_grid.shape)}")
    h, w = out_size

    upsampled = F.interpolate(
        normalise_grid(grid.double()).unsqueeze(1), size=(h, w), mode="bilinear", align_corners=False
    )[:, 0]
    values = upsampled.cpu().numpy()
    tau = np.percentile(values.reshape(len(values), -1), percentile, axis=1)
    least_like_class = (values <= tau[:, None, None]).astype(np.float64)
    # sigma 0 on the batch axis: each image is smoothed on its own.
    smoothed = np.clip(gaussian_filter(least_like_class, sigma=(0, sigma, sigma), mode="reflect"), 0, 1)
    mask = (smoothed > 0.5).astype(np.float32) if mode == "binary" else smoothed.astype(np.float32)

    out = torch.from_numpy(mask).to(similarity_grid.device)
    return out[0] if single else out


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
