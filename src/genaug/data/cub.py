"""CUB-200-2011 with its official train/test split (5,994 / 5,794 images, 200 classes).

Read from the files distributed in ``CUB_200_2011/``: ``images.txt`` (``<image id>
<relative path>``), ``train_test_split.txt`` (``<image id> <1 = train, 0 = test>``),
``image_class_labels.txt`` (``<image id> <class id from 1>``), ``classes.txt``
(``<class id> <name>``) and ``images/<relative path>``. ``root`` may be ``CUB_200_2011``
or the folder holding it. Class names stay raw (``001.Black_footed_Albatross``);
:func:`genaug.data.clean_class_name` turns them into prompt text. Ids are the relative
image paths. Image files are checked without decoding; unusable ones are listed in
``skipped`` (or fail the load with ``strict``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from genaug.data.base import DatasetError, MissingDataError, RealDataset
from genaug.data.registry import register_dataset
from genaug.data.scan import check_files, fail_if_strict

if TYPE_CHECKING:  # genaug.config validates names against this package's registry
    from genaug.data.config import DatasetConfig

NAME = "cub200"
FOLDER = "CUB_200_2011"


@register_dataset(NAME, root_hint=f"{FOLDER}/ or the folder holding it")
def load_cub200(config: DatasetConfig, parts: frozenset[str]) -> dict[str, RealDataset]:
    """The official ``train`` and ``test`` parts asked for."""
    folder = cub_folder(Path(config.root))
    images = read_index(folder / "images.txt")
    is_train = read_index(folder / "train_test_split.txt")
    class_of = read_index(folder / "image_class_labels.txt")
    classes = read_index(folder / "classes.txt")
    class_ids = sorted(classes, key=int)
    class_names = [classes[class_id] for class_id in class_ids]
    label_of_class = {class_id: label for label, class_id in enumerate(class_ids)}

    loaded: dict[str, RealDataset] = {}
    for part in sorted(parts & {"train", "test"}):
        flag = "1" if part == "train" else "0"
        image_ids = sorted((i for i, value in is_train.items() if value == flag), key=int)
        _check_listed(folder, image_ids, images, class_of, label_of_class)
        labels = [label_of_class[class_of[i]] for i in image_ids]
        loaded[part] = _split(folder, part, [images[i] for i in image_ids], labels, class_names, config.strict)
    return loaded


def _check_listed(
    folder: Path, image_ids: list[str], images: dict[str, str], class_of: dict[str, str], label_of_class: dict[str, int]
) -> None:
    """Every image of the split has a path, a class, and that class exists; else name the file at fault."""
    for image_id in image_ids:
        for index_file, table in (("images.txt", images), ("image_class_labels.txt", class_of)):
            if image_id not in table:
                raise DatasetError(f"{folder / index_file} has no line for image id {image_id}")
        if class_of[image_id] not in label_of_class:
            raise DatasetError(f"{folder / 'classes.txt'} has no class id {class_of[image_id]} (image {image_id})")


def cub_folder(root: Path) -> Path:
    """``root`` if it holds ``images.txt``, else ``root/CUB_200_2011``; an error names what is missing."""
    if (root / "images.txt").is_file():
        return root
    if (root / FOLDER / "images.txt").is_file():
        return root / FOLDER
    raise MissingDataError(f"CUB-200-2011: expected {root / FOLDER / 'images.txt'} (or {root / 'images.txt'})")


def read_index(path: Path) -> dict[str, str]:
    """A CUB index file: ``<id> <value>`` per line -> ``{id: value}`` (values may hold spaces)."""
    if not path.is_file():
        raise MissingDataError(f"CUB-200-2011 index file not found: expected {path}")
    table: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        key, _, value = line.strip().partition(" ")
        if not key.isdigit() or not value.strip():
            raise DatasetError(f"{path}, line {number}: expected '<numeric id> <value>', found {line!r}")
        table[key] = value.strip()
    return table


def _split(
    folder: Path, part: str, relative: list[str], labels: list[int], class_names: list[str], strict: bool
) -> RealDataset:
    """One official split from relative image paths; files failing the cheap check go to ``skipped``."""
    paths = [folder / "images" / path for path in relative]
    usable, skipped = check_files(paths, description=f"checking CUB {part} images")
    fail_if_strict(skipped, strict, folder)
    return RealDataset(
        name=NAME,
        split=part,
        class_names=class_names,
        labels=np.asarray(labels, dtype=np.int64)[usable],
        ids=[relative[i] for i in usable],
        paths=[paths[i] for i in usable],
        skipped=skipped,
    )
