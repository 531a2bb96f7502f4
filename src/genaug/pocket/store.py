"""Where the pocket models live, and what is known about them.

Precedence of :func:`pocket_root` (first that exists wins):

1. ``$GENAUG_POCKET_DIR`` if set (an explicit folder made by ``genaug pocket build --out``);
2. ``$GENAUG_HOME/pocket`` when a **complete** full rebuild is there (``genaug pocket build``
   writes ``build.json`` last, so a killed build never shadows good weights);
3. the weights shipped inside the package (``genaug/pocket/weights``).

Quick builds (``--quick``) go to ``$GENAUG_HOME/pocket-quick`` and never take precedence.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from genaug.home import genaug_home

MODEL_NAMES = ("clip", "sd", "ip2p")
SHIPPED_DIR = Path(__file__).resolve().parent / "weights"
COMPLETE_MARKER = "build.json"


def rebuilt_dir(quick: bool = False) -> Path:
    """Default output folder of ``genaug pocket build`` (``--quick``: a separate folder)."""
    return genaug_home() / ("pocket-quick" if quick else "pocket")


def is_complete(root: Path) -> bool:
    return (root / COMPLETE_MARKER).is_file() and all((root / m).is_dir() for m in MODEL_NAMES)


def pocket_root() -> tuple[Path, str]:
    """The folder holding ``clip``, ``sd``, ``ip2p`` and where it came from (env|rebuilt|shipped)."""
    env = os.environ.get("GENAUG_POCKET_DIR")
    if env:
        return Path(env).expanduser(), "env"
    home = os.environ.get("GENAUG_HOME")
    rebuilt = Path(home).expanduser() / "pocket" if home else Path.home() / ".cache" / "genaug" / "pocket"
    if is_complete(rebuilt):
        return rebuilt, "rebuilt"
    return SHIPPED_DIR, "shipped"


def pocket_paths() -> dict[str, Path]:
    """``{"root", "clip", "sd", "ip2p"}`` folders by the precedence in the module doc."""
    root, _ = pocket_root()
    return {"root": root, **{m: root / m for m in MODEL_NAMES}}


def pocket_model_dir(name: str) -> Path:
    """Folder of one pocket model (``clip``, ``sd`` or ``ip2p``), loadable with from_pretrained."""
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown pocket model {name!r}; choose from {', '.join(MODEL_NAMES)}")
    path = pocket_paths()[name]
    if not path.is_dir():
        raise FileNotFoundError(
            f"pocket {name} not found at {path}; run `genaug pocket build` (or set GENAUG_POCKET_DIR)"
        )
    return path


def _folder_mb(path: Path) -> float:
    return round(sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6, 2)


def _model_info(root: Path, name: str, trained: dict[str, Any]) -> dict[str, Any]:
    """Path, size on disk and training record of one model (``params`` counts what its build trained)."""
    parts = {"clip": ["clip"], "sd": ["vae", "sd_unet"], "ip2p": ["ip2p_unet"]}[name]
    info: dict[str, Any] = {"path": str(root / name), "exists": (root / name).is_dir()}
    info["size_mb"] = _folder_mb(root / name) if info["exists"] else None
    info["trained"] = {p: trained[p] for p in parts if p in trained}
    if info["trained"]:
        info["params"] = sum(t.get("params", 0) for t in info["trained"].values())
        info["train_seconds"] = round(sum(t.get("train_seconds", 0) for t in info["trained"].values()), 1)
    return info


def pocket_info(root: str | Path | None = None) -> dict[str, Any]:
    """Where the pocket models are, their spec hash, sizes and measured quality (``quality.json``)."""
    source = "given"
    if root is None:
        root, source = pocket_root()
    root = Path(root)
    build = json.loads((root / COMPLETE_MARKER).read_text()) if (root / COMPLETE_MARKER).is_file() else {}
    quality = json.loads((root / "quality.json").read_text()) if (root / "quality.json").is_file() else None
    return {
        "root": str(root),
        "source": source,
        "complete": is_complete(root),
        "spec_hash": build.get("spec_hash"),
        "quick": build.get("quick"),
        "models": {m: _model_info(root, m, build.get("models", {})) for m in MODEL_NAMES},
        "quality": quality,
    }


def format_pocket_info(info: dict[str, Any] | None = None) -> str:
    """Human-readable :func:`pocket_info` (what ``genaug pocket info`` prints)."""
    info = pocket_info() if info is None else info
    lines = [
        f"pocket models: {info['root']} ({info['source']}{', complete' if info['complete'] else ', INCOMPLETE'})",
        f"spec hash: {info['spec_hash']}" + (" (quick build)" if info.get("quick") else ""),
    ]
    for name, m in info["models"].items():
        extra = f", {m['params'] / 1e6:.2f} M params" if m.get("params") else ""
        lines.append(f"  {name:5s} {m['path']} ({m['size_mb']} MB{extra})" if m["exists"] else f"  {name:5s} missing")
    quality = info.get("quality")
    if quality:
        for gate, g in quality["gates"].items():
            lines.append(f"  {gate:22s} {g['value']:.3f}  (gate >= {g['threshold']}: {'pass' if g['passed'] else 'FAIL'})")
        seconds = quality.get("build_seconds", {})
        if seconds:
            lines.append("  build seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items() if isinstance(v, (int, float))))
    else:
        lines.append("  quality: not measured")
    return "\n".join(lines)
