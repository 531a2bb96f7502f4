"""``write_report``: read the run folder, draw each section that has data, render the page."""

from __future__ import annotations

import json
import logging
import math
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

import genaug
from genaug.experiment.verdicts import VIEW_TITLES
from genaug.files import display_path
from genaug.report import figures
from genaug.report.page import render_page
from genaug.report.run import RunFolder, load_run, sdi_work_dirs, seed_curve, synthetic_sets
from genaug.report.samples import SampleGrid, build_sample_grid
from genaug.training.schedules import blend_ratio, schedule_parameters

log = logging.getLogger(__name__)

REPORT_DIR = "report"
INDEX = "index.html"
FIGURES = "figures"
SAMPLES = "samples"
#: Points per rho(t) curve drawn between epoch 0 and T.
RHO_POINTS = 241


def write_report(run_dir: str | Path) -> Path:
    """Write ``run_dir/report/index.html`` (figures and samples beside it); returns its path.

    The page shows, as far as the run has the data: the results table, accuracy curves,
    sample grids per class, the curriculum schedules, the SDI feature space, filter score
    histograms and the cost per arm. Rerunning replaces the previous report.
    """
    run = load_run(run_dir)
    report_dir = fresh_report_dir(run.root)
    figures_dir = report_dir / FIGURES
    sets = synthetic_sets(run)
    context = {
        **header(run),
        "results": results_rows(run),
        "verdicts": verdict_section(run, figures_dir),
        "set_metrics": set_metrics_section(run, figures_dir),
        "warnings": warning_list(run),
        "seed_count": len(run.results.get("seeds", [])) or max((len(a.get("runs", [])) for a in run.arms), default=0),
        "accuracy": accuracy_section(run, figures_dir),
        "grid": sample_section(run, sets, report_dir),
        "schedules": schedule_section(run, figures_dir),
        "feature_spaces": feature_space_section(run, figures_dir),
        "filters": filter_section(run, figures_dir),
        "cost": cost_section(run, figures_dir),
        "version": genaug.__version__,
        "source": run.root.name,
    }
    context["nav"] = navigation(context)
    return render_page(context, report_dir / INDEX)


def fresh_report_dir(root: Path) -> Path:
    """``root/report`` with its figure and sample folders emptied (names change between runs)."""
    report_dir = root / REPORT_DIR
    for folder in (FIGURES, SAMPLES):
        shutil.rmtree(report_dir / folder, ignore_errors=True)
        (report_dir / folder).mkdir(parents=True)
    return report_dir


def _relative(path: Path | None, report_dir: Path) -> str | None:
    return path.relative_to(report_dir).as_posix() if path is not None else None


def navigation(context: dict[str, Any]) -> list[tuple[str, str]]:
    sections = [("verdicts", "Verdicts", context["verdicts"]), ("results", "Results", True),
                ("set-metrics", "Set metrics", context["set_metrics"]),
                ("warnings", "Warnings", context["warnings"]),
                ("accuracy", "Accuracy", context["accuracy"]),
                ("samples", "Samples", context["grid"]), ("schedules", "Schedules", context["schedules"]),
                ("sdi", "SDI features", context["feature_spaces"]), ("filters", "Filters", context["filters"]),
                ("cost", "Cost", context["cost"])]
    return [(anchor, label) for anchor, label, present in sections if present]


# ---------------------------------------------------------------------------- header and table


def header(run: RunFolder) -> dict[str, Any]:
    results = run.results
    dataset = results.get("dataset", {})
    meta = [f"dataset {dataset.get('name', '?')}"]
    if dataset.get("num_classes") is not None:
        meta.append(f"{dataset['num_classes']} classes")
    sizes = [f"{dataset[split]} {split}" for split in ("train", "val", "test") if dataset.get(split) is not None]
    if sizes:
        meta.append(" / ".join(sizes))
    if results.get("seeds"):
        meta.append("seeds " + ", ".join(str(seed) for seed in results["seeds"]))
    if results.get("epochs") is not None:
        meta.append(f"{results['epochs']} epochs")
    if results.get("created"):
        meta.append(_when(str(results["created"])))
    return {"title": results.get("experiment") or run.experiment.get("name") or run.root.name,
            "meta": meta, "finding": best_arm_finding(run)}


def _when(created: str) -> str:
    """An ISO 8601 time as "2026-11-22 08:00 UTC" (as written when it does not parse)."""
    try:
        moment = datetime.fromisoformat(created)
    except ValueError:
        return created
    if moment.tzinfo is not None:
        return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return moment.strftime("%Y-%m-%d %H:%M")


def best_arm_finding(run: RunFolder) -> str | None:
    """The experiment's headline (:func:`genaug.experiment.verdicts.headline`: a best arm only when
    its verdict is resolved); for results written before verdicts existed, the best mean."""
    if run.results.get("headline"):
        return run.results["headline"]
    scored = [arm for arm in run.arms if _finite(arm.get("top1_mean"))]
    if not scored:
        return None
    best = max(scored, key=lambda arm: arm["top1_mean"])
    sentence = f"Best mean test top-1: {best['name']} at {best['top1_mean']:.2f} %"
    if best["name"] != run.baseline and _finite(best.get("delta_top1")):
        sentence += f" ({best['delta_top1']:+.2f} points against {run.baseline})"
    elif best["name"] == run.baseline:
        sentence += " (the baseline: no arm beat it)"
    return sentence + "."


@dataclass
class Delta:
    text: str
    css: str


def delta(value: Any, is_baseline: bool) -> Delta:
    """Signed difference, green when above the baseline and red when below."""
    if is_baseline or not _finite(value):
        return Delta("—", "flat")
    text = f"{value:+.2f}".replace("-", "−")
    return Delta(text, "up" if value > 0 else "down" if value < 0 else "flat")


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _number(value: Any, digits: int = 2) -> str:
    return f"{value:,.{digits}f}" if _finite(value) else "—"


def _count(value: Any) -> str:
    return f"{int(value):,}" if _finite(value) else "—"


def results_rows(run: RunFolder) -> list[dict[str, Any]]:
    views = run.results.get("views") or ["natural"]
    found = {(c["arm"], c["view"]): c for c in run.results.get("comparisons") or [] if not c.get("named")}
    flagged = arm_warning_counts(run)
    rows = []
    for arm in run.arms:
        is_baseline = arm.get("name") == run.baseline
        rows.append({
            "name": arm.get("name", ""),
            "description": arm.get("description", ""),
            "baseline": is_baseline,
            "top1": _number(arm.get("top1_mean")),
            "top1_std": _number(arm.get("top1_std")),
            "delta_top1": delta(arm.get("delta_top1"), is_baseline),
            "balanced": _number(arm.get("balanced_accuracy_mean")),
            "balanced_std": _number(arm.get("balanced_accuracy_std")),
            "delta_balanced": delta(arm.get("delta_balanced_accuracy"), is_baseline),
            "real": _count(arm.get("real_samples")),
            "synthetic": _count(arm.get("synthetic_samples")),
            "generation_seconds": _number(arm.get("generation_seconds"), 1),
            "train_seconds": _number(arm.get("train_seconds"), 1),
            "images_per_second": _number(arm.get("images_per_second"), 1),
            "steps": _count(arm.get("optimizer_steps")),
            "images_seen": _count(arm.get("images_seen")),
            "test_se": _number(arm.get("test_se"), 1),
            "seeds": len(arm.get("runs", [])),
            "warnings": flagged.get(arm.get("name", ""), 0),
            "views": [verdict_cell(found.get((arm.get("name"), view)), arm, view, is_baseline) for view in views],
        })
    return rows


def verdict_cell(comparison: dict[str, Any] | None, arm: dict[str, Any], view: str, is_baseline: bool) -> dict[str, Any]:
    """An arm's cell in one view: mean ± sd, the difference with its interval, the verdict."""
    entry = (arm.get("views") or {}).get(view) or ({"runs": arm.get("runs", [])} if view == "natural" else None)
    runs = entry.get("runs", []) if entry else []
    values = [run["top1"] for run in runs]
    mean = sum(values) / len(values) if values else math.nan
    sd = float(np.std(values, ddof=1)) if len(values) > 1 else math.nan
    cell = {"top1": _number(mean), "top1_std": _number(sd), "steps": _count(entry.get("optimizer_steps")) if entry else "—",
            "reused": bool(entry and entry.get("reused_natural")), "delta": "—", "interval": "", "verdict": "", "css": "flat"}  # fmt: skip
    if comparison is not None and not is_baseline:
        low, high = comparison.get("low"), comparison.get("high")
        cell["delta"] = f"{comparison['mean']:+.1f}".replace("-", "−")
        cell["interval"] = f"[{low:+.1f}, {high:+.1f}]".replace("-", "−") if _finite(low) and _finite(high) else "[n/a]"
        cell["verdict"] = comparison["verdict"]
        cell["css"] = {"better": "up", "worse": "down"}.get(comparison["verdict"], "flat")
    return cell


def verdict_section(run: RunFolder, figures_dir: Path) -> dict[str, Any] | None:
    """The forest plot of every arm against the baseline (one panel per compute view, sorted by
    the first view's difference), the named comparisons as sentences, the seed rounds and the
    test split's noise; None for results without comparisons."""
    comparisons = run.results.get("comparisons") or []
    if not comparisons:
        return None
    views = run.results.get("views") or ["natural"]
    against = [c for c in comparisons if not c.get("named")]
    first = sorted((c for c in against if c["view"] == views[0]), key=lambda c: -(c["mean"] if _finite(c["mean"]) else -1e9))
    order = [c["arm"] for c in first]
    panels = {}
    for view in views:
        found = {c["arm"]: c for c in against if c["view"] == view}
        panels[f"{VIEW_TITLES[view]} (vs {run.baseline})"] = [
            figures.ForestRow(arm, found[arm]["mean"], found[arm].get("low"), found[arm].get("high"), found[arm]["verdict"])
            for arm in order if arm in found
        ]
    level = float(run.results.get("stats", {}).get("level", 0.95))
    path = figures.forest_figure(panels, figures_dir / "forest.png", level) if order else None
    named = [c for c in comparisons if c.get("named")]
    noise = run.results.get("noise") or {}
    rounds = [f"round {r['round']}: " + ", ".join(f"{arm} +{len(seeds)}" for arm, seeds in r["added"].items())
              for r in run.results.get("seed_rounds") or []]  # fmt: skip
    return {
        "figure": _relative(path, figures_dir.parent) if path else None,
        "level": f"{level:.0%}",
        "views": [VIEW_TITLES[view] for view in views],
        "sentences": [{"view": VIEW_TITLES[c["view"]], "text": c["sentence"], "verdict": c["verdict"]} for c in named],
        "against": [{"view": VIEW_TITLES[c["view"]], "text": c["sentence"], "verdict": c["verdict"]}
                    for c in sorted(against, key=lambda c: (views.index(c["view"]), order.index(c["arm"]) if c["arm"] in order else 0))],
        "rounds": rounds,
        "stops": [f"{arm}: {reason}" for arm, reason in (run.results.get("seed_stops") or {}).items()],
        "noise": noise_sentence(noise),
        "test": run.results.get("stats", {}).get("test", "t"),
        "alpha": run.results.get("stats", {}).get("alpha", 0.05),
    }  # fmt: skip


def noise_sentence(noise: dict[str, Any]) -> str | None:
    """The test split's own noise beside the seed spread, in one sentence (None without a test count)."""
    if not noise.get("test_images"):
        return None
    text = (f"Test split: {noise['test_images']} images, so one image moves top-1 by "
            f"{_number(noise.get('one_image_points'))} points")  # fmt: skip
    if _finite(noise.get("test_se_at_baseline")):
        text += f"; the binomial standard error of one run at the baseline's mean is {noise['test_se_at_baseline']:.1f} points"
    if _finite(noise.get("median_seed_sd")):
        text += f", beside a median seed standard deviation of {noise['median_seed_sd']:.1f} points"
    return text + "."


def warning_list(run: RunFolder) -> list[dict[str, Any]]:
    """Every warning of the run, grouped: the whole run's (skipped inputs, the test split's noise,
    configuration warnings that concern no arm in particular), then each arm's (the run's
    warnings about the stages it trains on, e.g. a pocket model on other data, and its runs'
    training warnings: NaN or diverged loss, a thin validation split, not converged)."""
    whole = []
    skipped = run.results.get("dataset", {}).get("skipped")
    if skipped:
        whole.append(f"{skipped} input file(s) were skipped while loading the dataset (unreadable or unusable images).")
    noise = run.results.get("noise") or {}
    if _finite(noise.get("one_image_points")) and noise["one_image_points"] > 1.0:
        whole.append(
            f"The test split has {noise['test_images']} images: one image moves top-1 by {noise['one_image_points']:.1f} "
            "points, so differences of a few points are a few images."
        )
    by_arm: dict[str, list[str]] = {}
    for warning in run.results.get("run_warnings") or []:
        if warning.get("arms"):
            for arm in warning["arms"]:
                by_arm.setdefault(arm, []).append(warning["text"])
        else:
            whole.append(warning["text"])
    for arm in run.arms:
        by_arm.setdefault(arm.get("name", "?"), []).extend(
            f"{arm.get('name', '?')} {warning}" for warning in arm.get("warnings", [])
        )
    groups = [{"title": "The whole run", "items": whole}] if whole else []
    groups += [{"title": name, "items": items} for name, items in by_arm.items() if items]
    return groups


def arm_warning_counts(run: RunFolder) -> dict[str, int]:
    """How many warnings concern each arm (its row in the results table is marked)."""
    return {group["title"]: len(group["items"]) for group in warning_list(run) if group["title"] != "The whole run"}


# ---------------------------------------------------------------------------- sections with figures


def accuracy_section(run: RunFolder, figures_dir: Path) -> str | None:
    curves = {}
    for arm in run.arms:
        curve = seed_curve(run, arm, "val_top1")
        if curve is not None:
            curves[arm["name"]] = curve
    if not curves:
        return None
    path = figures.accuracy_figure(curves, run.baseline, figures_dir / "accuracy.png")
    return _relative(path, figures_dir.parent)


def sample_section(run: RunFolder, sets, report_dir: Path) -> SampleGrid | None:
    if not sets:
        return None
    return build_sample_grid(run, sets, report_dir, real=load_real_images(run))


def load_real_images(run: RunFolder) -> dict[str, Any] | None:
    """The run's real splits, or None when they cannot be loaded on this machine (the report
    then shows the synthetic images without their originals)."""
    if not run.dataset_config:
        return None
    from genaug.data import load_splits

    try:
        return load_splits(run.dataset_config)
    except (OSError, ValueError) as error:
        log.warning("real images not shown: %s", error)
        return None


def known_schedule_parameters(name: str) -> set[str] | None:
    """:func:`genaug.training.schedules.schedule_parameters`, None for an unknown schedule."""
    try:
        return schedule_parameters(name)
    except ValueError:
        return None


def schedule_section(run: RunFolder, figures_dir: Path) -> dict[str, Any] | None:
    """rho(t) of every distinct schedule an arm's data policy names (``kwargs["schedule"]``);
    the policy's other keyword arguments that the schedule does not take are ignored."""
    total = run.epochs
    if not isinstance(total, int) or total < 1:
        return None
    used: dict[tuple[str, str], tuple[dict[str, Any], list[str]]] = {}
    notes = []
    for arm in run.arms:
        kwargs = (arm.get("policy") or {}).get("kwargs") or {}
        name = kwargs.get("schedule")
        if not isinstance(name, str):
            continue
        parameters = known_schedule_parameters(name)
        if parameters is None:
            notes.append(f"{arm['name']}: schedule {name!r} is not known to this genaug; not drawn.")
            continue
        own = {key: value for key, value in kwargs.items() if key in parameters}
        key = (name, json.dumps(own, sort_keys=True, default=str))
        used.setdefault(key, (own, []))[1].append(arm["name"])
    curves = []
    for (name, _), (own, arms) in used.items():
        try:
            t = np.linspace(0, total, RHO_POINTS)
            epochs = np.arange(total)
            curves.append(figures.ScheduleCurve(
                label=f"{name}{_call_text(own)}: {', '.join(arms)}",
                t=t, rho=np.array([blend_ratio(name, float(x), total, **own) for x in t]),
                epochs=epochs, rho_at_epochs=np.array([blend_ratio(name, int(e), total, **own) for e in epochs]),
            ))
        except ValueError as error:
            notes.append(f"{', '.join(arms)}: {error}; not drawn.")
    if not curves:
        return None
    path = figures.rho_figure(curves, total, figures_dir / "schedules.png")
    return {"figure": _relative(path, figures_dir.parent), "notes": notes}


def _call_text(kwargs: dict[str, Any]) -> str:
    return "(" + ", ".join(f"{key}={value}" for key, value in sorted(kwargs.items())) + ")" if kwargs else ""


def feature_space_section(run: RunFolder, figures_dir: Path) -> list[dict[str, str]]:
    """One PCA plot per SDI work folder and sampler."""
    from genaug.sdi.sample import SAMPLES_DIR, bank_path
    from genaug.sdi.tables import load_table

    items = []
    for index, (work_dir, stage) in enumerate(sdi_work_dirs(run)):
        bank = load_table(bank_path(work_dir))
        if len(bank) < 2 or bank.dim < 2:
            continue
        for sampled_path in sorted((work_dir / SAMPLES_DIR).glob("*.safetensors")):
            sampled = load_table(sampled_path)
            if not len(sampled) or sampled.dim != bank.dim:
                continue
            title = f"sampler {sampled_path.stem}: {display_path(work_dir, run.root)}"
            summary = f"{len(bank):,} real and {len(sampled):,} sampled features; used by {', '.join(stage.arms)}"
            path = figures.feature_space_figure(
                bank.features.numpy(), bank.labels.numpy(), sampled.features.numpy(), sampled.labels.numpy(),
                bank.class_names, figures_dir / f"sdi-{index}-{len(items)}.png",
            )
            items.append({"title": title, "summary": summary, "figure": _relative(path, figures_dir.parent)})
    return items


def filter_section(run: RunFolder, figures_dir: Path) -> list[dict[str, str]]:
    """A histogram panel per score for every set a filter stage marked."""
    items = []
    for index, scored in enumerate(synthetic_sets(run, {"filter"})):
        keys = sorted({key for record in scored.records for key in record.scores})
        columns = []
        for key in keys:
            pairs = [(record.scores[key], record.kept is not False) for record in scored.records
                     if _finite(record.scores.get(key))]
            if pairs:
                values, kept = zip(*pairs)
                columns.append(figures.ScoreColumn(key, np.array(values, dtype=np.float64), np.array(kept, dtype=bool)))
        if not columns:
            continue
        kept = sum(record.kept is not False for record in scored.records)
        title = f"{scored.stage.method or 'filter'}: {display_path(scored.dir, run.root)}"
        path = figures.filter_scores_figure(columns, figures_dir / f"filter-{index}.png")
        items.append({
            "title": title,
            "summary": f"kept {kept:,} of {len(scored.records):,} images; used by {', '.join(scored.stage.arms)}",
            "figure": _relative(path, figures_dir.parent),
        })
    return items


def cost_section(run: RunFolder, figures_dir: Path) -> str | None:
    arms = [arm for arm in run.arms if _finite(arm.get("generation_seconds")) or _finite(arm.get("train_seconds"))]
    if not arms:
        return None
    path = figures.cost_figure(
        [arm["name"] for arm in arms],
        [arm.get("generation_seconds") if _finite(arm.get("generation_seconds")) else 0.0 for arm in arms],
        [arm.get("train_seconds") if _finite(arm.get("train_seconds")) else 0.0 for arm in arms],
        figures_dir / "cost.png",
    )
    return _relative(path, figures_dir.parent)


# ---------------------------------------------------------------------------- synthetic-set metrics


def set_metrics_section(run: RunFolder, figures_dir: Path) -> dict[str, Any] | None:
    """The metrics of every arm's synthetic set (table), the gain against them (figure) and
    the parity subsamples (notes); None when no arm has set metrics."""
    arms = [arm for arm in run.arms if arm.get("set_metrics")]
    if not arms:
        return None
    first = arms[0]["set_metrics"]
    judged = all(_finite(arm["set_metrics"].get("fidelity_classifier")) for arm in arms)
    rows, points, notes = [], [], []
    for arm in arms:
        metrics = arm["set_metrics"]
        budget = arm.get("budget")
        rows.append({
            "name": arm.get("name", ""),
            "delta_top1": delta(arm.get("delta_top1"), False),
            "synthetic": _count(arm.get("synthetic_samples")),
            "budget": f"parity {budget['synthetic_per_real']:g}× (seed {budget['seed']})" if budget else natural_ratio(arm),
            "fd": _number(metrics.get("fd"), 3),
            **{key: _number(metrics.get(key)) for key in ("precision", "recall", "density", "coverage",
                                                           "fidelity_clip", "fidelity_classifier", "diversity")},
        })  # fmt: skip
        if budget:
            notes.append(f"{arm['name']}: {budget['images']:,} synthetic images, {budget['synthetic_per_real']:g} per real "
                         f"image of each class, drawn with seed {budget['seed']}; the ids are in {budget['dir']}/budget.json.")
        if _finite(arm.get("delta_top1")):
            fidelity = metrics.get("fidelity_classifier") if judged else metrics.get("fidelity_clip")
            points.append(figures.GainPoint(
                arm=arm["name"], gain=arm["delta_top1"],
                spread=arm.get("top1_std") if _finite(arm.get("top1_std")) else 0.0, parity=bool(budget),
                metrics={"fd": metrics.get("fd"), "coverage": metrics.get("coverage"), "fidelity": fidelity,
                         "diversity": metrics.get("diversity")},
            ))  # fmt: skip
    figure = None
    if points:
        label = "classifier on real images" if judged else "CLIP zero-shot"
        figure = _relative(figures.gain_figure(points, figures_dir / "gain-vs-metrics.png", label), figures_dir.parent)
    clip = first.get("clip") or {}
    return {
        "rows": rows,
        "reference": {"fidelity_clip": _number(first.get("fidelity_clip_real")), "diversity": _number(first.get("diversity_real"))},
        "figure": figure,
        "notes": notes,
        "clip": clip.get("id") or clip.get("path") or "?",
        "k": first.get("k"),
        "classifier": first.get("classifier"),
    }


def natural_ratio(arm: dict[str, Any]) -> str:
    """``natural 3×``: an arm's synthetic images per real image at its natural count."""
    real, synthetic = arm.get("real_samples"), arm.get("synthetic_samples")
    return f"natural {synthetic / real:.3g}×" if _finite(real) and real and _finite(synthetic) else "natural"
