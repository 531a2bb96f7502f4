"""GENAUG_HOME: where genaug keeps what it rebuilds or caches.

Default ``~/.cache/genaug``; override with the ``GENAUG_HOME`` environment variable.
Holds packed dataset caches, rebuilt pocket models and fractal banks. Everything in it
can be deleted and is remade on demand.
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path


def genaug_home() -> Path:
    """The root folder of genaug's caches (created on first use)."""
    root = Path(os.environ.get("GENAUG_HOME", Path.home() / ".cache" / "genaug")).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def cache_dir(*parts: str) -> Path:
    """A sub-folder of GENAUG_HOME, e.g. ``cache_dir("packed")``."""
    path = genaug_home().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def packaged_config(name: str) -> Path:
    """A config shipped inside the package (``genaug/configs/``: the demo's; the repository's ``configs/demo.yaml`` links to it)."""
    path = Path(str(files("genaug") / "configs" / name))
    if not path.is_file():
        raise FileNotFoundError(f"no packaged config named {name!r} in {path.parent}")
    return path
