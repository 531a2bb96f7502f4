"""Train a classifier on real (+ synthetic) data: the yardstick of every method (docs/methods/training-recipes.md).

:func:`train` reads as the recipe: resolve the config, build the model, optimiser, LR
schedule and loss, pack the data, then the epoch loop (train, evaluate on validation,
log, checkpoint, keep the best-validation weights); finally load the best-validation
weights and evaluate the test set once.

Reproducibility: every epoch's randomness (data order, augmentation parameters, mixer and
dropout streams) is derived from ``(seed, epoch)``, and a checkpoint holds the complete
training state, so a run killed after epoch k and resumed ends with bit-identical weights
to an uninterrupted run on the same device and software.

Reference-style numbers (best test top-1 over epochs, median of the last 10 epochs' test
top-1, docs/methods/training-recipes.md) need the test set evaluated after every epoch; that costs an extra
evaluation per epoch, so it is done only with ``report_reference=True``. Model selection
never looks at the test set.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from torch import nn

from genaug.checkpoint import (
    BEST_FILE,
    find_checkpoint,
    load_checkpoint,
    load_weights,
    remove_checkpoints,
    restore_best,
    save_checkpoint,
    save_weights,
)
from genaug.config import ConfigError, dump_config, parse_config
from genaug.data.base import RealDataset
from genaug.data.identity import identity_changes, skipped_count, splits_identity
from genaug.data.synthetic import SyntheticSet, load_synthetic_set
from genaug.distributed import Distributed, setup_distributed, shard
from genaug.files import json_safe, write_text_atomic
from genaug.mixing.config import FractalBankConfig
from genaug.mixing.registry import MIXERS
from genaug.progress import progress_bar
from genaug.runtime import autocast_context
from genaug.seeds import generator_for, training_seed
from genaug.training.config import TrainConfig
from genaug.training.health import (
    CONVERGENCE_WINDOW,
    add_warning,
    convergence_warning,
    loss_warning,
    skipped_warning,
    still_rising,
    uniform_loss,
    validation_warning,
    warmup_warning,
)
from genaug.training.losses import LossFn, create_loss
from genaug.training.lr_schedule import make_lr_scheduler, step_position
from genaug.training.metrics import EvalAccumulator, median_of_last
from genaug.training.pipeline import AugmentParams, InputPipeline, epoch_batches, pack_dataset
from genaug.training.policies import DataPolicy, EpochPlan, TrainPool, create_policy
from genaug.training.recipes import resolve_recipe
from genaug.training.run_logger import METRICS_CSV, PER_CLASS_CSV, RunLogger, check_loggers
from genaug.warn import WARNINGS_LOG, record_warnings, warn_once

CONFIG_FILE = "config.yaml"
RESULT_FILE = "metrics.json"
#: The content identity of the splits a run trains, selects and tests on (genaug.data.identity).
DATA_FILE = "dataset.json"
#: Fields that do not change what a run computes, so a resumed run may change them.
RESUME_IGNORED = ("logging", "checkpoint_every", "device", "cpu_threads", "keep_checkpoint", "stack_seeds")
#: Fast path: every ``SPARSE_EVAL_EVERY``-th epoch is validated, and every epoch in the last
#: ``VALIDATE_TAIL`` of training (where the best-validation epoch of a decayed schedule lies).
SPARSE_EVAL_EVERY = 5
VALIDATE_TAIL = 0.25
#: Fast path: a checkpoint after the first epoch ending this long after the last one.
CHECKPOINT_SECONDS = 30.0
#: Fast path: evaluation batches of ``EVAL_BATCHES`` training batches, at most ``EVAL_PIXELS``
#: pixels (images x crop^2) and at least one training batch: 64 images for the pocket recipe,
#: 256 for CIFAR's, 128 at 224 px. Measured on the pocket model (one thread), 179 images take
#: 27 ms in batches of 64, 45 ms in batches of 16 and 52 ms in one batch; a batch of 64 adds
#: about 1 % to a run's peak memory, one of 451 about 8 %.
EVAL_BATCHES = 4
EVAL_PIXELS = 2**18


@dataclass
class RunResult:
    """What a finished run reports (also written to ``metrics.json``).

    ``test``: metrics of the selected weights on the test set, evaluated once (``top1``,
    ``top5`` when K >= 5, ``balanced_accuracy``, ``per_class``, ``loss``; accuracies in %).
    ``selection`` is ``"val"`` (best validation top-1) or ``"last"`` (no validation set).
    ``reference`` (with ``report_reference``): ``best_test_top1`` and
    ``median_last10_test_top1`` as the reference code reports them. ``model`` is the
    config's model name, or ``custom:<class>`` when ``train`` was given a module.
    ``skipped_images``: input files skipped while loading the dataset; ``warnings``: what
    :mod:`genaug.training.health` found (also in the run folder's ``warnings.log``).

    ``epochs``: epochs trained (with ``steps``, the last one may be cut); ``optimizer_steps``:
    optimizer steps made; ``images_seen``: samples trained on, real + synthetic
    (``real_samples + synthetic_samples``); ``val_history``: ``[epoch, val top-1]`` of every
    validation, in order; ``still_rising``: validation top-1 was still rising over the last
    10 % of training (:func:`genaug.training.health.still_rising`; a warning says so).
    ``stacked_seeds``: the seeds trained with this one as one stacked model
    (:mod:`genaug.training.stacked`; empty when it trained alone); ``wall_seconds`` is then
    its share, the stack's time over its seeds.
    metrics.json files written before these fields existed load with their defaults.
    """

    out_dir: Path
    model: str
    test: dict[str, Any]
    best_epoch: int
    best_val: dict[str, Any] | None
    selection: str
    epochs: int
    reference: dict[str, float] | None
    real_samples: int
    synthetic_samples: int
    wall_seconds: float
    world_size: int
    class_names: list[str]
    skipped_images: int = 0
    warnings: list[str] = field(default_factory=list)
    optimizer_steps: int = 0
    images_seen: int = 0
    val_history: list[list[float]] = field(default_factory=list)
    still_rising: bool = False
    stacked_seeds: list[int] = field(default_factory=list)

    def to_json(self) -> str:
        data = asdict(self)
        data["out_dir"] = str(self.out_dir)
        return json.dumps(json_safe(data), indent=2, allow_nan=False)

    @classmethod
    def load(cls, out_dir: Path) -> "RunResult":
        data = json.loads((Path(out_dir) / RESULT_FILE).read_text(encoding="utf-8"))
        data["out_dir"] = Path(out_dir)
        return cls(**data)


@dataclass
class RunProgress:
    """Everything about the run so far that is not model or optimiser state (checkpointed)."""

    epoch: int = 0  # epochs finished (the 0-based index of the next one to train)
    best_epoch: int = -1  # number (from 1) of the epoch whose weights are kept; -1 before any
    best_val_top1: float = -math.inf
    best_val: dict[str, Any] | None = None
    test_top1_history: list[float] = field(default_factory=list)
    real_samples: int = 0
    synthetic_samples: int = 0
    wall_seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    optimizer_steps: int = 0
    #: ``[epoch, val top-1, fraction of training done]`` of every validation.
    val_history: list[list[float]] = field(default_factory=list)


@dataclass(frozen=True)
class Learner:
    """What a training step needs: the model (DDP-wrapped with several processes), the
    optimiser, the fp16 gradient scaler, the loss and the online mixer; ``step_scheduler``:
    the LR scheduler when it is stepped after every optimizer step (``steps`` runs)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    loss_fn: LossFn
    mixer: Callable | None
    step_scheduler: torch.optim.lr_scheduler.LRScheduler | None = None


class BestWeights:
    """The best-validation weights so far, for ``best.safetensors``.

    Without ``deferred`` they are written at once, whenever validation improves. With it
    (the fast path) they are kept in memory and written by :meth:`flush`, which the trainer
    calls before every checkpoint (the checkpoint links the file) and before the final
    selection, so what is on disk at every checkpoint is what it always was.
    """

    def __init__(self, path: Path, deferred: bool, write: bool) -> None:
        self.path, self.deferred, self.write = path, deferred, write
        self._pending: tuple[dict[str, torch.Tensor], int] | None = None

    def keep(self, state: dict[str, torch.Tensor], epoch: int) -> None:
        """Keep the weights ``state`` (a model's ``state_dict``) as those of ``epoch`` (numbered from 1)."""
        if not self.write:
            return
        if not self.deferred:
            save_weights(self.path, state, {"epoch": str(epoch)})
            return
        self._pending = ({name: value.detach().clone() for name, value in state.items()}, epoch)

    def flush(self) -> None:
        """Write weights kept in memory (nothing when none are pending)."""
        if self._pending is not None:
            state, epoch = self._pending
            save_weights(self.path, state, {"epoch": str(epoch)})
            self._pending = None


@dataclass(frozen=True)
class TrainData:
    """What an epoch draws from: the packed pool, the data policy and the input pipeline."""

    pool: TrainPool
    policy: DataPolicy
    pipeline: InputPipeline
    num_classes: int


@dataclass(frozen=True)
class EvalSet:
    """A packed evaluation split."""

    images: torch.Tensor
    labels: torch.Tensor


def train(
    config: TrainConfig,
    splits: dict[str, RealDataset],
    out_dir: str | Path,
    synthetic: RealDataset | str | Path | None = None,
    *,
    resume: bool = True,
    model: nn.Module | None = None,
) -> RunResult:
    """Train a classifier on ``splits["train"]`` (+ ``synthetic``), select on ``splits["val"]``,
    test once on ``splits["test"]``; write the run into ``out_dir``.

    ``synthetic``: a dataset, or a synthetic set's folder (its kept records, read with
    :func:`genaug.data.load_synthetic_set` in the real set's class order); how much of it
    each epoch sees is ``config.data_policy``'s choice.

    ``resume``: continue from ``out_dir``'s checkpoint when it holds one (its resolved config
    must match, else a :class:`ConfigError`), or return the finished run's result; ``False``
    discards what the folder holds and starts over. ``model``: train this module instead of
    ``create_model(config.model, K, width=config.width)`` (its initialisation is the
    caller's). Launched by torchrun / accelerate with several processes, every process calls
    ``train`` and the global ``batch_size`` is split across them.
    """
    config = resolve_recipe(config)
    if isinstance(synthetic, (str, Path)):
        real = splits.get("train")
        synthetic = load_synthetic_set(synthetic, class_names=real.class_names if real is not None else None)
    with cpu_threads(config.cpu_threads):
        return run_recipe(config, splits, Path(out_dir), synthetic, resume, model)


def run_recipe(
    config: TrainConfig,
    splits: dict[str, RealDataset],
    out_dir: Path,
    synthetic: RealDataset | None,
    resume: bool,
    custom_model: nn.Module | None,
) -> RunResult:
    """:func:`train` for a resolved config: the recipe, step by step."""
    check_loggers(config)
    dist = setup_distributed(config.device)
    if config.batch_size < dist.world_size:
        raise ConfigError(
            f"batch_size: {config.batch_size} is the global batch; it must be >= the {dist.world_size} processes"
        )
    train_set, val_set, test_set = check_splits(splits, synthetic)
    checkpoint, finished = prepare_run_dir(out_dir, config, resume, dist, splits_identity(splits))
    if finished:
        drop_checkpoint_if_asked(out_dir, config, dist)
        return RunResult.load(out_dir)
    num_classes = train_set.num_classes

    model = build_model(config, num_classes, dist.device, custom_model)
    optimizer = build_optimizer(model, config)
    scheduler = make_lr_scheduler(optimizer, config)
    scaler = build_grad_scaler(config, dist.device)
    loss_fn = create_loss(config.loss)
    mixer = build_mixer(config)
    policy = create_policy(config.data_policy, **config.data_policy_kwargs)
    pipeline = InputPipeline(config.augmentation, dist.device)
    pool = build_train_pool(train_set, synthetic, config, dist.device)
    val = pack_eval_set(val_set, config, dist.device)
    test = pack_eval_set(test_set, config, dist.device)

    progress = RunProgress()
    if checkpoint is not None:
        progress = restore_training_state(checkpoint, model, optimizer, scheduler, scaler, out_dir, dist)
    start_warnings(progress, config, val_set, splits, out_dir, dist.is_main)
    uniform = uniform_loss(loss_fn, num_classes)
    steps_mode = config.steps is not None
    learner = Learner(dist.wrap(model), optimizer, scaler, loss_fn, mixer, scheduler if steps_mode else None)
    data = TrainData(pool, policy, pipeline, num_classes)
    evaluate_split = functools.partial(
        evaluate, model, pipeline=pipeline, loss_fn=loss_fn, num_classes=num_classes, config=config, dist=dist
    )
    best = BestWeights(out_dir / BEST_FILE, deferred=config.fast, write=dist.is_main)
    last_checkpoint = time.perf_counter()

    columns = metric_columns(config, num_classes, has_val=val is not None)
    logger = RunLogger(out_dir, config, columns, train_set.class_names, progress.epoch, enabled=dist.is_main)
    bar = progress_bar(config.steps if steps_mode else config.epochs, "[bold]step" if steps_mode else "[bold]epoch",
                       enabled=config.logging.progress and dist.is_main,
                       completed=progress.optimizer_steps if steps_mode else progress.epoch,
                       detail="loss {task.fields[loss]}  val top-1 {task.fields[val]}", fields={"loss": "-", "val": "-"})
    with logger, bar as display:
        while not training_done(config, progress):
            epoch = progress.epoch
            started = time.perf_counter()
            lr = optimizer.param_groups[0]["lr"]
            budget = config.steps - progress.optimizer_steps if steps_mode else None
            stats = train_one_epoch(learner, data, config, epoch, dist, start_step=progress.optimizer_steps, max_steps=budget)
            stats["train_seconds"] = time.perf_counter() - started
            if steps_mode and stats["steps"] == 0:
                raise ConfigError(f"steps: epoch {epoch + 1} planned no batch, so {config.steps} steps cannot be made")
            report_warning(progress, loss_warning(stats["train_loss"], uniform, epoch, None if steps_mode else config.epochs),
                           out_dir, dist.is_main)
            if not steps_mode:
                scheduler.step()
            progress.optimizer_steps += stats["steps"]
            last = training_done(config, progress, epochs_done=epoch + 1)
            position = training_fraction(config, progress, epochs_done=epoch + 1)
            dist.sync_buffers(model)
            validate = val is not None and (is_eval_epoch(config, epoch, position, last) or in_convergence_window(position))
            val_metrics = evaluate_split(val) if validate else None
            test_metrics = evaluate_split(test) if config.report_reference else None
            seconds = time.perf_counter() - started
            close_epoch(progress, best, logger, epoch, lr, stats, val_metrics, test_metrics, seconds, position, model.state_dict)
            if is_checkpoint_epoch(config, epoch, last, time.perf_counter() - last_checkpoint):
                best.flush()
                write_checkpoint(out_dir, model.state_dict(), optimizer.state_dict(), scheduler, scaler, progress, dist)
                last_checkpoint = time.perf_counter()
            val_top1 = f"{val_metrics['top1']:.2f}" if val_metrics else "-"
            display.update(completed=progress.optimizer_steps if steps_mode else epoch + 1,
                           loss=f"{stats['train_loss']:.4f}", val=val_top1)

    return finish_run(
        config, out_dir, progress, best, model, lambda: evaluate_split(test), splits, dist,
        model_name=config.model if custom_model is None else f"custom:{type(custom_model).__name__}",
    )


def start_warnings(
    progress: RunProgress, config: TrainConfig, val_set: RealDataset | None, splits: dict[str, RealDataset],
    out_dir: Path, is_main: bool,
) -> None:
    """The warnings known before training (no validation set, warm-up, skipped input files),
    each added once, and the run folder's ``warnings.log``."""
    for warning in (validation_warning(val_set), warmup_warning(config), skipped_warning(skipped_count(splits))):
        if add_warning(progress.warnings, warning) and is_main:
            warn_once(warning)
    if is_main:
        keep_warnings(out_dir, progress.warnings)


def report_warning(progress: RunProgress, warning: str | None, out_dir: Path, is_main: bool) -> None:
    """Add ``warning`` (None: nothing) to the run's warnings; shown and logged once, by rank 0."""
    if add_warning(progress.warnings, warning) and is_main:
        warn_once(warning, log=out_dir / WARNINGS_LOG)


def close_epoch(
    progress: RunProgress,
    best: BestWeights,
    logger: RunLogger,
    epoch: int,
    lr: float,
    stats: dict,
    val_metrics: dict | None,
    test_metrics: dict | None,
    seconds: float,
    position: float,
    weights: Callable[[], dict],
) -> None:
    """The bookkeeping after ``epoch`` (from 0): keep the weights when validation improved,
    the validation history, the sample counts and time, the metrics.csv row."""
    keep_best_weights(progress, epoch, val_metrics, weights, best)
    if val_metrics is not None:
        progress.val_history.append([epoch + 1, val_metrics["top1"], position])
    record_epoch(progress, stats, test_metrics, seconds)
    row = epoch_row(lr, stats, val_metrics, test_metrics, seconds)
    logger.log_epoch(epoch + 1, row, val_metrics["per_class"] if val_metrics else None)  # numbered from 1
    progress.epoch = epoch + 1


def finish_run(
    config: TrainConfig,
    out_dir: Path,
    progress: RunProgress,
    best: BestWeights,
    model: nn.Module,
    test_metrics: Callable[[], dict],
    splits: dict[str, RealDataset],
    dist: Distributed,
    *,
    model_name: str,
    stacked_seeds: list[int] | None = None,
) -> RunResult:
    """After the last epoch: the convergence check, the selected weights loaded into ``model``,
    the test set evaluated once (``test_metrics()``), ``metrics.json`` written."""
    train_set, val_set, _ = check_splits(splits, None)
    history = [[position, top1] for _, top1, position in progress.val_history]
    num_val = len(val_set) if val_set is not None else 0
    report_warning(progress, convergence_warning(history, num_val), out_dir, dist.is_main)

    best.flush()
    selection = select_final_weights(model, progress, out_dir, dist, has_val=val_set is not None)
    result = RunResult(
        out_dir=out_dir,
        model=model_name,
        test=test_metrics(),
        best_epoch=progress.best_epoch,
        best_val=progress.best_val,
        selection=selection,
        epochs=progress.epoch,
        reference=reference_numbers(progress) if config.report_reference else None,
        real_samples=progress.real_samples,
        synthetic_samples=progress.synthetic_samples,
        wall_seconds=progress.wall_seconds,
        world_size=dist.world_size,
        class_names=list(train_set.class_names),
        skipped_images=skipped_count(splits),
        warnings=list(progress.warnings),
        optimizer_steps=progress.optimizer_steps,
        images_seen=progress.real_samples + progress.synthetic_samples,
        val_history=[[epoch, top1] for epoch, top1, _ in progress.val_history],
        still_rising=still_rising(history, num_val),
        stacked_seeds=list(stacked_seeds or []),
    )
    if dist.is_main:
        write_text_atomic(out_dir / RESULT_FILE, result.to_json())
    drop_checkpoint_if_asked(out_dir, config, dist)
    return result


# ----------------------------------------------------------------------------- set-up


@contextlib.contextmanager
def cpu_threads(threads: int | None) -> Iterator[None]:
    """Run with ``threads`` intra-op CPU threads (None: leave torch's setting), then restore.

    Small models gain little from several threads, and on a machine shared with other
    processes OpenMP threads waiting for each other can make every step many times slower.
    """
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def check_splits(
    splits: dict[str, RealDataset], synthetic: RealDataset | None
) -> tuple[RealDataset, RealDataset | None, RealDataset]:
    """``(train, val or None, test)``, all with the same class names; synthetic classes must
    be classes of the real set."""
    missing = [name for name in ("train", "test") if name not in splits]
    if missing:
        raise ValueError(f"splits must hold 'train' and 'test' (and usually 'val'); missing {missing}")
    train_set, test_set = splits["train"], splits["test"]
    val_set = splits.get("val")
    if val_set is not None and len(val_set) == 0:
        val_set = None
    for name, split in (("val", val_set), ("test", test_set)):
        if split is not None and list(split.class_names) != list(train_set.class_names):
            raise ValueError(f"split '{name}' has class names {split.class_names}, train has {train_set.class_names}")
    if synthetic is not None:
        unknown = sorted(set(synthetic.class_names) - set(train_set.class_names))
        if unknown:
            raise ValueError(f"the synthetic set has classes the real set lacks: {unknown}")
    return train_set, val_set, test_set


def prepare_run_dir(
    out_dir: Path, config: TrainConfig, resume: bool, dist: Distributed, data: dict[str, Any] | None = None
) -> tuple[Path | None, bool]:
    """Decide between resuming, returning a finished run and starting over; write config.yaml
    and ``dataset.json`` (``data``: the splits' content identity).

    Returns ``(checkpoint folder or None, finished)``. Every rank reads the folder before
    rank 0 changes it.
    """
    checkpoint = find_checkpoint(out_dir) if resume else None
    finished = resume and (out_dir / RESULT_FILE).is_file()
    if checkpoint is not None or finished:
        check_same_config(out_dir, config)
        if data is not None:
            check_same_data(out_dir, data)
    dist.barrier()
    if dist.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        if checkpoint is None and not finished:
            clear_run_files(out_dir)
        write_text_atomic(out_dir / CONFIG_FILE, dump_config(config))
        if data is not None:
            write_text_atomic(out_dir / DATA_FILE, json.dumps(data, indent=2, sort_keys=True))
    dist.barrier()
    return checkpoint, finished


def check_same_data(out_dir: Path, data: dict[str, Any]) -> None:
    """Raise a :class:`ConfigError` naming every split whose content differs from the run's.

    A run folder written before runs recorded their data (no ``dataset.json``) cannot be
    checked: a warning says so and the run is used as it is.
    """
    path = out_dir / DATA_FILE
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        logging.getLogger("genaug.training").warning(
            "%s has no readable %s: cannot check that it was trained on this dataset", out_dir, DATA_FILE
        )
        return
    changes = identity_changes(saved, data)
    if changes:
        raise ConfigError(
            f"{out_dir} holds a run on other data, so it cannot be resumed or reused:\n"
            + "\n".join(f"  {change}" for change in changes)
            + "\nuse another output folder, or delete this one to train again"
        )


def drop_checkpoint_if_asked(out_dir: Path, config: TrainConfig, dist: Distributed) -> None:
    """Without ``keep_checkpoint``, a finished run keeps only its selected weights (and logs)."""
    dist.barrier()
    if dist.is_main and not config.keep_checkpoint and (out_dir / RESULT_FILE).is_file():
        remove_checkpoints(out_dir)
    dist.barrier()


def check_same_config(out_dir: Path, config: TrainConfig) -> None:
    """Raise a :class:`ConfigError` listing every field where ``config`` differs from the run's."""
    path = out_dir / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(f"{out_dir} holds a checkpoint but no {CONFIG_FILE}; pass resume=False to start over")
    saved = TrainConfig.model_validate(yaml.safe_load(path.read_text(encoding="utf-8"))).model_dump(mode="json")
    new = config.model_dump(mode="json")
    differences = [
        f"  {key}: {saved.get(key)!r} in the run, {new.get(key)!r} now"
        for key in sorted(set(saved) | set(new))
        if key not in RESUME_IGNORED and saved.get(key) != new.get(key)
    ]
    if differences:
        raise ConfigError(
            f"{out_dir} holds a run with a different config, so it cannot be resumed:\n"
            + "\n".join(differences)
            + "\nuse another folder, or pass resume=False to discard that run and start over"
        )


def keep_warnings(out_dir: Path, warnings: list[str]) -> None:
    """The run folder's ``warnings.log`` holds ``warnings`` (each once; the file exists, empty when none)."""
    (out_dir / WARNINGS_LOG).touch()
    record_warnings(out_dir / WARNINGS_LOG, warnings)


def clear_run_files(out_dir: Path) -> None:
    """Remove a previous run's outputs (only the files a run writes)."""
    remove_checkpoints(out_dir)
    for name in (METRICS_CSV, PER_CLASS_CSV, RESULT_FILE, BEST_FILE, CONFIG_FILE, DATA_FILE, WARNINGS_LOG):
        (out_dir / name).unlink(missing_ok=True)
    shutil.rmtree(out_dir / "tb", ignore_errors=True)


def build_model(config: TrainConfig, num_classes: int, device: torch.device, model: nn.Module | None) -> nn.Module:
    """``create_model(config.model, K, width=...)`` initialised from ``(seed, "init")``, on ``device``."""
    if model is None:
        from genaug.models import create_model

        torch.manual_seed(training_seed(config.seed, "init"))
        try:
            model = create_model(config.model, num_classes, width=config.width)
        except ValueError as error:  # an unknown name; the message lists the known ones
            raise ConfigError(f"model: {error}") from None
    model = model.to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.SGD:
    """SGD with the recipe's momentum, Nesterov flag and (coupled) weight decay on every parameter;
    on the fast path with the fused update, one kernel per step for all parameters instead of
    a Python loop over them (the same formula; the last bits of a weight may differ)."""
    return torch.optim.SGD(
        model.parameters(),
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.nesterov,
        weight_decay=config.weight_decay,
        fused=True if config.fast else None,
    )


def eval_batch_size(config: TrainConfig) -> int:
    """Images per evaluation batch: ``batch_size``, or on the fast path
    ``min(EVAL_BATCHES x batch_size, EVAL_PIXELS / crop^2)``, at least ``batch_size`` (no
    gradients are kept, so this stays within a training step's memory)."""
    if not config.fast:
        return config.batch_size
    by_pixels = EVAL_PIXELS // (config.augmentation.crop**2)
    return max(config.batch_size, min(EVAL_BATCHES * config.batch_size, by_pixels))


def build_grad_scaler(config: TrainConfig, device: torch.device) -> torch.amp.GradScaler | None:
    """A gradient scaler for fp16 (CUDA only); bf16 and fp32 need none."""
    if config.precision != "fp16":
        return None
    if device.type != "cuda":
        raise ConfigError("precision: 'fp16' needs a CUDA device; on CPU use 'bf16' or 'fp32'")
    return torch.amp.GradScaler("cuda")


def build_mixer(config: TrainConfig) -> Callable | None:
    """The online mixer named by ``config.mixer`` (a ``plain`` one, ``none``: plain forward passes).

    ``config.mixer_kwargs`` are the mixer's parameters, except what YAML cannot hold and
    the trainer knows, as the mixer's registration declares (``genaug.mixing.mixers``):
    the normalisation of its batches (``needs_normalisation``: ``mean``/``std`` from
    ``augmentation``) and a fractal bank (``needs_fractal_bank``: built from
    ``mixer_kwargs["bank"]``, :class:`FractalBankConfig` fields).
    """
    entry = MIXERS.spec(config.mixer, key="mixer")
    if entry.metadata.get("plain"):
        return None
    kwargs = dict(config.mixer_kwargs)
    if entry.metadata.get("needs_normalisation"):
        given = sorted({"mean", "std"} & set(kwargs))
        if given:
            raise ConfigError(
                f"mixer_kwargs: {given} of '{config.mixer}' come from augmentation.mean/std "
                "(the normalisation of the batches it mixes); remove them from mixer_kwargs"
            )
        kwargs.update(mean=tuple(config.augmentation.mean), std=tuple(config.augmentation.std))
    if entry.metadata.get("needs_fractal_bank"):
        kwargs["fractals"] = build_fractal_bank(kwargs.pop("bank", {}))
    try:
        return entry.target(**kwargs)
    except ImportError as error:
        raise ConfigError(f"mixer: '{config.mixer}' could not be built: {error}") from None
    except (KeyError, ValueError, TypeError) as error:
        raise ConfigError(f"mixer: {error}") from None


def build_fractal_bank(bank: dict[str, Any]) -> torch.Tensor:
    """The uint8 fractal bank of ``mixer_kwargs["bank"]``: genaug's seeded IFS bank
    (``count``, ``size``, ``seed``; cached in GENAUG_HOME) or a ``folder`` of images
    (:func:`genaug.mixing.fractals.load_fractal_bank`)."""
    from genaug.mixing.fractals import load_fractal_bank

    return load_fractal_bank(parse_config(FractalBankConfig, bank, source="mixer_kwargs.bank"))


def build_train_pool(
    train_set: RealDataset, synthetic: RealDataset | None, config: TrainConfig, device: torch.device
) -> TrainPool:
    """The real train set then the synthetic set, packed at ``augmentation.image_size``.

    Packing resizes every image to that size, so synthetic images of another size meet the
    transforms at the real images' size (docs/methods/training-recipes.md). Each synthetic sample's
    ``source`` is the position of the real image it was made from (:func:`synthetic_sources`).
    """
    size = config.augmentation.image_size
    images = [pack_dataset(train_set, size)]
    labels = [torch.as_tensor(train_set.labels, dtype=torch.int64)]
    source = torch.zeros(0, dtype=torch.int64)
    soft = None
    if synthetic is not None and len(synthetic):
        images.append(pack_dataset(synthetic, size))
        # Synthetic labels follow the real set's class order, matched by class name.
        real_index = {name: i for i, name in enumerate(train_set.class_names)}
        remap = torch.tensor([real_index[name] for name in synthetic.class_names], dtype=torch.int64)
        labels.append(remap[torch.as_tensor(synthetic.labels, dtype=torch.int64)])
        source = synthetic_sources(train_set, synthetic)
        soft = soft_target_rows(train_set, synthetic)
    labels = torch.cat(labels)
    return TrainPool(
        images=torch.cat(images).to(device),
        labels=labels.to(device),
        num_real=len(train_set),
        source=source,
        soft=soft.to(device) if soft is not None else None,
    )


def soft_target_rows(train_set: RealDataset, synthetic: RealDataset) -> torch.Tensor | None:
    """(N_real + N_synthetic, K) targets when the synthetic set has soft labels (real rows
    one-hot), in the real set's class order; None otherwise."""
    rows = synthetic.soft_targets(train_set.class_names) if isinstance(synthetic, SyntheticSet) else None
    if rows is None:
        return None
    real = F.one_hot(torch.as_tensor(train_set.labels, dtype=torch.int64), len(train_set.class_names)).float()
    return torch.cat([real, torch.from_numpy(rows)])


def synthetic_sources(train_set: RealDataset, synthetic: RealDataset) -> torch.Tensor:
    """For each synthetic sample, the position in ``train_set`` of its first source id that
    is a real training image, else -1 (no recorded source, or made from a synthetic image
    or from an image outside this training split; a plain dataset records no sources)."""
    if not isinstance(synthetic, SyntheticSet):
        return torch.full((len(synthetic),), -1, dtype=torch.int64)
    positions = {image_id: i for i, image_id in enumerate(train_set.ids)}
    found = [
        next((positions[source] for source in synthetic.sources(i) if source in positions), -1)
        for i in range(len(synthetic))
    ]
    return torch.tensor(found, dtype=torch.int64)


def pack_eval_set(split: RealDataset | None, config: TrainConfig, device: torch.device) -> EvalSet | None:
    if split is None:
        return None
    images = pack_dataset(split, config.augmentation.image_size).to(device)
    return EvalSet(images, torch.as_tensor(split.labels, dtype=torch.int64, device=device))


def restore_training_state(
    checkpoint: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler | None,
    out_dir: Path,
    dist: Distributed,
) -> RunProgress:
    """Load the checkpoint into the model, optimiser, scheduler and scaler; return the progress."""
    model_state, state = load_checkpoint(checkpoint)
    model.load_state_dict(model_state)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["rng"])
    dist.barrier()  # every rank has read the checkpoint before rank 0 touches best.safetensors
    if dist.is_main:
        restore_best(checkpoint, out_dir / BEST_FILE)
    return RunProgress(**state["progress"])


# ----------------------------------------------------------------------------- the epoch


def train_one_epoch(
    learner: Learner,
    data: TrainData,
    config: TrainConfig,
    epoch: int,
    dist: Distributed,
    *,
    start_step: int = 0,
    max_steps: int | None = None,
) -> dict:
    """One pass over the epoch's plan, or its first ``max_steps`` batches; returns the global
    ``train_loss``, ``train_top1``, the optimizer ``steps`` made and the sample counts.

    The plan and all augmentation parameters are drawn for the whole epoch from
    ``(seed, epoch)`` before any batch is split across ranks, so they do not depend on the
    number of processes. Mixer and dropout streams are per rank. With ``config.steps`` the
    policy plans at the fractional epoch of ``start_step`` (:func:`step_position`).
    """
    when = epoch if config.steps is None else step_position(config, start_step)
    plan = data.policy.plan(when, config.epochs, data.pool, generator_for(config.seed, "plan", epoch))
    params = epoch_augment_params(data.pipeline, plan, data.pool.num_real, config.seed, epoch)
    mixer_generator = generator_for(config.seed, "mixer", epoch, dist.rank)
    torch.manual_seed(training_seed(config.seed, "torch", epoch, dist.rank))  # dropout and the like
    learner.model.train()
    device = data.pool.images.device
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss * n, correct, n (no per-step sync)
    steps, trained = 0, len(plan.indices)
    for batch in epoch_batches(len(plan.indices), config.batch_size):
        if max_steps is not None and steps == max_steps:
            trained = batch.start  # the step budget ends the epoch here
            break
        positions = torch.arange(batch.start, batch.stop)
        if len(positions) < dist.world_size:
            continue  # a last batch smaller than the number of processes (multi-process only)
        local = shard(positions, dist.rank, dist.world_size)
        indices = plan.indices[local].to(device)
        images = data.pipeline.train(data.pool.images[indices], params[local])
        if config.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        targets = data.pool.targets(indices, data.num_classes)
        # DDP averages gradients over ranks; weighting each rank's mean loss by its share
        # makes that average the gradient of the global batch mean.
        share = len(local) * dist.world_size / len(positions)
        loss, logits, targets = train_step(learner, images, targets, mixer_generator, share, config)
        correct = (logits.argmax(dim=1) == targets.argmax(dim=1)).sum()
        sums += torch.stack([loss.double() * len(local), correct.double(), sums.new_tensor(len(local))])
        steps += 1
    sums = dist.all_reduce_sum(sums).cpu()
    count = max(float(sums[2]), 1.0)
    if trained < len(plan.indices):
        plan = EpochPlan.from_indices(plan.indices[:trained], data.pool)
    return {
        "train_loss": float(sums[0]) / count,
        "train_top1": 100.0 * float(sums[1]) / count,  # against the dominant (mixed) target
        "samples": int(sums[2]),
        "steps": steps,
        "real_samples": plan.real,
        "synthetic_samples": plan.synthetic,
    }


def epoch_augment_params(
    pipeline: InputPipeline, plan: EpochPlan, num_real: int, seed: int, epoch: int
) -> AugmentParams:
    """The epoch's augmentation parameters, one per plan position, paired across arms.

    The real samples take the stream ``(seed, "augment", epoch)`` in their order in the plan,
    the synthetic samples a stream of their own ``(seed, "augment-synthetic", epoch)``. So the
    k-th real sample of an epoch is augmented alike in every arm of the same seed: with a
    policy that keeps the real images' order (real_only, concat, multiples), the same image
    gets the same crop whatever synthetic images surround it. A plan of real samples only
    draws exactly what it always drew.
    """
    is_real = plan.indices < num_real
    real_count = int(is_real.sum())
    real = pipeline.draw(real_count, generator_for(seed, "augment", epoch))
    if real_count == len(plan.indices):
        return real
    synthetic = pipeline.draw(len(plan.indices) - real_count, generator_for(seed, "augment-synthetic", epoch))
    merged = []
    for real_values, synthetic_values in zip(
        (real.top, real.left, real.flip, real.angle), (synthetic.top, synthetic.left, synthetic.flip, synthetic.angle)
    ):
        values = torch.empty(len(plan.indices), dtype=real_values.dtype)
        values[is_real] = real_values
        values[~is_real] = synthetic_values
        merged.append(values)
    return AugmentParams(*merged)


def train_step(
    learner: Learner,
    images: torch.Tensor,
    targets: torch.Tensor,
    generator: torch.Generator,
    share: float,
    config: TrainConfig,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Forward (plain, or through the online mixer), loss in float32, backward, SGD step."""
    with autocast_context(config.precision, images.device, field="precision"):
        if learner.mixer is None:
            logits = learner.model(images)
        else:
            logits, targets = learner.mixer(learner.model, images, targets, learner.loss_fn, generator)
    loss = learner.loss_fn(logits, targets)
    learner.optimizer.zero_grad(set_to_none=True)
    if learner.scaler is not None:
        learner.scaler.scale(loss * share).backward()
        learner.scaler.step(learner.optimizer)
        learner.scaler.update()
    else:
        (loss * share).backward()
        learner.optimizer.step()
    if learner.step_scheduler is not None:
        learner.step_scheduler.step()
    return loss.detach(), logits.detach(), targets.detach()


@torch.no_grad()
def evaluate(
    model: nn.Module,
    split: EvalSet,
    pipeline: InputPipeline,
    loss_fn: LossFn,
    num_classes: int,
    config: TrainConfig,
    dist: Distributed,
) -> dict[str, Any]:
    """Metrics of ``model`` on ``split`` (centre crop); each rank evaluates its shard and the
    sums are all-reduced, so every rank gets the metrics of the whole split."""
    model.eval()
    accumulator = EvalAccumulator(num_classes)
    positions = shard(torch.arange(len(split.labels)), dist.rank, dist.world_size)
    for batch in epoch_batches(len(positions), eval_batch_size(config)):
        indices = positions[batch].to(split.images.device)
        images = pipeline.eval(split.images[indices])
        if config.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        labels = split.labels[indices]
        with autocast_context(config.precision, images.device, field="precision"):
            logits = model(images)
        loss = loss_fn(logits, F.one_hot(labels, num_classes).float())
        accumulator.update(logits, labels, float(loss) * len(labels))
    if dist.enabled:
        accumulator.load_vector(dist.all_reduce_sum(accumulator.as_vector()))
    return accumulator.summary()


def keep_best_weights(
    progress: RunProgress, epoch: int, val_metrics: dict | None, weights: Callable[[], dict], best: BestWeights
) -> None:
    """Keep the weights (``weights()``: the model's state dict) for ``best.safetensors`` when
    validation top-1 improves (ties keep the earlier)."""
    if val_metrics is None or not val_metrics["top1"] > progress.best_val_top1:
        return
    progress.best_val_top1 = val_metrics["top1"]
    progress.best_epoch = epoch + 1  # epochs are numbered from 1 wherever people read them
    progress.best_val = val_metrics
    best.keep(weights(), progress.best_epoch)


def record_epoch(progress: RunProgress, stats: dict, test_metrics: dict | None, seconds: float) -> None:
    progress.real_samples += stats["real_samples"]
    progress.synthetic_samples += stats["synthetic_samples"]
    progress.wall_seconds += seconds
    if test_metrics is not None:
        progress.test_top1_history.append(test_metrics["top1"])


def write_checkpoint(
    out_dir: Path,
    model_state: dict[str, torch.Tensor],
    optimizer_state: dict[str, Any],
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler | None,
    progress: RunProgress,
    dist: Distributed,
) -> None:
    """Rank 0 writes the checkpoint (the model's and the optimiser's ``state_dict``); the
    others wait so that no rank runs ahead of it."""
    if dist.is_main:
        best = out_dir / BEST_FILE
        state = {
            "epoch": progress.epoch,
            "optimizer": optimizer_state,
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else {},
            "rng": torch.get_rng_state(),
            "progress": asdict(progress),
        }
        save_checkpoint(out_dir, model_state, state, best if best.is_file() else None)
    dist.barrier()


def select_final_weights(
    model: nn.Module, progress: RunProgress, out_dir: Path, dist: Distributed, has_val: bool
) -> str:
    """Load the best-validation weights; without a validation set keep (and save) the last."""
    best = out_dir / BEST_FILE
    if has_val and progress.best_epoch >= 0:
        model.load_state_dict(load_weights(best))
        return "val"
    progress.best_epoch = progress.epoch  # the last epoch, numbered from 1
    if dist.is_main:
        save_weights(best, model.state_dict(), {"epoch": str(progress.best_epoch)})
    dist.barrier()
    return "last"


def reference_numbers(progress: RunProgress) -> dict[str, float]:
    history = progress.test_top1_history
    return {
        "best_test_top1": max(history) if history else math.nan,
        "median_last10_test_top1": median_of_last(history, 10),
    }


# ----------------------------------------------------------------------------- logging


def metric_columns(config: TrainConfig, num_classes: int, has_val: bool) -> list[str]:
    """The per-epoch columns of metrics.csv (fixed for the whole run)."""

    def split_columns(split: str) -> list[str]:
        top5 = [f"{split}_top5"] if num_classes >= 5 else []
        return [f"{split}_loss", f"{split}_top1", *top5, f"{split}_balanced_accuracy"]

    columns = ["lr", "train_loss", "train_top1"]
    if has_val:
        columns += split_columns("val")
    if config.report_reference:
        columns += split_columns("test")
    return columns + ["real_samples", "synthetic_samples", "epoch_seconds", "samples_per_second"]


def epoch_row(lr: float, stats: dict, val: dict | None, test: dict | None, seconds: float) -> dict[str, Any]:
    row: dict[str, Any] = {
        "lr": lr,
        "train_loss": stats["train_loss"],
        "train_top1": stats["train_top1"],
        "real_samples": stats["real_samples"],
        "synthetic_samples": stats["synthetic_samples"],
        "epoch_seconds": seconds,
        "samples_per_second": stats["samples"] / stats["train_seconds"] if stats["train_seconds"] > 0 else math.nan,
    }
    for split, metrics in (("val", val), ("test", test)):
        for name, value in (metrics or {}).items():
            if name != "per_class":
                row[f"{split}_{name}"] = value
    return row


def training_done(config: TrainConfig, progress: RunProgress, epochs_done: int | None = None) -> bool:
    """Whether the run has made its ``steps`` optimizer steps, or trained its ``epochs``
    (``epochs_done``: the epochs finished, when ``progress.epoch`` is not yet updated)."""
    if config.steps is not None:
        return progress.optimizer_steps >= config.steps
    return (progress.epoch if epochs_done is None else epochs_done) >= config.epochs


def training_fraction(config: TrainConfig, progress: RunProgress, epochs_done: int) -> float:
    """The fraction of training done: optimizer steps of ``steps``, or epochs of ``epochs``."""
    if config.steps is not None:
        return progress.optimizer_steps / config.steps
    return epochs_done / config.epochs


def in_convergence_window(position: float) -> bool:
    """Whether an epoch ending at ``position`` lies in the last ``CONVERGENCE_WINDOW`` of
    training, where every epoch is validated so the convergence check has its points."""
    return position >= 1.0 - CONVERGENCE_WINDOW - 1e-9


def is_eval_epoch(config: TrainConfig, epoch: int, position: float, last: bool) -> bool:
    """Whether to validate after ``epoch`` (from 0), which ends at ``position`` of training:
    every ``eval_every`` epochs and after the last; ``eval_every`` None: every epoch, or on
    the fast path every ``SPARSE_EVAL_EVERY``-th and every one in the last ``VALIDATE_TAIL``."""
    if last:
        return True
    if config.eval_every is not None:
        return (epoch + 1) % config.eval_every == 0
    if not config.fast:
        return True
    return (epoch + 1) % SPARSE_EVAL_EVERY == 0 or position >= 1.0 - VALIDATE_TAIL - 1e-9


def is_checkpoint_epoch(config: TrainConfig, epoch: int, last: bool, seconds_since: float) -> bool:
    """Whether to write a checkpoint after ``epoch``: every ``checkpoint_every`` epochs and after
    the last; ``checkpoint_every`` None: every epoch, or on the fast path once
    ``CHECKPOINT_SECONDS`` have passed since the last checkpoint (or the start)."""
    if last:
        return True
    if config.checkpoint_every is not None:
        return (epoch + 1) % config.checkpoint_every == 0
    if not config.fast:
        return True
    return seconds_since >= CHECKPOINT_SECONDS
