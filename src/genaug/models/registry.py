"""A small timm-style registry: build any classifier from its name.

Each architecture family is one module whose entrypoints are decorated with
``@MODELS.register("name")`` beside the architecture; :func:`create_model` calls the
entrypoint with ``num_classes`` and the keyword arguments it was given, and
``MODELS.names(pattern)`` lists the names. An entrypoint whose module needs a heavy import
of its own imports it inside (``resnet50``: torchvision, about 2 s a process).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from genaug.registry import Registry

if TYPE_CHECKING:
    from torch import nn

#: Model name -> ``entrypoint(num_classes, **kw) -> nn.Module``.
MODELS = Registry(
    "model",
    key="model",
    discover=("genaug.models.preact_resnet", "genaug.models.wide_resnet", "genaug.models.torchvision_models"),
)


def create_model(name: str, num_classes: int, **kwargs) -> "nn.Module":
    """A randomly initialised classifier ``name`` with ``num_classes`` outputs.

    Keyword arguments go to the entrypoint; all of them accept ``width`` (channel
    multiplier, default 1.0) and ``in_channels`` (default 3).
    """
    entrypoint = MODELS.get(name)
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    return entrypoint(num_classes=num_classes, **kwargs)
