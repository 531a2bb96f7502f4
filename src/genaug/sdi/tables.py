"""Feature tables: rows of vectors with the ids, labels and class names they belong to.

One safetensors file per table: tensors ``features`` (N, D) float32 and ``labels`` (N,)
int64; ``ids``, ``class_names`` and free-form ``info`` (what made the table) as JSON in
the file's metadata, so a row can never be separated from the image or sample it
describes. SDI writes its CLIP embeddings, its feature bank and its sampled vectors this
way; a synthetic record's ``embedding`` field names a table file and a row.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open

from genaug.files import save_safetensors


@dataclass
class FeatureTable:
    """``features[i]`` belongs to ``ids[i]``, of class ``class_names[labels[i]]``."""

    features: torch.Tensor
    labels: torch.Tensor
    ids: list[str]
    class_names: list[str]
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.features = torch.as_tensor(self.features, dtype=torch.float32)
        self.labels = torch.as_tensor(np.asarray(self.labels), dtype=torch.int64)
        if self.features.ndim != 2 or len(self.features) != len(self.labels) or len(self.ids) != len(self.labels):
            raise ValueError(
                f"a feature table needs (N, D) features, N labels and N ids; got {tuple(self.features.shape)}, "
                f"{len(self.labels)} labels, {len(self.ids)} ids"
            )
        if len(self.labels) and (int(self.labels.min()) < 0 or int(self.labels.max()) >= len(self.class_names)):
            raise ValueError(f"labels must index the {len(self.class_names)} class names")

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])

    def rows_of_class(self, label: int) -> np.ndarray:
        """Row indices of class ``label``, in table order."""
        return np.flatnonzero(self.labels.numpy() == label)


def save_table(path: str | Path, table: FeatureTable) -> Path:
    """Write ``table`` to ``path`` atomically (temporary file, fsync, rename)."""
    metadata = {
        "ids": json.dumps(table.ids),
        "class_names": json.dumps(table.class_names),
        "info": json.dumps(table.info, sort_keys=True, default=str),
    }
    return save_safetensors(path, {"features": table.features, "labels": table.labels}, metadata)


def load_table(path: str | Path) -> FeatureTable:
    """Read a table written by :func:`save_table`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no feature table at {path}")
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
        features, labels = handle.get_tensor("features"), handle.get_tensor("labels")
    return FeatureTable(
        features=features,
        labels=labels,
        ids=json.loads(metadata["ids"]),
        class_names=json.loads(metadata["class_names"]),
        info=json.loads(metadata.get("info", "{}")),
    )


def table_info(path: str | Path) -> dict[str, Any]:
    """Only the ``info`` of a table (reads the header, not the tensors)."""
    with safe_open(str(path), framework="pt") as handle:
        return json.loads((handle.metadata() or {}).get("info", "{}"))
