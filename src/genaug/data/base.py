"""The real-dataset contract: images + integer labels + class names + a named split."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from genaug.data.errors import DatasetError, MissingDataError  # noqa: F401 (re-exported)
from genaug.data.images import load_rgb


@dataclass(frozen=True)
class SkippedImage:
    """An input file that could not be used, and why."""

    path: str
    reason: str


@dataclass
class RealDataset:
    """One split of a real image-classification dataset.

    Images are held either as one uint8 array ``images`` (N, H, W, 3) when they share a
    size (pocket digits, CIFAR, MedMNIST), or as files ``paths`` read on demand. ``ids`` are
    stable, unique strings (they appear as ``source_ids`` in synthetic-set manifests).
    ``content`` (datasets of files whose splits are drawn by content, :mod:`genaug.data.splits`)
    holds each image's content digest (hex SHA-256 of the file's bytes), else None.
    ``ignored``: files beside the images that are not images at all (``notes.txt``,
    ``.DS_Store``), with the reason; unlike ``skipped`` they are not input that was lost.
    """

    name: str
    split: str
    class_names: list[str]
    labels: np.ndarray
    ids: list[str]
    images: np.ndarray | None = None
    paths: list[Path] | None = None
    captions: list[str] | None = None
    skipped: list[SkippedImage] = field(default_factory=list)
    content: list[str] | None = None
    ignored: list[SkippedImage] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        n = len(self.labels)
        if (self.images is None) == (self.paths is None):
            raise ValueError("a RealDataset holds exactly one of 'images' or 'paths'")
        if self.content is not None and len(self.content) != n:
            raise ValueError(f"{self.name}/{self.split}: ids and content digests differ in length")
        if len(self.ids) != n or (self.images is not None and len(self.images) != n) or (
            self.paths is not None and len(self.paths) != n
        ):
            raise ValueError(f"{self.name}/{self.split}: ids, labels and images differ in length")
        if self.images is not None and (self.images.dtype != np.uint8 or self.images.ndim != 4 or self.images.shape[-1] != 3):
            raise ValueError(f"{self.name}/{self.split}: images must be uint8 (N, H, W, 3), got {self.images.dtype} {self.images.shape}")

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        storage = f"images {tuple(self.images.shape)}" if self.images is not None else f"{len(self.paths)} files"
        return (
            f"RealDataset({self.name}/{self.split}: {len(self)} images, {self.num_classes} classes, "
            f"{storage}, {len(self.skipped)} skipped)"
        )

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def image(self, index: int) -> Image.Image:
        """Image ``index`` as an RGB PIL image."""
        if self.images is not None:
            return Image.fromarray(self.images[index])
        return load_rgb(self.paths[index])

    def rgb(self, index: int) -> np.ndarray:
        """Image ``index`` as a uint8 (H, W, 3) array, whether held in memory or read from its file."""
        if self.images is not None:
            return self.images[index]
        return np.asarray(self.image(index), dtype=np.uint8)

    def rgb_batch(self, indices: Sequence[int]) -> list[np.ndarray]:
        """:meth:`rgb` of each of ``indices`` (images of files may differ in size, hence a list)."""
        return [self.rgb(int(index)) for index in indices]

    def image_hw(self, index: int) -> tuple[int, int]:
        """``(height, width)`` of image ``index`` (a file's from its header, without decoding)."""
        if self.images is not None:
            return int(self.images.shape[1]), int(self.images.shape[2])
        with Image.open(self.paths[index]) as image:
            return image.size[1], image.size[0]

    def subset(self, indices: np.ndarray | list[int], split: str | None = None) -> "RealDataset":
        """A new dataset holding the given indices (in that order)."""
        indices = np.asarray(indices, dtype=np.int64)
        return replace(
            self,
            split=split or self.split,
            labels=self.labels[indices],
            ids=[self.ids[i] for i in indices],
            images=None if self.images is None else self.images[indices],
            paths=None if self.paths is None else [self.paths[i] for i in indices],
            captions=None if self.captions is None else [self.captions[i] for i in indices],
            content=None if self.content is None else [self.content[i] for i in indices],
        )

    def join(self, other: "RealDataset", split: str | None = None) -> "RealDataset":
        """This dataset followed by ``other`` (same classes, both in memory or both files)."""
        if list(other.class_names) != list(self.class_names):
            raise ValueError(f"{self.name}: cannot join splits with different class names")
        if (self.images is None) != (other.images is None):
            raise ValueError(f"{self.name}: cannot join a split held in memory with one of files")

        def both(mine, theirs):
            return None if mine is None or theirs is None else list(mine) + list(theirs)

        return replace(
            self,
            split=split or self.split,
            labels=np.concatenate([self.labels, other.labels]),
            ids=list(self.ids) + list(other.ids),
            images=None if self.images is None else np.concatenate([self.images, other.images]),
            paths=both(self.paths, other.paths),
            captions=both(self.captions, other.captions),
            content=both(self.content, other.content),
            skipped=list(self.skipped) + [item for item in other.skipped if item not in self.skipped],
        )

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=self.num_classes)
