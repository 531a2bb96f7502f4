"""Splits: from a dataset's own parts to the train / val / test a run uses.

For every dataset alike:

1. the loader reads the dataset's own parts (``train``, ``test``, its own ``val`` if it
   ships one, ``pretrain`` for the pocket digits);
2. ``val`` is the dataset's own validation split, or else ``val_fraction`` of every class
   of ``train`` held out, seeded with ``seed`` (stratified: each class gives the same
   fraction, at least one image stays in train);
3. ``train`` is the rest, cut to ``labels_per_class`` images per class, seeded.

Val is drawn before the subset, so val and train are disjoint, val does not depend on
``labels_per_class``, and with one seed a 5-per-class train set is contained in the
10-per-class one. Each class draws from its own random stream ``(seed, purpose, class)``,
so adding a class does not change what the others draw.

Datasets of files read from a folder tree (``RealDataset.content`` set) are drawn by
content instead, so that a folder that grows keeps its splits: each image gets a number
``u`` in [0, 1) from a hash of its content digest, the seed and the purpose
(:func:`content_unit`); it is held out (as val, or as a carved test) when ``u < fraction``,
and ``labels_per_class`` keeps the images of a class with the smallest ``u``. Whether an
image is held out depends on nothing but its own bytes, so adding or removing images never
moves another image between splits, and a renamed or copied file lands where its twin is
(the path is not in the hash: a copy under another name would otherwise leak across splits).
Held-out counts are then about, not exactly, ``fraction`` of a class. The exceptions to
"never moves" are two stand-ins for small classes (:func:`content_holdout`): a class with
no image below ``fraction`` holds out its image of smallest ``u``, and a class all of
whose images fall below it keeps its image of largest ``u``; either choice can change as
images come (the dry run lists any move).
Array datasets (pocket digits, CIFAR, ``.npz``) keep the seeded draws above: their splits
do not change.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path
from typing import Any, Union

import numpy as np

from genaug.config import parse_config
from genaug.data.base import DatasetError, RealDataset
from genaug.data.config import DatasetConfig
from genaug.data.registry import DatasetSpec, dataset_spec
from genaug.warn import warn_once

DatasetSpecLike = Union["DatasetConfig", dict[str, Any], str]

# Tags separating the random streams drawn from one seed.
_VAL_STREAM = 1
_SUBSET_STREAM = 2
_TEST_STREAM = 3
#: Changes whenever content-drawn splits of the same files would change.
CONTENT_SPLIT_FORMAT = "genaug-content-split-v1"


def resolve_config(spec: DatasetSpecLike, **overrides: Any) -> DatasetConfig:
    """A :class:`DatasetConfig` from a config, a dict or a dataset name, plus field overrides."""
    if isinstance(spec, DatasetConfig):
        data = spec.model_dump(exclude_unset=True)
    elif isinstance(spec, dict):
        data = dict(spec)
    elif isinstance(spec, str):
        data = {"name": spec}
    else:
        raise TypeError(f"a dataset spec is a DatasetConfig, a dict or a dataset name, not {type(spec).__name__}")
    data.update(overrides)
    if isinstance(data.get("root"), (str, Path)):
        data["root"] = Path(data["root"]).expanduser()  # "~/data/cub" works as in a shell
    return parse_config(DatasetConfig, data, source="dataset")


def load_dataset(spec: DatasetSpecLike, **overrides: Any) -> RealDataset:
    """One split (``config.split``) of a real dataset.

    ``spec`` is a :class:`DatasetConfig`, a dict of its fields, or a dataset name;
    ``overrides`` replace fields, e.g. ``load_dataset("pocket_digits", split="test")``.
    Reads only what the split needs (the test split never reads the training data).
    """
    config = resolve_config(spec, **overrides)
    if config.split == "test" and config.spare_to_test:
        return load_splits(config)["test"]
    if config.split in ("test", "pretrain"):
        return _read_parts(config, {config.split})[config.split]
    train, val = _train_and_val(config, _read_parts(config, {"train", "val"}))
    return train if config.split == "train" else val


def load_splits(spec: DatasetSpecLike, **overrides: Any) -> dict[str, RealDataset]:
    """``{"train", "val", "test"}`` of a real dataset, drawn exactly as :func:`load_dataset` draws them."""
    config = resolve_config(spec, **overrides)
    parts = _read_parts(config, {"train", "val", "test"})
    train, val = _train_and_val(config, parts)
    test = parts["test"]
    if config.spare_to_test:
        test = test.join(spare_images(config, parts, train, val), split="test")
    return {"train": train, "val": val, "test": test}


def spare_images(config: DatasetConfig, parts: dict[str, RealDataset], train: RealDataset, val: RealDataset) -> RealDataset:
    """The training pool's images in neither ``train`` nor ``val`` (left out by ``labels_per_class``)."""
    used = set(train.ids) | set(val.ids)
    pool = parts["train"]
    return pool.subset([i for i, image_id in enumerate(pool.ids) if image_id not in used], split="test")


def _read_parts(config: DatasetConfig, wanted: set[str]) -> dict[str, RealDataset]:
    """Ask the registered loader for the dataset's own parts; check it delivered them."""
    parts = dataset_spec(config.name).load(config, frozenset(wanted))
    missing = (wanted - {"val"}) - set(parts)
    if missing:
        raise DatasetError(f"loader of '{config.name}' did not return part(s) {sorted(missing)}")
    return parts


def _train_and_val(config: DatasetConfig, parts: dict[str, RealDataset]) -> tuple[RealDataset, RealDataset]:
    """Steps 2 and 3 of the module docstring."""
    spec = dataset_spec(config.name)
    if "val" in parts:
        pool, val = parts["train"], parts["val"]
    else:
        pool, val = hold_out(parts["train"], val_fraction(config, spec), config.seed, stream=_VAL_STREAM)
    per_class = labels_per_class(config, spec)
    if per_class is not None:
        warn_short_classes(pool, per_class)
    if per_class is None:
        train = replace(pool, split="train")
    else:
        train = pool.subset(subset_indices(pool, per_class, config.seed), split="train")
    return train, replace(val, split="val")


def warn_short_classes(pool: RealDataset, per_class: int) -> None:
    """Warn (once) when ``labels_per_class`` asks for more images than a class holds."""
    counts = pool.class_counts()
    short = [f"'{pool.class_names[c]}' {int(n)}" for c, n in enumerate(counts) if n < per_class]
    if short:
        shown = ", ".join(short[:5]) + (f" and {len(short) - 5} more" if len(short) > 5 else "")
        warn_once(
            f"dataset.labels_per_class is {per_class} but {len(short)} of {len(counts)} classes hold fewer training "
            f"images (after the validation hold-out): {shown}; they train on all they have"
        )


def val_fraction(config: DatasetConfig, spec: DatasetSpec) -> float:
    """``config.val_fraction``, or the dataset's default when it is None."""
    return spec.default_val_fraction if config.val_fraction is None else config.val_fraction


def labels_per_class(config: DatasetConfig, spec: DatasetSpec) -> int | None:
    """Images per class in train: the config's number, the dataset's default for None, None for "all"."""
    if config.labels_per_class == "all":
        return None
    return spec.default_labels_per_class if config.labels_per_class is None else config.labels_per_class


def hold_out(
    dataset: RealDataset, fraction: float, seed: int, *, stream: int = _VAL_STREAM, held_split: str = "val"
) -> tuple[RealDataset, RealDataset]:
    """Split ``dataset`` into (rest, held out): ``fraction`` of every class held out, seeded
    (by content for a dataset with content digests, see the module docstring)."""
    if dataset.content is not None:
        held = content_holdout(dataset.labels, dataset.content, fraction, seed, stream)
    else:
        held = stratified_holdout(dataset.labels, fraction, seed, stream)
    rest = np.setdiff1d(np.arange(len(dataset)), held)
    return dataset.subset(rest), dataset.subset(held, split=held_split)


def stratified_holdout(labels: np.ndarray, fraction: float, seed: int, stream: int) -> np.ndarray:
    """Sorted indices of ``round(fraction * n_c)`` random members of each class ``c``.

    Rounds half up, and leaves at least one member of every class behind, so no class
    vanishes from the data it is held out of.
    """
    held: list[np.ndarray] = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        count = min(int(np.floor(fraction * len(members) + 0.5)), len(members) - 1)
        order = np.random.default_rng([seed, stream, int(label)]).permutation(members)
        held.append(order[:count])
    return np.sort(np.concatenate(held)) if held else np.zeros(0, dtype=np.int64)


def per_class_subset(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Sorted indices of ``per_class`` random members of each class (all of a smaller class).

    The first ``k`` of one seeded permutation per class: smaller subsets are nested in larger ones.
    """
    chosen: list[np.ndarray] = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        order = np.random.default_rng([seed, _SUBSET_STREAM, int(label)]).permutation(members)
        chosen.append(order[:per_class])
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


def subset_indices(dataset: RealDataset, per_class: int, seed: int) -> np.ndarray:
    """:func:`content_subset` for a dataset with content digests, else :func:`per_class_subset`."""
    if dataset.content is not None:
        return content_subset(dataset.labels, dataset.content, per_class, seed)
    return per_class_subset(dataset.labels, per_class, seed)


def content_unit(content: str, seed: int, stream: int) -> float:
    """``u = int(sha256("<format>/<seed>/<stream>/<content>")[:16], 16) / 2**64``, in [0, 1).

    ``content`` is the image's content digest: equal bytes give equal ``u`` wherever the file sits.
    """
    text = f"{CONTENT_SPLIT_FORMAT}/{seed}/{stream}/{content}".encode()
    return int(hashlib.sha256(text).hexdigest()[:16], 16) / 2.0**64


def content_holdout(labels: np.ndarray, content: list[str], fraction: float, seed: int, stream: int) -> np.ndarray:
    """Sorted indices ``i`` with ``content_unit(content[i], seed, stream) < fraction``.

    Two corrections keep small classes usable: a class none of whose members falls below
    ``fraction`` although ``round(fraction * n_c) >= 1`` (rounding half up) holds out its member
    of smallest ``u``, so it is not left without validation or test images; a class all of
    whose members would be held out keeps the one of largest ``u`` behind, so no class
    vanishes from the data it is held out of. Only these stand-ins can move when images come.
    """
    units = np.array([content_unit(digest, seed, stream) for digest in content], dtype=np.float64)
    held = units < fraction
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if not held[members].any() and len(members) > 1 and np.floor(fraction * len(members) + 0.5) >= 1:
            held[members[int(np.argmin(units[members]))]] = True
        if held[members].all():
            held[members[int(np.argmax(units[members]))]] = False
    return np.flatnonzero(held).astype(np.int64)


def content_subset(labels: np.ndarray, content: list[str], per_class: int, seed: int) -> np.ndarray:
    """Sorted indices of the ``per_class`` members of each class of smallest ``content_unit``
    (ties by position): smaller subsets are nested in larger ones, and an added image
    displaces at most one other from a full class."""
    units = np.array([content_unit(digest, seed, _SUBSET_STREAM) for digest in content], dtype=np.float64)
    chosen: list[np.ndarray] = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        order = members[np.argsort(units[members], kind="stable")]
        chosen.append(order[:per_class])
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


def carve_test(dataset: RealDataset, fraction: float) -> tuple[RealDataset, RealDataset]:
    """(train, test) of a dataset that ships no test split: ``fraction`` of every class as test.

    Seeded with a constant, not the experiment seed: a dataset's test set is a property of
    the dataset, the same for every run that is compared against it. Drawn by content for
    a dataset with content digests (the folder trees), so it keeps its images as files come
    and go.
    """
    train, test = hold_out(dataset, fraction, 0, stream=_TEST_STREAM, held_split="test")
    return replace(train, split="train"), test

