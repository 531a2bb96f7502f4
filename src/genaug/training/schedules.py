"""rho(t): the probability that a real sample is replaced by a synthetic one at epoch t.

The curriculum data policy (docs/methods/progressive-scheduling.md) keeps an epoch as long as the real set and
swaps each sample for a synthetic sample of its class with probability rho(t), epoch t
counted from 0 of T. Each schedule is a function registered in :data:`BLEND_SCHEDULES`
(``@BLEND_SCHEDULES.register("name")``)::

    blend_ratio("step", epoch=150, total_epochs=300)            # 0.5
    blend_ratio("warmup", 175, 300, warmup_epochs=50)           # 0.5
    blend_ratio("constant", 3, 10, p=0.25)                      # 0.25
"""

from __future__ import annotations

import bisect
import inspect
import math
from collections.abc import Sequence
from numbers import Real

from genaug.registry import Registry

#: Blend schedule name -> ``fn(epoch, total_epochs, **params) -> float``.
BLEND_SCHEDULES = Registry("rho schedule", key="schedule")


def schedule_parameters(name: str) -> set[str]:
    """The keyword parameters schedule ``name`` takes (besides ``epoch`` and ``total_epochs``)."""
    return {p for p in inspect.signature(BLEND_SCHEDULES.get(name)).parameters if p not in ("epoch", "total_epochs")}


def blend_ratio(name: str, epoch: float, total_epochs: int, **kw: object) -> float:
    """rho(epoch) of schedule ``name`` over ``total_epochs``, in [0, 1].

    ``epoch`` must lie in [0, total_epochs]; ``kw`` are the schedule's parameters.
    """
    fn = BLEND_SCHEDULES.get(name)
    if isinstance(total_epochs, bool) or not isinstance(total_epochs, int) or total_epochs < 1:
        raise ValueError(f"total_epochs must be a positive int, got {total_epochs!r}")
    if isinstance(epoch, bool) or not isinstance(epoch, Real) or not 0 <= epoch <= total_epochs:
        raise ValueError(f"epoch must be a number in [0, {total_epochs}], got {epoch!r}")
    try:
        inspect.signature(fn).bind(epoch, total_epochs, **kw)
    except TypeError:
        params = [p for p in inspect.signature(fn).parameters if p not in ("epoch", "total_epochs")]
        raise ValueError(
            f"schedule {name!r} takes parameters {params or 'none'}, got {sorted(kw)}"
        ) from None
    return float(fn(epoch, total_epochs, **kw))


def check_probability(name: str, value: float) -> float:
    """``value`` when it is in [0, 1]; else a ValueError naming ``name``."""
    if not 0 <= value <= 1:
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return value


@BLEND_SCHEDULES.register("linear")
def linear(epoch: float, total_epochs: int) -> float:
    """rho = t / T."""
    return epoch / total_epochs


@BLEND_SCHEDULES.register("step")
def step(
    epoch: float,
    total_epochs: int,
    milestones: Sequence[float] = (100, 200),
    values: Sequence[float] = (0.0, 0.5, 1.0),
) -> float:
    """rho = values[i] for milestones[i-1] <= t < milestones[i] (the reference: 0, then
    0.5 from epoch 100, then 1.0 from epoch 200)."""
    if len(values) != len(milestones) + 1:
        raise ValueError(f"step needs one more value than milestones, got {len(values)} and {len(milestones)}")
    if any(b <= a for a, b in zip(milestones, milestones[1:])):
        raise ValueError(f"milestones must increase strictly, got {list(milestones)}")
    for value in values:
        check_probability("step values", value)
    return float(values[bisect.bisect_right(list(milestones), epoch)])


@BLEND_SCHEDULES.register("warmup")
def warmup(epoch: float, total_epochs: int, warmup_epochs: float = 50) -> float:
    """rho = 0 for t < w, then min(1, (t - w) / (T - w)).

    When T <= w there is no ramp: rho is 0 before w and 1 from w on.
    """
    if warmup_epochs < 0:
        raise ValueError(f"warmup_epochs must be >= 0, got {warmup_epochs}")
    if epoch < warmup_epochs:
        return 0.0
    if total_epochs <= warmup_epochs:
        return 1.0
    return min(1.0, (epoch - warmup_epochs) / (total_epochs - warmup_epochs))


@BLEND_SCHEDULES.register("cosine")
def cosine(epoch: float, total_epochs: int) -> float:
    """rho = (1 - cos(pi t / T)) / 2."""
    return (1 - math.cos(math.pi * epoch / total_epochs)) / 2


@BLEND_SCHEDULES.register("constant")
def constant(epoch: float, total_epochs: int, p: float) -> float:
    """rho = p at every epoch."""
    check_probability("p", p)
    return float(p)
