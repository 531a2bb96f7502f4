"""Seeds until precise: ``seeds: {min: 3, max: 20, halfwidth: 2.0, step: 2}``.

Every arm starts with seeds ``0 .. min-1``. After each round of training, every comparison
of the table (each arm against the baseline, in every compute view, and the comparisons the
experiment names) gets its paired 95 % interval (:mod:`genaug.experiment.stats`). An arm
whose interval against a comparison is wider than ``halfwidth`` points on either side gets
``step`` more seeds, and so does the arm it is compared with (a difference needs both runs of
a seed), up to ``max``. The rounds stop when every interval is narrow enough or at ``max``.

The rule looks only at the intervals' **width**, never at their position or at a p-value:
stopping when a result turns significant would make significance more likely than the
test's level says; stopping on precision does not. The decisions are a function of the
finished runs alone, so a stopped ``genaug run`` started again replays them and continues.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import Field, model_validator

from genaug.config import StrictModel

__all__ = ["SeedRule", "SeedRound", "next_round", "stop_reasons"]


class SeedRule(StrictModel):
    """How many seeds each arm gets: ``min`` to start, ``step`` more per round while an interval is
    wider than ``halfwidth`` points on either side, at most ``max``."""

    min: int = Field(default=3, ge=2)
    max: int = Field(default=20, ge=2)
    halfwidth: float = Field(default=2.0, gt=0)
    step: int = Field(default=2, ge=1)

    @model_validator(mode="after")
    def _check(self) -> "SeedRule":
        if self.max < self.min:
            raise ValueError(f"max ({self.max}) must be >= min ({self.min})")
        return self

    def first(self) -> list[int]:
        return list(range(self.min))


@dataclass
class SeedRound:
    """One round's decision: the seeds each arm gets next and why (for the log and the report)."""

    number: int
    added: dict[str, list[int]] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)

    def lines(self) -> list[str]:
        return [f"round {self.number}: {arm} +{len(seeds)} seeds ({self.reasons[arm]})" for arm, seeds in self.added.items()]


def next_round(rule: SeedRule, seeds: dict[str, list[int]], comparisons: list[Any], number: int) -> SeedRound:
    """The seeds to add after a round, given the arms' current ``seeds`` (``0 .. n-1``) and the
    table's ``comparisons`` (:class:`genaug.experiment.stats.Comparison`); empty when done.

    A comparison pairs the seeds both arms have (``m`` of them); when its interval is too wide,
    both arms are brought to ``m + step`` seeds (at most ``max``), so the new seeds pair too.
    """
    target = {arm: len(have) for arm, have in seeds.items()}
    reasons: dict[str, str] = {}
    for comparison in comparisons:
        if comparison.n >= 2 and comparison.halfwidth <= rule.halfwidth:
            continue
        paired = min(len(seeds.get(comparison.arm, [])), len(seeds.get(comparison.against, [])))
        wanted = min(rule.max, paired + rule.step)
        reason = (
            f"{comparison.label}, {comparison.view}: half-width {comparison.halfwidth:.2f} > {rule.halfwidth:g}"
            if comparison.n >= 2
            else f"{comparison.label}, {comparison.view}: {comparison.n} paired seed(s)"
        )
        for arm in (comparison.arm, comparison.against):
            if wanted > target.get(arm, 0):
                target[arm] = wanted
                reasons.setdefault(arm, reason)
    decision = SeedRound(number)
    for arm, count in target.items():
        have = len(seeds.get(arm, []))
        if count > have:
            decision.added[arm] = list(range(have, count))
            decision.reasons[arm] = reasons[arm]
    return decision


def stop_reasons(rule: SeedRule, seeds: dict[str, list[int]], comparisons: list[Any]) -> dict[str, str]:
    """Why each arm stopped getting seeds: every interval narrow enough, or ``max`` reached."""
    reasons: dict[str, str] = {}
    for arm, have in seeds.items():
        widest = max(
            (c.halfwidth for c in comparisons if arm in (c.arm, c.against) and c.n >= 2), default=None
        )
        if widest is None:
            reasons[arm] = f"{len(have)} seeds (no comparison)"
        elif widest <= rule.halfwidth:
            reasons[arm] = f"precise: widest half-width {widest:.2f} <= {rule.halfwidth:g} at {len(have)} seeds"
        else:
            reasons[arm] = f"max seeds ({rule.max}) reached: widest half-width {widest:.2f} > {rule.halfwidth:g}"
    return reasons
