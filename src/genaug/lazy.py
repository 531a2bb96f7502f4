"""Names a package exports but imports on first use (PEP 562 module ``__getattr__``).

Reading a config must not import torch, so the packages whose members need it
(generation, mixing, training, filtering, sdi, experiment, rehearsal) and the config
re-exports list each public name with the module that defines it::

    _LAZY = {"generate": "genaug.generation.stage", ...}
    __getattr__, __dir__ = lazy_exports(__name__, _LAZY)
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, table: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``: ``name`` -> ``table[name]``'s attribute."""

    def __getattr__(name: str) -> Any:
        if name in table:
            return getattr(importlib.import_module(table[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(table))

    return __getattr__, __dir__
