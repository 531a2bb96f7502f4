"""``build_tiny_pipeline``: one random tiny diffusion pipeline folder, as :mod:`genaug.pocket.tiny` builds it."""

from __future__ import annotations

from pathlib import Path

from genaug.pocket.tiny import write_tiny_models


def build_tiny_pipeline(kind: str, folder: str | Path, seed: int = 0) -> Path:
    """Write a random tiny pocket pipeline to ``folder``: ``sd`` (txt2img / img2img) or ``ip2p``."""
    if kind not in ("sd", "ip2p"):
        raise ValueError(f"kind must be 'sd' or 'ip2p', got {kind!r}")
    return write_tiny_models({kind: folder}, seed)[kind]
