"""A small timm-style registry: build any classifier from its name.

Each architecture family is one module whose entrypoints are decorated with
:func:`register_model`; :func:`create_model` calls the entrypoint with ``num_classes`` and
the keyword arguments it was given, and :func:`list_models` discovers the names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from torch import nn

from genaug.registry import Registry

EntryPoint = TypeVar("EntryPoint", bound=Callable[..., nn.Module])

#: Model name -> ``entrypoint(num_classes, **kw) -> nn.Module``.
MODELS = Registry("model", key="model")
MODELS.register("resnet50", "genaug.models.resnet:resnet50")  # torchvision's, imported on first use


def register_model(entrypoint: EntryPoint) -> EntryPoint:
    """Register ``entrypoint(num_classes, **kw) -> nn.Module`` under its function name."""
    return MODELS.register(entrypoint.__name__)(entrypoint)


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching the shell-style ``pattern``, sorted."""
    return MODELS.names(pattern)


def create_model(name: str, num_classes: int, **kwargs) -> nn.Module:
    """A randomly initialised classifier ``name`` with ``num_classes`` outputs.

    Keyword arguments go to the entrypoint; all of them accept ``width`` (channel
    multiplier, default 1.0) and ``in_channels`` (default 3).
    """
    if name not in MODELS:
        raise ValueError(f"unknown model '{name}'; known models: {', '.join(list_models())}")
    entrypoint = MODELS.get(name)
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    return entrypoint(num_classes=num_classes, **kwargs)
