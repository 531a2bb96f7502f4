"""Seeds of generated images: every item's randomness, derived from the experiment seed.

A work item's seed is :func:`genaug.seeds.derive_seed` of (experiment seed, item id,
attempt), so it does not depend on the order items are made in, on the batch they fall
in, or on the shard that makes them (docs/manifest.md). ``attempt`` counts regenerations of a
rejected (degenerate) output: attempt 0 is the item's own seed, attempt k its k-th
replacement.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

from genaug.seeds import SEED_BITS, derive_seed

__all__ = ["SEED_BITS", "item_seed", "seed_generator", "seed_rng"]


def item_seed(experiment_seed: int, item_id: str, attempt: int = 0) -> int:
    """``blake2b("<experiment seed>/<item id>/<attempt>")`` truncated to 63 bits.

    ``item_id`` names the item, or any per-item choice (``"<base id>/prompt"``).
    """
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, got {attempt}")
    return derive_seed(experiment_seed, item_id, int(attempt))


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
