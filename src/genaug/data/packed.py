"""The packed uint8 cache: a whole split as one (N, 3, S, S) uint8 tensor, decoded once.

Training reads batches straight out of this tensor (benchmarks/RESULTS.md: packed uint8 tensors
instead of decoding files every epoch). Array-backed datasets (pocket digits, CIFAR,
``.npz``) convert cheaply and are not cached. Datasets of files are decoded once with
:func:`genaug.data.images.load_rgb` (which also validates them: scanning only checked
headers), resized to ``S x S`` with Pillow's antialiased bilinear filter, and stored in
``GENAUG_HOME/packed/<key>.safetensors``. The key hashes every image's id, absolute path,
byte size and modification time, plus ``S`` and the packing format, so any change to the
files or the split makes a new cache. A cache file is written to a temporary name and
renamed, and it records a CRC-32 of its pixels: a truncated or corrupted file is rebuilt,
never trusted.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from genaug.data.base import DatasetError, RealDataset, SkippedImage
from genaug.data.identity import file_signature
from genaug.data.images import ImageLoadError, load_rgb
from genaug.data.progress import map_with_progress
from genaug.files import save_safetensors
from genaug.home import cache_dir

logger = logging.getLogger(__name__)

#: Changes whenever the packed pixels of the same files would change (decoder, resize filter).
PACK_FORMAT = "genaug-packed-v1 pillow-bilinear alpha-on-white"
_TENSOR = "images"
_RESIZE_CHUNK = 1024  # images resized per float32 batch, bounding memory for large arrays


def pack_images(dataset: RealDataset, size: int | None = None) -> torch.Tensor:
    """All images of ``dataset`` as one uint8 tensor (N, 3, S, S), in the dataset's order.

    Array-backed datasets: their images, resized (antialiased bilinear) only when ``size``
    differs from theirs; ``size=None`` keeps their size. Datasets of files: ``size`` is
    required; the result comes from the cache when it is valid, else every file is decoded
    once and the cache written. A file that fails to decode (corruption the scan-time
    check cannot see) is an error naming every such file.
    """
    if dataset.images is not None:
        return pack_array(dataset.images, size)
    if size is None:
        raise DatasetError(
            f"{dataset.name}/{dataset.split} is a dataset of image files: pack_images needs a size "
            "(DatasetConfig.image_size)"
        )
    if size < 1:
        raise DatasetError(f"pack_images: size must be >= 1, got {size}")
    path = cache_path(dataset, size)
    cached = read_cache(path, expected_shape=(len(dataset), 3, size, size))
    if cached is not None:
        return cached
    packed = decode_files(dataset.paths, size)
    write_cache(path, packed)
    return packed


def pack_array(images: np.ndarray, size: int | None) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) uint8, or (N, 3, size, size) when ``size`` differs."""
    packed = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous()
    if size is None or packed.shape[-2:] == (size, size):
        return packed
    if len(packed) == 0:
        return torch.empty((0, 3, size, size), dtype=torch.uint8)
    return torch.cat([resize_uint8(chunk, size) for chunk in packed.split(_RESIZE_CHUNK)])


def resize_uint8(images: torch.Tensor, size: int) -> torch.Tensor:
    """Antialiased bilinear resize of (N, 3, H, W) uint8 to (N, 3, size, size), rounded to uint8."""
    resized = F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return resized.round_().clamp_(0, 255).to(torch.uint8)


# ----------------------------------------------------------------------------------------
# Decoding files
# ----------------------------------------------------------------------------------------


def decode_files(paths: list[Path], size: int) -> torch.Tensor:
    """Decode every file once (in threads), resized to ``size x size``; failures -> one error listing all."""
    packed = torch.empty((len(paths), 3, size, size), dtype=torch.uint8)

    def decode_into(index: int) -> SkippedImage | None:
        try:
            image = load_rgb(paths[index], draft_size=size)
        except ImageLoadError as error:
            return SkippedImage(error.path, error.reason)
        if image.size != (size, size):
            image = image.resize((size, size), Image.Resampling.BILINEAR)  # antialiased when shrinking
        packed[index] = torch.from_numpy(np.array(image)).permute(2, 0, 1)
        return None

    outcomes = map_with_progress(decode_into, range(len(paths)), f"packing {len(paths)} images")
    failures = [found for found in outcomes if found is not None]
    if failures:
        listing = "\n".join(f"  {item.path}: {item.reason}" for item in failures)
        raise DatasetError(f"{len(failures)} image files could not be decoded while packing:\n{listing}")
    return packed


# ----------------------------------------------------------------------------------------
# The cache file
# ----------------------------------------------------------------------------------------


def cache_key(dataset: RealDataset, size: int) -> str:
    """A digest of the packing format, ``size`` and every file's id, path, byte size and mtime."""
    digest = hashlib.sha256(f"{PACK_FORMAT}\n{size}\n".encode())
    for image_id, path in zip(dataset.ids, dataset.paths):
        # "missing" for an unreadable file: decoding will report it; the key only has to differ
        digest.update(f"{image_id}\0{os.path.abspath(path)}\0{file_signature(path)}\n".encode())
    return digest.hexdigest()


def cache_path(dataset: RealDataset, size: int) -> Path:
    """``GENAUG_HOME/packed/<name>-<split>-<size>px-<digest>.safetensors`` (name and split for humans)."""
    label = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{dataset.name}-{dataset.split}-{size}px")
    return cache_dir("packed") / f"{label}-{cache_key(dataset, size)[:32]}.safetensors"


def read_cache(path: Path, expected_shape: tuple[int, ...]) -> torch.Tensor | None:
    """The cached tensor if ``path`` holds a complete, uncorrupted one of ``expected_shape``, else None."""
    if not path.is_file():
        return None
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            images = handle.get_tensor(_TENSOR)
        problem = _cache_problem(images, metadata, expected_shape)
    except Exception as error:  # noqa: BLE001 - any unreadable cache is simply rebuilt
        problem = f"unreadable ({type(error).__name__}: {error})"
    if problem is None:
        return images
    logger.warning("packed cache %s is %s; rebuilding it", path, problem)
    path.unlink(missing_ok=True)
    return None


def _cache_problem(images: torch.Tensor, metadata: dict[str, str], expected_shape: tuple[int, ...]) -> str | None:
    """Why a loaded cache cannot be trusted, or None when it can."""
    if metadata.get("format") != PACK_FORMAT:
        return f"of another format ({metadata.get('format')!r})"
    if images.dtype != torch.uint8 or tuple(images.shape) != expected_shape:
        return f"of the wrong shape ({images.dtype} {tuple(images.shape)}, expected uint8 {expected_shape})"
    if metadata.get("crc32") != str(_crc32(images)):
        return "corrupted (pixel checksum mismatch)"
    return None


def write_cache(path: Path, images: torch.Tensor) -> None:
    """Write ``images`` to ``path`` atomically (temporary file, fsync, rename).

    The cache only saves time: a failure to write it (disk full, read-only home) is logged
    and the packed tensor is still returned by the caller.
    """
    try:
        save_safetensors(path, {_TENSOR: images}, {"format": PACK_FORMAT, "crc32": str(_crc32(images))})
    except OSError as error:
        logger.warning("could not write the packed cache %s: %s", path, error)


def _crc32(images: torch.Tensor) -> int:
    """CRC-32 of the tensor's bytes (detects accidental corruption; fast enough for gigabytes)."""
    return zlib.crc32(images.contiguous().numpy())
