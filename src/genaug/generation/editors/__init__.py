"""Editors: name -> a diffusers pipeline wrapper that turns work items into images.

Adding an editor = one module with a class decorated by :func:`register_editor`, plus its
import at the bottom of this file. Nothing here imports diffusers until a model is loaded.
"""

from __future__ import annotations

from genaug.generation.editors.base import SCHEDULERS, Editor, SourceFetcher

EDITORS: dict[str, type[Editor]] = {}


def register_editor(cls: type[Editor]) -> type[Editor]:
    """Class decorator: make ``cls`` available under ``cls.name``."""
    if cls.name in EDITORS:
        raise ValueError(f"an editor named {cls.name!r} is already registered")
    EDITORS[cls.name] = cls
    return cls


def editor_names() -> list[str]:
    return sorted(EDITORS)


def create_editor(config, sources: SourceFetcher | None = None, device: str = "auto", dtype: str = "auto") -> Editor:
    """Build the editor ``config.name`` (an ``EditorConfig``); its pipeline loads on first use."""
    if config.name not in EDITORS:
        raise ValueError(f"unknown editor {config.name!r}; editors: {editor_names()}")
    return EDITORS[config.name](config, sources=sources, device=device, dtype=dtype)


from genaug.generation.editors import img2img, instruct, txt2img  # noqa: E402,F401  (registrations)
from genaug.generation.editors import dafusion, diffmix, real_guidance  # noqa: E402,F401  (registrations)

__all__ = ["EDITORS", "SCHEDULERS", "Editor", "SourceFetcher", "create_editor", "editor_names", "register_editor"]
