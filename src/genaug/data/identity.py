"""The content identity of a real dataset's splits: which images, with which labels, as which bytes.

A split's identity is one digest over its class names, and for every image in order its
id, label, caption, and content signature:

- an image file: its absolute path, byte size and modification time (:func:`file_signature`,
  the same signature the packed cache keys on), so editing, replacing or touching a file
  changes the identity without reading its pixels;
- an image held in an array (pocket digits, CIFAR, ``.npz``): the array's bytes.

Split parameters (``val_fraction``, ``labels_per_class``, ``test_fraction``, the seed) need
no separate entry: they decide which images a split holds, and the ids are in the digest.
The experiment runner puts the train split's identity into every stage key (stages read
only the training images) and all three into every training run's key; a training run
records them in ``dataset.json`` and refuses to resume or be reused on other data.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from genaug.data.base import RealDataset

__all__ = ["IDENTITY_FORMAT", "file_signature", "row_digest", "split_identity", "splits_identity", "skipped_count", "identity_changes"]

#: Changes whenever the same data would get another digest (what goes into it).
IDENTITY_FORMAT = "genaug-data-identity-v1"
SPLITS = ("train", "val", "test")


def file_signature(path: str | Path) -> str:
    """``"<byte size> <mtime in ns>"`` of ``path``, or ``"missing"`` when it cannot be read."""
    try:
        stat = os.stat(path)
    except OSError:
        return "missing"
    return f"{stat.st_size} {stat.st_mtime_ns}"


def split_identity(dataset: RealDataset) -> dict[str, Any]:
    """``{"digest", "images", "skipped"}`` of one split (digest: module docstring)."""
    digest = hashlib.sha256(f"{IDENTITY_FORMAT}\n{dataset.name}\n".encode())
    digest.update(("\0".join(dataset.class_names) + "\n").encode())
    captions = dataset.captions or [""] * len(dataset)
    for i, (image_id, label, caption) in enumerate(zip(dataset.ids, dataset.labels.tolist(), captions)):
        if dataset.paths is not None:
            path = dataset.paths[i]
            content = f"{os.path.abspath(path)}\0{file_signature(path)}"
        else:
            content = ""
        digest.update(f"{image_id}\0{label}\0{caption}\0{content}\n".encode())
    if dataset.images is not None:
        array = np.ascontiguousarray(dataset.images)
        digest.update(f"{array.dtype} {array.shape}\n".encode())
        digest.update(array)  # the buffer, uncopied
    return {"digest": digest.hexdigest()[:16], "images": len(dataset), "skipped": len(dataset.skipped)}


def splits_identity(splits: dict[str, RealDataset]) -> dict[str, dict[str, Any]]:
    """:func:`split_identity` of each of train / val / test that ``splits`` holds."""
    return {name: split_identity(splits[name]) for name in SPLITS if splits.get(name) is not None}


def skipped_count(splits: dict[str, RealDataset]) -> int:
    """Input files skipped while loading (each once, though several splits list it)."""
    return len({(item.path, item.reason) for split in splits.values() if split is not None for item in split.skipped})


def identity_changes(then: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """Human lines naming each split whose identity differs: ``test: 33 images then, 36 now``."""
    changes = []
    for name in SPLITS:
        before, after = then.get(name), now.get(name)
        if before is None and after is None:
            continue
        if before is None or after is None or before.get("digest") != after.get("digest"):
            count = lambda entry: "none" if entry is None else f"{entry.get('images', '?')} images"  # noqa: E731
            same = before is not None and after is not None and before.get("images") == after.get("images")
            detail = f"{count(after)}, content changed" if same else f"{count(before)} then, {count(after)} now"
            changes.append(f"{name}: {detail}")
    return changes


def row_digest(dataset: RealDataset, row: int) -> str:
    """The content digest of one real image (see :func:`source_digests`)."""
    if dataset.content is not None:
        return dataset.content[row]
    if dataset.paths is not None:
        return f"{os.path.abspath(dataset.paths[row])}\0{file_signature(dataset.paths[row])}"
    return hashlib.sha256(np.ascontiguousarray(dataset.images[row]).tobytes()).hexdigest()
