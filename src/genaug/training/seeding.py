"""Seeds derived by hashing, so every epoch's randomness is a function of (seed, epoch).

A run killed after epoch k and resumed draws exactly the permutation, augmentation
parameters and mixer randomness the uninterrupted run drew, without replaying streams.
"""

from __future__ import annotations

import hashlib

import torch


def derive_seed(seed: int, *parts: object) -> int:
    """A 63-bit seed from ``seed`` and any labels, e.g. ``derive_seed(0, "augment", 7)``."""
    text = "/".join(str(part) for part in (seed, *parts))
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") >> 1


def generator_for(seed: int, *parts: object) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with ``derive_seed(seed, *parts)``."""
    return torch.Generator().manual_seed(derive_seed(seed, *parts))
