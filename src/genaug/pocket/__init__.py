"""The pocket world: styled 16x16 digits and the tiny CLIP / SD / InstructPix2Pix genaug trains on them.

Public API: :func:`build_pocket`, :func:`pocket_info`, :func:`pocket_paths`,
:func:`pocket_model_dir` (imported lazily so ``genaug.pocket.render`` stays light).
"""

from __future__ import annotations

from genaug.lazy import lazy_exports

__all__ = ["build_pocket", "pocket_info", "pocket_paths", "pocket_model_dir"]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "genaug.pocket.build": ("build_pocket",),
        "genaug.pocket.store": ("pocket_info", "pocket_paths", "pocket_model_dir"),
    },
)
