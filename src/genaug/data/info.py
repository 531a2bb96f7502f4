"""``dataset_info``: what a dataset holds, for ``genaug data info`` and for reports.

Counts per split and per class, image size(s), and every skipped file with its reason.
Sizes of file datasets come from image headers (no decoding), probed on at most
``max_probes`` files spread evenly over the split.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Mapping

import numpy as np
from PIL import Image

from genaug.data.base import RealDataset


def dataset_info(dataset_or_splits: RealDataset | Mapping[str, RealDataset], max_probes: int = 2000) -> dict[str, Any]:
    """A JSON-ready summary of one split or of a ``{split: dataset}`` mapping.

    ``{"name", "num_classes", "class_names", "splits": {split: {"count", "per_class",
    "image_size" | "image_sizes", "has_captions"}}, "skipped": [{"path", "reason", "splits"}]}``.
    ``image_size`` is ``[height, width]`` of an array dataset; ``image_sizes`` of a file
    dataset is ``{"min", "max", "most_common"}`` (each ``[height, width]``) and ``"probed"``.
    Skipped entries shared by several splits (one tree) are listed once.
    """
    if isinstance(dataset_or_splits, RealDataset):
        splits = {dataset_or_splits.split: dataset_or_splits}
    else:
        splits = dict(dataset_or_splits)
    if not splits:
        raise ValueError("dataset_info needs at least one split")
    first = next(iter(splits.values()))
    skipped: dict[tuple[str, str], list[str]] = {}
    for split, dataset in splits.items():
        for item in dataset.skipped:
            skipped.setdefault((item.path, item.reason), []).append(split)
    return {
        "name": first.name,
        "num_classes": first.num_classes,
        "class_names": list(first.class_names),
        "splits": {split: split_info(dataset, max_probes) for split, dataset in splits.items()},
        "skipped": [{"path": path, "reason": reason, "splits": names} for (path, reason), names in skipped.items()],
    }


def split_info(dataset: RealDataset, max_probes: int = 2000) -> dict[str, Any]:
    """Count, per-class counts and image size(s) of one split."""
    counts = dataset.class_counts()
    info: dict[str, Any] = {
        "count": len(dataset),
        "per_class": {name: int(count) for name, count in zip(dataset.class_names, counts)},
        "has_captions": dataset.captions is not None,
    }
    if dataset.images is not None:
        info["image_size"] = [int(dataset.images.shape[1]), int(dataset.images.shape[2])]
    else:
        info["image_sizes"] = probe_sizes(dataset, max_probes)
    return info


def probe_sizes(dataset: RealDataset, max_probes: int) -> dict[str, Any]:
    """Smallest and largest height and width, and the most common ``[height, width]``, from headers."""
    if not dataset.paths:
        return {"probed": 0}
    picks = np.unique(np.linspace(0, len(dataset.paths) - 1, num=min(max_probes, len(dataset.paths))).astype(int))
    sizes: list[tuple[int, int]] = []
    for index in picks:
        try:
            with Image.open(dataset.paths[index]) as image:
                sizes.append((image.height, image.width))
        except Exception:  # noqa: BLE001 - a summary must not fail on one unreadable header
            continue
    if not sizes:
        return {"probed": 0}
    heights, widths = zip(*sizes)
    return {
        "min": [min(heights), min(widths)],
        "max": [max(heights), max(widths)],
        "most_common": list(Counter(sizes).most_common(1)[0][0]),
        "probed": len(sizes),
    }
