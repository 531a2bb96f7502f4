"""``genaug run``: build the stage graph, run what is missing, train every arm x seed, tabulate.

The stages run in this process, in graph order; each arm's runs go to the training workers as
soon as the stages it reads have finished (:mod:`genaug.experiment.schedule`), and the set
metrics are measured once their judge has trained, while the other runs go on.

The run folder (``RUN_DIR``)::

    experiment.yaml            the resolved experiment
    results.json, results.csv  per arm: mean / std of test top-1 and balanced accuracy over seeds,
                               delta against the baseline, sample counts, generation and training cost
    artifacts/<kind>-<key>/    stage outputs (synthetic sets, SDI work folders), shared by arms
    arms/<arm>/seed-<s>-<key>/ trainer runs (config.yaml, metrics.csv, metrics.json, weights)
    report/index.html          the HTML report (genaug.report)

Everything is keyed by content: a stage by its fields, its inputs' keys and the content
identity of the real splits it reads (:mod:`genaug.data.identity`), a training run by its resolved
config, the keys of the sets it reads and the identity of train, val and test. Rerunning
the same file reuses every finished stage and run and does only what is missing, so a
killed or interrupted ``genaug run`` continues where it stopped; an added, removed or
edited image re-runs exactly what read it.
"""

from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import io
import json
import math
import re
import statistics
from pathlib import Path
from typing import Any

from genaug.config import dump_config
from genaug.data import DatasetError, load_splits
from genaug.data.identity import splits_identity
from genaug.data.membership import split_report
from genaug.experiment.budget import arm_sets, make_budget_sets, natural_sets
from genaug.experiment.checks import preflight
from genaug.experiment.compute import natural_steps
from genaug.experiment.config import ArmConfig, ExperimentConfig, train_config
from genaug.experiment.graph import StageNode, build_graph, dataset_identity, upstream
from genaug.experiment.jobs import TrainJob
from genaug.experiment.schedule import TrainingPool, launcher_settings, open_pool
from genaug.experiment.seeds import next_round, stop_reasons
from genaug.experiment.set_metrics import add_set_metrics, judge_arm, measure_sets
from genaug.experiment.slurm import slurm_plan
from genaug.experiment.stages import run_stage
from genaug.experiment.stats import test_standard_error
from genaug.experiment.verdicts import VIEW_TITLES, comparisons, headline, noise_summary
from genaug.files import display_path, write_json_atomic, write_text_atomic
from genaug.training.recipes import resolve_recipe
from genaug.warn import WARNINGS_LOG, record_warnings, shown_warnings

__all__ = [
    "TrainJob", "plan_jobs", "run_experiment", "results_table", "metrics_table", "warning_lines", "RESULTS_JSON", "RESULTS_CSV",
]  # fmt: skip

RESULTS_JSON = "results.json"
RESULTS_CSV = "results.csv"
CSV_COLUMNS = [
    "arm", "description", "seeds", "top1_mean", "top1_std", "balanced_accuracy_mean", "balanced_accuracy_std",
    "delta_top1", "delta_low", "delta_high", "p_holm", "verdict",
    "matched_top1_mean", "matched_delta_top1", "matched_delta_low", "matched_delta_high", "matched_p_holm", "matched_verdict",
    "optimizer_steps", "matched_steps", "images_seen", "test_se", "real_samples", "synthetic_samples",
    "generation_seconds", "train_seconds", "images_per_second",
    "budget", "fd", "precision", "recall", "density", "coverage", "fidelity_clip", "fidelity_classifier", "diversity",
]  # fmt: skip
#: The synthetic-set metrics shown in the printed metrics table and results.csv.
SET_METRICS = ("fd", "precision", "recall", "density", "coverage", "fidelity_clip", "fidelity_classifier", "diversity")


# ---------------------------------------------------------------------------- the run


def run_experiment(
    experiment: ExperimentConfig,
    out_dir: str | Path,
    *,
    artifacts: str | Path | None = None,
    only: list[str] | None = None,
    seeds: list[int] | None = None,
    dry_run: bool = False,
    report: bool = True,
    progress: bool = True,
    echo=print,
    launcher: str | None = None,
    wait: bool = True,
) -> dict[str, Any] | None:
    """Run ``experiment`` into ``out_dir`` (module doc); return the results (None for a dry run).

    ``only``: arms to run (the table still lists every arm that has finished runs);
    ``seeds``: replaces the experiment's seeds; ``artifacts``: the stage-output folder
    (default ``out_dir/artifacts``; point several runs at one to share sets); ``launcher``:
    ``local`` or ``slurm``, replacing the file's ``launcher.name``; ``wait`` False: submit the
    Slurm jobs that are ready and raise :class:`genaug.experiment.slurm.LeftRunning`.
    """
    out_dir = Path(out_dir)
    artifacts = Path(artifacts) if artifacts is not None else out_dir / "artifacts"
    arms = [experiment.arm(name) for name in only] if only else list(experiment.arms)
    explicit_seeds = bool(seeds)  # --seeds: exactly these, no rounds of more
    seeds = list(seeds) if seeds else list(experiment.seeds)
    # The dataset is read once, here: its warnings (labels_per_class, skipped files) go to the
    # run's warnings.log with the preflight's, and its content identity into every key.
    shown_before = len(shown_warnings())
    unreadable: DatasetError | None = None
    try:
        splits = load_splits(experiment.dataset)
    except DatasetError as error:
        splits, unreadable = None, error  # a dry run still shows the plan of a dataset not yet here
        if dry_run:
            echo(f"dataset not readable, so the keys below leave its content out: {error}")
    data_warnings = shown_warnings()[shown_before:]
    identity = splits_identity(splits) if splits is not None else {}
    skipped = skipped_line(splits) if splits is not None else None
    if skipped:
        echo(skipped)
    nodes = build_graph(experiment, artifacts, identity)
    needed = upstream(nodes, [ref for arm in arms for ref in arm.data_refs])
    jobs = plan_jobs(experiment, nodes, out_dir, [arm.name for arm in arms], seeds, identity)

    # Inputs are checked before anything is written: a run that cannot start leaves nothing behind.
    checked = preflight(experiment, needed, [job for job in jobs if not job.done], splits)
    shown = shown_warnings()  # kept in the order they were printed
    checked.warnings = sorted(dict.fromkeys(checked.warnings + data_warnings), key=lambda w: shown.index(w) if w in shown else len(shown))
    for line in split_report(out_dir, splits):  # images added, removed, moved since the folder's results
        echo(line)
    if dry_run:
        echo(describe_plan(experiment, needed, jobs, out_dir))
        from genaug.rehearsal.cost import plan_cost_text

        # the matched view's extra runs (those that cannot reuse a natural run) train too
        matched = plan_jobs(experiment, nodes, out_dir, [arm.name for arm in arms], seeds, identity, view="matched") \
            if experiment.compute.matched_steps else []
        first = not any(job.done for job in jobs)  # no measured run yet: the cost model estimates the time
        echo(plan_cost_text(experiment, [arm.name for arm in arms], seeds,
                            jobs=[job for job in jobs + matched if not job.done] if first else None,
                            stages=[node.name for node in needed if not node.is_done()]))
        if launcher_settings(experiment, launcher).name == "slurm":
            echo(slurm_plan(launcher_settings(experiment, launcher), experiment, needed, jobs + matched, out_dir, [arm.name for arm in arms], seeds))
        checked.raise_problems()
        return None
    checked.raise_problems()
    if unreadable is not None:
        raise unreadable

    out_dir.mkdir(parents=True, exist_ok=True)
    record_warnings(out_dir / WARNINGS_LOG, checked.warnings)
    write_text_atomic(out_dir / "experiment.yaml", dump_config(experiment))

    train_digest = identity.get("train", {}).get("digest")
    todo = [job for job in jobs if not job.done]
    for job in todo:
        finished = checkpoint_epochs(job.run_dir)
        if finished is not None:
            total = f"{job.config.steps:,} steps" if job.config.steps else f"{resolve_recipe(job.config).epochs} epochs"
            echo(f"resuming from {job.run_dir} (after {finished} epochs of a run of {total})")
    every_seed = list(dict.fromkeys([*experiment.seeds, *seeds]))  # the judge: the first seed with a finished run
    every_job = plan_jobs(experiment, nodes, out_dir, [arm.name for arm in experiment.arms], every_seed, identity)
    early_metrics = _early_metrics(experiment, arms, needed, nodes, todo, every_job, splits["train"], train_digest, out_dir, echo)
    waiting = {arm.name: upstream(nodes, arm.data_refs) for arm in arms}  # stages each arm still waits for

    seed_plan = {arm.name: list(seeds) for arm in arms}
    matched_steps = experiment.compute.matched_steps
    matched_todo = [
        job for job in plan_jobs(experiment, nodes, out_dir, [arm.name for arm in arms], seeds, identity, view="matched")
        if not job.done
    ] if matched_steps else []
    released: set[str] = set()

    def submit(pool: TrainingPool, arm_name: str, natural: list[TrainJob], matched: list[TrainJob]) -> None:
        """The arm's natural runs, and its matched runs unless its natural runs already make the matched steps."""
        pool.submit(natural)
        if matched and arm_steps(experiment, experiment.arm(arm_name), nodes, splits["train"], identity) != matched_steps:
            pool.submit(matched)
        else:
            pool.total -= len(matched)

    def release(pool: TrainingPool) -> None:
        """Submit the runs of every arm whose stages have all finished (a parity arm's subsample made first)."""
        for arm in arms:
            if arm.name in waiting and all(node.is_done() for node in waiting[arm.name]):
                del waiting[arm.name]
                released.add(arm.name)
                make_budget_sets(experiment, [arm], nodes, splits["train"], train_digest, echo)
                submit(pool, arm.name, [job for job in todo if job.arm == arm.name], [job for job in matched_todo if job.arm == arm.name])

    ran: set[str] = set()
    rounds: list[dict[str, Any]] = []
    settings = launcher_settings(experiment, launcher)
    with open_pool(settings, experiment, out_dir, artifacts, len(todo) + len(matched_todo), progress, echo, early_metrics, wait) as pool:
        release(pool)
        for node, record in pool.run_stages(needed, nodes, run_stage):  # in graph order here, as they finish on Slurm
            if record is None:  # cached
                continue
            ran.add(node.name)
            echo(f"stage {node.name}: {sum(record['images'].values())} images in {record['seconds']:.1f} s")
            pool.poll()
            release(pool)
        with pool.sharing_cores():
            early_metrics(None)
        pool.wait()
        # Seeds until precise: rounds of more seeds where an interval is still too wide.
        rule = experiment.seed_rule if experiment.seed_rule is not None and not explicit_seeds else None
        while rule is not None:
            results = collect_results(experiment, nodes, out_dir, seed_plan, ran, splits)
            decision = next_round(rule, seed_plan, verdict_comparisons(results, experiment), len(rounds) + 2)
            if not decision.added:
                break
            rounds.append({"round": decision.number, "added": decision.added, "reasons": decision.reasons})
            for line in decision.lines():
                echo(line)
            for name, added in decision.added.items():
                seed_plan[name] = sorted(set(seed_plan[name]) | set(added))
                natural = [job for job in plan_jobs(experiment, nodes, out_dir, [name], added, identity) if not job.done]
                matched = [
                    job for job in plan_jobs(experiment, nodes, out_dir, [name], added, identity, view="matched")
                    if not job.done
                ] if matched_steps else []
                pool.total += len(natural) + len(matched)
                submit(pool, name, natural, matched)
            pool.wait()
    results = collect_results(experiment, nodes, out_dir, seed_plan, ran, splits)
    if rule is not None:
        results["seed_rounds"] = rounds
        results["seed_rule"] = rule.model_dump(mode="json")
        results["seed_stops"] = stop_reasons(rule, seed_plan, verdict_comparisons(results, experiment))
    add_set_metrics(results, experiment, nodes, every_job, splits["train"], train_digest, out_dir, echo)
    add_verdicts(results, experiment)
    results["run_warnings"] = attribute_warnings(checked.warnings, experiment, nodes)
    write_results(out_dir, results)
    split_report(out_dir, splits, write=True)  # the splits results.json was made on
    if report:
        from genaug.report import write_report

        results["report"] = str(write_report(out_dir))
    return results


def plan_jobs(
    experiment: ExperimentConfig,
    nodes: dict[str, StageNode],
    out_dir: Path,
    arms: list[str],
    seeds: list[int] | dict[str, list[int]],
    identity: dict[str, Any] | None = None,
    view: str = "natural",
) -> list[TrainJob]:
    """Every (arm, seed) training run, keyed by its config, the keys of the sets it reads and
    the content identity of the dataset's splits (``identity``; read here when not given).

    ``seeds``: one list for every arm, or each arm's own. ``view``: ``natural`` (the recipe's
    epochs) or ``matched`` (``train.steps`` = the experiment's ``compute.matched_steps``; the
    runs live under ``arms/<arm>/matched/``). ``keep_checkpoint`` is left out of the key: it
    decides what a finished run keeps on disk, not what it computes; so is ``stack_seeds``
    (how many seeds train as one model: the same runs, to float32 rounding).
    """
    jobs = []
    dataset = experiment.dataset.model_dump(mode="json")
    if identity is None:
        identity = dataset_identity(experiment)
    digests = {split: entry["digest"] for split, entry in identity.items()}
    if view == "matched" and experiment.compute.matched_steps is None:
        return []
    for name in arms:
        if view == "matched" and not experiment.compute.matched(name, experiment.baseline):
            continue
        arm = experiment.arm(name)
        planned = arm_sets(experiment, arm, nodes, digests.get("train"))  # a parity arm's subsample
        sets = tuple(folder for _, folder in planned)
        set_keys = [key for key, _ in planned]
        folder = out_dir / "arms" / name if view == "natural" else out_dir / "arms" / name / "matched"
        for seed in seeds.get(name, []) if isinstance(seeds, dict) else seeds:
            config = train_config(experiment, arm, seed)
            if view == "matched":
                config = config.model_copy(update={"steps": experiment.compute.matched_steps})
            train = config.model_dump(mode="json", exclude={"keep_checkpoint", "stack_seeds"})
            content = {"train": train, "sets": set_keys, "dataset": dataset, "data": digests}
            key = hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:8]
            jobs.append(TrainJob(name, seed, config, folder / f"seed-{seed}-{key}", sets, dataset, identity, view))
    return jobs


def arm_steps(
    experiment: ExperimentConfig, arm: ArmConfig, nodes: dict[str, StageNode], real_train, identity: dict[str, Any]
) -> int:
    """The optimizer steps of the arm's natural runs (:func:`genaug.experiment.compute.natural_steps`),
    from its data policy, the real training labels and the kept records of its sets."""
    from genaug.manifest import read_manifest

    index = {name: i for i, name in enumerate(real_train.class_names)}
    synthetic = []
    for _, folder in arm_sets(experiment, arm, nodes, identity.get("train", {}).get("digest")):
        synthetic += [index[record.class_name] for record in read_manifest(folder) if record.kept is not False]
    config = resolve_recipe(train_config(experiment, arm, experiment.seeds[0]))
    return natural_steps(config, list(real_train.labels), synthetic)


def checkpoint_epochs(run_dir: Path) -> int | None:
    """Epochs finished by the checkpoint in ``run_dir``, or None when it holds none."""
    from genaug.checkpoint import checkpoint_epoch, find_checkpoint

    folder = find_checkpoint(run_dir)
    return None if folder is None else checkpoint_epoch(folder)


def _early_metrics(experiment, arms, needed, nodes, todo, every_job, real_train, train_digest, out_dir, echo):
    """A callback for the training pool: once every stage has finished and no run of the judge's
    arm is left to train, measure the synthetic sets (cached for :func:`add_set_metrics`) while the
    other runs still train. Called with the run that finished, or None."""
    judge = judge_arm(experiment)
    pending = {id(job) for job in todo if job.arm == judge}
    state = {"measured": False}

    def on_finished(job: TrainJob | None) -> None:
        if job is not None:
            pending.discard(id(job))
        if state["measured"] or pending or not all(node.is_done() for node in needed):
            return
        state["measured"] = True
        measure_sets(experiment, [arm.name for arm in arms], nodes, every_job, real_train, train_digest, out_dir, echo)

    return on_finished


# ---------------------------------------------------------------------------- results


def collect_results(
    experiment: ExperimentConfig,
    nodes: dict[str, StageNode],
    out_dir: Path,
    seeds: list[int] | dict[str, list[int]],
    ran: set[str] = frozenset(),
    splits: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """results.json's content: every arm with finished runs, the baseline's deltas (runner doc).

    ``seeds``: one list for every arm, or each arm's own; ``ran``: the stages this call ran
    (the others are reported as cached); ``splits``: the dataset's splits when already loaded.
    Each arm holds its natural runs (``runs``, and the means beside them) and, with
    ``compute.matched_steps``, ``views.matched``: its runs at the matched steps, which are its
    natural runs when those already make that many steps (``reused_natural``).
    """
    from genaug.data import load_splits
    from genaug.data.identity import skipped_count, splits_identity

    splits = splits or load_splits(experiment.dataset)
    names = [arm.name for arm in experiment.arms]
    identity = splits_identity(splits)
    n_test = len(splits["test"])
    natural_jobs = plan_jobs(experiment, nodes, out_dir, names, seeds, identity)
    matched_jobs = plan_jobs(experiment, nodes, out_dir, names, seeds, identity, view="matched")
    views = experiment.compute.views
    arms = []
    for arm in experiment.arms:
        runs = [run_entry(job, out_dir, n_test) for job in natural_jobs if job.arm == arm.name and job.done]
        if not runs:
            continue
        steps = arm_steps(experiment, arm, nodes, splits["train"], identity)
        arm_views = {"natural": view_entry(runs, steps)}
        if "matched" in views and experiment.compute.matched(arm.name, experiment.baseline):
            if steps == experiment.compute.matched_steps:
                arm_views["matched"] = {**view_entry(runs, steps), "reused_natural": True}
            else:
                matched = [run_entry(job, out_dir, n_test) for job in matched_jobs if job.arm == arm.name and job.done]
                if matched:
                    arm_views["matched"] = view_entry(matched, experiment.compute.matched_steps)
        chain = upstream(nodes, arm.data_refs)
        stage_rows = [stage_row(node, out_dir, cached=node.name not in ran) for node in chain]
        generation_seconds = sum(row["seconds"] for row in stage_rows)
        sets = [folder for _, folder in arm_sets(experiment, arm, nodes, identity["train"]["digest"])]
        synthetic = sum(count_kept(folder) for folder in sets)
        # What the stages made (a parity arm trains on a subsample of it): the generation rate.
        made = sum(count_kept(folder) for _, folder in natural_sets(arm, nodes)) if arm.budget == "parity" else synthetic
        arms.append({
            "name": arm.name,
            "description": arm.description,
            "policy": {"name": arm.policy, "kwargs": arm.policy_kwargs},
            "mixer": {"name": arm.mixer, "kwargs": arm.mixer_kwargs},
            "stages": stage_rows,
            "synthetic_set": display_path(sets[0], out_dir) if sets else None,
            "seeds": [run["seed"] for run in runs],
            "runs": runs,
            **mean_std("top1", [run["top1"] for run in runs]),
            **mean_std("balanced_accuracy", [run["balanced_accuracy"] for run in runs]),
            "optimizer_steps": steps,
            "images_seen": arm_views["natural"]["images_seen"],
            "test_se": statistics.fmean(run["test_se"] for run in runs),
            "views": arm_views,
            "real_samples": len(splits["train"]),
            "synthetic_samples": synthetic,
            "generation_seconds": generation_seconds,
            "train_seconds": statistics.fmean(run["train_seconds"] for run in runs),
            "images_per_second": made / generation_seconds if made and generation_seconds > 0 else None,
            "warnings": run_warnings(runs + [run for run in arm_views.get("matched", {}).get("runs", []) if run not in runs]),
        })  # fmt: skip
    baseline = next((arm for arm in arms if arm["name"] == experiment.baseline), None)
    for arm in arms:
        for metric in ("top1", "balanced_accuracy"):
            arm[f"delta_{metric}"] = arm[f"{metric}_mean"] - baseline[f"{metric}_mean"] if baseline else None

    first = resolve_recipe(train_config(experiment, experiment.arms[0], experiment.seeds[0]))
    every_seed = sorted({seed for arm in arms for seed in arm["seeds"]})

    return {
        "experiment": experiment.name,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "seeds": every_seed,
        "baseline": experiment.baseline,
        "views": views,
        "compute": experiment.compute.model_dump(mode="json"),
        "compare": [list(pair) for pair in experiment.compare],
        "stats": experiment.stats.model_dump(mode="json"),
        "dataset": {
            "name": splits["train"].name,
            "num_classes": splits["train"].num_classes,
            "class_names": list(splits["train"].class_names),
            **{split: len(data) for split, data in splits.items()},
            "skipped": skipped_count(splits),
        },
        "epochs": first.epochs,
        "arms": arms,
    }


def run_entry(job: TrainJob, out_dir: Path, n_test: int) -> dict[str, Any]:
    """One finished run as results.json keeps it (every per-seed value a verdict is computed from)."""
    from genaug.training.trainer import RunResult

    result = RunResult.load(job.run_dir)
    return {
        "seed": job.seed,
        "view": job.view,
        "dir": str(job.run_dir.relative_to(out_dir)),
        "top1": result.test["top1"],
        "balanced_accuracy": result.test["balanced_accuracy"],
        "test_se": test_standard_error(result.test["top1"], n_test),
        "optimizer_steps": getattr(result, "optimizer_steps", None),
        "images_seen": getattr(result, "images_seen", None) or result.real_samples + result.synthetic_samples,
        "still_rising": getattr(result, "still_rising", None),
        "best_epoch": result.best_epoch,
        "real_samples": result.real_samples,
        "synthetic_samples": result.synthetic_samples,
        "train_seconds": result.wall_seconds,
        "warnings": result.warnings,
        "skipped": result.skipped_images,
    }


def view_entry(runs: list[dict[str, Any]], steps: int) -> dict[str, Any]:
    """An arm's runs in one view with their means, optimizer steps and images seen."""
    recorded = [run["optimizer_steps"] for run in runs if run.get("optimizer_steps")]
    return {
        "runs": runs,
        **mean_std("top1", [run["top1"] for run in runs]),
        "optimizer_steps": max(recorded) if recorded else steps,
        "images_seen": round(statistics.fmean(run["images_seen"] for run in runs)),
        "still_rising": sum(1 for run in runs if run.get("still_rising")),
    }


def attribute_warnings(warnings: list[str], experiment: ExperimentConfig, nodes: dict[str, StageNode]) -> list[dict[str, Any]]:
    """The run's own warnings (configuration, data, pocket models on other data), each with the
    arms it concerns: a warning about ``stages.<name>.`` concerns every arm that trains on what
    that stage made (directly or through the stages after it); any other, the whole run."""
    readers = {
        arm.name: {node.name for node in upstream(nodes, arm.data_refs)} for arm in experiment.arms
    }
    attributed = []
    for warning in warnings:
        match = re.match(r"stages\.([^.\s]+)\.", warning)
        arms = [name for name, stages in readers.items() if match and match.group(1) in stages] if match else []
        attributed.append({"text": warning, "arms": arms})
    return attributed


def verdict_comparisons(results: dict[str, Any], experiment: ExperimentConfig):
    """The table's comparisons (:func:`genaug.experiment.verdicts.comparisons`) for these results."""
    return comparisons(results, [tuple(pair) for pair in experiment.compare], experiment.stats)


def add_verdicts(results: dict[str, Any], experiment: ExperimentConfig) -> None:
    """Every comparison with its interval, p, Holm's p and verdict; the test split's noise; the headline."""
    results["comparisons"] = [comparison.to_json() for comparison in verdict_comparisons(results, experiment)]
    results["noise"] = noise_summary(results)
    results["headline"] = headline(results)


def run_warnings(runs: list[dict[str, Any]]) -> list[str]:
    """Each distinct training warning of an arm's runs once, with the seeds that gave it.

    Skipped input files are left out: they are the dataset's, counted once in the results.
    """
    from genaug.training.health import skipped_warning

    seeds: dict[str, list[int]] = {}
    for run in runs:
        for warning in run["warnings"]:
            if warning != skipped_warning(run.get("skipped", 0)):
                seeds.setdefault(warning, []).append(run["seed"])
    return [f"(seed {', '.join(map(str, found))}): {warning}" for warning, found in seeds.items()]


def stage_row(node: StageNode, out_dir: Path, cached: bool) -> dict[str, Any]:
    record = node.record()
    method = next(iter(record["sets"]), node.kind)  # the first set a stage wrote (its kind's name if one)
    return {
        "kind": node.kind,
        "name": node.name,
        "method": method,
        "dir": display_path(node.dir, out_dir),
        "sets": {name: display_path(node.dir / rel, out_dir) for name, rel in record["sets"].items()},
        "cached": cached,
        "seconds": record["seconds"],
        "images": sum(record["images"].values()),
        "images_per_second": record.get("images_per_second"),
    }


def count_kept(set_dir: Path) -> int:
    from genaug.manifest import read_manifest

    return sum(1 for record in read_manifest(set_dir) if record.kept is not False)


def mean_std(name: str, values: list[float]) -> dict[str, float]:
    return {
        f"{name}_mean": statistics.fmean(values),
        f"{name}_std": statistics.stdev(values) if len(values) > 1 else 0.0,
    }


def write_results(out_dir: Path, results: dict[str, Any]) -> None:
    write_json_atomic(out_dir / RESULTS_JSON, results)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    verdicts = {(c["arm"], c["view"]): c for c in results.get("comparisons", []) if not c.get("named")}
    for arm in results["arms"]:
        row = {**arm, **metric_cells(arm), "arm": arm["name"], "seeds": len(arm["runs"])}
        for view, prefix in (("natural", ""), ("matched", "matched_")):
            found = verdicts.get((arm["name"], view))
            if found:
                row |= {f"{prefix}delta_low": found["low"], f"{prefix}delta_high": found["high"],
                        f"{prefix}p_holm": found["p_holm"], f"{prefix}verdict": found["verdict"]}  # fmt: skip
            if view == "matched" and found:
                row["matched_delta_top1"] = found["mean"]
        matched = (arm.get("views") or {}).get("matched")
        if matched:
            row |= {"matched_top1_mean": matched["top1_mean"], "matched_steps": matched["optimizer_steps"]}
        writer.writerow(["" if row.get(column) is None else row[column] for column in CSV_COLUMNS])
    write_text_atomic(out_dir / RESULTS_CSV, buffer.getvalue())


def spread(arm: dict[str, Any], metric: str) -> str:
    """``mean ± std`` over an arm's seeds; the mean alone for one seed (it has no spread)."""
    mean = f"{arm[f'{metric}_mean']:.1f}"
    return mean if len(arm["runs"]) < 2 else f"{mean} ± {arm[f'{metric}_std']:.1f}"


def results_table(results: dict[str, Any]):
    """The cost side of the results as a rich table (``genaug run`` and ``genaug demo`` print it
    after the verdict table, :func:`genaug.experiment.verdicts.verdict_table`): per arm the mean
    and spread over seeds, the data it trained on, its optimizer steps and images seen, the
    test split's standard error, and the generation and training time."""
    from rich.table import Table

    seeds = sorted({len(arm["runs"]) for arm in results["arms"]})
    counted = f"{seeds[0]}" if len(seeds) == 1 else f"{seeds[0]}-{seeds[-1]}"
    table = Table(title=f"{results['experiment']}: test accuracy over {counted} seed(s), %; what each arm trained on")
    for column, justify in [("arm", "left"), ("top-1", "right"), ("balanced", "right"), ("test SE", "right"),
                            ("real", "right"), ("synthetic", "right"), ("steps", "right"), ("images seen", "right"),
                            ("gen s", "right"), ("train s", "right")]:  # fmt: skip
        table.add_column(column, justify=justify, no_wrap=True)
    for arm in results["arms"]:
        steps, seen = arm.get("optimizer_steps"), arm.get("images_seen")
        table.add_row(
            arm["name"] + (" (baseline)" if arm["name"] == results["baseline"] != "baseline" else ""),
            spread(arm, "top1"),
            spread(arm, "balanced_accuracy"),
            "" if arm.get("test_se") is None else f"{arm['test_se']:.1f}",
            str(arm["real_samples"]),
            str(arm["synthetic_samples"]),
            "" if steps is None else f"{steps:,}",
            "" if seen is None else f"{seen:,}",
            f"{arm['generation_seconds']:.0f}",
            f"{arm['train_seconds']:.0f}",
        )
    return table


def verdict_lines(results: dict[str, Any]) -> list[str]:
    """The named comparisons as plain sentences, the seed rounds, the test split's noise, the headline."""
    lines = []
    named = [c for c in results.get("comparisons", []) if c.get("named")]
    for view in results.get("views", ["natural"]):
        these = [c for c in named if c["view"] == view]
        if these:
            lines.append(f"named comparisons {VIEW_TITLES[view]}:")
            lines += [f"  {c['sentence']}" for c in these]
    for arm, reason in (results.get("seed_stops") or {}).items():
        lines.append(f"seeds: {arm}: {reason}")
    noise = results.get("noise")
    if noise and noise.get("test_images"):
        parts = [f"one image = {noise['one_image_points']:.2f} points"]
        for key, label in (("test_se_at_baseline", "binomial SE at the baseline's mean"), ("median_seed_sd", "median seed sd")):
            if isinstance(noise.get(key), (int, float)) and math.isfinite(noise[key]):
                parts.append(f"{label} {noise[key]:.1f} points")
        lines.append(f"test split: {noise['test_images']} images ({'; '.join(parts)})")
    if results.get("headline"):
        lines.append(f"verdict: {results['headline']}")
    return lines


def budget_text(arm: dict[str, Any]) -> str:
    """``parity 1x (seed 0)`` for a parity arm, ``natural 3x`` (synthetic images per real one)
    for another arm with synthetic data, empty for the rest."""
    budget = arm.get("budget")
    if budget:
        return f"parity {budget['synthetic_per_real']:g}x (seed {budget['seed']})"
    if not arm.get("synthetic_set"):
        return ""
    real = arm.get("real_samples")
    return f"natural {arm['synthetic_samples'] / real:.3g}x" if real else "natural"


def metric_cells(arm: dict[str, Any]) -> dict[str, Any]:
    """An arm's budget and synthetic-set metrics as flat columns (None where it has none)."""
    metrics = arm.get("set_metrics") or {}
    return {"budget": budget_text(arm) or None, **{name: metrics.get(name) for name in SET_METRICS}}


def metrics_table(results: dict[str, Any]):
    """The synthetic-set metrics of the arms that have them as a rich table (None when none has);
    a last row gives the real training images' own CLIP fidelity and diversity for reference."""
    from rich.table import Table

    arms = [arm for arm in results["arms"] if arm.get("set_metrics")]
    if not arms:
        return None
    first = arms[0]["set_metrics"]
    judge = f"classifier: {first['classifier']}" if first.get("classifier") else "no classifier"
    clip = first.get("clip", {}).get("id") or first.get("clip", {}).get("path", "?")
    table = Table(title=f"synthetic-set metrics (CLIP {clip}, k={first['k']}, {judge})")
    columns = [("arm", "left"), ("delta", "right"), ("synthetic", "right"), ("budget", "left"), ("FD", "right"),
               ("precision", "right"), ("recall", "right"), ("density", "right"), ("coverage", "right"),
               ("fid. CLIP", "right"), ("fid. clf", "right"), ("diversity", "right")]  # fmt: skip
    for column, justify in columns:
        table.add_column(column, justify=justify, no_wrap=True)

    def number(value: Any, digits: int = 2) -> str:
        return "" if value is None else f"{value:.{digits}f}"

    for arm in arms:
        cells = metric_cells(arm)
        delta = arm.get("delta_top1")
        table.add_row(
            arm["name"], "" if delta is None else f"{delta:+.1f}", str(arm["synthetic_samples"]), cells["budget"] or "",
            number(cells["fd"], 3), *(number(cells[name]) for name in SET_METRICS[1:]),
        )  # fmt: skip
    table.add_row("(real train images)", "", "", "", "", "", "", "", "", number(first.get("fidelity_clip_real")), "",
                  number(first.get("diversity_real")), style="dim")  # fmt: skip
    return table


# ---------------------------------------------------------------------------- dry run


def describe_plan(experiment: ExperimentConfig, needed: list[StageNode], jobs: list[TrainJob], out_dir: Path) -> str:
    """What a run would do: the stage graph with what is cached, the training runs, an estimate."""
    lines = [f"experiment '{experiment.name}' into {out_dir}", "stages:"]
    if not needed:
        lines.append("  (none: every arm trains on real images only)")
    for node in needed:
        source = f" <- {node.input}" if node.input else ""
        state = "cached" if node.is_done() else "to run"
        lines.append(f"  {node.name:18s} {node.kind:8s} {node.key}  {state:7s}{source}  {node.dir}")
        reason = None if node.is_done() else node.stale_reason()
        if reason:
            lines.append(f"    to run because {reason}")
    done = [job for job in jobs if job.done]
    lines.append(f"training runs: {len(jobs)} ({len(done)} finished, {len(jobs) - len(done)} to run)")
    for job in jobs:
        sets = ", ".join(str(path) for path in job.sets) or "real only"
        lines.append(f"  {job.arm:22s} seed {job.seed:<3d} {'done   ' if job.done else 'to run '} {job.run_dir.name}  [{sets}]")
        reason = None if job.done else job.stale_reason()
        if reason:
            lines.append(f"    to run because {reason}")
    if experiment.compute.matched_steps is not None:
        matched = [name for name in dict.fromkeys(job.arm for job in jobs) if experiment.compute.matched(name, experiment.baseline)]
        lines.append(
            f"matched view: {', '.join(matched)} at {experiment.compute.matched_steps:,} optimizer steps each; "
            "an arm whose natural runs make that many steps reuses them, the others train once more per seed"
        )
    if experiment.seed_rule is not None:
        rule = experiment.seed_rule
        lines.append(
            f"seeds: {rule.min} per arm first, then +{rule.step} per round to the arms whose interval is wider "
            f"than +-{rule.halfwidth:g} points, at most {rule.max}"
        )
    lines.append(estimate_line(done, [job for job in jobs if not job.done], needed))
    return "\n".join(lines)


def skipped_line(splits: dict[str, Any], shown: int = 3) -> str | None:
    """A warning naming how many input files were skipped while loading, and the first few."""
    from genaug.data.identity import skipped_count

    count = skipped_count(splits)
    if not count:
        return None
    seen, first = set(), []
    for split in splits.values():
        for item in split.skipped:
            if (item.path, item.reason) not in seen and len(first) < shown:
                first.append(f"{item.path}: {item.reason}")
            seen.add((item.path, item.reason))
    more = f"; and {count - len(first)} more" if count > len(first) else ""
    return f"warning: {count} input file(s) skipped while loading the dataset ({'; '.join(first)}{more})"


def warning_lines(results: dict[str, Any]) -> list[str]:
    """The warnings of a finished experiment: skipped inputs, and each run's training warnings."""
    lines = []
    skipped = results.get("dataset", {}).get("skipped")
    if skipped:
        lines.append(f"warning: {skipped} input file(s) were skipped while loading the dataset")
    noise = results.get("noise") or {}
    if noise.get("one_image_points", 0) and noise["one_image_points"] > 1.0:
        lines.append(
            f"warning: the test split has {noise['test_images']} images, so one image moves top-1 by "
            f"{noise['one_image_points']:.1f} points: differences of a few points are single images"
        )
    for arm in results.get("arms", []):
        lines.extend(f"warning: {arm['name']} {warning}" for warning in arm.get("warnings", []))
    return lines


def estimate_line(done: list[TrainJob], todo: list[TrainJob], needed: list[StageNode]) -> str:
    """A time estimate from what this run folder has measured (finished runs, cached stages)."""
    from genaug.training.trainer import RunResult

    stage_seconds = [node.record()["seconds"] for node in needed if node.is_done()]
    missing_stages = sum(1 for node in needed if not node.is_done())
    if not todo and not missing_stages:
        return "estimate: nothing to do"
    if not done:
        return (f"estimate from this folder's runs: none until one run finishes ({len(todo)} runs, {missing_stages} stages "
                "to run); the cost model's time estimate follows the cost table")
    per_run = statistics.fmean(RunResult.load(job.run_dir).wall_seconds for job in done)
    stage_part = f" + {missing_stages} stage(s)" if missing_stages else ""
    mean_stage = f" (cached stages took {statistics.fmean(stage_seconds):.0f} s each)" if stage_seconds else ""
    return f"estimate: about {per_run * len(todo) / 60:.1f} min of training{stage_part}{mean_stage}"

