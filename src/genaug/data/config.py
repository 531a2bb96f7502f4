"""The real-dataset block of every config (:class:`DatasetConfig`), checked against the dataset registry."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import model_validator

from genaug.config import StrictModel
from genaug.data.registry import DATASETS

__all__ = ["DatasetConfig"]


class DatasetConfig(StrictModel):
    """Which real dataset, which split, and how it is subset (``genaug.data.load_dataset``).

    ``name`` is a registered dataset (``genaug.data.DATASETS.names()``: pocket_digits,
    folder, cifar10, cifar100, cub200, flowers102, pets, cars, dtd, npz). ``split`` is one
    of ``train`` (after the validation hold-out and the ``labels_per_class`` subset),
    ``val`` (the dataset's own validation split if it has one, else held out of the
    training data, stratified per class and seeded), ``test`` (the dataset's own test
    split) or ``pretrain`` (pocket digits only: the pool reserved for training the pocket
    models).

    ``None`` means "the dataset's default" for ``labels_per_class`` (10 for pocket digits,
    every image otherwise; ``"all"`` asks for every image explicitly) and for
    ``val_fraction`` (0.4 of the train pool for pocket digits, whose pool is small; 0.1
    otherwise). ``test_fraction`` is read only by ``folder`` trees without a ``test/``
    folder (None = 0.2) and ``classes`` only by ``npz`` (class names, in label order).
    ``image_size`` is the side length images are packed at (``pack_images``); it is
    required for datasets of image files. ``strict`` turns any unusable image or empty
    class folder into an error instead of a listed skip. ``allow_empty_classes`` lets a run
    go on with a class that has no training image (an error otherwise, before any stage runs).
    ``spare_to_test``: the training pool's images that ``labels_per_class`` leaves out of train
    (and val is not using) join the test split, for a smaller standard error of every test
    number. Only where the test split and the training pool are drawn from one distribution
    (the pocket digits: both from the downstream pool, disjoint from what the pocket models
    were trained on); the test split then depends on ``labels_per_class`` and the seed.
    """

    name: str = "pocket_digits"
    root: Path | None = None
    split: Literal["train", "val", "test", "pretrain"] = "train"
    labels_per_class: int | Literal["all"] | None = None
    val_fraction: float | None = None
    test_fraction: float | None = None
    classes: list[str] | None = None
    seed: int = 0
    image_size: int | None = None
    strict: bool = False
    allow_empty_classes: bool = False
    spare_to_test: bool = False

    @model_validator(mode="after")
    def _check(self) -> "DatasetConfig":
        # The registry is the one list of datasets. Importing it imports the genaug.data
        # package, whose loader modules register themselves (none imports this module at
        # import time, so this works while this module is still being imported).

        def readers(option: str) -> str:
            return ", ".join(name for name in DATASETS.names() if option in DATASETS.get(name).options)

        spec = DATASETS.get(self.name, key="name")
        if spec.needs_root and self.root is None:
            raise ValueError(f"dataset '{self.name}' needs a 'root' ({spec.root_hint})")
        if self.split not in spec.splits:
            raise ValueError(f"split '{self.split}' is not available for '{self.name}'; allowed: {', '.join(spec.splits)}")
        if isinstance(self.labels_per_class, int) and self.labels_per_class < 1:
            raise ValueError(f"labels_per_class must be >= 1 or 'all', got {self.labels_per_class}")
        if self.val_fraction is not None and not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.test_fraction is not None:
            if "test_fraction" not in spec.options:
                raise ValueError(f"test_fraction is only used by: {readers('test_fraction')}")
            if not 0.0 < self.test_fraction < 1.0:
                raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        if self.classes is not None and "classes" not in spec.options:
            raise ValueError(f"classes is only used by: {readers('classes')}")
        if self.image_size is not None and self.image_size < 1:
            raise ValueError(f"image_size must be >= 1, got {self.image_size}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        return self

