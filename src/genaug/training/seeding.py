"""Seeds derived by hashing, so every epoch's randomness is a function of (seed, epoch).

A run killed after epoch k and resumed draws exactly the permutation, augmentation
parameters and mixer randomness the uninterrupted run drew, without replaying streams.
"""

from __future__ import annotations

import torch

from genaug.seeds import derive_seed


def training_seed(seed: int, *parts: object) -> int:
    """A training stream's seed, e.g. ``training_seed(0, "augment", 7)``: :func:`genaug.seeds.derive_seed`
    of ``(seed, *parts)`` with the digest read little-endian (the training convention)."""
    return derive_seed(seed, *parts, byteorder="little")


def generator_for(seed: int, *parts: object) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with ``training_seed(seed, *parts)``."""
    return torch.Generator().manual_seed(training_seed(seed, *parts))
