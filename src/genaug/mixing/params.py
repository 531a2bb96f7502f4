"""Parameter models of the mix stage's config and of the mixing registries' entries: the
fractal bank (:class:`FractalBankConfig`) and semantic hybrid blending (:class:`ShbConfig`).

Below :mod:`genaug.mixing.config` (which re-exports them) and :mod:`genaug.mixing.registry`,
which both use them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import model_validator

from genaug.config import StrictModel

__all__ = ["FractalBankConfig", "ShbConfig"]


class FractalBankConfig(StrictModel):
    """A fractal bank (docs/methods/diffusemix.md): ``count`` seeded IFS fractals of side ``size``, or a folder of images."""

    count: int = 256
    size: int = 64
    seed: int = 0
    folder: Path | None = None

    @model_validator(mode="after")
    def _check(self) -> "FractalBankConfig":
        if self.count < 1 or self.size < 8:
            raise ValueError(f"need count >= 1 and size >= 8, got count={self.count}, size={self.size}")
        return self


class ShbConfig(StrictModel):
    """Semantic hybrid blending in the ``mix`` stage (docs/methods/semantic-hybrid-blending.md; ``genaug.mixing.semantic_hybrid_blend``).

    ``patch`` / ``stride`` in pixels of the original image; None scales them with the image
    (``genaug.mixing.scale_patch``: 32 / 16 from 64 px up, half the image below; a
    ``patch`` without ``stride`` gets overlap 0.5). ``percentile`` of the least class-like
    pixels come back from the original, after Gaussian smoothing with ``sigma``; ``mode``
    ``binary`` thresholds the smoothed mask at 0.5, ``soft`` blends with it. ``clip``:
    ``pocket``, a hub id (``openai/clip-vit-base-patch32``, the reference) or a folder;
    ``prompt`` takes the class name at ``{}``. ``clip_batch_size`` patches go through CLIP
    at once (None: about 20 MB of preprocessed pixels, 34 patches at 224 px).
    ``heatmaps`` also saves each pair's similarity map as ``heatmaps/<id>.png`` in the set
    (grey levels = normalised similarity), referenced from the record. ``size`` runs SHB at
    that side length instead of the original's (docs/methods/semantic-hybrid-blending.md: at the generation resolution,
    e.g. 256 for CIFAR edits made at 256 px, where a 32 px patch grid is more than 1x1): the
    original is upsampled and the edit resized from its own file to ``size`` x ``size``, and
    the output set holds images of that size (training resizes them to its recipe's size).
    """

    patch: int | None = None
    size: int | None = None
    stride: int | None = None
    percentile: float = 30.0
    sigma: float = 5 / 3
    mode: Literal["binary", "soft"] = "binary"
    clip: str = "pocket"
    prompt: str = "a photo of a {}"
    clip_batch_size: int | None = None
    heatmaps: bool = False
    device: Literal["auto", "cpu", "cuda"] = "auto"

    @model_validator(mode="after")
    def _check(self) -> "ShbConfig":
        for name in ("patch", "stride", "size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 (or null to scale with the image), got {value}")
        if not 0.0 <= self.percentile <= 100.0:
            raise ValueError(f"percentile must be in [0, 100], got {self.percentile}")
        if self.sigma < 0 or (self.clip_batch_size is not None and self.clip_batch_size < 1):
            raise ValueError("sigma must be >= 0 and clip_batch_size >= 1 (or null)")
        if self.prompt.count("{}") != 1:
            raise ValueError(f"prompt must hold exactly one '{{}}' for the class name, got {self.prompt!r}")
        return self
