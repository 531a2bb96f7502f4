"""Reading a run folder (layout in :mod:`genaug.report`): the summary, per-epoch curves, and
the stage outputs the arms used.

Only the stages named in ``results.json`` are read, never everything under ``artifacts/``:
the artifact cache keeps outputs of earlier configurations, which are not part of this run.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from genaug.manifest import MANIFEST, SampleRecord, read_manifest, shard_manifests
from genaug.sdi.sample import BANK_FILE, SAMPLES_DIR

RESULTS_FILE = "results.json"
EXPERIMENT_FILE = "experiment.yaml"
METRICS_CSV = "metrics.csv"


@dataclass
class RunFolder:
    """A run folder's summary (``results.json``) and resolved config (``experiment.yaml``)."""

    root: Path
    results: dict[str, Any]
    experiment: dict[str, Any]

    @property
    def arms(self) -> list[dict[str, Any]]:
        return self.results.get("arms", [])

    @property
    def baseline(self) -> str | None:
        return self.results.get("baseline")

    @property
    def epochs(self) -> int | None:
        return self.results.get("epochs")

    @property
    def class_names(self) -> list[str]:
        return list(self.results.get("dataset", {}).get("class_names", []))

    @property
    def dataset_config(self) -> dict[str, Any] | None:
        return self.experiment.get("dataset")


def load_run(run_dir: str | Path) -> RunFolder:
    """Read ``results.json`` (required) and ``experiment.yaml`` (optional: without it the
    report shows no real images)."""
    root = Path(run_dir)
    results_path = root / RESULTS_FILE
    if not results_path.is_file():
        raise FileNotFoundError(f"{results_path} not found: {root} is not a finished experiment run folder")
    results = json.loads(results_path.read_text(encoding="utf-8"))
    experiment_path = root / EXPERIMENT_FILE
    experiment = {}
    if experiment_path.is_file():
        experiment = yaml.safe_load(experiment_path.read_text(encoding="utf-8")) or {}
    return RunFolder(root=root, results=results, experiment=experiment)


# ---------------------------------------------------------------------------- curves


@dataclass
class Curve:
    """A metric per epoch over seeds: the mean and the seeds' lowest and highest values."""

    epochs: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    seeds: int


def read_metrics(path: Path) -> dict[str, np.ndarray]:
    """The columns of a trainer's ``metrics.csv`` as float arrays (empty cells are NaN)."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    columns = rows[0].keys() if rows else []
    return {name: np.array([_number(row.get(name)) for row in rows], dtype=np.float64) for name in columns}


def _number(cell: str | None) -> float:
    try:
        return float(cell) if cell not in (None, "") else math.nan
    except ValueError:
        return math.nan


def seed_curve(run: RunFolder, arm: dict[str, Any], column: str = "val_top1") -> Curve | None:
    """``column`` of every seed of ``arm`` aligned by epoch; None when no seed logged it."""
    per_epoch: dict[int, list[float]] = {}
    seeds = 0
    for seed_run in arm.get("runs", []):
        path = run.root / seed_run.get("dir", "") / METRICS_CSV
        if not seed_run.get("dir") or not path.is_file():
            continue
        metrics = read_metrics(path)
        if column not in metrics or "epoch" not in metrics:
            continue
        seeds += 1
        for epoch, value in zip(metrics["epoch"], metrics[column]):
            if np.isfinite(epoch) and np.isfinite(value):
                per_epoch.setdefault(int(epoch), []).append(float(value))
    if not per_epoch:
        return None
    epochs = np.array(sorted(per_epoch))
    values = [np.array(per_epoch[e]) for e in epochs]
    return Curve(
        epochs=epochs,
        mean=np.array([v.mean() for v in values]),
        low=np.array([v.min() for v in values]),
        high=np.array([v.max() for v in values]),
        seeds=seeds,
    )


# ---------------------------------------------------------------------------- stage outputs


@dataclass
class StageOutput:
    """A folder some arms' stage wrote, and which arms used it."""

    kind: str
    method: str
    dir: Path
    arms: list[str] = field(default_factory=list)


def stage_outputs(run: RunFolder, kinds: set[str] | None = None) -> list[StageOutput]:
    """The distinct stage folders of the run (arms share cached stages), in arm order."""
    found: dict[Path, StageOutput] = {}
    for arm in run.arms:
        for stage in arm.get("stages", []):
            if kinds is not None and stage.get("kind") not in kinds or not stage.get("dir"):
                continue
            folder = run.root / stage["dir"]
            output = found.setdefault(folder, StageOutput(stage.get("kind", ""), stage.get("method", ""), folder))
            if arm.get("name") not in output.arms:
                output.arms.append(arm.get("name"))
    return list(found.values())


def _folders_holding(folder: Path, is_wanted) -> list[Path]:
    """``folder`` itself when it is wanted, else its wanted sub-folders (one level down)."""
    if not folder.is_dir():
        return []
    if is_wanted(folder):
        return [folder]
    return sorted(child for child in folder.iterdir() if child.is_dir() and is_wanted(child))


def is_synthetic_set(folder: Path) -> bool:
    return (folder / MANIFEST).is_file() or bool(shard_manifests(folder))


def is_sdi_work_dir(folder: Path) -> bool:
    return (folder / BANK_FILE).is_file() and (folder / SAMPLES_DIR).is_dir()


@dataclass
class StageSet:
    """A synthetic set a stage of the run wrote: its folder, every record (kept or not, as the
    report shows filtering) and the stage. Training reads sets with
    :func:`genaug.data.synthetic.load_synthetic_set` instead."""

    dir: Path
    records: list[SampleRecord]
    stage: StageOutput


def synthetic_sets(run: RunFolder, kinds: set[str] | None = None) -> list[StageSet]:
    """Every distinct synthetic set written by the run's stages of ``kinds`` (default: all)."""
    sets: dict[Path, StageSet] = {}
    for output in stage_outputs(run, kinds):
        for folder in _folders_holding(output.dir, is_synthetic_set):
            if folder not in sets:
                sets[folder] = StageSet(folder, read_manifest(folder), output)
    return list(sets.values())


def sdi_work_dirs(run: RunFolder) -> list[tuple[Path, StageOutput]]:
    """SDI work folders (feature bank + sampled features) of the run's ``sdi`` stages."""
    found: dict[Path, StageOutput] = {}
    for output in stage_outputs(run, {"sdi"}):
        for folder in _folders_holding(output.dir, is_sdi_work_dir):
            found.setdefault(folder, output)
    return list(found.items())
