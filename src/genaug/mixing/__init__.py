"""Mixing: feathered halves, random rectangles, fractal bank and blend, SHB, online mixers.

The operations are pure functions over (N, C, H, W) tensors with the randomness passed
in, used both offline (writing a synthetic set) and online (in the training loop).
"""

from __future__ import annotations

from genaug.lazy import lazy_exports

_LAZY = {
    "feathered_halves": "genaug.mixing.concat",
    "feathered_mask": "genaug.mixing.concat",
    "mask_coverage": "genaug.mixing.concat",
    "random_orientation": "genaug.mixing.concat",
    "random_rect_mask": "genaug.mixing.concat",
    "random_rects": "genaug.mixing.concat",
    "rect_mix": "genaug.mixing.concat",
    "fractal_bank": "genaug.mixing.fractals",
    "fractal_blend": "genaug.mixing.fractals",
    "load_fractal_bank": "genaug.mixing.fractals",
    "make_fractals": "genaug.mixing.fractals",
    "sample_fractals": "genaug.mixing.fractals",
    "save_fractal_pngs": "genaug.mixing.fractals",
    "HybridBlend": "genaug.mixing.shb",
    "hybrid_blend": "genaug.mixing.shb",
    "patch_grid": "genaug.mixing.shb",
    "scale_patch": "genaug.mixing.shb",
    "semantic_hybrid_blend": "genaug.mixing.shb",
    "shb_mask": "genaug.mixing.shb",
    "create_mixer": "genaug.mixing.mixers",
    "OnlineMixer": "genaug.mixing.online",
    "MIXERS": "genaug.mixing.registry",
    "MIX_METHODS": "genaug.mixing.registry",
    "MixConfig": "genaug.mixing.config",
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)


__all__ = sorted(_LAZY)
