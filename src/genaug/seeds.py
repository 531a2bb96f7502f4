"""Seed derivation by hashing: the one source of every seed genaug derives from another.

A derived seed is a function of ``(seed, names...)`` only, so it does not depend on the
order work is done in, on batches, shards or resumes (docs/manifest.md):
``blake2b("<seed>/<part>/<part>...")`` (8 bytes) read as an integer, top 63 bits kept
(fits ``torch.Generator.manual_seed``, numpy and JSON integers without sign games).

Two conventions name the parts, each kept so that existing sets and runs reproduce:

- generated items (:func:`genaug.generation.seeds.item_seed`): ``(experiment seed, item
  id, attempt)``, the digest read big-endian;
- training streams (:func:`genaug.training.seeding.training_seed`): ``(seed, stream name,
  epoch, ...)``, the digest read little-endian.
"""

from __future__ import annotations

import hashlib
from typing import Literal

SEED_BITS = 63


def derive_seed(seed: int, *parts: object, byteorder: Literal["big", "little"] = "big") -> int:
    """``blake2b("<seed>/<part>/...")`` as a 63-bit integer (the digest read in ``byteorder``)."""
    key = "/".join(str(part) for part in (int(seed), *parts)).encode("utf-8")
    digest = hashlib.blake2b(key, digest_size=8).digest()
    return int.from_bytes(digest, byteorder) >> (64 - SEED_BITS)
