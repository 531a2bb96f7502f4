"""Several seeds of one run trained together as one stacked model (:func:`train_seeds`).

The runs of an arm differ only in their seed. On the fast path, :func:`train_seeds` trains
up to ``stack_seeds`` of them as one :class:`genaug.models.stacking.SeedStack`: one forward,
backward and fused SGD step per batch for every seed, so the fixed cost of a step of a small
model is paid once for K seeds (benchmarks/RESULTS.md, "Stacked seeds in the trainer").
Inside the stack each seed keeps everything that is its own:

- its data order, augmentation parameters and initial weights, drawn from its seed exactly
  as when it trains alone (:func:`genaug.training.trainer.train_one_epoch`);
- its loss (the stack minimises the sum of the seeds' mean losses, whose gradient in seed k's
  weights is the gradient of seed k's loss alone), validation, best weights, warnings,
  ``metrics.csv`` and ``metrics.json`` in its own run folder;
- its checkpoint, in the layout of a run trained alone (its weights and optimiser state cut
  out of the stack), written for every seed at the same epochs. A killed stack resumes as a
  stack when every unfinished seed has a checkpoint of the same epoch; otherwise each seed
  resumes alone from its own.

A seed trained in a stack of K computes the same function as the seed alone, but float32
sums run in another order in grouped kernels, so its weights are a function of its seed and
of K: rerunning the same runs gives identical results, and a run's test top-1 is a draw of the
same distribution as the seed alone (benchmarks/training_runs.py compares them). Runs train
alone when stacking does not apply: ``fast: false`` or ``stack_seeds: 1``, an online mixer
(it calls the model per batch), several processes, a model the stack cannot hold
(:func:`genaug.models.stacking.stack_problem`), or seeds whose data policy plans different
numbers of samples in some epoch (every batch of the stack holds the same number of images
per seed).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from genaug.checkpoint import BEST_FILE, load_checkpoint, restore_best
from genaug.config import ConfigError
from genaug.data.base import RealDataset
from genaug.data.identity import splits_identity
from genaug.data.synthetic import load_synthetic_set
from genaug.distributed import Distributed, setup_distributed
from genaug.models.stacking import SeedStack, stack_problem
from genaug.progress import progress_bar
from genaug.runtime import autocast_context
from genaug.seeds import generator_for
from genaug.training.config import TrainConfig
from genaug.training.health import loss_warning, uniform_loss
from genaug.training.losses import LossFn, create_loss
from genaug.training.lr_schedule import make_lr_scheduler, step_position
from genaug.training.metrics import EvalAccumulator
from genaug.training.pipeline import InputPipeline, epoch_batches
from genaug.training.policies import DataPolicy, EpochPlan, TrainPool, create_policy
from genaug.training.recipes import resolve_recipe
from genaug.training.run_logger import RunLogger
from genaug.training.trainer import (
    BestWeights,
    EvalSet,
    RunProgress,
    RunResult,
    build_grad_scaler,
    build_model,
    build_optimizer,
    build_train_pool,
    check_splits,
    close_epoch,
    cpu_threads,
    drop_checkpoint_if_asked,
    epoch_augment_params,
    eval_batch_size,
    evaluate,
    finish_run,
    in_convergence_window,
    is_checkpoint_epoch,
    is_eval_epoch,
    metric_columns,
    pack_eval_set,
    prepare_run_dir,
    report_warning,
    run_recipe,
    start_warnings,
    training_done,
    training_fraction,
    write_checkpoint,
)

__all__ = ["stackable", "stacking_problem", "train_seeds"]

log = logging.getLogger("genaug.training")


@dataclass
class SeedRun:
    """One seed's run inside the stack: its config, folder, progress and what it writes."""

    config: TrainConfig
    out_dir: Path
    progress: RunProgress
    best: BestWeights
    policy: DataPolicy
    checkpoint: Path | None


def train_seeds(
    configs: list[TrainConfig],
    splits: dict[str, RealDataset],
    out_dirs: list[str | Path],
    synthetic: RealDataset | str | Path | None = None,
    *,
    resume: bool = True,
) -> list[RunResult]:
    """Train the runs ``configs`` (one config but for ``seed``) into ``out_dirs``, as one stacked
    model of up to ``stack_seeds`` seeds where stacking applies (module doc), else one by one;
    return their results in the order given. Each run folder ends as
    :func:`genaug.training.train` leaves it; ``resume`` as there."""
    if len(configs) != len(out_dirs) or not configs:
        raise ValueError(f"train_seeds needs one output folder per config, got {len(configs)} configs and {len(out_dirs)} folders")
    configs = [resolve_recipe(config) for config in configs]
    check_same_but_seed(configs)
    if isinstance(synthetic, (str, Path)):
        real = splits.get("train")
        synthetic = load_synthetic_set(synthetic, class_names=real.class_names if real is not None else None)
    out_dirs = [Path(out_dir) for out_dir in out_dirs]
    results: dict[int, RunResult] = {}
    with cpu_threads(configs[0].cpu_threads):
        size = max(1, configs[0].stack_seeds)
        for start in range(0, len(configs), size):
            group = list(range(start, min(start + size, len(configs))))
            results.update(train_group([configs[i] for i in group], splits, [out_dirs[i] for i in group], synthetic, resume, group))
    return [results[index] for index in range(len(configs))]


def check_same_but_seed(configs: list[TrainConfig]) -> None:
    """Raise a ConfigError when two configs differ in anything but ``seed`` and ``logging``, or
    share a seed."""
    ignored = {"seed", "logging"}
    first = configs[0].model_dump(mode="json", exclude=ignored)
    for config in configs[1:]:
        other = config.model_dump(mode="json", exclude=ignored)
        differences = sorted(key for key in first if first[key] != other[key])
        if differences:
            raise ConfigError(f"runs trained together must differ only in seed; these fields differ: {differences}")
    seeds = [config.seed for config in configs]
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"runs trained together need distinct seeds, got {seeds}")


def stackable(config: TrainConfig) -> bool:
    """Whether seeds of ``config`` may train as a stack, from the config alone (a model the stack
    cannot hold, or data policies planning unequal epochs, are found when training starts)."""
    return stacking_problem(config, 2, None) is None


def stacking_problem(config: TrainConfig, seeds: int, dist: Distributed | None) -> str | None:
    """Why runs of ``config`` cannot train as a stack, from the config alone (None: they can)."""
    if seeds < 2:
        return "a single run"
    if not config.fast:
        return "fast: false"
    if config.stack_seeds < 2:
        return "stack_seeds: 1"
    if config.mixer != "none":
        return f"the online mixer '{config.mixer}' calls the model itself"
    if dist is not None and dist.world_size > 1:
        return "several processes"
    return None


def train_group(
    configs: list[TrainConfig],
    splits: dict[str, RealDataset],
    out_dirs: list[Path],
    synthetic: RealDataset | None,
    resume: bool,
    positions: list[int],
) -> dict[int, RunResult]:
    """Train one stack's worth of runs (``positions``: their places in the caller's list)."""
    dist = setup_distributed(configs[0].device)
    reason = stacking_problem(configs[0], len(configs), dist)
    if reason is not None:  # known from the config: each run prepares its own folder, once
        if len(configs) > 1:
            log.info("training %d seeds one by one: %s", len(configs), reason)
        return {position: run_recipe(config, splits, out_dir, synthetic, resume, None)
                for position, config, out_dir in zip(positions, configs, out_dirs)}  # fmt: skip
    train_set, val_set, test_set = check_splits(splits, synthetic)
    identity = splits_identity(splits)
    results: dict[int, RunResult] = {}
    runs: list[tuple[int, TrainConfig, Path, Path | None]] = []
    for position, config, out_dir in zip(positions, configs, out_dirs):
        checkpoint, finished = prepare_run_dir(out_dir, config, resume, dist, identity)
        if finished:
            drop_checkpoint_if_asked(out_dir, config, dist)
            results[position] = RunResult.load(out_dir)
        else:
            runs.append((position, config, out_dir, checkpoint))

    def alone(reason: str) -> dict[int, RunResult]:
        if len(runs) > 1:
            log.info("training %d seeds one by one: %s", len(runs), reason)
        for position, config, out_dir, _ in runs:
            results[position] = run_recipe(config, splits, out_dir, synthetic, True, None)
        return results

    if not runs:
        return results
    reason = stacking_problem(configs[0], len(runs), dist)
    if reason is not None:
        return alone(reason)
    config = configs[0]
    pool = build_train_pool(train_set, synthetic, config, dist.device)
    models = [build_model(run_config, train_set.num_classes, dist.device, None) for _, run_config, _, _ in runs]
    reason = stack_problem(models[0], config.augmentation.crop, in_channels=pool.images.shape[1])
    if reason is None:
        reason = plan_problem([run_config for _, run_config, _, _ in runs], pool)
    states = [load_checkpoint(checkpoint) if checkpoint is not None else None for _, _, _, checkpoint in runs]
    if reason is None and len({state[1]["progress"]["optimizer_steps"] if state else 0 for state in states}) > 1:
        reason = "their checkpoints are at different points of training"
    if reason is not None:
        return alone(reason)

    stack = SeedStack(models)
    if config.channels_last:
        stack = stack.to(memory_format=torch.channels_last)
    seed_runs = [
        SeedRun(run_config, out_dir, RunProgress(), BestWeights(out_dir / BEST_FILE, deferred=True, write=True),
                create_policy(run_config.data_policy, **run_config.data_policy_kwargs), checkpoint)
        for _, run_config, out_dir, checkpoint in runs
    ]  # fmt: skip
    trained = train_stack(stack, seed_runs, states, pool, train_set, val_set, test_set, splits, dist)
    results.update(zip([position for position, _, _, _ in runs], trained))
    return results


def plan_problem(configs: list[TrainConfig], pool: TrainPool) -> str | None:
    """Why the seeds' data policies would make batches of different sizes (None: they never do).

    Plans every epoch of every seed as the trainer will (policies are cheap to plan) and
    compares the sizes; with ``steps`` it follows the step budget epoch by epoch.
    """
    sizes = [planned_sizes(config, pool) for config in configs]
    if any(size != sizes[0] for size in sizes[1:]):
        return f"the data policy '{configs[0].data_policy}' plans epochs of different sizes for different seeds"
    return None


def planned_sizes(config: TrainConfig, pool: TrainPool) -> list[int]:
    """The number of samples each epoch of ``config``'s run plans."""
    policy = create_policy(config.data_policy, **config.data_policy_kwargs)
    if config.steps is None:
        return [len(policy.plan(epoch, config.epochs, pool, generator_for(config.seed, "plan", epoch)).indices)
                for epoch in range(config.epochs)]  # fmt: skip
    sizes, steps, epoch = [], 0, 0
    while steps < config.steps:
        size = len(policy.plan(step_position(config, steps), config.epochs, pool, generator_for(config.seed, "plan", epoch)).indices)
        batches = len(epoch_batches(size, config.batch_size))
        if batches == 0:
            break  # the trainer raises the error
        sizes.append(size)
        steps, epoch = steps + min(batches, config.steps - steps), epoch + 1
    return sizes


def train_stack(
    stack: SeedStack,
    runs: list[SeedRun],
    states: list,
    pool: TrainPool,
    train_set: RealDataset,
    val_set: RealDataset | None,
    test_set: RealDataset,
    splits: dict[str, RealDataset],
    dist: Distributed,
) -> list[RunResult]:
    """The epoch loop of :func:`genaug.training.trainer.run_recipe` for a stack of seeds."""
    config = runs[0].config
    num_classes = train_set.num_classes
    optimizer = build_optimizer(stack, config)
    scheduler = make_lr_scheduler(optimizer, config)
    scaler = build_grad_scaler(config, dist.device)
    if states[0] is not None:
        restore_stack(stack, optimizer, scheduler, scaler, runs, states)
    loss_fn = create_loss(config.loss)
    pipeline = InputPipeline(config.augmentation, dist.device)
    val = pack_eval_set(val_set, config, dist.device)
    test = pack_eval_set(test_set, config, dist.device)
    for run in runs:
        start_warnings(run.progress, run.config, val_set, splits, run.out_dir, dist.is_main)
    uniform = uniform_loss(loss_fn, num_classes)
    steps_mode = config.steps is not None
    step_scheduler = scheduler if steps_mode else None
    seeds = [run.config.seed for run in runs]
    columns = metric_columns(config, num_classes, has_val=val is not None)
    last_checkpoint = time.perf_counter()
    lead = runs[0].progress  # every seed's progress counts the same epochs and steps
    bar = progress_bar(config.steps if steps_mode else config.epochs,
                       f"[bold]{'step' if steps_mode else 'epoch'} (seeds {', '.join(map(str, seeds))})",
                       enabled=config.logging.progress, completed=lead.optimizer_steps if steps_mode else lead.epoch,
                       detail="loss {task.fields[loss]}", fields={"loss": "-"})  # fmt: skip
    with contextlib.ExitStack() as open_files:
        loggers = [open_files.enter_context(RunLogger(run.out_dir, run.config, columns, train_set.class_names,
                                                      run.progress.epoch, enabled=True))
                   for run in runs]  # fmt: skip
        display = open_files.enter_context(bar)
        while not training_done(config, lead):
            epoch = lead.epoch
            started = time.perf_counter()
            lr = optimizer.param_groups[0]["lr"]
            budget = config.steps - lead.optimizer_steps if steps_mode else None
            stats = train_stacked_epoch(stack, optimizer, scaler, step_scheduler, loss_fn, runs, pool, pipeline,
                                        num_classes, epoch, lead.optimizer_steps, budget)  # fmt: skip
            train_seconds = time.perf_counter() - started
            if steps_mode and stats[0]["steps"] == 0:
                raise ConfigError(f"steps: epoch {epoch + 1} planned no batch, so {config.steps} steps cannot be made")
            if not steps_mode:
                scheduler.step()
            for run, seed_stats in zip(runs, stats):
                seed_stats["train_seconds"] = train_seconds / len(runs)  # each seed's share of the stack's time
                report_warning(run.progress, loss_warning(seed_stats["train_loss"], uniform, epoch, None if steps_mode else config.epochs),
                               run.out_dir, dist.is_main)  # fmt: skip
                run.progress.optimizer_steps += seed_stats["steps"]
            last = training_done(config, lead, epochs_done=epoch + 1)
            position = training_fraction(config, lead, epochs_done=epoch + 1)
            validate = val is not None and (is_eval_epoch(config, epoch, position, last) or in_convergence_window(position))
            val_metrics = evaluate_stack(stack, val, pipeline, loss_fn, num_classes, config) if validate else [None] * len(runs)
            test_metrics = evaluate_stack(stack, test, pipeline, loss_fn, num_classes, config) if config.report_reference else [None] * len(runs)
            seconds = (time.perf_counter() - started) / len(runs)
            for index, (run, logger) in enumerate(zip(runs, loggers)):
                close_epoch(run.progress, run.best, logger, epoch, lr, stats[index], val_metrics[index], test_metrics[index],
                            seconds, position, functools.partial(stack.seed_state, index))  # fmt: skip
            if is_checkpoint_epoch(config, epoch, last, time.perf_counter() - last_checkpoint):
                optimizer_state = optimizer.state_dict()
                for index, run in enumerate(runs):
                    run.best.flush()
                    write_checkpoint(run.out_dir, stack.seed_state(index), stack.seed_optimizer_state(optimizer_state, index),
                                     scheduler, scaler, run.progress, dist)  # fmt: skip
                last_checkpoint = time.perf_counter()
            display.update(completed=lead.optimizer_steps if steps_mode else epoch + 1,
                           loss=" ".join(f"{seed_stats['train_loss']:.3f}" for seed_stats in stats))

    results = []
    for index, run in enumerate(runs):
        model = build_model(run.config, num_classes, dist.device, None)
        model.load_state_dict(stack.seed_state(index))
        test_split = functools.partial(evaluate, model, test, pipeline=pipeline, loss_fn=loss_fn, num_classes=num_classes,
                                       config=run.config, dist=dist)  # fmt: skip
        results.append(finish_run(run.config, run.out_dir, run.progress, run.best, model, test_split, splits, dist,
                                  model_name=run.config.model, stacked_seeds=[seed for seed in seeds if seed != run.config.seed]))  # fmt: skip
    return results


def restore_stack(
    stack: SeedStack,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler | None,
    runs: list[SeedRun],
    states: list,
) -> None:
    """Load every seed's checkpoint into the stack, its optimiser and the runs' progress."""
    stack.load_seed_states([model_state for model_state, _ in states])
    optimizer.load_state_dict(stack.stack_optimizer_states([state["optimizer"] for _, state in states]))
    scheduler.load_state_dict(states[0][1]["scheduler"])
    if scaler is not None and states[0][1].get("scaler"):
        scaler.load_state_dict(states[0][1]["scaler"])
    torch.set_rng_state(states[0][1]["rng"])
    for run, (_, state) in zip(runs, states):
        restore_best(run.checkpoint, run.out_dir / BEST_FILE)
        run.progress = RunProgress(**state["progress"])


def train_stacked_epoch(
    stack: SeedStack,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    step_scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    loss_fn: LossFn,
    runs: list[SeedRun],
    pool: TrainPool,
    pipeline: InputPipeline,
    num_classes: int,
    epoch: int,
    start_step: int,
    max_steps: int | None,
) -> list[dict]:
    """One epoch of every seed: each seed's plan and augmentation as it draws them alone
    (:func:`genaug.training.trainer.train_one_epoch`), its images in its channel block, one
    step for the stack on the sum of the seeds' mean losses; the seeds' statistics."""
    config = runs[0].config
    when = epoch if config.steps is None else step_position(config, start_step)
    plans = [run.policy.plan(when, config.epochs, pool, generator_for(run.config.seed, "plan", epoch)) for run in runs]
    params = [epoch_augment_params(pipeline, plan, pool.num_real, run.config.seed, epoch) for plan, run in zip(plans, runs)]
    stack.train()
    device = pool.images.device
    sums = torch.zeros(len(runs), 3, dtype=torch.float64, device=device)  # per seed: loss * n, correct, n
    steps, trained = 0, len(plans[0].indices)
    for batch in epoch_batches(len(plans[0].indices), config.batch_size):
        if max_steps is not None and steps == max_steps:
            trained = batch.start
            break
        images, targets = [], []
        for plan, seed_params in zip(plans, params):
            indices = plan.indices[batch].to(device)
            images.append(pipeline.train(pool.images[indices], seed_params[batch]))
            targets.append(pool.targets(indices, num_classes))
        inputs = torch.cat(images, dim=1)
        if config.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        with autocast_context(config.precision, inputs.device, field="precision"):
            logits = stack(inputs)
        losses = torch.stack([loss_fn(logits[:, index], target) for index, target in enumerate(targets)])
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(losses.sum()).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            losses.sum().backward()
            optimizer.step()
        if step_scheduler is not None:
            step_scheduler.step()
        correct = (logits.detach().argmax(dim=2) == torch.stack(targets, dim=1).argmax(dim=2)).sum(dim=0)
        count = len(targets[0])
        sums += torch.stack([losses.detach().double() * count, correct.double(), torch.full_like(correct, count, dtype=torch.float64)], dim=1)
        steps += 1
    sums = sums.cpu()
    stats = []
    for index, plan in enumerate(plans):
        if trained < len(plan.indices):
            plan = EpochPlan.from_indices(plan.indices[:trained], pool)
        count = max(float(sums[index, 2]), 1.0)
        stats.append({
            "train_loss": float(sums[index, 0]) / count,
            "train_top1": 100.0 * float(sums[index, 1]) / count,
            "samples": int(sums[index, 2]),
            "steps": steps,
            "real_samples": plan.real,
            "synthetic_samples": plan.synthetic,
        })  # fmt: skip
    return stats


@torch.no_grad()
def evaluate_stack(
    stack: SeedStack, split: EvalSet, pipeline: InputPipeline, loss_fn: LossFn, num_classes: int, config: TrainConfig
) -> list[dict]:
    """Every seed's metrics on ``split`` (centre crop), the images given to every channel block."""
    stack.eval()
    accumulators = [EvalAccumulator(num_classes) for _ in range(stack.seeds)]
    for batch in epoch_batches(len(split.labels), eval_batch_size(config)):
        images = pipeline.eval(split.images[batch])
        inputs = images.repeat(1, stack.seeds, 1, 1)
        if config.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        labels = split.labels[batch]
        with autocast_context(config.precision, inputs.device, field="precision"):
            logits = stack(inputs)
        targets = F.one_hot(labels, num_classes).float()
        for index, accumulator in enumerate(accumulators):
            loss = loss_fn(logits[:, index], targets)
            accumulator.update(logits[:, index], labels, float(loss) * len(labels))
    return [accumulator.summary() for accumulator in accumulators]
