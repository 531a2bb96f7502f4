"""Editors: name -> a diffusers pipeline wrapper that turns work items into images.

Adding an editor = one module in this package with a class decorated by
:func:`register_editor`; the package's modules are imported when the registry is first
read. Nothing here imports torch or diffusers until a model is loaded, so a config naming
an editor is checked when it is loaded.
"""

from __future__ import annotations

import pkgutil

from genaug.generation.editors.base import SCHEDULERS, Editor, SourceFetcher
from genaug.registry import Registry

#: Editor name -> its :class:`Editor` class; metadata: ``default_model``, ``needs_source``.
EDITORS = Registry(
    "editor",
    key="editor.name",
    discover=tuple(f"{__name__}.{module.name}" for module in pkgutil.iter_modules(__path__) if module.name != "base"),
)


def register_editor(cls: type[Editor]) -> type[Editor]:
    """Class decorator: make ``cls`` available under ``cls.name`` (``editor: {name: ...}``)."""
    EDITORS.register(cls.name, cls, default_model=cls.default_model, needs_source=cls.needs_source)
    return cls


def editor_names(pattern: str | None = None) -> list[str]:
    return EDITORS.names(pattern)


def create_editor(config, sources: SourceFetcher | None = None, device: str = "auto", dtype: str = "auto") -> Editor:
    """Build the editor ``config.name`` (an ``EditorConfig``); its pipeline loads on first use."""
    if config.name not in EDITORS:
        raise ValueError(f"unknown editor {config.name!r}; editors: {editor_names()}")
    return EDITORS.get(config.name)(config, sources=sources, device=device, dtype=dtype)


__all__ = ["EDITORS", "SCHEDULERS", "Editor", "SourceFetcher", "create_editor", "editor_names", "register_editor"]
