"""Editors: name -> a diffusers pipeline wrapper that turns work items into images.

Adding an editor = one module in this package with a class decorated by
``@EDITORS.register("name")``; its facts (``default_model``, ``needs_source``, ...) are its
class attributes. The package's modules are imported when the registry is first read.
Nothing here imports torch or diffusers until a model is loaded, so a config naming an
editor is checked when it is loaded.
"""

from __future__ import annotations

import pkgutil

from genaug.generation.editors.base import SCHEDULERS, Editor, SourceFetcher
from genaug.registry import Registry

#: Editor name -> its :class:`Editor` class; facts read off the class: ``default_model``, ``needs_source``, ...
EDITORS = Registry(
    "editor",
    key="editor.name",
    discover=tuple(f"{__name__}.{module.name}" for module in pkgutil.iter_modules(__path__) if module.name != "base"),
)


def create_editor(config, sources: SourceFetcher | None = None, device: str = "auto", dtype: str = "auto") -> Editor:
    """Build the editor ``config.name`` (an ``EditorConfig``); its pipeline loads on first use."""
    return EDITORS.get(config.name)(config, sources=sources, device=device, dtype=dtype)


__all__ = ["EDITORS", "SCHEDULERS", "Editor", "SourceFetcher", "create_editor"]
