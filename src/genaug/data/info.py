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


def dataset_info(
    dataset_or_splits: RealDataset | Mapping[str, RealDataset], max_probes: int = 2000, packed_size: int | None = None
) -> dict[str, Any]:
    """A JSON-ready summary of one split or of a ``{split: dataset}`` mapping.

    ``{"name", "num_classes", "class_names", "packed_size", "splits": {split: {"count",
    "per_class", "image_size" | "image_sizes", "has_captions"}}, "skipped": [{"path",
    "reason", "splits"}], "ignored": [{"path", "reason"}], "flags": [line, ...]}``.
    ``image_size`` is ``[height, width]`` of an array dataset; ``image_sizes`` of a file
    dataset is ``{"min", "max", "most_common"}`` of the originals (each ``[height, width]``)
    and ``"probed"``. ``packed_size`` is the side images are packed at for training
    (``packed_size`` given, i.e. ``dataset.image_size``; an array's own side; None when a file
    dataset has none set). ``skipped``: unusable image files; ``ignored``: files that are not
    images. Entries shared by several splits (one tree) are listed once. ``flags``: a class
    with fewer than :data:`MIN_VAL_IMAGES` validation images (its best epoch is chosen on
    noise) and a class without training images, one line each.
    """
    if isinstance(dataset_or_splits, RealDataset):
        splits = {dataset_or_splits.split: dataset_or_splits}
    else:
        splits = dict(dataset_or_splits)
    if not splits:
        raise ValueError("dataset_info needs at least one split")
    first = next(iter(splits.values()))
    skipped: dict[tuple[str, str], list[str]] = {}
    ignored: dict[tuple[str, str], None] = {}
    for split, dataset in splits.items():
        for item in dataset.skipped:
            skipped.setdefault((item.path, item.reason), []).append(split)
        for item in dataset.ignored:
            ignored[(item.path, item.reason)] = None
    if packed_size is None and first.images is not None:
        packed_size = int(first.images.shape[1])
    return {
        "name": first.name,
        "num_classes": first.num_classes,
        "class_names": list(first.class_names),
        "packed_size": packed_size,
        "splits": {split: split_info(dataset, max_probes) for split, dataset in splits.items()},
        "skipped": [{"path": path, "reason": reason, "splits": names} for (path, reason), names in skipped.items()],
        "ignored": [{"path": path, "reason": reason} for path, reason in ignored],
        "flags": class_flags(splits),
    }


#: Fewer validation images than this in a class is flagged.
MIN_VAL_IMAGES = 2


def class_flags(splits: Mapping[str, RealDataset]) -> list[str]:
    """One line per class with fewer than :data:`MIN_VAL_IMAGES` validation images, and per
    class without a training image."""
    flags = []
    if "val" in splits:
        val = splits["val"]
        for name, count in zip(val.class_names, val.class_counts().tolist()):
            if count < MIN_VAL_IMAGES:
                flags.append(
                    f"val: class {name!r} has {count} validation image(s), fewer than {MIN_VAL_IMAGES}: "
                    "its best epoch is chosen on noise (raise dataset.val_fraction or add images)"
                )
    if "train" in splits:
        train = splits["train"]
        for name, count in zip(train.class_names, train.class_counts().tolist()):
            if count == 0:
                flags.append(f"train: class {name!r} has no training image")
    return flags


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
