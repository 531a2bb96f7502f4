"""Learning-rate schedules, stepped once per epoch (docs/methods/training-recipes.md), or once per optimizer
step when a run is given ``steps`` (below).

The learning rate of epoch ``t`` (from 0) is ``lr * lr_factor(t, ...)``:

- ``step``: a linear warm-up ``w0 + (1 - w0) * t / W`` for ``t < W``, then 1, multiplied by
  ``decay`` at every milestone reached (CIFAR recipe: W = 5, w0 = 0.01, x0.1 at 100, 200);
- ``cosine``: ``(1 + cos(pi * t / T)) / 2`` over ``T = epochs``, no warm-up (SDI recipe;
  equals ``CosineAnnealingLR(T_max=epochs)`` with ``eta_min = 0``).

With ``steps = N`` (compute-matched runs) the same formulas are evaluated at the fractional
epoch ``t = s / N * epochs`` after ``s`` optimizer steps, and the scheduler is stepped after
every optimizer step: step ``s`` (from 0) trains at ``lr * lr_factor(s / N * epochs)``, and
after step N the schedule stands at its end value ``lr_factor(epochs)`` (0 for cosine).

Each schedule is registered in :data:`genaug.training.registry.LR_SCHEDULES`
(``lr_schedule: cosine``); torch is imported only to build the scheduler.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from genaug.training.config import TrainConfig
from genaug.training.registry import LR_SCHEDULES

if TYPE_CHECKING:
    import torch


def step_factor(
    epoch: int,
    warmup_epochs: int = 5,
    warmup_factor: float = 0.01,
    milestones: Sequence[int] = (100, 200),
    decay: float = 0.1,
) -> float:
    """Warm-up then step decay: ``w0 + (1 - w0) * t / W`` for ``t < W``, then ``decay ** k``."""
    if epoch < warmup_epochs:
        return warmup_factor + (1.0 - warmup_factor) * epoch / warmup_epochs
    return decay ** bisect.bisect_right(list(milestones), epoch)


def cosine_factor(epoch: int, epochs: int) -> float:
    """Cosine annealing to 0 over ``epochs``: ``(1 + cos(pi * t / T)) / 2``."""
    return 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))


@LR_SCHEDULES.register("step")
def step_schedule(config: TrainConfig, epoch: int) -> float:
    """``lr_schedule: step``: :func:`step_factor` with the config's warm-up and milestones."""
    return step_factor(epoch, config.warmup_epochs, config.warmup_factor, config.milestones, config.lr_decay)


@LR_SCHEDULES.register("cosine")
def cosine_schedule(config: TrainConfig, epoch: int) -> float:
    """``lr_schedule: cosine``: :func:`cosine_factor` over ``config.epochs``."""
    return cosine_factor(epoch, config.epochs)


def lr_factor(config: TrainConfig, epoch: float) -> float:
    """The factor on ``config.lr`` during ``epoch`` for a resolved config (``LR_SCHEDULES``);
    ``epoch`` is fractional in steps mode."""
    return LR_SCHEDULES.get(config.lr_schedule)(config, epoch)


def step_position(config: TrainConfig, step: int) -> float:
    """The fractional epoch ``step / steps * epochs`` after ``step`` of ``config.steps`` optimizer steps."""
    return step / config.steps * config.epochs


def make_lr_scheduler(optimizer: "torch.optim.Optimizer", config: TrainConfig) -> "torch.optim.lr_scheduler.LambdaLR":
    """A ``LambdaLR`` for ``optimizer``, counting epochs, or optimizer steps when ``config.steps``
    is set (:func:`step_position`); its state is plain numbers (checkpoint-safe)."""
    import torch

    def factor(count: int) -> float:  # a plain function: LambdaLR leaves it out of state_dict
        return lr_factor(config, count if config.steps is None else step_position(config, count))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
