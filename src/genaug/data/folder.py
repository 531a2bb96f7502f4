"""Any class-folder tree: ``root/<class>/<images>`` (images may sit in sub-folders of a class).

Layouts:

- ``root/train/<class>/...`` with ``root/test/...`` and optionally ``root/val/...``: those
  folders are the dataset's own splits (without ``test/``, test is carved out of train as
  below);
- otherwise ``root`` itself is one tree holding all the data: about ``test_fraction``
  (default 0.2) of every class is carved out as test by each image's content digest
  (:func:`genaug.data.splits.carve_test`), the same for every experiment seed, and adding
  or removing images never moves another one between test and train; the rest is the
  training data.

Labels follow the alphabetical order of the class folders (of ``train/`` in the split
layout), so CIFAR-100 stored as folders gets its fine-label order. A class folder with no
usable image keeps its class and label (later labels must not shift) and is listed in
``skipped`` (``genaug run`` refuses it unless ``dataset.allow_empty_classes``); a tree
without a single usable image is an error naming the folder. Ids are POSIX paths relative
to ``root`` (``train/cat/001.png``). Files are checked without decoding
(:mod:`genaug.data.scan`); unusable ones are listed in ``skipped`` with their reason, or
with ``strict`` fail the load, all of them named; files that are not images
(``notes.txt``, ``.DS_Store``) are listed in ``ignored``. Every image's content digest is
read for the splits (:mod:`genaug.data.splits`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from genaug.data.base import DatasetError, MissingDataError, RealDataset, SkippedImage
from genaug.data.images import is_image_file
from genaug.data.registry import register_dataset
from genaug.data.scan import check_files, content_digests, fail_if_strict, ignored_files, image_files
from genaug.data.splits import carve_test

if TYPE_CHECKING:  # genaug.config validates names against this package's registry
    from genaug.data.config import DatasetConfig

NAME = "folder"
DEFAULT_TEST_FRACTION = 0.2
SPLIT_FOLDERS = ("train", "val", "test")


@register_dataset(
    NAME,
    root_hint="a folder of class folders, root/<class>/<image>, or root/train/<class>/<image> with root/test/...",
    options=("test_fraction",),
)
def load_folder(config: DatasetConfig, parts: frozenset[str]) -> dict[str, RealDataset]:
    """The requested parts of the tree at ``config.root`` (layouts in the module docstring)."""
    root = Path(config.root)
    if not root.is_dir():
        raise MissingDataError(f"folder dataset: {root} is not a folder")
    split_dirs = split_folders(root)
    source = split_dirs.get("train", root)
    class_names = class_folders(source)
    for folder in split_dirs.values():
        unknown = sorted(set(class_folders(folder, allow_none=True)) - set(class_names))
        if unknown:
            raise DatasetError(f"{folder}: class folder(s) {unknown} are not classes of {source}")

    # val/ and test/ are read from their own folders; train (and a carved test) from source.
    loaded = {
        part: read_tree(split_dirs[part], root, class_names, part, config.strict)
        for part in parts & (set(split_dirs) - {"train"})
    }
    if "train" in parts or ("test" in parts and "test" not in split_dirs):
        whole = read_tree(source, root, class_names, "train", config.strict)
        if "test" in split_dirs:
            loaded["train"] = whole
        else:
            fraction = DEFAULT_TEST_FRACTION if config.test_fraction is None else config.test_fraction
            loaded["train"], loaded["test"] = carve_test(whole, fraction)
    return {part: dataset for part, dataset in loaded.items() if part in parts}


def split_folders(root: Path) -> dict[str, Path]:
    """``{"train": root/train, ...}`` when ``root`` has a ``train/`` folder, else ``{}`` (one tree)."""
    if not (root / "train").is_dir():
        return {}
    return {split: root / split for split in SPLIT_FOLDERS if (root / split).is_dir()}


def class_folders(folder: Path, allow_none: bool = False) -> list[str]:
    """The class folder names directly under ``folder``, sorted (hidden folders ignored)."""
    names = sorted(entry.name for entry in folder.iterdir() if entry.is_dir() and not entry.name.startswith("."))
    if not names and not allow_none:
        raise DatasetError(f"{folder} holds no class folders: expected {folder}/<class>/<image>")
    return names


def read_tree(folder: Path, root: Path, class_names: list[str], split: str, strict: bool) -> RealDataset:
    """One split from ``folder/<class>/...``, labels by position in ``class_names``."""
    paths: list[Path] = []
    labels: list[int] = []
    skipped: list[SkippedImage] = [
        SkippedImage(str(path), "image outside any class folder")
        for path in sorted(folder.iterdir())
        if path.is_file() and is_image_file(path)
    ]
    for label, name in enumerate(class_names):
        class_dir = folder / name
        files = image_files(class_dir) if class_dir.is_dir() else []
        if class_dir.is_dir() and not files:
            skipped.append(SkippedImage(str(class_dir), "empty class folder (no image files); its label is kept, a run needs dataset.allow_empty_classes"))
        paths.extend(files)
        labels.extend([label] * len(files))

    usable, bad_files = check_files(paths, description=f"checking {folder}")
    skipped.extend(bad_files)
    skipped.extend(_emptied_classes(folder, class_names, np.asarray(labels, dtype=np.int64), usable))
    fail_if_strict(skipped, strict, folder)
    if len(usable) == 0:
        raise DatasetError(
            f"no usable images under {folder}: expected {folder}/<class>/<image>"
            + (f" ({len(bad_files)} image files were unusable)" if bad_files else "")
        )
    kept = [paths[i] for i in usable]
    return RealDataset(
        name=NAME,
        split=split,
        class_names=list(class_names),
        labels=np.asarray(labels, dtype=np.int64)[usable],
        ids=[path.relative_to(root).as_posix() for path in kept],
        paths=kept,
        skipped=skipped,
        content=content_digests(kept, description=f"hashing {folder}"),
        ignored=[
            SkippedImage(str(path), "hidden file" if path.name.startswith(".") else f"not an image file ({path.suffix or 'no suffix'})")
            for path in sorted(folder.iterdir())
            if path.is_file() and not is_image_file(path)
        ]
        + [item for name in class_names if (folder / name).is_dir() for item in ignored_files(folder / name)],
    )


def _emptied_classes(
    folder: Path, class_names: list[str], labels: np.ndarray, usable: np.ndarray
) -> list[SkippedImage]:
    """Class folders that had image files, none of them usable: listed like empty ones."""
    had_files = set(np.unique(labels).tolist())
    kept = set(np.unique(labels[usable]).tolist()) if len(usable) else set()
    return [
        SkippedImage(str(folder / class_names[label]), "no usable image in this class folder; its label is kept, a run needs dataset.allow_empty_classes")
        for label in sorted(had_files - kept)
    ]
