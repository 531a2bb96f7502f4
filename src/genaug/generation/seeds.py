"""Seed derivation: the single source of truth for every generated image's randomness.

A work item's seed is a hash of (experiment seed, item id, attempt), so it does not depend
on the order items are made in, on the batch they fall in, or on the shard that makes them
(DESIGN.md 4.2). ``attempt`` counts regenerations of a rejected (degenerate) output:
attempt 0 is the item's own seed, attempt k its k-th replacement.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

SEED_BITS = 63  # fits torch.Generator.manual_seed, numpy and JSON integers without sign games


def derive_seed(experiment_seed: int, item_id: str, attempt: int = 0) -> int:
    """``blake2b("<experiment seed>/<item id>/<attempt>")`` truncated to 63 bits."""
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, got {attempt}")
    key = f"{int(experiment_seed)}/{item_id}/{int(attempt)}".encode("utf-8")
    digest = hashlib.blake2b(key, digest_size=8).digest()
    return int.from_bytes(digest, "big") >> (64 - SEED_BITS)


def seed_generator(seed: int) -> torch.Generator:
    """A CPU ``torch.Generator`` for one image.

    Always on the CPU, whatever device runs the model: diffusers draws the noise on the
    CPU and moves it, so an image's starting noise is the same on every device.
    """
    import torch

    return torch.Generator(device="cpu").manual_seed(int(seed))


def seed_rng(seed: int) -> np.random.Generator:
    """A numpy Generator for per-item choices (random prompt, mixing orientation, ...)."""
    return np.random.default_rng(int(seed))
