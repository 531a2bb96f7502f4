"""Names a package exports but imports on first use (PEP 562 module ``__getattr__``).

Reading a config must not import torch, so the packages whose members need it
(generation, mixing, training, filtering, sdi, experiment, rehearsal) and the config
re-exports list each defining module with the public names it gives::

    _LAZY = {"genaug.generation.stage": ("generate",), ...}
    __getattr__, __dir__ = lazy_exports(__name__, _LAZY)
    __all__ = exported(_LAZY)
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["exported", "lazy_exports"]


def exported(table: Mapping[str, Sequence[str]]) -> list[str]:
    """The names a ``{module: names}`` table exports, in its order."""
    return [name for names in table.values() for name in names]


def lazy_exports(package: str, table: Mapping[str, Sequence[str]]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``: each name of ``table[module]`` is
    ``module``'s attribute of that name, imported on first use."""
    home = {name: module for module, names in table.items() for name in names}

    def __getattr__(name: str) -> Any:
        if name in home:
            return getattr(importlib.import_module(home[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(home))

    return __getattr__, __dir__
