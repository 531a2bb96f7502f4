"""MedMNIST-style ``.npz`` files: ``{train,val,test}_images`` and ``{train,val,test}_labels``.

Images are uint8 (N, H, W) grayscale, (N, H, W, 1) or (N, H, W, 3) RGB (float arrays with
values in [0, 1] are scaled by 255); grayscale is copied to three channels. Labels are (N,)
or (N, 1) integers (multi-label (N, K) files are refused). ``root`` is the ``.npz`` file,
or a folder holding exactly one. The file's own ``val`` split is used when present.
Class names: the ``classes`` config option, else a ``class_names`` array in the file,
else ``"0"`` .. ``"K-1"``. Arrays are read with ``allow_pickle=False`` (a pickled object
array could run code). Ids are ``train/00042`` (position in the file's split).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from genaug.data.base import DatasetError, MissingDataError, RealDataset
from genaug.data.registry import register_dataset

if TYPE_CHECKING:  # genaug.config validates names against this package's registry
    from genaug.data.config import DatasetConfig

NAME = "npz"
PARTS = ("train", "val", "test")


@register_dataset(NAME, root_hint="the .npz file, or a folder holding one", options=("classes",))
def load_npz(config: DatasetConfig, parts: frozenset[str]) -> dict[str, RealDataset]:
    """The requested parts the file has (``train`` and ``test`` are required, ``val`` optional)."""
    path = npz_file(Path(config.root))
    with np.load(path, allow_pickle=False) as archive:
        for required in ("train", "test"):
            for kind in ("images", "labels"):
                if f"{required}_{kind}" not in archive.files:
                    raise DatasetError(f"{path} has no '{required}_{kind}' array (found: {', '.join(archive.files)})")
        present = [part for part in PARTS if f"{part}_images" in archive.files]
        labels = {part: read_labels(archive, part, path) for part in present}
        class_names = resolve_class_names(config.classes, archive, labels, path)
        return {
            part: RealDataset(
                name=NAME,
                split=part,
                class_names=class_names,
                labels=labels[part],
                ids=[f"{part}/{i:05d}" for i in range(len(labels[part]))],
                images=read_images(archive, part, path, len(labels[part])),
            )
            for part in sorted(parts & set(present))
        }


def npz_file(root: Path) -> Path:
    """``root`` if it is a file, else the one ``.npz`` in the folder ``root``."""
    if root.is_file():
        return root
    if root.is_dir():
        found = sorted(root.glob("*.npz"))
        if len(found) == 1:
            return found[0]
        raise DatasetError(f"{root} holds {len(found)} .npz files; set 'root' to the file itself")
    raise MissingDataError(f"npz dataset: {root} does not exist")


def read_labels(archive: np.lib.npyio.NpzFile, part: str, path: Path) -> np.ndarray:
    """``<part>_labels`` as (N,) int64; (N, 1) is squeezed, (N, K > 1) refused."""
    key = f"{part}_labels"
    if key not in archive.files:
        raise DatasetError(f"{path} has '{part}_images' but no '{key}'")
    labels = np.asarray(archive[key])
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise DatasetError(f"{path}: '{key}' must be (N,) or (N, 1) class indices, found {labels.shape} (multi-label?)")
    if not np.issubdtype(labels.dtype, np.integer) or (len(labels) and labels.min() < 0):
        raise DatasetError(f"{path}: '{key}' must hold non-negative integers, found {labels.dtype}")
    return labels.astype(np.int64)


def read_images(archive: np.lib.npyio.NpzFile, part: str, path: Path, count: int) -> np.ndarray:
    """``<part>_images`` as (N, H, W, 3) uint8."""
    key = f"{part}_images"
    images = np.asarray(archive[key])
    if len(images) != count:
        raise DatasetError(f"{path}: '{key}' has {len(images)} images but '{part}_labels' has {count} labels")
    if images.dtype != np.uint8:
        if np.issubdtype(images.dtype, np.floating) and images.size and 0.0 <= images.min() and images.max() <= 1.0:
            images = np.rint(images * 255.0).astype(np.uint8)
        else:
            raise DatasetError(f"{path}: '{key}' must be uint8 (or floats in [0, 1]), found {images.dtype}")
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim == 3:
        images = np.repeat(images[..., None], 3, axis=-1)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise DatasetError(f"{path}: '{key}' must be (N, H, W) or (N, H, W, 3), found {images.shape}")
    return np.ascontiguousarray(images)


def resolve_class_names(
    option: list[str] | None, archive: np.lib.npyio.NpzFile, labels: dict[str, np.ndarray], path: Path
) -> list[str]:
    """The ``classes`` option, the file's ``class_names``, or ``"0"..`` up to the largest label."""
    largest = max((int(values.max()) for values in labels.values() if len(values)), default=-1)
    if option is not None:
        names, source = list(option), "the 'classes' option"
    elif "class_names" in archive.files:
        names, source = [str(name) for name in np.asarray(archive["class_names"]).ravel()], f"{path}:class_names"
    else:
        return [str(label) for label in range(largest + 1)]
    if largest >= len(names):
        raise DatasetError(f"{source} names {len(names)} classes but {path} has label {largest}")
    return names
