"""Where a stage node's files are: its ``stage.json`` record, the sets it writes, an input reference.

What a stage's runner needs to find its input without importing the experiment runner (the
nodes are :class:`genaug.experiment.graph.StageNode`; anything with ``kind``, ``config`` and
``dir`` works).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genaug.registry import stage_kind

__all__ = ["STAGE_RECORD", "resolve_ref", "set_dir"]

STAGE_RECORD = "stage.json"


def set_dir(node: Any, method: str | None = None) -> Path:
    """The synthetic set a node writes (``method`` picks one set of a stage that makes several)."""
    return stage_kind(node.kind).folder_of(node.config, node.dir, method)


def resolve_ref(nodes: dict[str, Any], ref: str) -> tuple[Any, Path]:
    base, _, method = ref.partition("/")
    node = nodes[base]
    return node, set_dir(node, method or None)
