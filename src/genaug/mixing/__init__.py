"""Mixing: feathered halves, random rectangles, fractal bank and blend, SHB, online mixers.

The operations are pure functions over (N, C, H, W) tensors with the randomness passed
in, used both offline (writing a synthetic set) and online (in the training loop).
"""

from __future__ import annotations

from genaug.lazy import exported, lazy_exports

_LAZY = {
    "genaug.mixing.concat": (
        "feathered_halves", "feathered_mask", "mask_coverage", "random_orientation", "random_rect_mask", "random_rects",
        "rect_mix",
    ),
    "genaug.mixing.fractals": (
        "fractal_bank", "fractal_blend", "load_fractal_bank", "make_fractals", "sample_fractals", "save_fractal_pngs",
    ),
    "genaug.mixing.shb": (
        "HybridBlend", "hybrid_blend", "patch_grid", "scale_patch", "semantic_hybrid_blend", "shb_mask",
    ),
    "genaug.mixing.mixers": ("create_mixer",),
    "genaug.mixing.online": ("OnlineMixer",),
    "genaug.mixing.registry": ("MIXERS", "MIX_METHODS"),
    "genaug.mixing.config": ("MixConfig",),
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)


__all__ = sorted(exported(_LAZY))
