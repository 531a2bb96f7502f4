"""Finding image files on disk and checking them cheaply, collecting the unusable ones.

Scanning never decodes a well-formed image (:func:`genaug.data.images.check_image` reads
headers and checksums); the pixels are decoded once, when the dataset is packed.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

import numpy as np

from genaug.data.base import DatasetError, SkippedImage
from genaug.data.images import ImageLoadError, check_image, is_image_file
from genaug.data.progress import map_with_progress


def image_files(folder: Path) -> list[Path]:
    """Image files anywhere under ``folder``, sorted by their relative POSIX path (stable ids).

    Hidden files and anything inside hidden folders (``.ipynb_checkpoints``, ``.git``) are ignored.
    """
    found = [
        path
        for path in folder.rglob("*")
        if is_image_file(path)
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
        and path.is_file()
    ]
    return sorted(found, key=lambda path: path.relative_to(folder).as_posix())


def ignored_files(folder: Path) -> list[SkippedImage]:
    """Files under ``folder`` that :func:`image_files` does not read, each with the reason
    (hidden, or not an image by its suffix); inside hidden folders only the folder is named."""
    ignored: list[SkippedImage] = []
    for path in sorted(folder.rglob("*"), key=lambda p: p.relative_to(folder).as_posix()):
        parts = path.relative_to(folder).parts
        if any(part.startswith(".") for part in parts[:-1]):
            continue  # inside a hidden folder, named once below
        if path.name.startswith("."):
            ignored.append(SkippedImage(str(path), "hidden folder" if path.is_dir() else "hidden file"))
        elif path.is_file() and not is_image_file(path):
            ignored.append(SkippedImage(str(path), f"not an image file ({path.suffix or 'no suffix'})"))
    return ignored


def check_files(paths: Sequence[Path], description: str = "checking images") -> tuple[np.ndarray, list[SkippedImage]]:
    """Check every file; returns the indices of the usable ones and the skipped ones with reasons."""

    def problem(path: Path) -> SkippedImage | None:
        try:
            check_image(path)
        except ImageLoadError as error:
            return SkippedImage(str(path), error.reason)
        return None

    problems = map_with_progress(problem, list(paths), description)
    usable = np.array([i for i, found in enumerate(problems) if found is None], dtype=np.int64)
    return usable, [found for found in problems if found is not None]


def content_digests(paths: Sequence[Path], description: str = "hashing images") -> list[str]:
    """Hex SHA-256 of each file's bytes, in order (read in threads): what content-drawn splits key on."""

    def digest(path: Path) -> str:
        hasher = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                hasher.update(block)
        return hasher.hexdigest()

    return map_with_progress(digest, list(paths), description)


def fail_if_strict(skipped: Sequence[SkippedImage], strict: bool, source: str | Path) -> None:
    """With ``strict``, any skipped entry is an error listing every one of them."""
    if strict and skipped:
        listing = "\n".join(f"  {item.path}: {item.reason}" for item in skipped)
        raise DatasetError(f"{source}: {len(skipped)} unusable entries (strict mode):\n{listing}")
