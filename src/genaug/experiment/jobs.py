"""One training run of an experiment (an arm x seed, :class:`TrainJob`) and the function that
trains it (:func:`train_job`, the body of a worker process, a Slurm task and a rehearsal run).

Below the runner, the local pool (:mod:`genaug.experiment.schedule`) and the Slurm launcher,
which all hand jobs to it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genaug.training.config import TrainConfig

__all__ = ["TrainJob", "train_job"]


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
    from genaug.data import DatasetError, load_splits
    from genaug.data.identity import identity_changes, splits_identity
    from genaug.data.synthetic import load_synthetic_set
    from genaug.training import train

    splits = load_splits(job.dataset)
    changes = identity_changes(job.data, splits_identity(splits)) if job.data is not None else []
    if changes:
        raise DatasetError(
            f"the dataset changed while the experiment ran ({'; '.join(changes)}); run the same command again"
        )
    synthetic = load_synthetic_set(job.sets, splits["train"].class_names) if job.sets else None
    config = job.config
    if not progress:
        config = config.model_copy(update={"logging": config.logging.model_copy(update={"progress": False})})
    result = train(config, splits, job.run_dir, synthetic)
    return {"top1": result.test["top1"], "seconds": result.wall_seconds}
