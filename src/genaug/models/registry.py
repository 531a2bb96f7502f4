"""A small timm-style registry: build any classifier from its name.

Each architecture family is one module whose entrypoints are decorated with
:func:`register_model`; :func:`create_model` calls the entrypoint with ``num_classes`` and
the keyword arguments it was given, and :func:`list_models` discovers the names.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import TypeVar

from torch import nn

EntryPoint = TypeVar("EntryPoint", bound=Callable[..., nn.Module])

_ENTRYPOINTS: dict[str, Callable[..., nn.Module]] = {}


def register_model(entrypoint: EntryPoint) -> EntryPoint:
    """Register ``entrypoint(num_classes, **kw) -> nn.Module`` under its function name."""
    name = entrypoint.__name__
    if name in _ENTRYPOINTS:
        raise ValueError(f"model '{name}' is registered twice")
    _ENTRYPOINTS[name] = entrypoint
    return entrypoint


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching the shell-style ``pattern``, sorted."""
    return sorted(fnmatch.filter(_ENTRYPOINTS, pattern))


def create_model(name: str, num_classes: int, **kwargs) -> nn.Module:
    """A randomly initialised classifier ``name`` with ``num_classes`` outputs.

    Keyword arguments go to the entrypoint; all of them accept ``width`` (channel
    multiplier, default 1.0) and ``in_channels`` (default 3).
    """
    try:
        entrypoint = _ENTRYPOINTS[name]
    except KeyError:
        raise ValueError(f"unknown model '{name}'; known models: {', '.join(list_models())}") from None
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    return entrypoint(num_classes=num_classes, **kwargs)
