"""The pocket digits renderer: scikit-learn's real 8x8 digits, styled at 16x16 RGB.

Each styled image has a foreground colour (the ink) and a different background colour
from :data:`PALETTE`, and a caption such as ``"a photo of the digit seven, red on blue"``.
Rendering is exact and vectorised: ``alpha = digit / 16`` upsampled 2x by pixel
repetition, ``rgb = (1 - alpha) * background + alpha * foreground``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

#: Named colours, well separated in RGB so that colour is unambiguous at 16x16.
PALETTE: dict[str, tuple[int, int, int]] = {
    "black": (20, 20, 20),
    "white": (235, 235, 235),
    "red": (220, 50, 50),
    "green": (50, 170, 70),
    "blue": (50, 90, 220),
    "yellow": (240, 210, 50),
    "purple": (150, 60, 190),
    "cyan": (60, 200, 210),
}
COLOR_NAMES: tuple[str, ...] = tuple(PALETTE)
DIGIT_NAMES: tuple[str, ...] = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
IMAGE_SIZE = 16
CAPTION_TEMPLATE = "a photo of the digit {digit}, {fg} on {bg}"


@dataclass(frozen=True)
class DigitsSource:
    """scikit-learn's digits: ``images`` (1797, 8, 8) with values 0..16 and ``labels``."""

    images: np.ndarray
    labels: np.ndarray


@lru_cache(maxsize=1)
def load_digits() -> DigitsSource:
    """The 1,797 real handwritten digits shipped inside scikit-learn (no download)."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    return DigitsSource(images=bunch.images.astype(np.float32), labels=bunch.target.astype(np.int64))


def render(digits: np.ndarray, fg: np.ndarray, bg: np.ndarray) -> np.ndarray:
    """Render 8x8 digits (values 0..16) as 16x16 RGB uint8 images, (N, 16, 16, 3).

    ``fg`` and ``bg`` are integer indices into :data:`COLOR_NAMES`, one per digit.
    """
    digits = np.asarray(digits, dtype=np.float32)
    if digits.ndim != 3 or digits.shape[1:] != (8, 8):
        raise ValueError(f"digits must have shape (N, 8, 8), got {digits.shape}")
    colors = np.array([PALETTE[name] for name in COLOR_NAMES], dtype=np.float32)
    alpha = np.clip(digits / 16.0, 0.0, 1.0).repeat(2, axis=1).repeat(2, axis=2)[..., None]
    fg_rgb = colors[np.asarray(fg)][:, None, None, :]
    bg_rgb = colors[np.asarray(bg)][:, None, None, :]
    rgb = (1.0 - alpha) * bg_rgb + alpha * fg_rgb
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def sample_styles(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` (foreground, background) colour-index pairs, uniform over ordered pairs fg != bg."""
    k = len(COLOR_NAMES)
    fg = rng.integers(0, k, size=n)
    bg = (fg + rng.integers(1, k, size=n)) % k  # uniform over the k - 1 other colours
    return fg.astype(np.int64), bg.astype(np.int64)


def caption(digit: int, fg: int, bg: int) -> str:
    """The caption of one styled digit, e.g. ``"a photo of the digit seven, red on blue"``."""
    return CAPTION_TEMPLATE.format(digit=DIGIT_NAMES[int(digit)], fg=COLOR_NAMES[int(fg)], bg=COLOR_NAMES[int(bg)])


def pocket_pools(seed: int = 0, pretrain_fraction: float = 0.5, test_fraction: float = 0.5) -> dict[str, np.ndarray]:
    """Disjoint pools of digit indices, stratified by class and seeded.

    ``pretrain``: about ``pretrain_fraction`` of every class, used only to train the pocket
    models. The rest (the downstream pool) is split into ``test`` (``test_fraction`` of it)
    and ``train`` (the remainder, from which validation and few-shot subsets are drawn).
    """
    labels = load_digits().labels
    rng = np.random.default_rng([seed, 1797])
    pools: dict[str, list[np.ndarray]] = {"pretrain": [], "train": [], "test": []}
    for digit in range(10):
        members = rng.permutation(np.flatnonzero(labels == digit))
        n_pretrain = int(round(pretrain_fraction * len(members)))
        downstream = members[n_pretrain:]
        n_test = int(round(test_fraction * len(downstream)))
        pools["pretrain"].append(members[:n_pretrain])
        pools["test"].append(downstream[:n_test])
        pools["train"].append(downstream[n_test:])
    return {name: np.sort(np.concatenate(parts)) for name, parts in pools.items()}


def styled_digits(indices: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Render the digits at ``indices`` with their fixed styles.

    Every digit image has one style drawn once from a seeded stream over all 1,797 images,
    so a digit looks the same in whichever split it appears and the splits share one style
    distribution. Returns ``(images, labels, fg, bg)``.
    """
    source = load_digits()
    fg_all, bg_all = sample_styles(len(source.labels), np.random.default_rng([seed, 16]))
    indices = np.asarray(indices, dtype=np.int64)
    fg, bg = fg_all[indices], bg_all[indices]
    return render(source.images[indices], fg, bg), source.labels[indices], fg, bg
