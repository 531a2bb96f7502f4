"""The pocket world: styled 16x16 digits and the tiny CLIP / SD / InstructPix2Pix genaug trains on them.

Public API: :func:`build_pocket`, :func:`pocket_info`, :func:`pocket_paths`,
:func:`pocket_model_dir` (imported lazily so ``genaug.pocket.render`` stays light).
"""

from __future__ import annotations

__all__ = ["build_pocket", "pocket_info", "pocket_paths", "pocket_model_dir"]


def __getattr__(name: str):
    if name == "build_pocket":
        from genaug.pocket.build import build_pocket

        return build_pocket
    if name in ("pocket_info", "pocket_paths", "pocket_model_dir"):
        from genaug.pocket import store

        return getattr(store, name)
    raise AttributeError(name)
