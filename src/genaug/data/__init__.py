"""Real datasets: images + integer labels + class names + a named split.

``load_dataset(spec)`` returns one split, ``load_splits(spec)`` train / val / test drawn
the same way (see :mod:`genaug.data.splits`); ``load_synthetic_set(set_dir)`` reads a
synthetic set's kept images as a split; ``pack_images(dataset, size)`` turns a split
into one uint8 (N, 3, S, S) tensor, cached for datasets of files. Datasets are registered
by name (:mod:`genaug.data.registry`); each loader is one module below. Importing this
package does not import torch or torchvision (``pack_images`` and the torchvision-backed
loaders import them when used).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

# Each loader module registers its dataset(s) on import.
from genaug.data import cifar, cub, folder, npz, pocket_digits, torchvision_sets  # noqa: F401
from genaug.data.base import DatasetError, MissingDataError, RealDataset, SkippedImage
from genaug.data.images import ImageLoadError, load_rgb
from genaug.data.info import dataset_info
from genaug.data.names import class_prompt, clean_class_name
from genaug.data.prepare import prepare_dataset
from genaug.data.registry import DATASETS, dataset_spec, register_dataset
from genaug.data.splits import load_dataset, load_splits
from genaug.data.synthetic import SyntheticSet, concat_synthetic_sets, load_synthetic_set
from genaug.lazy import lazy_exports

if TYPE_CHECKING:
    from genaug.data.packed import pack_images

__all__ = [
    "DatasetError",
    "ImageLoadError",
    "MissingDataError",
    "RealDataset",
    "SkippedImage",
    "SyntheticSet",
    "class_prompt",
    "clean_class_name",
    "concat_synthetic_sets",
    "dataset_info",
    "DATASETS",
    "dataset_spec",
    "load_dataset",
    "load_rgb",
    "load_splits",
    "load_synthetic_set",
    "pack_images",
    "prepare_dataset",
    "register_dataset",
]


# pack_images needs torch; imported only when asked for.
__getattr__, __dir__ = lazy_exports(__name__, {
    "genaug.data.packed": ("pack_images",),
})
