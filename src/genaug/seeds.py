"""Seed derivation by hashing: the one source of every seed genaug derives from another.

A derived seed is a function of ``(seed, names...)`` only, so it does not depend on the
order work is done in, on batches, shards or resumes (docs/manifest.md):
``blake2b("<seed>/<part>/<part>...")`` (8 bytes) read as an integer, top 63 bits kept
(fits ``torch.Generator.manual_seed``, numpy and JSON integers without sign games).

Two conventions name the parts, each kept so that existing sets and runs reproduce:

- generated items (:func:`item_seed`): ``(experiment seed, item
  id, attempt)``, the digest read big-endian;
- training streams (:func:`training_seed`): ``(seed, stream name,
  epoch, ...)``, the digest read little-endian.

A work item's seed does not depend on the order items are made in, on the batch they fall
in, or on the shard that makes them; ``attempt`` counts regenerations of a rejected
(degenerate) output: attempt 0 is the item's own seed, attempt k its k-th replacement.
A run killed after epoch k and resumed draws exactly the permutation, augmentation
parameters and mixer randomness the uninterrupted run drew, without replaying streams.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    import torch

SEED_BITS = 63


def derive_seed(seed: int, *parts: object, byteorder: Literal["big", "little"] = "big") -> int:
    """``blake2b("<seed>/<part>/...")`` as a 63-bit integer (the digest read in ``byteorder``)."""
    key = "/".join(str(part) for part in (int(seed), *parts)).encode("utf-8")
    digest = hashlib.blake2b(key, digest_size=8).digest()
    return int.from_bytes(digest, byteorder) >> (64 - SEED_BITS)


# ---------------------------------------------------------------------------- generated items


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


# ---------------------------------------------------------------------------- training streams


def training_seed(seed: int, *parts: object) -> int:
    """A training stream's seed, e.g. ``training_seed(0, "augment", 7)``: :func:`derive_seed`
    of ``(seed, *parts)`` with the digest read little-endian (the training convention)."""
    return derive_seed(seed, *parts, byteorder="little")


def generator_for(seed: int, *parts: object) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with ``training_seed(seed, *parts)``."""
    import torch

    return torch.Generator().manual_seed(training_seed(seed, *parts))
