"""Concatenating an original image with its edit (docs/methods/diffusemix.md).

Two ways to put an original and its edited counterpart in one picture:

- **feathered halves**: the original on the top (vertical) or left (horizontal) half, the
  edit on the other, joined by a linear ramp ``band`` pixels wide;
- **random rectangles**: a few non-overlapping rectangles of the edit pasted onto the
  original, covering about ``ratio`` of the image.

Tensor format: images are ``(N, C, H, W)`` batches or single ``(C, H, W)`` images, float in
any range, or uint8 in [0, 255] (computed in float32 and rounded back). Masks are float
with 1 = edited pixel. Randomness is always passed in: a ``numpy.random.Generator``, a
``torch.Generator`` or an int seed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Union

import numpy as np
import torch

Orientation = Literal["horizontal", "vertical"]
ORIENTATIONS: tuple[str, str] = ("horizontal", "vertical")
RNG = Union[np.random.Generator, torch.Generator, int, None]

FEATHER_BAND = 20  # px, the reference's ramp width
RECT_RATIO = 0.5  # target area ratio r of the rectangle variant
RECT_MAX_COUNT = 5  # K ~ U{1..5}
RECT_MIN_AREA = 0.05  # of HW
RECT_MAX_AREA = 0.5  # of r * HW
RECT_ASPECT = (0.5, 2.0)  # width / height ~ U(0.5, 2)
RECT_TRIES = 50  # placement attempts per rectangle


# ---------------------------------------------------------------------------------------
# shared helpers
# ---------------------------------------------------------------------------------------


def numpy_rng(rng: RNG) -> np.random.Generator:
    """A numpy Generator from any accepted source of randomness.

    A ``torch.Generator`` is consumed once (one 63-bit draw seeds the numpy generator), so
    the result is reproducible from the torch generator's state. ``None`` gives fresh OS
    entropy (not reproducible); an int is a seed.
    """
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, torch.Generator):
        return np.random.default_rng(int(torch.randint(0, 2**63 - 1, (1,), generator=rng).item()))
    if rng is None or isinstance(rng, (int, np.integer)):
        return np.random.default_rng(rng)
    raise TypeError(f"rng must be a numpy Generator, a torch Generator or an int seed, not {type(rng).__name__}")


def convex_combination(
    first: torch.Tensor, second: torch.Tensor, weight: float | torch.Tensor
) -> torch.Tensor:
    """``(1 - weight) * first + weight * second``, in ``first``'s dtype.

    ``weight`` is a float or a tensor broadcastable to the images (e.g. a mask). uint8
    images are combined in float32 and rounded back to uint8; ``second`` must already be in
    ``first``'s value scale.
    """
    if first.dtype == torch.uint8:
        mixed = convex_combination(first.to(torch.float32), second.to(torch.float32), weight)
        return mixed.round().clamp(0, 255).to(torch.uint8)
    if not first.is_floating_point():
        raise TypeError(f"images must be floating point or uint8, not {first.dtype}")
    second = second.to(first.dtype)
    if isinstance(weight, torch.Tensor):
        weight = weight.to(device=first.device, dtype=first.dtype)
    return (1 - weight) * first + weight * second


def _check_pair(original: torch.Tensor, edited: torch.Tensor) -> None:
    if original.shape != edited.shape:
        raise ValueError(
            f"original and edited must have the same shape, got {tuple(original.shape)} and {tuple(edited.shape)}"
        )
    if original.dim() not in (3, 4):
        raise ValueError(f"expected a (C, H, W) image or an (N, C, H, W) batch, got shape {tuple(original.shape)}")


# ---------------------------------------------------------------------------------------
# feathered halves
# ---------------------------------------------------------------------------------------


def feathered_mask(length: int, band: int = FEATHER_BAND, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The 1-D blend weight of the edited image along the split axis.

    ``[0] * (L // 2 - b // 2) + linspace(0, 1, b) + [1] * (L - L // 2 + b // 2 - b)``;
    for L = 32, b = 20: 6 zeros, 20 ramp values, 6 ones. When ``band > length`` the band
    is clamped to the length (the whole axis is one ramp from 0 to 1); ``band = 0`` is a
    hard cut at ``L // 2``.
    """
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    if band < 0:
        raise ValueError(f"band must be >= 0, got {band}")
    band = min(band, length)
    zeros = length // 2 - band // 2
    ones = length - zeros - band
    return torch.cat(
        [torch.zeros(zeros, dtype=dtype), torch.linspace(0, 1, band, dtype=dtype), torch.ones(ones, dtype=dtype)]
    )


def random_orientation(rng: RNG, n: int | None = None) -> str | list[str]:
    """"horizontal" or "vertical" with probability 1/2 each (a list of ``n`` if given)."""
    count = 1 if n is None else n
    if isinstance(rng, torch.Generator):
        vertical = (torch.rand(count, generator=rng) < 0.5).tolist()
    else:
        vertical = (numpy_rng(rng).random(count) < 0.5).tolist()
    names = ["vertical" if v else "horizontal" for v in vertical]
    return names[0] if n is None else names


def _vertical_flags(orientation: str | Sequence[str] | torch.Tensor, n: int) -> list[bool]:
    """One flag per sample, True = vertical split. A tensor is read as nonzero = vertical."""
    if isinstance(orientation, str):
        flags = [orientation] * n
    elif isinstance(orientation, torch.Tensor):
        flags = ["vertical" if bool(v) else "horizontal" for v in orientation.reshape(-1).tolist()]
    else:
        flags = list(orientation)
    if len(flags) != n:
        raise ValueError(f"got {len(flags)} orientations for {n} images")
    for name in flags:
        if name not in ORIENTATIONS:
            raise ValueError(f"orientation must be one of {ORIENTATIONS}, got {name!r}")
    return [name == "vertical" for name in flags]


def feathered_masks(
    n: int, h: int, w: int, orientation: str | Sequence[str] | torch.Tensor, band: int = FEATHER_BAND
) -> torch.Tensor:
    """(N, 1, H, W) edited-image weights: the 1-D ramp along H (vertical) or W (horizontal)."""
    along_h = feathered_mask(h, band).view(h, 1).expand(h, w)
    along_w = feathered_mask(w, band).view(1, w).expand(h, w)
    flags = _vertical_flags(orientation, n)
    return torch.stack([along_h if vertical else along_w for vertical in flags]).unsqueeze(1)


def feathered_halves(
    original: torch.Tensor,
    edited: torch.Tensor,
    orientation: str | Sequence[str] | torch.Tensor,
    band: int = FEATHER_BAND,
) -> torch.Tensor:
    """Feathered concatenation: ``out = (1 - mask) * original + mask * edited``.

    The original occupies the top (``"vertical"``) or left (``"horizontal"``) half, the edit
    the other, joined by a linear ramp (:func:`feathered_mask`). ``orientation`` is one name
    for all, a list of names, or a tensor with nonzero = vertical, one per sample.
    """
    _check_pair(original, edited)
    single = original.dim() == 3
    if single:
        original, edited = original.unsqueeze(0), edited.unsqueeze(0)
    n, _, h, w = original.shape
    mask = feathered_masks(n, h, w, orientation, band).to(original.device)
    out = convex_combination(original, edited, mask)
    return out[0] if single else out


# ---------------------------------------------------------------------------------------
# random rectangles
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rect:
    """A rectangle of pixels: rows ``top:top + height``, columns ``left:left + width``."""

    top: int
    left: int
    height: int
    width: int

    @property
    def area(self) -> int:
        return self.height * self.width


def rect_areas(h: int, w: int, ratio: float, rng: np.random.Generator) -> np.ndarray:
    """Target areas: K ~ U{1..5}, ``r HW`` split with Dirichlet(1) weights, each clipped to
    ``[0.05 HW, 0.5 r HW]``."""
    count = int(rng.integers(1, RECT_MAX_COUNT + 1))
    weights = rng.dirichlet(np.ones(count))
    return np.clip(weights * ratio * h * w, RECT_MIN_AREA * h * w, RECT_MAX_AREA * ratio * h * w)


def random_rects(h: int, w: int, ratio: float = RECT_RATIO, rng: RNG = None) -> list[Rect]:
    """Non-overlapping rectangles covering about ``ratio`` of an ``h x w`` image.

    Each target area (:func:`rect_areas`) gets an aspect ``width / height ~ U(0.5, 2)``,
    sides ``round(sqrt(area / aspect))`` x ``round(sqrt(area * aspect))`` clipped to the
    image, and up to 50 uniform positions; the first one not overlapping an earlier
    rectangle is kept, else the rectangle is dropped. Rounding the sides makes a realised
    area differ from its target by at most about ``(height + width) / 2``.
    """
    if h < 1 or w < 1:
        raise ValueError(f"image size must be positive, got {h}x{w}")
    if not 0 < ratio <= 1:
        raise ValueError(f"ratio must be in (0, 1], got {ratio}")
    gen = numpy_rng(rng)
    taken = np.zeros((h, w), dtype=bool)
    rects: list[Rect] = []
    for area in rect_areas(h, w, ratio, gen):
        aspect = gen.uniform(*RECT_ASPECT)
        height = int(np.clip(round(math.sqrt(area / aspect)), 1, h))
        width = int(np.clip(round(math.sqrt(area * aspect)), 1, w))
        for _ in range(RECT_TRIES):
            top = int(gen.integers(0, h - height + 1))
            left = int(gen.integers(0, w - width + 1))
            if not taken[top : top + height, left : left + width].any():
                taken[top : top + height, left : left + width] = True
                rects.append(Rect(top, left, height, width))
                break
    return rects


def rects_to_mask(h: int, w: int, rects: Sequence[Rect]) -> torch.Tensor:
    """A float (h, w) mask with 1 inside the rectangles."""
    mask = torch.zeros(h, w)
    for rect in rects:
        mask[rect.top : rect.top + rect.height, rect.left : rect.left + rect.width] = 1.0
    return mask


def random_rect_mask(h: int, w: int, ratio: float = RECT_RATIO, rng: RNG = None) -> torch.Tensor:
    """A float (h, w) mask, 1 = edited pixel, from :func:`random_rects`.

    The realised coverage (:func:`mask_coverage`) averages about 0.35 at 32x32 for r = 0.5,
    below r because of the area clipping and the dropped rectangles; record it.
    """
    return rects_to_mask(h, w, random_rects(h, w, ratio, rng))


def random_rect_masks(n: int, h: int, w: int, ratio: float = RECT_RATIO, rng: RNG = None) -> torch.Tensor:
    """(N, H, W) independent masks of :func:`random_rect_mask`, all drawn from one generator."""
    gen = numpy_rng(rng)
    return torch.stack([random_rect_mask(h, w, ratio, gen) for _ in range(n)]) if n else torch.zeros(0, h, w)


def rect_mix(original: torch.Tensor, edited: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``out = (1 - mask) * original + mask * edited``; mask (H, W), (N, H, W) or (N, 1, H, W)."""
    _check_pair(original, edited)
    if mask.dim() == 3 and original.dim() == 4:
        mask = mask.unsqueeze(1)  # one mask per sample, shared by the channels
    return convex_combination(original, edited, mask.to(original.device))


def mask_coverage(mask: torch.Tensor) -> float | torch.Tensor:
    """Fraction of edited pixels: the mean over the last two axes (a float for one mask)."""
    coverage = mask.float().mean(dim=(-2, -1))
    return float(coverage) if mask.dim() == 2 else coverage
