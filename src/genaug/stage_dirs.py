"""Where a stage node's files are: its ``stage.json`` record, the sets it writes, an input reference,
the sets earlier runs of it wrote.

What a stage's runner needs to find its input without importing the experiment runner (the
nodes are :class:`genaug.experiment.graph.StageNode`; anything with ``kind``, ``config`` and
``dir`` works).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from genaug.registry import stage_kind

__all__ = ["STAGE_RECORD", "earlier_runs", "earlier_sets", "resolve_ref", "set_dir"]

STAGE_RECORD = "stage.json"


def set_dir(node: Any, method: str | None = None) -> Path:
    """The synthetic set a node writes (``method`` picks one set of a stage that makes several)."""
    return stage_kind(node.kind).folder_of(node.config, node.dir, method)


def resolve_ref(nodes: dict[str, Any], ref: str) -> tuple[Any, Path]:
    base, _, method = ref.partition("/")
    node = nodes[base]
    return node, set_dir(node, method or None)


def earlier_sets(node) -> list[Path]:
    """The sets written by earlier finished runs of the experiment stage ``node`` (same name and
    kind, beside its folder, made on other data or config), newest first: what an incremental
    pass may copy from."""
    return [folder / rel for folder, record in earlier_runs(node) for rel in (record.get("sets") or {}).values()]


def earlier_runs(node) -> list[tuple[Path, dict]]:
    """``(folder, stage record)`` of the earlier finished runs of the experiment stage ``node``
    (same name and kind, beside its folder, made on other data or config), newest first (an SDI
    stage reads its earlier work dirs: their projector and sampled vectors)."""
    found = []
    for path in node.dir.parent.glob(f"{node.kind}-*/{STAGE_RECORD}"):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if record.get("name") == node.name and path.parent != node.dir:
            found.append((record.get("finished", ""), path.parent, record))
    return [(folder, record) for _, folder, record in sorted(found, key=lambda entry: entry[0], reverse=True)]
