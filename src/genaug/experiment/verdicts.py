"""The verdict of an experiment: every arm against the baseline, and the named comparisons,
with paired intervals, Holm-corrected p-values and one plain sentence each.

:func:`comparisons` reads the per-seed test top-1 of every arm from the results
(:mod:`genaug.experiment.runner`) and compares, in each compute view
(:mod:`genaug.experiment.compute`):

- every arm against the baseline *of the same view* (in the matched view, the baseline
  trained for the same optimizer steps: the compute-matched baseline);
- the pairs named in the experiment's ``compare:``.

Holm's correction runs over the comparisons of one view (one table). The statistics are
:mod:`genaug.experiment.stats`'s; this module knows the results' layout and writes the
headline, which names a best arm only when its verdict is resolved.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field

from genaug.config import StrictModel
from genaug.experiment import stats

__all__ = ["StatsConfig", "comparisons", "headline", "per_seed", "noise_summary", "verdict_table", "VIEW_TITLES"]

VIEW_TITLES = {"natural": "at the recipe's epochs", "matched": "at matched optimizer steps"}


class StatsConfig(StrictModel):
    """``stats:`` of an experiment file: the test (``t``: paired t; ``permutation``: exact sign
    flips), the interval's ``level`` and the family-wise ``alpha`` of the verdicts."""

    test: Literal["t", "permutation"] = "t"
    level: float = Field(default=0.95, gt=0.5, lt=1.0)
    alpha: float = Field(default=0.05, gt=0.0, lt=0.5)


def view_of(arm: dict[str, Any], view: str) -> dict[str, Any] | None:
    """An arm's entry for ``view`` in the results (None when it has no runs there)."""
    entry = (arm.get("views") or {}).get(view)
    if entry is None and view == "natural" and arm.get("runs"):
        return {"runs": arm["runs"]}  # results written before views existed
    return entry if entry and entry.get("runs") else None


def per_seed(arm: dict[str, Any], view: str = "natural", metric: str = "top1") -> dict[int, float]:
    entry = view_of(arm, view)
    return {run["seed"]: run[metric] for run in entry["runs"]} if entry else {}


def comparisons(results: dict[str, Any], named: list[tuple[str, str]] | None = None, config: StatsConfig | None = None) -> list[stats.Comparison]:
    """Every arm against the baseline and every named pair, in every view of the results, with
    Holm's correction over each view's comparisons."""
    config = config or StatsConfig()
    named = [tuple(pair) for pair in (named if named is not None else results.get("compare", []))]
    arms = {arm["name"]: arm for arm in results["arms"]}
    baseline = results.get("baseline")
    found: list[stats.Comparison] = []
    for view in results.get("views", ["natural"]):
        table = []
        pairs = [(name, baseline, False) for name in arms if name != baseline and baseline in arms]
        pairs += [(a, b, True) for a, b in named if a in arms and b in arms]
        for name, against, is_named in pairs:
            x, y = per_seed(arms[name], view), per_seed(arms[against], view)
            if not x or not y:
                continue
            if is_named and view != "natural" and all(_reused(arms[a], view) for a in (name, against)):
                continue  # both arms' runs are their natural ones: the natural view already has it
            table.append(stats.compare(name, against, x, y, view=view, test=config.test, level=config.level, named=is_named))
        found += stats.with_holm(table, config.alpha)
    return found


def _reused(arm: dict[str, Any], view: str) -> bool:
    return bool(((arm.get("views") or {}).get(view) or {}).get("reused_natural"))


def noise_summary(results: dict[str, Any]) -> dict[str, Any]:
    """The test split's own noise beside the seed spread: images, points per image, the binomial
    standard error at the baseline's mean, and the median seed sd over arms."""
    n_test = int(results.get("dataset", {}).get("test") or 0)
    arms = results["arms"]
    baseline = next((arm for arm in arms if arm["name"] == results.get("baseline")), arms[0] if arms else None)
    level = baseline["top1_mean"] if baseline else math.nan
    spreads = sorted(arm["top1_std"] for arm in arms if len(arm.get("runs", [])) > 1)
    summary = {
        "test_images": n_test,
        "one_image_points": stats.one_image_points(n_test),
        "test_se_at_baseline": stats.test_standard_error(level, n_test) if math.isfinite(level) else math.nan,
        "median_seed_sd": spreads[len(spreads) // 2] if spreads else math.nan,
    }
    return {key: None if isinstance(value, float) and not math.isfinite(value) else value for key, value in summary.items()}


def headline(results: dict[str, Any]) -> str:
    """One or two sentences: the best arm when its verdict is resolved, otherwise what is not
    resolved and how many seeds would be needed."""
    found = [c for c in _comparisons_of(results) if not c.get("named")]
    if not found:
        return "No comparison: the experiment has only the baseline, or fewer than two seeds per arm."
    views = results.get("views", ["natural"])
    view = "matched" if "matched" in views else "natural"
    in_view = [c for c in found if c["view"] == view]
    better = [c for c in in_view if c["verdict"] == stats.BETTER]
    where = VIEW_TITLES[view]
    if better:
        best = max(better, key=lambda c: c["mean"])
        text = (
            f"Best {where}: {best['arm']}, {_interval(best)} points over {best['against']} "
            f"(p {_p(best['p_holm'])}, Holm, {len(best['seeds'])} seeds)."
        )
        others = [c["arm"] for c in better if c is not best]
        if others:
            text += f" Also better than {best['against']}: {', '.join(others)}."
        return text
    worse = [c["arm"] for c in in_view if c["verdict"] == stats.WORSE]
    largest = max(in_view, key=lambda c: c["mean"] if c["mean"] is not None else -math.inf)
    if all(c["verdict"] == stats.TOO_FEW for c in in_view):
        return (
            f"No verdict {where}: {min(len(c['seeds']) for c in in_view)} paired seed(s), and a verdict needs "
            f"{stats.MIN_SEEDS}. The largest difference is {largest['arm']} {_interval(largest)}."
        )
    text = f"No arm is resolved better than {largest['against']} {where}"
    text += f" ({len(in_view)} comparisons, Holm, alpha {results.get('stats', {}).get('alpha', 0.05)})."
    need = largest.get("seeds_to_resolve")
    text += f" The largest difference, {largest['arm']} {_interval(largest)}, is not resolved"
    text += f": about {need} seeds would resolve one that size." if need else "."
    if worse:
        text += f" Resolved worse: {', '.join(worse)}."
    return text


def verdict_table(results: dict[str, Any]):
    """The rich table of deltas with intervals and verdicts, one column group per view."""
    from rich.table import Table

    views = results.get("views", ["natural"])
    found = {(c["arm"], c["view"]): c for c in _comparisons_of(results) if not c.get("named")}
    level = results.get("stats", {}).get("level", 0.95)
    table = Table(title=f"{results['experiment']}: test top-1 (%), difference against {results['baseline']} "
                        f"with {level:.0%} paired interval")  # fmt: skip
    table.add_column("arm", no_wrap=True)
    table.add_column("seeds", justify="right")
    for view in views:
        short = "natural" if view == "natural" else "matched"
        table.add_column(f"{short} steps", justify="right")
        table.add_column(f"{short} top-1", justify="right", no_wrap=True)
        table.add_column(f"{short} delta [CI]", justify="right", no_wrap=True)
        table.add_column(f"{short} verdict", no_wrap=True)
    for arm in results["arms"]:
        row = [arm["name"], str(len(arm.get("runs", [])))]
        for view in views:
            entry = view_of(arm, view)
            if entry is None:
                row += ["", "", "", ""]
                continue
            steps = entry.get("optimizer_steps")
            shown = "" if steps is None else f"{steps:,}" + (" (=)" if entry.get("reused_natural") else "")
            comparison = found.get((arm["name"], view))
            delta = "" if comparison is None else _interval(comparison)
            verdict = "" if comparison is None else comparison["verdict"]
            colour = {"better": "green", "worse": "red"}.get(verdict)
            row += [shown, _spread(entry), delta, f"[{colour}]{verdict}[/{colour}]" if colour else verdict]
        table.add_row(*row)
    return table


def _comparisons_of(results: dict[str, Any]) -> list[dict[str, Any]]:
    return results.get("comparisons", [])


def _spread(entry: dict[str, Any]) -> str:
    values = [run["top1"] for run in entry["runs"]]
    mean = sum(values) / len(values)
    if len(values) < 2:
        return f"{mean:.1f}"
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return f"{mean:.1f} ± {sd:.1f}"


def _interval(comparison: dict[str, Any]) -> str:
    mean, low, high = comparison["mean"], comparison.get("low"), comparison.get("high")
    if mean is None:
        return "n/a"
    if low is None or high is None:
        return f"{mean:+.1f} [n/a]"
    return f"{mean:+.1f} [{low:+.1f}, {high:+.1f}]"


def _p(p: float | None) -> str:
    if p is None:
        return "n/a"
    return "< 0.001" if p < 0.001 else f"= {p:.3f}" if p < 0.01 else f"= {p:.2f}"
