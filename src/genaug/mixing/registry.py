"""The mixing registries: online mixers (training loop) and offline mix methods (``mix`` stage).

Importing this module needs no torch: built-in entries are registered by path and
imported when used, so a config naming them (``mixer: cutmix``, ``methods: [fractal]``)
and their parameters (``mixer_kwargs``, a ``fractal: {...}`` block) are checked when it is
loaded. Each online mixer declares what the trainer must hand it besides its YAML
parameters: ``needs_normalisation`` (the batches' ``mean``/``std``) and
``needs_fractal_bank`` (a fractal bank built from ``mixer_kwargs.bank``); ``plain`` marks
the mixer that is a plain forward pass. A mixer of one's own is one class decorated with
:func:`genaug.mixing.online.register_mixer`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from genaug.config import StrictModel
from genaug.mixing.params import FractalBankConfig, ShbConfig
from genaug.registry import Registry

__all__ = ["MIXERS", "MIX_METHODS"]


class NoParams(StrictModel):
    """A mixer without parameters."""


class AlphaParams(StrictModel):
    alpha: float = Field(default=1.0, ge=0.0)


class ManifoldMixupParams(StrictModel):
    alpha: float = Field(default=2.0, ge=0.0)
    layers: list[int] | None = None


class PuzzleMixParams(StrictModel):
    alpha: float = Field(default=1.0, ge=0.0)
    beta: float = 1.2
    gamma: float = 0.5
    eta: float = 0.2
    n_labels: int = 3
    neigh_size: int = 4
    transport: bool = True
    transport_eps: float = 0.8
    transport_cell: int = 4
    block_nums: list[int] | None = None


class FractalMixParams(StrictModel):
    bank: FractalBankConfig = Field(default_factory=FractalBankConfig)
    low: float = Field(default=0.2, ge=0.0, le=1.0)
    high: float = Field(default=0.3, ge=0.0, le=1.0)


#: Online mixer name -> its class (``genaug.mixing.online``); ``params``: its YAML keyword arguments.
MIXERS = Registry("mixer", key="mixer")
MIXERS.register("none", "genaug.mixing.online:NoMix", params=NoParams, plain=True)
MIXERS.register("mixup", "genaug.mixing.online:Mixup", params=AlphaParams)
MIXERS.register("manifold_mixup", "genaug.mixing.online:ManifoldMixup", params=ManifoldMixupParams)
MIXERS.register("cutmix", "genaug.mixing.online:CutMix", params=AlphaParams)
MIXERS.register("puzzlemix", "genaug.mixing.online:PuzzleMix", params=PuzzleMixParams, needs_normalisation=True)
MIXERS.register(
    "fractal", "genaug.mixing.online:FractalMix", params=FractalMixParams, needs_normalisation=True, needs_fractal_bank=True
)


class ConcatParams(StrictModel):
    """``concat``: the feathered band in pixels (the stage's ``band``)."""

    band: int = Field(default=20, ge=0)


class RectParams(StrictModel):
    """``rect``: the area share of the edit's rectangles (the stage's ``rect_ratio``)."""

    ratio: float = Field(default=0.5, gt=0.0, le=1.0)


class FractalParams(StrictModel):
    """``fractal``: blend weight and what the fractal is blended into (``fractal_alpha``, ``fractal_on``)."""

    alpha: float = Field(default=0.2, ge=0.0, le=1.0)
    on: Literal["concat", "generated"] = "concat"


#: Offline mix method name -> ``mixer(batch, config, resources) -> Mixed`` (``genaug.mixing.stage``).
#: ``fields``: the MixConfig fields a built-in method's block sets.
MIX_METHODS = Registry("mix method", key="methods")
MIX_METHODS.register("concat", "genaug.mixing.stage:concat_mixer", params=ConcatParams, fields={"band": "band"})
MIX_METHODS.register("rect", "genaug.mixing.stage:rect_mixer", params=RectParams, fields={"ratio": "rect_ratio"})
MIX_METHODS.register(
    "fractal", "genaug.mixing.stage:fractal_mixer", params=FractalParams,
    fields={"alpha": "fractal_alpha", "on": "fractal_on"}, resources=("bank",),
)
MIX_METHODS.register("shb", "genaug.mixing.stage:shb_mixer", params=ShbConfig, resources=("clip",))
