"""A synthetic set read as a training split: the kept records' images, labels and sources.

A synthetic set is a folder with ``images/`` and ``manifest.jsonl`` (docs/manifest.md); the
manifest is the truth, so nothing here depends on folder or file names. The result is a
:class:`SyntheticSet`, a :class:`~genaug.data.base.RealDataset` of image files that also
keeps every record's ``source_ids``: the trainer uses them to pair a synthetic image
with the real image it was made from (the curriculum and synthetic-probability data
policies replace a real sample by one made from it, docs/methods/progressive-scheduling.md), and any soft label a
record gives (``params.soft_label``: ``classes`` and ``weights``), which training uses as
that image's target distribution.

Images keep their own size on disk; packing (``genaug.data.pack_images``) resizes them
to the recipe's ``image_size`` before they meet its transforms (docs/methods/training-recipes.md: the
reference fed larger synthetic images into the 32 px CIFAR pipeline).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from genaug.data.base import DatasetError, MissingDataError, RealDataset
from genaug.data.scan import check_files
from genaug.manifest import SampleRecord, read_manifest, record_file

__all__ = ["SyntheticSet", "concat_synthetic_sets", "load_synthetic_set"]


@dataclass
class SyntheticSet(RealDataset):
    """A synthetic set as a dataset of files; ``source_ids`` maps each sample id to the ids
    of the images it was made from (real or synthetic, in the record's order; empty for
    txt2img and SDI images). A mapping by id, not a list, so :meth:`subset` keeps it valid."""

    source_ids: dict[str, list[str]] = field(default_factory=dict)
    #: Sample id -> {class name: weight} for samples whose record gives a soft label
    #: (``params.soft_label``, e.g. Diff-Mix's); the others are one-hot on their class.
    soft_labels: dict[str, dict[str, float]] = field(default_factory=dict)

    def sources(self, index: int) -> list[str]:
        """The source ids of sample ``index``."""
        return self.source_ids.get(self.ids[index], [])

    def soft_targets(self, class_names: Sequence[str]) -> np.ndarray | None:
        """(N, K) float32 target rows over ``class_names`` (one-hot, or the record's soft label),
        or None when no sample has a soft label."""
        if not self.soft_labels:
            return None
        index = {name: k for k, name in enumerate(class_names)}
        rows = np.zeros((len(self), len(class_names)), dtype=np.float32)
        for i, sample_id in enumerate(self.ids):
            weights = self.soft_labels.get(sample_id) or {self.class_names[int(self.labels[i])]: 1.0}
            for name, weight in weights.items():
                if name not in index:
                    raise DatasetError(f"{self.name}: the soft label of {sample_id} names class {name!r}, "
                                       "which the real dataset lacks")
                rows[i, index[name]] += weight
        return rows


def load_synthetic_set(
    set_dir: str | Path | Sequence[str | Path], class_names: Sequence[str] | None = None, kept_only: bool = True
) -> SyntheticSet:
    """The records of the set ``set_dir`` (sorted by id) as a :class:`SyntheticSet`: the one
    way a synthetic set is read for training, by the trainer, ``genaug train`` and experiments.

    A list of folders is read as one set (:func:`concat_synthetic_sets`, e.g. the edits and
    their fractal mixes); give ``class_names`` so that all share the label order.

    ``class_names``: the label order to use, normally the real training set's, so labels
    mean the same thing in both; a record whose class is not among them is an error naming
    the class and the set. ``None``: the set's own classes, ordered by their record labels.
    ``kept_only``: skip records a filter marked ``kept: false``. Every image is checked
    (headers, PNG checksums) and a missing or unusable one is an error naming the file:
    the manifest promises each image, so a gap means a damaged set, not a skip.
    """
    if not isinstance(set_dir, (str, Path)):
        loaded = [load_synthetic_set(one, class_names, kept_only) for one in set_dir]
        return loaded[0] if len(loaded) == 1 else concat_synthetic_sets(loaded)
    set_dir = Path(set_dir)
    if not set_dir.is_dir():
        raise MissingDataError(f"synthetic set not found: {set_dir}")
    records = sorted(read_manifest(set_dir), key=lambda record: record.id)
    if kept_only:
        records = [record for record in records if record.kept]
    names = list(class_names) if class_names is not None else classes_by_label(records)
    labels = labels_in_order(records, names, set_dir)
    paths = [record_file(set_dir, record) for record in records]
    check_images(paths, set_dir)
    return SyntheticSet(
        name=f"synthetic:{set_dir.name}",
        split="synthetic",
        class_names=names,
        labels=labels,
        ids=[record.id for record in records],
        paths=paths,
        source_ids={record.id: list(record.source_ids) for record in records},
        soft_labels={record.id: soft for record in records if (soft := soft_label_of(record, set_dir)) is not None},
    )


def soft_label_of(record: SampleRecord, set_dir: Path) -> dict[str, float] | None:
    """``{class name: weight}`` from ``record.params["soft_label"]`` (``classes`` and ``weights``,
    non-negative, summing to 1), or None when the record has none."""
    soft = (record.params or {}).get("soft_label")
    if soft is None:
        return None
    try:
        classes, weights = list(soft["classes"]), [float(w) for w in soft["weights"]]
    except (KeyError, TypeError, ValueError):
        raise DatasetError(f"synthetic set {set_dir}: record {record.id} has a soft_label without "
                           "'classes' and numeric 'weights'") from None
    if len(classes) != len(weights) or min(weights, default=-1.0) < 0 or abs(sum(weights) - 1.0) > 1e-6:
        raise DatasetError(f"synthetic set {set_dir}: the soft_label of record {record.id} must give one "
                           f"non-negative weight per class, summing to 1 (got {soft})")
    merged: dict[str, float] = {}
    for name, weight in zip(classes, weights):
        merged[name] = merged.get(name, 0.0) + weight
    return merged


def concat_synthetic_sets(sets: Sequence[SyntheticSet]) -> SyntheticSet:
    """Several synthetic sets as one training set (e.g. the edits and their fractal mixes).

    The sets must share their class names (load them with the same ``class_names``), and an
    id may appear in only one of them: ids key the source mapping, so a repeated id would
    pair an image with another image's sources.
    """
    if not sets:
        raise ValueError("concat_synthetic_sets needs at least one set")
    class_names = list(sets[0].class_names)
    for other in sets[1:]:
        if list(other.class_names) != class_names:
            raise DatasetError(
                f"{other.name} has classes {other.class_names[:10]}, {sets[0].name} has {class_names[:10]}: "
                "load every set with the real dataset's class_names"
            )
    ids = [image_id for one in sets for image_id in one.ids]
    repeated = sorted(image_id for image_id, count in Counter(ids).items() if count > 1)
    if repeated:
        raise DatasetError(f"ids {repeated[:5]} appear in more than one of {[one.name for one in sets]}")
    return SyntheticSet(
        name="+".join(one.name for one in sets),
        split="synthetic",
        class_names=class_names,
        labels=np.concatenate([one.labels for one in sets]),
        ids=ids,
        paths=[path for one in sets for path in one.paths],
        source_ids={image_id: sources for one in sets for image_id, sources in one.source_ids.items()},
        soft_labels={image_id: soft for one in sets for image_id, soft in one.soft_labels.items()},
    )


def classes_by_label(records: list[SampleRecord]) -> list[str]:
    """The set's class names ordered by the labels its records give them (then by name)."""
    lowest: dict[str, int] = {}
    for record in records:
        lowest[record.class_name] = min(record.label, lowest.get(record.class_name, record.label))
    return sorted(lowest, key=lambda name: (lowest[name], name))


def labels_in_order(records: list[SampleRecord], class_names: list[str], set_dir: Path) -> list[int]:
    """Each record's position of its class name in ``class_names`` (record labels are not trusted
    to follow the same order)."""
    index = {name: i for i, name in enumerate(class_names)}
    unknown = sorted({record.class_name for record in records} - set(index))
    if unknown:
        raise DatasetError(
            f"synthetic set {set_dir} has class(es) {unknown} that the real dataset lacks "
            f"(its classes: {class_names[:10]}{' ...' if len(class_names) > 10 else ''})"
        )
    return [index[record.class_name] for record in records]


def check_images(paths: list[Path], set_dir: Path) -> None:
    """Raise a :class:`DatasetError` listing every image that is missing or cannot be decoded."""
    _, unusable = check_files(paths, f"checking {set_dir}")
    if unusable:
        listing = "\n".join(f"  {item.path}: {item.reason}" for item in unusable)
        raise DatasetError(
            f"synthetic set {set_dir}: {len(unusable)} image(s) named in its manifest are unusable:\n{listing}"
        )
