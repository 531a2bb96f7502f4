"""Degenerate outputs: images that are (almost) all black or all white (docs/methods/diffusemix.md).

A pixel is black when every channel is <= :data:`BLACK_LEVEL` and white when every channel
is >= :data:`WHITE_LEVEL`; an image is degenerate when more than :data:`MAX_FRACTION` of its
pixels are black, or more than that fraction are white. The reference checks only one of
the two directions; both are checked here.
"""

from __future__ import annotations

import numpy as np

BLACK_LEVEL = 10
WHITE_LEVEL = 245
MAX_FRACTION = 0.9


def black_white_fractions(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per image, the fraction of black and of white pixels; uint8 (N, H, W, 3) or (H, W, 3)."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise TypeError(f"expected uint8 images, got {images.dtype}")
    batch = images[None] if images.ndim == 3 else images
    black = (batch <= BLACK_LEVEL).all(axis=-1).mean(axis=(1, 2))
    white = (batch >= WHITE_LEVEL).all(axis=-1).mean(axis=(1, 2))
    return black, white


def is_degenerate(images: np.ndarray, max_fraction: float = MAX_FRACTION) -> np.ndarray:
    """Boolean per image: more than ``max_fraction`` black pixels or more than that white."""
    black, white = black_white_fractions(images)
    return (black > max_fraction) | (white > max_fraction)
