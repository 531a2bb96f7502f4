"""The training input pipeline: packed uint8 tensors and batched augmentation.

The whole training set lives in memory as one uint8 tensor (N, 3, S, S). An epoch is a
seeded index list; a batch is gathered by indexing, augmented on the batch with
per-sample random parameters, then converted to float and normalised. No decoding, no
per-image Python, no worker processes: this is what makes it several times faster than
``ImageFolder`` + PIL transforms (see ``benchmarks/input_pipeline.py``).

Augmentations match torchvision's for the same parameters (tests check it):

- random crop with padding = ``pad(img, padding, padding_mode)`` then ``crop(img, top, left, c, c)``;
  horizontal flip = ``hflip``. Both are one ``gather`` with per-sample indices: a flipped
  sample simply reads its columns right to left.
- rotation = ``rotate(img, angle)`` (nearest, zero fill, about the centre, before the crop
  as in SDI's transform order), via ``affine_grid`` + ``grid_sample``.
- evaluation takes the centre crop (``CenterCrop``'s rounding).
- normalisation: ``(x / 255 - mean) / std``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from genaug.data.base import RealDataset
from genaug.training.config import AugmentationConfig


def pack_dataset(dataset: RealDataset, size: int | None = None) -> torch.Tensor:
    """``dataset``'s images as one uint8 tensor (N, 3, S, S), resized to ``size`` if given.

    :func:`genaug.data.packed.pack_images`: images of another size are resized (so synthetic
    images meet the pipeline at the real images' size, docs/methods/training-recipes.md), datasets of files
    are decoded once and cached in GENAUG_HOME.
    """
    from genaug.data.packed import pack_images

    return pack_images(dataset, size)


@dataclass(frozen=True)
class AugmentParams:
    """Per-sample random parameters of one batch (or one epoch) of train augmentation.

    ``top``/``left`` index the crop's corner in the zero-padded image; ``flip`` selects a
    horizontal flip; ``angle`` is the rotation in degrees (counter-clockwise).
    """

    top: torch.Tensor
    left: torch.Tensor
    flip: torch.Tensor
    angle: torch.Tensor

    def __len__(self) -> int:
        return len(self.top)

    def __getitem__(self, index: slice | torch.Tensor) -> "AugmentParams":
        return AugmentParams(self.top[index], self.left[index], self.flip[index], self.angle[index])


def draw_augment_params(
    n: int,
    image_size: int,
    crop: int,
    padding: int,
    flip: bool,
    rotation: float,
    generator: torch.Generator,
) -> AugmentParams:
    """Draw ``n`` samples' parameters: offsets uniform over valid crops (``RandomCrop``),
    flip with probability 1/2, angle uniform in [-rotation, rotation] (``RandomRotation``)."""
    span = image_size + 2 * padding - crop + 1
    if span < 1:
        raise ValueError(f"crop {crop} does not fit in image_size {image_size} + 2 * padding {padding}")
    top = torch.randint(0, span, (n,), generator=generator)
    left = torch.randint(0, span, (n,), generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5 if flip else torch.zeros(n, dtype=torch.bool)
    angle = (torch.rand(n, generator=generator) * 2 - 1) * rotation if rotation > 0 else torch.zeros(n)
    return AugmentParams(top, left, flips, angle)


#: torchvision's padding modes -> ``F.pad`` modes.
PADDING_MODES = {"constant": "constant", "edge": "replicate", "reflect": "reflect"}


def crop_and_flip(
    images: torch.Tensor,
    top: torch.Tensor,
    left: torch.Tensor,
    flip: torch.Tensor,
    crop: int,
    padding: int,
    padding_mode: str = "constant",
) -> torch.Tensor:
    """Per-sample ``crop(pad(x, padding, padding_mode), top, left, crop, crop)``, then ``hflip``
    where ``flip``. ``padding_mode`` as torchvision's: constant (zeros), edge or reflect.

    One ``gather`` over the flattened padded images: sample i reads rows ``top_i + r`` and
    columns ``left_i + c`` (or ``left_i + crop - 1 - c`` when flipped). Any dtype, (N, C, H, W).
    """
    n, channels = images.shape[:2]
    device = images.device
    padded = F.pad(images, (padding,) * 4, mode=PADDING_MODES[padding_mode]) if padding else images
    width = padded.shape[-1]
    offsets = torch.arange(crop, device=device)
    rows = top.to(device)[:, None] + offsets  # (N, crop)
    columns = left.to(device)[:, None] + torch.where(flip.to(device)[:, None], crop - 1 - offsets, offsets)
    index = (rows[:, :, None] * width + columns[:, None, :]).view(n, 1, crop * crop).expand(n, channels, -1)
    return padded.reshape(n, channels, -1).gather(2, index).view(n, channels, crop, crop)


def rotate(images: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate each image by its angle (degrees, counter-clockwise) about the centre.

    Nearest neighbour, zero fill, same size, like torchvision's ``rotate``. Returns float32.
    """
    n, _, height, width = images.shape
    radians = -angles.to(device=images.device, dtype=torch.float32) * (math.pi / 180)
    cos, sin = torch.cos(radians), torch.sin(radians)
    # torchvision's inverse rotation in pixel units is [[cos, sin], [-sin, cos]] (angle
    # negated); affine_grid works in [-1, 1] units per axis, hence the aspect factors.
    theta = torch.zeros(n, 2, 3, device=images.device)
    theta[:, 0, 0] = cos
    theta[:, 0, 1] = sin * height / width
    theta[:, 1, 0] = -sin * width / height
    theta[:, 1, 1] = cos
    grid = F.affine_grid(theta, [n, images.shape[1], height, width], align_corners=False)
    return F.grid_sample(images.float(), grid, mode="nearest", padding_mode="zeros", align_corners=False)


def center_crop(images: torch.Tensor, crop: int) -> torch.Tensor:
    """The centre ``crop`` x ``crop`` of every image (``CenterCrop``'s rounding)."""
    height, width = images.shape[-2:]
    if (height, width) == (crop, crop):
        return images
    top = int(round((height - crop) / 2.0))
    left = int(round((width - crop) / 2.0))
    return images[..., top : top + crop, left : left + crop]


def normalize(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """``(x / 255 - mean) / std`` as float32; ``mean``, ``std`` shaped (1, C, 1, 1).

    One fused, out-of-place ``x * (1 / (255 std)) - mean / std`` (never writes into ``images``).
    """
    return torch.addcmul(-mean / std, images.to(torch.float32), 1.0 / (255.0 * std))


class InputPipeline:
    """Train and eval transforms of one resolved :class:`AugmentationConfig`, on batches."""

    def __init__(self, augmentation: AugmentationConfig, device: torch.device | str = "cpu") -> None:
        missing = [name for name, value in augmentation.model_dump().items() if value is None]
        if missing:
            raise ValueError(f"augmentation: {missing} unset; resolve the config first (training.resolve_recipe)")
        self.augmentation = augmentation
        self.mean = torch.tensor(augmentation.mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(augmentation.std, dtype=torch.float32, device=device).view(1, -1, 1, 1)

    def draw(self, n: int, generator: torch.Generator) -> AugmentParams:
        """Random parameters for ``n`` training samples."""
        spec = self.augmentation
        return draw_augment_params(n, spec.image_size, spec.crop, spec.padding, spec.flip, spec.rotation, generator)

    def train(self, images: torch.Tensor, params: AugmentParams) -> torch.Tensor:
        """Augment a uint8 batch (N, 3, S, S) with ``params`` and normalise it."""
        spec = self.augmentation
        if spec.rotation > 0:
            images = rotate(images, params.angle)
        images = crop_and_flip(images, params.top, params.left, params.flip, spec.crop, spec.padding, spec.padding_mode)
        return normalize(images, self.mean, self.std)

    def eval(self, images: torch.Tensor) -> torch.Tensor:
        """Centre-crop and normalise a uint8 batch."""
        return normalize(center_crop(images, self.augmentation.crop), self.mean, self.std)


def epoch_batches(n: int, batch_size: int) -> list[slice]:
    """Consecutive batch slices over ``n`` positions; the last one may be short."""
    return [slice(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]
