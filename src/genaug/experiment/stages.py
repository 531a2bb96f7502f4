"""Running one stage node: the runner its kind registered, then its ``stage.json`` record.

Each subsystem registers its stage kind and runner beside its config
(:func:`genaug.registry.register_stage`); this module knows none of them by name.

Each stage function resumes by itself (the engine skips recorded items, the projector
resumes from its checkpoint, the mixer skips made records), so a killed experiment simply
calls it again. ``stage.json`` is written last and only on success: it is what marks a
node as cached, and it keeps the stage's cost (seconds, images, images per second) for
the results table of every later run that reuses it.
"""

from __future__ import annotations

import datetime as _dt
import time
from pathlib import Path
from typing import Any

from genaug.experiment.graph import StageNode, set_dir
from genaug.files import write_json_atomic
from genaug.manifest import read_manifest
from genaug.registry import stage_kind

__all__ = ["run_stage"]


def run_stage(node: StageNode, nodes: dict[str, StageNode]) -> dict[str, Any]:
    """Run ``node`` (its input already done) and return its record."""
    node.dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    made, extra = stage_kind(node.kind).run(node, nodes)
    seconds = time.perf_counter() - started
    sets = output_sets(node)
    record = {
        "name": node.name,
        "kind": node.kind,
        "key": node.key,
        "input": node.input,
        "data": node.data,
        "config": node.config.model_dump(mode="json"),
        "sets": {method: str(path.relative_to(node.dir)) for method, path in sets.items()},
        "images": {method: len(read_manifest(path)) for method, path in sets.items()},
        "made": made,
        "seconds": seconds,
        "images_per_second": made / seconds if seconds > 0 and made else None,
        "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }
    write_json_atomic(node.record_path, record)
    return record


def output_sets(node: StageNode) -> dict[str, Path]:
    """The sets a node wrote: one per method of a kind that makes several, else one named by its kind."""
    kind = stage_kind(node.kind)
    if kind.sets is not None:
        return {method: set_dir(node, method) for method in kind.sets(node.config.model_dump())}
    return {node.kind: set_dir(node)}
