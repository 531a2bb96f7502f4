"""Mixing: feathered halves, random rectangles, fractal bank and blend, SHB, online mixers.

The operations are pure functions over (N, C, H, W) tensors with the randomness passed
in, used both offline (writing a synthetic set) and online (in the training loop).
"""

from __future__ import annotations

from typing import Any

from genaug.mixing.concat import (
    feathered_halves,
    feathered_mask,
    mask_coverage,
    random_orientation,
    random_rect_mask,
    random_rects,
    rect_mix,
)
from genaug.mixing.fractals import (
    fractal_bank,
    fractal_blend,
    load_fractal_bank,
    make_fractals,
    sample_fractals,
    save_fractal_pngs,
)
from genaug.mixing.shb import (
    HybridBlend,
    hybrid_blend,
    patch_grid,
    scale_patch,
    semantic_hybrid_blend,
    shb_mask,
)

# The online mixers import the training-loop side of genaug; load them on first use so
# the pure operations above stay light to import.
_ONLINE = ("create_mixer", "list_mixers", "OnlineMixer")


def __getattr__(name: str) -> Any:
    if name in _ONLINE:
        from genaug.mixing import online

        return getattr(online, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_ONLINE))


__all__ = [
    "feathered_halves",
    "feathered_mask",
    "random_orientation",
    "random_rect_mask",
    "random_rects",
    "rect_mix",
    "mask_coverage",
    "fractal_blend",
    "make_fractals",
    "fractal_bank",
    "load_fractal_bank",
    "sample_fractals",
    "save_fractal_pngs",
    "patch_grid",
    "scale_patch",
    "shb_mask",
    "hybrid_blend",
    "semantic_hybrid_blend",
    "HybridBlend",
    *_ONLINE,
]
