"""The stage graph of an experiment: every named stage becomes a node with a content key.

A node's key hashes what determines its output: its kind and fields, the real dataset's
config and the content identity of the splits it reads (:mod:`genaug.data.identity`; the
train split for every stage, plus the ``splits`` of a ``dedupe`` filter, so a changed
validation or test image leaves the other stages cached), the key of the set it reads, and the identity of the pocket models (their spec hash) when
the stage may use them. Its artifact folder is ``<artifacts>/<kind>-<key>``, so two stages
with the same inputs and fields share one folder, across arms and across runs that share
an artifacts folder; changing anything upstream changes every key downstream.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from genaug.experiment.config import ExperimentConfig, StageSpec, stage_config
from genaug.pocket import pocket_info
from genaug.registry import stage_kind
from genaug.stage_dirs import STAGE_RECORD, resolve_ref, set_dir  # noqa: F401 (re-exported)

__all__ = ["StageNode", "build_graph", "set_dir", "stage_order", "upstream"]


@dataclass(frozen=True)
class StageNode:
    """One stage of the graph: where it writes and the typed config it runs with."""

    name: str
    kind: str
    key: str
    dir: Path
    input: str | None  # "stage" or "stage/method"
    config: BaseModel
    data: dict[str, Any] | None = field(default=None, compare=False)  # identity of the splits it reads

    @property
    def record_path(self) -> Path:
        return self.dir / STAGE_RECORD

    def is_done(self) -> bool:
        """Finished earlier with this key (the record is written only after the stage completes)."""
        try:
            return json.loads(self.record_path.read_text(encoding="utf-8")).get("key") == self.key
        except (OSError, ValueError):
            return False

    def record(self) -> dict[str, Any]:
        return json.loads(self.record_path.read_text(encoding="utf-8"))

    def stale_reason(self) -> str | None:
        """Why an earlier finished run of this stage (same name and kind, beside this node's
        folder) is not reused: its train images changed, or else its config or input."""
        for path in sorted(self.dir.parent.glob(f"{self.kind}-*/{STAGE_RECORD}")):
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if record.get("name") != self.name or record.get("key") == self.key:
                continue
            from genaug.data.identity import identity_changes

            before = record.get("data")
            changes = identity_changes(before, self.data) if before is not None and self.data is not None else []
            if changes:
                return f"the images it reads changed since {path.parent.name} ({'; '.join(changes)})"
            return f"its config or input changed since {path.parent.name}"
        return None


@cache
def pocket_identity() -> str | None:
    """The spec hash of the pocket models in use (stages on pocket models depend on them)."""
    try:
        return pocket_info().get("spec_hash")
    except (OSError, ValueError, KeyError):
        return None


def stage_key(
    stage: StageSpec, experiment: ExperimentConfig, input_key: str | None, data: dict[str, str] | None = None
) -> str:
    content = {
        "kind": stage.kind,
        "params": stage.params,
        "dataset": experiment.dataset.model_dump(mode="json") | {"split": "train"},
        "data": data,
        "input": input_key,
        "pocket": pocket_identity(),
    }
    text = json.dumps(content, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def stage_order(stages: dict[str, StageSpec]) -> list[str]:
    """Stage names, every stage after the one it reads (stable otherwise)."""
    order: list[str] = []

    def visit(name: str) -> None:
        if name in order:
            return
        spec = stages[name]
        if spec.input is not None:
            visit(spec.input.split("/", 1)[0])
        order.append(name)

    for name in stages:
        visit(name)
    return order


def build_graph(
    experiment: ExperimentConfig, artifacts: Path, identity: dict[str, Any] | None = None
) -> dict[str, StageNode]:
    """Every stage of ``experiment`` as a :class:`StageNode`, in execution order.

    ``identity``: :func:`genaug.data.identity.splits_identity` of the experiment's dataset
    (read here when not given).
    """
    if identity is None and experiment.stages:
        identity = dataset_identity(experiment)
    nodes: dict[str, StageNode] = {}
    for name in stage_order(experiment.stages):
        spec = experiment.stages[name]
        input_dir, input_key = None, None
        if spec.input is not None:
            base, _, method = spec.input.partition("/")
            input_dir = set_dir(nodes[base], method or None)
            input_key = f"{nodes[base].key}/{method}" if method else nodes[base].key
        data = {split: identity[split] for split in splits_read(spec) if split in (identity or {})}
        key = stage_key(spec, experiment, input_key, {split: entry["digest"] for split, entry in data.items()})
        folder = artifacts / f"{spec.kind}-{key}"
        config = stage_config(spec, experiment.dataset, folder, input_dir, name=name)
        nodes[name] = StageNode(name=name, kind=spec.kind, key=key, dir=folder, input=spec.input, config=config, data=data)
    return nodes


def splits_read(stage: StageSpec) -> tuple[str, ...]:
    """The real splits a stage reads: ``train`` for every kind (generation, mixing and SDI
    draw on the training images, filters compare with them), plus what its kind's
    ``splits`` says (the ``splits`` of a ``dedupe`` filter: train and test by default).

    SDI's ``pretrain`` pool (pocket digits only) is the pocket world's, fixed by its spec,
    whose hash is already in the key.
    """
    reads = {"train"}
    kind = stage_kind(stage.kind)
    if kind.splits is not None:
        reads.update(kind.splits(stage.params))
    return tuple(split for split in ("train", "val", "test") if split in reads)


def dataset_identity(experiment: ExperimentConfig) -> dict[str, Any]:
    """The content identity of the experiment's train / val / test splits (reads the dataset)."""
    from genaug.data import load_splits
    from genaug.data.identity import splits_identity

    return splits_identity(load_splits(experiment.dataset))


def upstream(nodes: dict[str, StageNode], refs: list[str]) -> list[StageNode]:
    """The nodes that ``refs`` need, inputs first, each once."""
    needed: list[StageNode] = []

    def visit(name: str) -> None:
        node = nodes[name]
        if node.input is not None:
            visit(node.input.split("/", 1)[0])
        if node not in needed:
            needed.append(node)

    for ref in refs:
        visit(ref.split("/", 1)[0])
    return needed
