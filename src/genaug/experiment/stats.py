"""Verdicts on differences between arms: paired intervals, tests, Holm's correction, seeds needed.

An experiment trains every arm with the same seeds, and seed ``i`` of every arm starts from
the same initial weights and sees the real images in the same order
(:mod:`genaug.training.policies`), so the natural unit of comparison is the **per-seed
difference** ``d_i = x_i - y_i`` of two arms' test top-1 over the seeds both have. On those:

- **mean and 95 % interval**: Student's t interval on the paired differences,
  ``mean(d) +- t_{0.975, n-1} * sd(d) / sqrt(n)`` (:func:`scipy.stats.ttest_rel`). It is exact
  when the differences are normal and close to nominal for the 3-20 seeds an experiment
  affords, where bootstrap intervals are known to be too narrow (they cannot widen for the
  uncertainty in ``sd`` itself). It is not corrected for multiplicity: the verdict is.
- **p-value**: the paired t test (default), or the exact sign-flip permutation test of the
  mean difference (``test: permutation``, all ``2^n`` sign patterns; no normality assumed).
- **Holm's correction** over the comparisons of one table (one compute view):
  :func:`statsmodels.stats.multitest.multipletests`. It controls the family-wise error rate
  without assuming independence between comparisons (they share the baseline's runs).
- **probability of improvement** ``P(X > Y)``: the chance that a run of X beats a run of Y,
  ties counting one half, over all pairs of runs (the Mann-Whitney U statistic over
  ``n * m``, as ``rliable`` defines it); 0.5 is a coin toss.
- **verdict**: ``better`` / ``worse`` when the Holm-adjusted p is below ``alpha`` (0.05),
  by the sign of the mean; ``not resolved`` otherwise; ``too few seeds`` below three pairs
  (with two, two differences that happen to agree would look certain).
- differences without any spread have no t statistic: their p is the exact sign-flip test's.

For a comparison that is not resolved, :func:`seeds_to_resolve` estimates how many seeds
would make the interval exclude zero if the mean and spread stayed as observed, and
:func:`seeds_for_halfwidth` how many make the interval as narrow as asked. Seeds are added
on precision (the interval's half-width), never on significance, so stopping does not bias
the test (:mod:`genaug.experiment.seeds`).

The test split's own noise is separate from the seed spread: one test image moves top-1 by
``100 / n_test`` points, and the binomial standard error of one run's top-1 ``p`` is
``100 * sqrt(p (1 - p) / n_test)`` (:func:`test_standard_error`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from genaug.files import json_safe

__all__ = [
    "Comparison",
    "compare",
    "holm",
    "one_image_points",
    "paired_differences",
    "probability_of_improvement",
    "seeds_for_halfwidth",
    "seeds_to_resolve",
    "t_interval",
    "test_standard_error",
    "with_holm",
]

Test = Literal["t", "permutation"]
LEVEL = 0.95
ALPHA = 0.05
#: Fewest paired seeds for a verdict: with two, one degree of freedom, two differences that
#: happen to agree would pass for certainty.
MIN_SEEDS = 3
BETTER, WORSE, UNRESOLVED, TOO_FEW = "better", "worse", "not resolved", "too few seeds"


@dataclass
class Comparison:
    """``arm`` against ``against`` in one compute ``view``, over the seeds both arms have."""

    arm: str
    against: str
    view: str
    seeds: list[int]
    differences: list[float]
    mean: float
    low: float
    high: float
    p: float
    prob_improvement: float
    test: str = "t"
    level: float = LEVEL
    p_holm: float = math.nan
    verdict: str = TOO_FEW
    seeds_to_resolve: int | None = None
    named: bool = False  # named in the experiment's ``compare:`` (else: an arm against the baseline)
    notes: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.seeds)

    @property
    def halfwidth(self) -> float:
        return (self.high - self.low) / 2

    @property
    def label(self) -> str:
        return f"{self.arm} vs {self.against}"

    def interval_text(self) -> str:
        """``+1.2 [-2.9, +5.3]`` (points of top-1)."""
        if not math.isfinite(self.low):
            return f"{self.mean:+.1f} [n/a]"
        return f"{self.mean:+.1f} [{self.low:+.1f}, {self.high:+.1f}]"

    def sentence(self) -> str:
        """One plain sentence: ``dm_all@parity vs dm_single: +1.2 [-2.9, +5.3], p = 0.52, 12 seeds: not resolved``."""
        p = "p n/a" if not math.isfinite(self.p_holm) else f"p {_p_text(self.p_holm)}"
        adjusted = " (Holm)" if math.isfinite(self.p_holm) else ""
        text = f"{self.label}: {self.interval_text()}, {p}{adjusted}, {self.n} seed{'s' if self.n != 1 else ''}: {self.verdict}"
        if self.verdict == UNRESOLVED and self.seeds_to_resolve is not None:
            text += f" (about {self.seeds_to_resolve} seeds would resolve a difference this size in this table)"
        elif self.verdict == UNRESOLVED:
            text += " (no difference to resolve at this spread)"
        return text

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["halfwidth"] = self.halfwidth
        data["sentence"] = self.sentence()
        return json_safe(data)


def paired_differences(
    x: Mapping[int, float], y: Mapping[int, float]
) -> tuple[list[int], np.ndarray, np.ndarray]:
    """``(seeds, x values, y values)`` over the seeds both arms have, in seed order."""
    seeds = sorted(set(x) & set(y))
    return seeds, np.array([x[s] for s in seeds], dtype=float), np.array([y[s] for s in seeds], dtype=float)


def t_interval(differences: Sequence[float], level: float = LEVEL) -> tuple[float, float]:
    """Student's t interval of the mean of ``differences``; ``(nan, nan)`` below two values."""
    d = np.asarray(differences, dtype=float)
    if len(d) < 2:
        return math.nan, math.nan
    from scipy import stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy's "nearly identical data" note
        interval = stats.ttest_1samp(d, 0.0).confidence_interval(level)
    if not np.isfinite(interval.low):  # all differences equal: no spread, the interval is the point
        return float(d.mean()), float(d.mean())
    return float(interval.low), float(interval.high)


def p_value(differences: Sequence[float], test: Test = "t") -> float:
    """Two-sided p of "the mean difference is zero": paired t, or the exact sign-flip permutation test."""
    d = np.asarray(differences, dtype=float)
    if len(d) < 2:
        return math.nan
    if test not in ("t", "permutation"):
        raise ValueError(f"test must be 't' or 'permutation', got {test!r}")
    from scipy import stats

    # Without spread the t statistic is undefined: the exact sign-flip test still is
    # (all n differences of one sign: p = 2 / 2^n).
    if test == "t" and float(np.ptp(d)) > 1e-9 * max(1.0, float(np.abs(d).max())):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # scipy's "nearly identical data" note
            return float(stats.ttest_1samp(d, 0.0).pvalue)
    if not np.any(d):
        return 1.0
    result = stats.permutation_test((d,), np.mean, permutation_type="samples", n_resamples=np.inf, alternative="two-sided")
    return float(result.pvalue)


def probability_of_improvement(x: Sequence[float], y: Sequence[float]) -> float:
    """``P(X > Y)`` over all pairs of runs, ties counting one half: ``U / (n m)``."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if not len(x) or not len(y):
        return math.nan
    from scipy import stats

    return float(stats.mannwhitneyu(x, y, alternative="two-sided").statistic / (len(x) * len(y)))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values (NaN entries are left out of the family and stay NaN)."""
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(len(p), math.nan)
    finite = np.isfinite(p)
    if finite.any():
        from statsmodels.stats.multitest import multipletests

        adjusted[finite] = multipletests(p[finite], method="holm")[1]
    return adjusted.tolist()


def seeds_for_halfwidth(differences: Sequence[float], halfwidth: float, level: float = LEVEL, limit: int = 1000) -> int | None:
    """The fewest seeds whose t interval would be at most ``halfwidth`` wide on each side,
    if the differences' spread stayed as observed; None with fewer than two differences."""
    d = np.asarray(differences, dtype=float)
    if len(d) < 2:
        return None
    sd = float(d.std(ddof=1))
    if sd == 0:
        return 2
    from scipy import stats

    for n in range(2, limit + 1):
        if stats.t.ppf(0.5 + level / 2, n - 1) * sd / math.sqrt(n) <= halfwidth:
            return n
    return limit


def seeds_to_resolve(differences: Sequence[float], level: float = LEVEL, limit: int = 1000) -> int | None:
    """The fewest seeds whose interval would exclude zero if the mean and spread stayed as
    observed (ignoring the multiplicity correction); None when the mean is zero or there are
    fewer than two differences, ``limit`` when even that many would not do."""
    d = np.asarray(differences, dtype=float)
    if len(d) < 2 or float(d.mean()) == 0.0:
        return None
    return seeds_for_halfwidth(d, abs(float(d.mean())) * (1 - 1e-9), level, limit)


def compare(
    arm: str,
    against: str,
    x: Mapping[int, float],
    y: Mapping[int, float],
    *,
    view: str = "natural",
    test: Test = "t",
    level: float = LEVEL,
    named: bool = False,
) -> Comparison:
    """The paired comparison of ``arm`` (per-seed values ``x``) against ``against`` (``y``)."""
    seeds, xs, ys = paired_differences(x, y)
    d = xs - ys
    low, high = t_interval(d, level)
    return Comparison(
        arm=arm,
        against=against,
        view=view,
        seeds=seeds,
        differences=d.tolist(),
        mean=float(d.mean()) if len(d) else math.nan,
        low=low,
        high=high,
        p=p_value(d, test),
        prob_improvement=probability_of_improvement(list(x.values()), list(y.values())),
        test=test,
        level=level,
        seeds_to_resolve=seeds_to_resolve(d, level),
        named=named,
    )


def with_holm(comparisons: list[Comparison], alpha: float = ALPHA) -> list[Comparison]:
    """Fill in the Holm-adjusted p and the verdict of every comparison of one table.

    ``seeds_to_resolve`` of an unresolved comparison is counted at the level that resolves it
    whatever the other comparisons do: an interval at ``1 - alpha / m`` (m comparisons) that
    excludes zero has ``p < alpha / m``, so Holm's adjusted p is below ``alpha``.
    """
    family = sum(1 for c in comparisons if math.isfinite(c.p))
    for comparison, adjusted in zip(comparisons, holm([c.p for c in comparisons])):
        comparison.p_holm = adjusted
        if comparison.n < MIN_SEEDS or not math.isfinite(adjusted):
            comparison.verdict = TOO_FEW
        elif adjusted < alpha:
            comparison.verdict = BETTER if comparison.mean > 0 else WORSE
        else:
            comparison.verdict = UNRESOLVED
        if comparison.verdict in (UNRESOLVED, TOO_FEW):
            level = 1 - alpha / max(family, 1)
            comparison.seeds_to_resolve = seeds_to_resolve(comparison.differences, level)
    return comparisons


def test_standard_error(top1: float, n_test: int) -> float:
    """Binomial standard error of one run's top-1 (in points) on ``n_test`` images."""
    if n_test < 1:
        return math.nan
    p = min(max(top1 / 100.0, 0.0), 1.0)
    return 100.0 * math.sqrt(p * (1 - p) / n_test)


def one_image_points(n_test: int) -> float:
    """How many points of top-1 one test image is worth."""
    return 100.0 / n_test if n_test else math.nan


def _p_text(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"= {p:.3f}" if p < 0.01 else f"= {p:.2f}"
