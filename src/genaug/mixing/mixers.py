"""The online mixers a config names (``mixer: cutmix``, docs/methods/online-mixing.md), each
registered in :data:`genaug.mixing.registry.MIXERS` beside its params model.

A registered mixer is a function ``build(**kwargs)`` returning the mixer the trainer calls
once per batch (:class:`genaug.mixing.online.OnlineMixer`); it imports the torch code of
:mod:`genaug.mixing.online` when called, so this module, and a config naming a mixer, need
no torch. Its facts say what the trainer hands it besides its YAML parameters:
``needs_normalisation`` (the batches' ``mean``/``std``), ``needs_fractal_bank`` (a fractal
bank built from ``mixer_kwargs.bank``); ``plain`` marks the plain forward pass. A mixer of
one's own is one more decorated function (in a module imported before use).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from genaug.config import StrictModel
from genaug.mixing.config import FractalBankConfig
from genaug.mixing.registry import MIXERS

if TYPE_CHECKING:
    from genaug.mixing.online import OnlineMixer

__all__ = ["create_mixer"]


def create_mixer(name: str, **kwargs: Any) -> "OnlineMixer":
    """The online mixer ``name`` built with ``kwargs`` (its constructor's parameters, including
    what the trainer hands it: ``mean``/``std``, ``fractals``); an unknown name is a ConfigError."""
    return MIXERS.get(name)(**kwargs)


class NoParams(StrictModel):
    """A mixer without parameters."""


@MIXERS.register("none", params=NoParams, plain=True)
def none() -> "OnlineMixer":
    """No mixing: a plain forward pass."""
    from genaug.mixing.online import NoMix

    return NoMix()


class AlphaParams(StrictModel):
    alpha: float = Field(default=1.0, ge=0.0)


@MIXERS.register("mixup", params=AlphaParams)
def mixup(**kwargs: Any) -> "OnlineMixer":
    """mixup: convex combinations of image pairs, lambda ~ Beta(alpha, alpha)."""
    from genaug.mixing.online import Mixup

    return Mixup(**kwargs)


class ManifoldMixupParams(StrictModel):
    alpha: float = Field(default=2.0, ge=0.0)
    layers: list[int] | None = None


@MIXERS.register("manifold_mixup", params=ManifoldMixupParams)
def manifold_mixup(**kwargs: Any) -> "OnlineMixer":
    """Manifold mixup: mixup of hidden states at a layer drawn from ``layers``."""
    from genaug.mixing.online import ManifoldMixup

    return ManifoldMixup(**kwargs)


@MIXERS.register("cutmix", params=AlphaParams)
def cutmix(**kwargs: Any) -> "OnlineMixer":
    """CutMix: a box of the partner pasted in, labels mixed by the area kept."""
    from genaug.mixing.online import CutMix

    return CutMix(**kwargs)


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


@MIXERS.register("puzzlemix", params=PuzzleMixParams, needs_normalisation=True)
def puzzlemix(**kwargs: Any) -> "OnlineMixer":
    """PuzzleMix: saliency-guided block masks with optimal transport."""
    from genaug.mixing.online import PuzzleMix

    return PuzzleMix(**kwargs)


class FractalMixParams(StrictModel):
    bank: FractalBankConfig = Field(default_factory=FractalBankConfig)
    low: float = Field(default=0.2, ge=0.0, le=1.0)
    high: float = Field(default=0.3, ge=0.0, le=1.0)


@MIXERS.register("fractal", params=FractalMixParams, needs_normalisation=True, needs_fractal_bank=True)
def fractal(**kwargs: Any) -> "OnlineMixer":
    """Online fractal mixing: each image blended with a fractal of the bank at a weight in [low, high]."""
    from genaug.mixing.online import FractalMix

    return FractalMix(**kwargs)
