"""Per-epoch metrics of a run: ``metrics.csv`` always, TensorBoard (``tb/``) and wandb optional.

Epochs are numbered from 1 (the first epoch's row is epoch 1). Only rank 0 logs. On
resume from a checkpoint after k epochs, rows of later epochs (written before the process
died) are dropped from the CSV files and TensorBoard purges its events from step k + 1 on,
so the logs read as one uninterrupted run.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from genaug.config import ConfigError
from genaug.files import write_text_atomic
from genaug.training.config import TrainConfig

METRICS_CSV = "metrics.csv"
PER_CLASS_CSV = "per_class_val.csv"
WANDB_ID_FILE = "wandb_id.txt"


class RunLogger:
    """Writes one row per epoch; ``columns`` are fixed when the run starts."""

    def __init__(
        self,
        out_dir: Path,
        config: TrainConfig,
        columns: list[str],
        class_names: list[str],
        start_epoch: int,
        enabled: bool = True,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.columns = columns
        self.class_names = class_names
        self.enabled = enabled
        self._tb = None
        self._wandb = None
        if not enabled:
            return
        self._start_csv(self.out_dir / METRICS_CSV, ["epoch", *columns], start_epoch)
        self._start_csv(self.out_dir / PER_CLASS_CSV, ["epoch", *class_names], start_epoch)
        if config.logging.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.out_dir / "tb"), purge_step=start_epoch + 1 if start_epoch else None)
        if config.logging.wandb != "off":
            self._wandb = _start_wandb(self.out_dir, config)

    def log_epoch(self, epoch: int, row: dict[str, Any], per_class: list[float | None] | None) -> None:
        if not self.enabled:
            return
        _append_csv(self.out_dir / METRICS_CSV, [epoch, *(_cell(row.get(name)) for name in self.columns)])
        if per_class is not None:
            _append_csv(self.out_dir / PER_CLASS_CSV, [epoch, *(_cell(value) for value in per_class)])
        scalars = {name: value for name, value in row.items() if isinstance(value, (int, float)) and not _is_nan(value)}
        if self._tb is not None:
            for name, value in scalars.items():
                self._tb.add_scalar(_tag(name), value, epoch)
            self._tb.flush()
        if self._wandb is not None:
            self._wandb.log({"epoch": epoch, **scalars}, step=epoch)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()

    def __enter__(self) -> "RunLogger":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _start_csv(path: Path, header: list[str], start_epoch: int) -> None:
        """Write the header, keeping on resume the rows of the ``start_epoch`` epochs finished (1 to start_epoch)."""
        kept: list[list[str]] = []
        if start_epoch > 0 and path.is_file():
            with open(path, newline="", encoding="utf-8") as handle:
                rows = list(csv.reader(handle))
            if rows and rows[0] == header:
                kept = [row for row in rows[1:] if row and int(row[0]) <= start_epoch]
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(header)
        writer.writerows(kept)
        write_text_atomic(path, buffer.getvalue())


def _append_csv(path: Path, row: list[Any]) -> None:
    with open(path, "a", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerow(row)
        handle.flush()


def _tag(name: str) -> str:
    """``val_top1`` -> ``val/top1`` so TensorBoard groups metrics by split."""
    split, _, rest = name.partition("_")
    return f"{split}/{rest}" if split in ("train", "val", "test") and rest else name


def _cell(value: Any) -> Any:
    # floats keep full precision (repr): the CSV is the record later reports are built from
    return "" if value is None or _is_nan(value) else value


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def check_loggers(config: TrainConfig) -> None:
    """Fail before any work when an optional logger is asked for but not installed."""
    if config.logging.wandb != "off":
        _import_wandb(config)


def _import_wandb(config: TrainConfig) -> Any:
    try:
        import wandb
    except ImportError:
        raise ConfigError(
            f"logging.wandb: '{config.logging.wandb}' needs the optional package wandb, which is not installed; "
            "install it (pip install wandb) or set logging.wandb=off (allowed: off, online, offline)"
        ) from None
    return wandb


def _start_wandb(out_dir: Path, config: TrainConfig) -> Any:
    wandb = _import_wandb(config)
    # A stable id stored in the run folder makes a resumed run continue the same wandb run.
    id_file = out_dir / WANDB_ID_FILE
    run_id = id_file.read_text().strip() if id_file.is_file() else wandb.util.generate_id()
    id_file.write_text(run_id)
    return wandb.init(
        project=config.logging.wandb_project,
        dir=str(out_dir),
        mode=config.logging.wandb,
        id=run_id,
        resume="allow",
        config=config.model_dump(mode="json"),
        name=out_dir.name,
    )
