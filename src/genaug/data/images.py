"""Robust image reading: any file Pillow can open becomes 8-bit RGB, or a named reason why not.

Conversions (:func:`to_rgb`), chosen so that every input meets the models as the same
thing, 8-bit sRGB-ish RGB:

- grayscale (``L``) and 1-bit (``1``): the gray value copied to R, G and B (1-bit: 0 / 255);
- palette (``P``): looked up; with a transparent index it is treated as RGBA;
- transparency (``RGBA``, ``LA``, ``PA``, a ``tRNS`` colour): composited on **white**.
  White is the background such images are made to be seen on (product shots, icons,
  scans on web pages); black would swallow the dark strokes most of them have;
- ``CMYK``: Pillow's conversion (Adobe-inverted JPEGs handled by Pillow), the same one
  torchvision's loader applies, so packed pixels equal what reference pipelines see;
- 16-bit (``I;16*``) and 32-bit integer (``I``, which is how 16-bit grayscale PNGs may
  open) images hold values 0..65535: ``round(v / 257)`` maps 65535 to 255 exactly;
- float (``F``): values in [0, 1] are scaled by 255, otherwise taken as 0..255; clipped.

EXIF orientation is not applied, as torchvision's loader does not apply it.

Huge images: above ``max_pixels`` (Pillow's own decompression-bomb limit by default) a
JPEG is decoded at 1/2, 1/4 or 1/8 scale with ``Image.draft`` (DCT scaling, no full-size
decode); any other format is refused with the reason. Files beyond twice Pillow's limit
are refused by Pillow before their header is read; that refusal is reported the same way.

Every failure is an :class:`ImageLoadError` carrying the path and a reason a human can act on.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from genaug.data.errors import DatasetError

#: File name suffixes treated as images when scanning folders (lower case).
IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".jpe", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".pnm"}
)

#: Default pixel-count limit, Pillow's decompression-bomb threshold (about 89.5 M pixels).
MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485

#: Formats Pillow can decode at a reduced scale (DCT scaling) via ``Image.draft``.
_DRAFTABLE = frozenset({"JPEG", "MPO"})
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_JPEG_END_OF_IMAGE = b"\xff\xd9"


class ImageLoadError(DatasetError):
    """An image file that cannot be used; ``path`` and ``reason`` say which and why."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def is_image_file(path: Path) -> bool:
    """Whether ``path`` has an image suffix and is not a hidden file (``.DS_Store``, ``._x.jpg``)."""
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


# ----------------------------------------------------------------------------------------
# Decoding
# ----------------------------------------------------------------------------------------


def load_rgb(path: str | Path, *, draft_size: int | None = None, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode ``path`` into an 8-bit RGB image (conversions in the module docstring).

    ``draft_size``: the caller will shrink the image to about this side length, so a JPEG
    may be decoded at a reduced scale as long as both sides stay >= ``draft_size`` (faster,
    and DCT scaling is a good anti-aliased reduction). ``max_pixels``: larger images are
    decoded reduced (JPEG) or refused. Raises :class:`ImageLoadError` for anything unusable.
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            full_size = image.size
            _draft_reduced(image, draft_size, max_pixels)
            if image.width * image.height > max_pixels:
                raise ImageLoadError(path, _too_large_reason(full_size, image.format, max_pixels))
            image.load()
            return to_rgb(image)
    except ImageLoadError:
        raise
    except Exception as error:  # noqa: BLE001 - a corrupt file can make a plugin raise anything
        raise ImageLoadError(path, _describe(error)) from error


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert a decoded image of any Pillow mode into 8-bit RGB (rules in the module docstring).

    Raises ``ValueError`` for a mode with no defined conversion.
    """
    mode = image.mode
    if mode == "RGB" and "transparency" not in image.info:
        return image
    if mode in _ALPHA_MODES or ("transparency" in image.info and mode in ("P", "L", "RGB")):
        return composite_on_white(np.asarray(image.convert("RGBA")))
    if mode.startswith("I"):
        return _gray_to_rgb(sixteen_bit_to_uint8(np.asarray(image)))
    if mode == "F":
        return _gray_to_rgb(float_to_uint8(np.asarray(image)))
    if mode == "1":
        return image.convert("L").convert("RGB")
    try:
        return image.convert("RGB")  # L, P, CMYK, YCbCr, HSV
    except ValueError as error:
        raise ValueError(f"Pillow mode '{mode}' has no conversion to RGB") from error


def composite_on_white(rgba: np.ndarray) -> Image.Image:
    """``round((rgb * a + 255 * (255 - a)) / 255)`` per pixel, for (H, W, 4) uint8 ``rgba``."""
    rgb = rgba[..., :3].astype(np.uint32)
    alpha = rgba[..., 3:].astype(np.uint32)
    out = (rgb * alpha + 255 * (255 - alpha) + 127) // 255
    return Image.fromarray(out.astype(np.uint8), "RGB")


def sixteen_bit_to_uint8(values: np.ndarray) -> np.ndarray:
    """Map 16-bit values 0..65535 to 0..255 by ``round(v / 257)`` (clipped to that range first).

    ``(v + 128) // 257`` is exactly ``round(v / 257)``: 257 is odd, so no value is a tie.
    """
    wide = np.clip(values.astype(np.int64), 0, 65535)
    return ((wide + 128) // 257).astype(np.uint8)


def float_to_uint8(values: np.ndarray) -> np.ndarray:
    """Float images: [0, 1] data is scaled by 255, anything larger is taken as 0..255; NaN -> 0."""
    values = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=255.0, neginf=0.0)
    if values.size and values.max() <= 1.0:
        values = values * 255.0
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def _gray_to_rgb(gray: np.ndarray) -> Image.Image:
    return Image.fromarray(np.repeat(gray[..., None], 3, axis=-1), "RGB")


def _draft_reduced(image: Image.Image, draft_size: int | None, max_pixels: int) -> None:
    """Ask a JPEG decoder for the largest DCT reduction (1/2, 1/4, 1/8) that keeps both sides
    >= ``draft_size``, or the smallest one that brings the image under ``max_pixels``."""
    if image.format not in _DRAFTABLE:
        return
    width, height = image.size
    scale = 1
    if draft_size is not None:
        scale = max((s for s in (1, 2, 4, 8) if min(width, height) / s >= draft_size), default=1)
    while scale < 8 and _ceil_div(width, scale) * _ceil_div(height, scale) > max_pixels:
        scale *= 2
    if scale > 1:
        # draft() picks the largest reduction whose result is still >= the requested size.
        image.draft(image.mode if image.mode in ("L", "CMYK") else "RGB", (width // scale, height // scale))


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _too_large_reason(size: tuple[int, int], image_format: str | None, max_pixels: int) -> str:
    width, height = size
    if image_format in _DRAFTABLE:
        how = "even at 1/8 scale"
    else:
        how = f"and {image_format} cannot be decoded at a reduced scale"
    return f"{width} x {height} = {width * height:,} pixels is above the limit of {max_pixels:,} {how}"


def _describe(error: Exception) -> str:
    """A short, actionable reason for a decoding failure."""
    if isinstance(error, Image.DecompressionBombError):
        return f"refused by Pillow's decompression-bomb guard ({error})"
    if isinstance(error, UnidentifiedImageError):
        return "not an image format Pillow can read (or the header is corrupt)"
    if isinstance(error, FileNotFoundError):
        return "file not found"
    if isinstance(error, OSError) and "truncated" in str(error):
        return f"truncated file ({error})"
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


# ----------------------------------------------------------------------------------------
# Cheap validation at scan time (no pixel decoding for well-formed files)
# ----------------------------------------------------------------------------------------


def check_image(path: str | Path, *, max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """Validate ``path`` without decoding its pixels; returns its ``(width, height)``.

    Reads the header (format, size, mode) and checks that the mode converts to RGB and the
    size is usable (see :func:`load_rgb`). PNG: every chunk's CRC is verified, which finds
    truncated and corrupted files without inflating the pixels. JPEG: a file must end with
    the end-of-image marker; the rare file that does not (truncated, or valid with trailing
    bytes) is decoded once at 1/8 scale to tell which. Other formats: header only, their
    rare corruptions surface when packing. Raises :class:`ImageLoadError`.
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            size, mode, image_format = image.size, image.mode, image.format
            if not _mode_converts(mode):
                raise ImageLoadError(path, f"Pillow mode '{mode}' has no conversion to RGB")
            if _smallest_decodable_pixels(size, image_format) > max_pixels:
                raise ImageLoadError(path, _too_large_reason(size, image_format, max_pixels))
            if image_format == "PNG":
                image.verify()
    except ImageLoadError:
        raise
    except Exception as error:  # noqa: BLE001 - see load_rgb
        raise ImageLoadError(path, _describe(error)) from error
    if image_format in _DRAFTABLE and not _ends_with_jpeg_marker(path):
        load_rgb(path, draft_size=1, max_pixels=max_pixels)
    return size


def _smallest_decodable_pixels(size: tuple[int, int], image_format: str | None) -> int:
    """The fewest pixels a decode of this image can produce (JPEG: at 1/8 scale)."""
    width, height = size
    if image_format in _DRAFTABLE:
        return _ceil_div(width, 8) * _ceil_div(height, 8)
    return width * height


def _ends_with_jpeg_marker(path: Path) -> bool:
    """Whether the file ends with FF D9 once trailing padding (zeros, whitespace) is stripped."""
    with open(path, "rb") as handle:
        handle.seek(0, 2)
        handle.seek(max(0, handle.tell() - 1024))
        tail = handle.read()
    return tail.rstrip(b"\x00\r\n\t ").endswith(_JPEG_END_OF_IMAGE)


@lru_cache(maxsize=None)
def _mode_converts(mode: str) -> bool:
    """Whether :func:`to_rgb` handles Pillow mode ``mode`` (tried once on a 1x1 image)."""
    try:
        to_rgb(Image.new(mode, (1, 1)))
        return True
    except (ValueError, OSError):
        return False
