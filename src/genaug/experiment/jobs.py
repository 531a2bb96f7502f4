"""One training run of an experiment (an arm x seed, :class:`TrainJob`) and the functions that
train it (:func:`train_job`, the body of a Slurm task and a rehearsal run) or several seeds of
an arm as one stacked model (:func:`group_jobs`, :func:`train_jobs`, the body of a worker).

Below the runner, the local pool (:mod:`genaug.experiment.schedule`) and the Slurm launcher,
which all hand jobs to it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genaug.training.config import TrainConfig

__all__ = ["TrainJob", "group_jobs", "train_job", "train_jobs"]


@dataclass(frozen=True)
class TrainJob:
    """One arm x seed: its resolved config, where it writes, and the sets it trains on."""

    arm: str
    seed: int
    config: TrainConfig
    run_dir: Path
    sets: tuple[Path, ...]
    dataset: dict[str, Any]
    data: dict[str, Any] | None = None  # identity of train / val / test the key was made with
    view: str = "natural"  # or "matched": trained for the experiment's compute.matched_steps

    @property
    def done(self) -> bool:
        return (self.run_dir / "metrics.json").is_file()

    def stale_reason(self) -> str | None:
        """Why an earlier finished run of this arm and seed is not reused (dry run)."""
        from genaug.data.identity import identity_changes
        from genaug.training.trainer import DATA_FILE

        for other in sorted(self.run_dir.parent.glob(f"seed-{self.seed}-*")):
            if other == self.run_dir or not (other / "metrics.json").is_file():
                continue
            try:
                before = json.loads((other / DATA_FILE).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                before = None
            changes = identity_changes(before, self.data) if before is not None and self.data is not None else []
            if changes:
                return f"the dataset changed since {other.name} ({'; '.join(changes)})"
            return f"its config or synthetic sets changed since {other.name}"
        return None


def train_job(job: "TrainJob", progress: bool) -> dict[str, Any]:
    """Train one arm x seed (also the body of a worker process)."""
    return train_jobs([job], progress)[0]


def train_jobs(jobs: list["TrainJob"], progress: bool) -> list[dict[str, Any]]:
    """Train runs of one arm that differ only in their seed (one :func:`stack_key`), as one
    stacked model where the trainer can (:func:`genaug.training.train_seeds`); the dataset
    and the sets are read once. Returns each run's test top-1 and seconds, in order."""
    from genaug.data import DatasetError, load_splits
    from genaug.data.identity import identity_changes, splits_identity
    from genaug.data.synthetic import load_synthetic_set
    from genaug.training import train_seeds

    first = jobs[0]
    splits = load_splits(first.dataset)
    changes = identity_changes(first.data, splits_identity(splits)) if first.data is not None else []
    if changes:
        raise DatasetError(
            f"the dataset changed while the experiment ran ({'; '.join(changes)}); run the same command again"
        )
    synthetic = load_synthetic_set(first.sets, splits["train"].class_names) if first.sets else None
    configs = []
    for job in jobs:
        config = job.config
        if not progress:
            config = config.model_copy(update={"logging": config.logging.model_copy(update={"progress": False})})
        configs.append(config)
    results = train_seeds(configs, splits, [job.run_dir for job in jobs], synthetic)
    return [{"top1": result.test["top1"], "seconds": result.wall_seconds} for result in results]


def stack_key(job: "TrainJob") -> str | None:
    """Jobs with the same key may train as one stacked model (:func:`group_jobs`); None: alone."""
    from genaug.training.stacked import stackable

    if not stackable(job.config):
        return None
    config = job.config.model_dump(mode="json", exclude={"seed", "logging"})
    return json.dumps([job.arm, job.view, [str(folder) for folder in job.sets], job.dataset, job.data, config], sort_keys=True, default=str)


def group_jobs(jobs: list["TrainJob"]) -> list[list["TrainJob"]]:
    """``jobs`` in groups that train together: the runs of one arm and view that differ only in
    their seed, up to ``stack_seeds`` a group, in the order of their first job; a run that
    cannot be stacked is a group of its own."""
    groups: dict[str | int, list[list[TrainJob]]] = {}
    order: list[list[TrainJob]] = []
    for index, job in enumerate(jobs):
        key = stack_key(job)
        chunks = groups.setdefault(key if key is not None else index, [])
        if not chunks or len(chunks[-1]) >= max(1, job.config.stack_seeds):
            chunks.append([])
            order.append(chunks[-1])
        chunks[-1].append(job)
    return order
