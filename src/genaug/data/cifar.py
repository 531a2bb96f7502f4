"""CIFAR-10 and CIFAR-100 in the "python version" their authors distribute.

- CIFAR-10: ``cifar-10-batches-py/`` with ``data_batch_1`` .. ``data_batch_5`` (train),
  ``test_batch`` and ``batches.meta`` (``label_names``);
- CIFAR-100: ``cifar-100-python/`` with ``train``, ``test`` and ``meta``; genaug uses the
  100 fine labels (``fine_labels``, ``fine_label_names``, alphabetical, so the same order
  as CIFAR-100 stored as class folders).

``root`` may be that folder or the folder holding it. Each batch is a pickled dict whose
``data`` is (N, 3072) uint8, each row the 1024 red, 1024 green then 1024 blue values of a
32x32 image. The pickles are read with an unpickler that can build nothing but numpy
arrays, lists and strings: a pickle can run code on load, and these files come from the
internet. Ids are ``train/00042`` / ``test/00042`` (position in the official order).

:func:`prepare_cifar` downloads and extracts the official archives (checked by md5).
"""

from __future__ import annotations

import codecs
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from genaug.data.base import DatasetError, MissingDataError, RealDataset
from genaug.data.registry import register_dataset, register_preparer

if TYPE_CHECKING:  # genaug.config validates names against this package's registry
    from genaug.data.config import DatasetConfig


@dataclass(frozen=True)
class CifarLayout:
    """Where one CIFAR variant keeps what, and where to download it from."""

    name: str
    folder: str
    train_files: tuple[str, ...]
    test_file: str
    meta_file: str
    label_key: str
    names_key: str
    url: str
    md5: str


CIFAR10 = CifarLayout(
    name="cifar10",
    folder="cifar-10-batches-py",
    train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
    test_file="test_batch",
    meta_file="batches.meta",
    label_key="labels",
    names_key="label_names",
    url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    md5="c58f30108f718f92721af3b95e74349a",
)
CIFAR100 = CifarLayout(
    name="cifar100",
    folder="cifar-100-python",
    train_files=("train",),
    test_file="test",
    meta_file="meta",
    label_key="fine_labels",
    names_key="fine_label_names",
    url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    md5="eb9058c3a382ffc7106e4002c42a8d85",
)


@register_dataset("cifar10", root_hint="cifar-10-batches-py/ or the folder holding it")
def load_cifar10(config: DatasetConfig, parts: frozenset[str]) -> dict[str, RealDataset]:
    """CIFAR-10's own train (50,000) and test (10,000) parts."""
    return load_cifar(CIFAR10, Path(config.root), parts)


@register_dataset("cifar100", root_hint="cifar-100-python/ or the folder holding it")
def load_cifar100(config: DatasetConfig, parts: frozenset[str]) -> dict[str, RealDataset]:
    """CIFAR-100's own train (50,000) and test (10,000) parts, fine labels."""
    return load_cifar(CIFAR100, Path(config.root), parts)


def load_cifar(layout: CifarLayout, root: Path, parts: frozenset[str]) -> dict[str, RealDataset]:
    """Read the requested parts (``train``, ``test``) of one CIFAR variant."""
    folder = cifar_folder(layout, root)
    class_names = [_text(name) for name in read_batch(folder / layout.meta_file)[layout.names_key]]
    files = {"train": layout.train_files, "test": (layout.test_file,)}
    loaded: dict[str, RealDataset] = {}
    for part in sorted(parts & set(files)):
        batches = [read_batch(folder / file) for file in files[part]]
        images = np.concatenate([_batch_images(batch, folder / file) for batch, file in zip(batches, files[part])])
        labels = np.concatenate([np.asarray(batch[layout.label_key], dtype=np.int64) for batch in batches])
        if len(labels) != len(images) or (len(labels) and not 0 <= labels.min() <= labels.max() < len(class_names)):
            raise DatasetError(f"{folder}: {part} labels do not match the images or the {len(class_names)} classes")
        loaded[part] = RealDataset(
            name=layout.name,
            split=part,
            class_names=class_names,
            labels=labels,
            ids=[f"{part}/{i:05d}" for i in range(len(labels))],
            images=images,
        )
    return loaded


def cifar_folder(layout: CifarLayout, root: Path) -> Path:
    """The extracted folder: ``root`` itself if it holds the meta file, else ``root/<folder>``."""
    if (root / layout.meta_file).is_file():
        return root
    folder = root / layout.folder
    if not (folder / layout.meta_file).is_file():
        raise MissingDataError(
            f"{layout.name}: expected {folder / layout.meta_file} (the extracted '{layout.folder}' folder; "
            f"`genaug data prepare {layout.name} --root {root}` downloads it)"
        )
    return folder


def read_batch(path: Path) -> dict[str, Any]:
    """One CIFAR pickle as a dict with ``str`` keys, read without running any code."""
    if not path.is_file():
        raise MissingDataError(f"CIFAR file not found: expected {path}")
    try:
        with open(path, "rb") as handle:
            batch = _ArraysOnlyUnpickler(handle, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as error:
        raise DatasetError(f"{path} is not a readable CIFAR batch: {error}") from error
    if not isinstance(batch, dict):
        raise DatasetError(f"{path} is not a CIFAR batch (a pickled dict), found {type(batch).__name__}")
    return {_text(key): value for key, value in batch.items()}


def _batch_images(batch: dict[str, Any], path: Path) -> np.ndarray:
    """``data`` (N, 3072) in channel-major rows -> (N, 32, 32, 3) uint8 images."""
    if "data" not in batch:
        raise DatasetError(f"{path} has no 'data' entry")
    data = np.asarray(batch["data"], dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DatasetError(f"{path}: 'data' must be (N, 3072), found {data.shape}")
    return np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


def _text(value: str | bytes) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Unpickles only numpy arrays, dtypes and plain containers; any other global is refused."""

    _RECONSTRUCT = np.ndarray((0,)).__reduce__()[0]  # numpy's array rebuilder, whatever its module
    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
        ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        # Python 3 pickles of bytes at protocol 2 (CIFAR re-pickled by a script) use this.
        ("_codecs", "encode"): codecs.encode,
    }

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            message = f"refusing to load '{module}.{name}' (only numpy arrays are allowed)"
            raise pickle.UnpicklingError(message) from None


@register_preparer("cifar10")
def prepare_cifar10(root: Path) -> Path:
    return prepare_cifar(CIFAR10, root)


@register_preparer("cifar100")
def prepare_cifar100(root: Path) -> Path:
    return prepare_cifar(CIFAR100, root)


def prepare_cifar(layout: CifarLayout, root: Path) -> Path:
    """Download the official archive into ``root``, check its md5, extract it; returns the folder.

    Does nothing when the extracted folder is already complete.
    """
    folder = root / layout.folder
    expected = [layout.meta_file, layout.test_file, *layout.train_files]
    if all((folder / name).is_file() for name in expected):
        return folder
    from torchvision.datasets.utils import download_and_extract_archive

    root.mkdir(parents=True, exist_ok=True)
    try:
        download_and_extract_archive(layout.url, download_root=str(root), md5=layout.md5)
    except Exception as error:  # noqa: BLE001 - network, disk and checksum failures all end here
        raise DatasetError(f"could not download {layout.name} from {layout.url} into {root}: {error}") from error
    return cifar_folder(layout, root)
