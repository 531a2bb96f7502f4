"""Flowers-102, Oxford-IIIT Pets, Stanford Cars and DTD, read through torchvision's classes.

torchvision knows each dataset's files and split lists; genaug only takes the image paths,
labels and class names from it (``download=False``: nothing is fetched while loading;
:func:`genaug.data.prepare_dataset` downloads where torchvision can). The paths and labels
are torchvision's private attributes, read for the pinned torchvision version; a change
there is reported as such. ``root`` is the folder torchvision is given (the one holding
``flowers-102/``, ``oxford-iiit-pet/``, ``stanford_cars/`` or ``dtd/``), or that folder
itself. Ids are image paths relative to ``root``.

Own splits: Flowers-102 train / val / test; Pets trainval (genaug's train) / test; Cars
train / test; DTD train / val / test of partition 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from genaug.data.base import DatasetError, MissingDataError, RealDataset
from genaug.data.registry import register_dataset, register_preparer
from genaug.data.scan import check_files, fail_if_strict

if TYPE_CHECKING:  # genaug.config validates names against this package's registry
    from genaug.data.config import DatasetConfig


def _image_files_and_labels(dataset: Any) -> tuple[list[Any], list[int]]:
    """Where most torchvision datasets keep their samples: ``_image_files`` and ``_labels``."""
    return dataset._image_files, dataset._labels


@dataclass(frozen=True)
class TorchvisionSet:
    """How to read one dataset through torchvision.

    ``splits`` maps genaug's part name to torchvision's split name (default: train, val and
    test under their own names); ``folder`` is the sub-folder torchvision looks for under
    its root; ``expects`` says what must be in it. ``samples`` extracts ``(paths, labels)``
    from a constructed torchvision dataset (default: its ``_image_files`` and ``_labels``).
    ``downloadable``: whether torchvision can still download it (Stanford Cars' official
    links are gone).
    """

    name: str
    class_name: str
    folder: str
    expects: str
    splits: dict[str, str] = field(default_factory=lambda: {"train": "train", "val": "val", "test": "test"})
    samples: Callable[[Any], tuple[list[Any], list[int]]] = _image_files_and_labels
    extra_kwargs: dict[str, Any] = field(default_factory=dict)
    downloadable: bool = True


FLOWERS102 = TorchvisionSet(
    name="flowers102",
    class_name="Flowers102",
    folder="flowers-102",
    expects="flowers-102/jpg/image_*.jpg, flowers-102/imagelabels.mat and flowers-102/setid.mat",
)
PETS = TorchvisionSet(
    name="pets",
    class_name="OxfordIIITPet",
    folder="oxford-iiit-pet",
    expects="oxford-iiit-pet/images/*.jpg and oxford-iiit-pet/annotations/{trainval,test}.txt",
    splits={"train": "trainval", "test": "test"},
    samples=lambda ds: (ds._images, ds._labels),
)
CARS = TorchvisionSet(
    name="cars",
    class_name="StanfordCars",
    folder="stanford_cars",
    expects=(
        "stanford_cars/cars_train/, stanford_cars/cars_test/, stanford_cars/devkit/cars_meta.mat, "
        "stanford_cars/devkit/cars_train_annos.mat and stanford_cars/cars_test_annos_withlabels.mat"
    ),
    splits={"train": "train", "test": "test"},
    samples=lambda ds: ([path for path, _ in ds._samples], [label for _, label in ds._samples]),
    downloadable=False,
)
DTD = TorchvisionSet(
    name="dtd",
    class_name="DTD",
    folder="dtd",
    expects="dtd/dtd/images/<class>/*.jpg and dtd/dtd/labels/{train,val,test}1.txt",
    extra_kwargs={"partition": 1},
)


def load_torchvision_set(spec: TorchvisionSet, config: DatasetConfig, parts: frozenset[str]) -> dict[str, RealDataset]:
    """The requested own parts of ``spec``, as path-backed datasets."""
    root = torchvision_root(spec, Path(config.root))
    loaded: dict[str, RealDataset] = {}
    for part in sorted(parts & set(spec.splits)):
        dataset = _construct(spec, root, spec.splits[part])
        try:
            raw_paths, raw_labels = spec.samples(dataset)
            class_names = [str(name) for name in dataset.classes]
        except AttributeError as error:
            raise DatasetError(
                f"{spec.name}: this torchvision version stores {spec.class_name} differently ({error}); "
                "genaug reads the attributes of the pinned torchvision"
            ) from error
        paths = [Path(path) for path in raw_paths]
        usable, skipped = check_files(paths, description=f"checking {spec.name} {part} images")
        fail_if_strict(skipped, config.strict, root)
        loaded[part] = RealDataset(
            name=spec.name,
            split=part,
            class_names=class_names,
            labels=np.asarray(raw_labels, dtype=np.int64)[usable],
            ids=[_relative_id(paths[i], root) for i in usable],
            paths=[paths[i] for i in usable],
            skipped=skipped,
        )
    return loaded


def torchvision_root(spec: TorchvisionSet, root: Path) -> Path:
    """The root torchvision wants: ``root``, or its parent when ``root`` is the dataset folder itself."""
    if not (root / spec.folder).is_dir() and root.name == spec.folder:
        return root.parent
    return root


def _construct(spec: TorchvisionSet, root: Path, split: str) -> Any:
    """``torchvision.datasets.<class>(root, split, download=False)``; missing files -> a clear error."""
    import torchvision.datasets

    dataset_class = getattr(torchvision.datasets, spec.class_name)
    try:
        return dataset_class(str(root), split=split, download=False, **spec.extra_kwargs)
    except (RuntimeError, FileNotFoundError, OSError) as error:
        raise MissingDataError(
            f"{spec.name} not found under {root}: torchvision's {spec.class_name} expects {root}/{spec.expects} "
            f"(torchvision says: {error})"
        ) from error


def _relative_id(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def _prepare(spec: TorchvisionSet, root: Path) -> Path:
    """Download and extract through torchvision (``download=True``); returns the root."""
    import torchvision.datasets

    root.mkdir(parents=True, exist_ok=True)
    try:
        getattr(torchvision.datasets, spec.class_name)(str(root), download=True, **spec.extra_kwargs)
    except Exception as error:  # noqa: BLE001 - network, disk and checksum failures all end here
        raise DatasetError(f"could not download {spec.name} into {root}: {error}") from error
    return root


def _register(spec: TorchvisionSet) -> None:
    """Register ``spec``'s loader (its own splits through :func:`load_torchvision_set`) and,
    where torchvision can download it, its preparer."""

    @register_dataset(spec.name, root_hint=f"the folder holding {spec.expects}")
    def load(config: DatasetConfig, parts: frozenset[str]) -> dict[str, RealDataset]:
        return load_torchvision_set(spec, config, parts)

    load.__doc__ = f"{spec.name} through torchvision.datasets.{spec.class_name} (own splits: {', '.join(spec.splits)})."
    if spec.downloadable:
        register_preparer(spec.name)(lambda root: _prepare(spec, root))


for _spec in (FLOWERS102, PETS, CARS, DTD):
    _register(_spec)
