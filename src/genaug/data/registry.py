"""The dataset registry: a dataset name -> the loader that reads it from disk.

A loader reads the dataset's *own* parts, as its authors distribute them: ``train`` (all
of the training data), ``test``, ``val`` when the dataset ships one, ``pretrain`` for the
pocket digits. Holding validation out of train and the ``labels_per_class`` subset are
done once, for every dataset alike, in :mod:`genaug.data.splits`.

Adding a dataset is one module with one decorated function::

    @register_dataset("mydata", root_hint="the folder holding mydata/")
    def load_mydata(config: DatasetConfig, parts: frozenset[str]) -> dict[str, RealDataset]:
        ...

The loader returns the requested parts it has (a dataset without its own validation
split simply leaves ``val`` out) and reads as little as the requested parts need.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from genaug.registry import Registry

if TYPE_CHECKING:
    from genaug.data.config import DatasetConfig
    from genaug.data.base import RealDataset

Loader = Callable[["DatasetConfig", frozenset[str]], dict[str, "RealDataset"]]
Preparer = Callable[[Path], Path]


@dataclass(frozen=True)
class DatasetSpec:
    """One registered dataset.

    ``splits``: the splits ``load_dataset`` offers (train, val, test, plus pretrain for
    pocket digits). ``default_val_fraction`` / ``default_labels_per_class``: what
    ``DatasetConfig.val_fraction = None`` / ``labels_per_class = None`` mean for it.
    ``options``: DatasetConfig fields only this kind of dataset reads (e.g. ``classes``).
    ``prepare``: downloads and extracts it under a root, where that is possible.
    """

    name: str
    load: Loader
    needs_root: bool = True
    root_hint: str = ""
    splits: tuple[str, ...] = ("train", "val", "test")
    default_val_fraction: float = 0.1
    default_labels_per_class: int | None = None
    options: frozenset[str] = field(default_factory=frozenset)
    prepare: Preparer | None = None


#: Dataset name -> its :class:`DatasetSpec` (the loader modules of :mod:`genaug.data` fill it).
DATASETS = Registry("dataset", key="name", discover=("genaug.data",))


def register_dataset(
    name: str,
    *,
    needs_root: bool = True,
    root_hint: str = "",
    splits: tuple[str, ...] = ("train", "val", "test"),
    default_val_fraction: float = 0.1,
    default_labels_per_class: int | None = None,
    options: tuple[str, ...] = (),
) -> Callable[[Loader], Loader]:
    """Decorator registering ``loader`` under ``name`` (see the module docstring)."""

    def decorator(loader: Loader) -> Loader:
        DATASETS.register(name)(DatasetSpec(
            name=name,
            load=loader,
            needs_root=needs_root,
            root_hint=root_hint,
            splits=splits,
            default_val_fraction=default_val_fraction,
            default_labels_per_class=default_labels_per_class,
            options=frozenset(options),
        ))
        return loader

    return decorator


def register_preparer(name: str) -> Callable[[Preparer], Preparer]:
    """Decorator attaching a download-and-extract function to the registered dataset ``name``."""

    def decorator(prepare: Preparer) -> Preparer:
        entry = DATASETS.spec(name)
        entry.target = replace(entry.target, prepare=prepare)
        return prepare

    return decorator


def dataset_spec(name: str) -> DatasetSpec:
    """The registration of ``name`` (a :class:`~genaug.config.ConfigError` with the close match if unknown)."""
    return DATASETS.get(name)
