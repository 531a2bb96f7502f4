"""Finished pocket training runs per core-minute: the trainer's fast path and stacked seeds against ``fast: false``.

Both paths train the demo's runs (the ``pocket`` recipe on the pocket digits, 10 labels per
class, ``keep_checkpoint: false`` and the default logging, as ``genaug run`` does) in one
pool of long-lived ``spawn`` workers with one thread each, like ``TrainingPool``; the jobs
of the two paths alternate (seed 0 old, seed 0 new, seed 1 old, ...) so that both see the
same load. Each worker first trains one short run that is not counted (imports, the
dataset), as a pool pays that once per worker, not per run.

Per path it prints the mean seconds of a run inside a worker, the finished runs per
core-minute (each run holds one core: 60 / mean seconds), where the time went (the
training step's forward + backward, SGD, validation and test, the rest) and, over the
seeds, the test top-1 mean and sd with a Welch two-sample t-test and a Mann-Whitney U
test between the paths. ``--synthetic-seeds`` adds runs of a 1x-synthetic arm (``concat``
of the real set and 10 other pocket digits per class standing in for a synthetic set,
twice the baseline's steps per epoch). On a GPU (``--device cuda``) the rate is per
GPU-minute.

``--paths`` picks what is compared, the first against the others: ``legacy`` (``fast:
false``), ``fast``, ``bf16`` (the fast path with ``precision: bf16``) and ``stacked`` (the fast
path with ``--stack`` seeds trained as one stacked model, :func:`genaug.training.train_seeds`,
as ``genaug run`` trains an arm's seeds; a run's seconds are the stack's over its seeds, and its
time is not split into parts), ``stacked_bf16`` (the same with ``precision: bf16``). Runs of
the same seed start from the same weights and see the same data order on every path, so the
accuracy is also compared paired by seed.

    python benchmarks/training_runs.py --seeds 10 --synthetic-seeds 2
    python benchmarks/training_runs.py --seeds 20 --synthetic-seeds 0 --paths legacy,fast,stacked --stack 5
"""

from __future__ import annotations

import argparse
import json
import concurrent.futures as futures
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


def worker_init() -> None:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    torch.set_num_threads(1)


def synthetic_standin(class_names: list[str], per_class: int = 10):
    """``per_class`` pocket digits per class from the pocket models' pretraining pool (never in
    the train, val or test splits), as a RealDataset: a 1x set for the cost of a synthetic arm."""
    import numpy as np

    from genaug.data.base import RealDataset
    from genaug.pocket.render import pocket_pools, styled_digits

    pool = pocket_pools()["pretrain"]
    labels = styled_digits(pool)[1]
    chosen = np.sort(np.concatenate([pool[labels == digit][:per_class] for digit in range(len(class_names))]))
    images, labels, _, _ = styled_digits(chosen)
    ids = [f"standin/{int(i):04d}" for i in chosen]
    return RealDataset(name="standin", split="train", class_names=list(class_names), labels=labels, ids=ids, images=images)


def run_stack(spec: dict) -> list[dict]:
    """Train the seeds ``spec["seeds"]`` as one stacked model in this worker; each run's test
    top-1, and seconds the stack's over its seeds."""
    from genaug.config import TrainConfig
    from genaug.data import load_splits
    from genaug.training import train_seeds

    started = time.perf_counter()
    splits = load_splits(spec["dataset"])
    synthetic = synthetic_standin(splits["train"].class_names) if spec["synthetic"] else None
    configs = [TrainConfig(**{**spec["train"], "seed": seed}) for seed in spec["seeds"]]
    results = train_seeds(configs, splits, [f"{spec['out']}-{seed}" for seed in spec["seeds"]], synthetic, resume=False)
    seconds = (time.perf_counter() - started) / len(results)
    nan = float("nan")
    return [{**spec, "seed": seed, "top1": result.test["top1"], "seconds": seconds, "best_epoch": result.best_epoch,
             "steps": result.optimizer_steps, "evaluations": len(result.val_history), "step": nan, "sgd": nan, "evaluate": nan,
             "stacked": len(result.stacked_seeds) + 1}
            for seed, result in zip(spec["seeds"], results)]  # fmt: skip


def run_one(spec: dict) -> list[dict]:
    """Train one run (or with ``spec["seeds"]``, a stack) in this worker; return its test top-1
    and where its time went."""
    if "seeds" in spec:
        return run_stack(spec)
    import torch

    from genaug.config import TrainConfig
    from genaug.data import load_splits
    from genaug.training import train
    from genaug.training import trainer as trainer_module

    times = {"step": 0.0, "sgd": 0.0, "evaluate": 0.0}
    step, evaluate, build = trainer_module.train_step, trainer_module.evaluate, trainer_module.build_optimizer

    def timed_step(*args, **kwargs):
        started = time.perf_counter()
        try:
            return step(*args, **kwargs)
        finally:
            times["step"] += time.perf_counter() - started

    def timed_evaluate(*args, **kwargs):
        started = time.perf_counter()
        try:
            return evaluate(*args, **kwargs)
        finally:
            times["evaluate"] += time.perf_counter() - started

    def timed_optimizer(model, config):
        optimizer = build(model, config)
        clock = {}
        optimizer.register_step_pre_hook(lambda *_: clock.__setitem__("t", time.perf_counter()))
        optimizer.register_step_post_hook(lambda *_: times.__setitem__("sgd", times["sgd"] + time.perf_counter() - clock["t"]))
        return optimizer

    trainer_module.train_step, trainer_module.evaluate, trainer_module.build_optimizer = timed_step, timed_evaluate, timed_optimizer
    try:
        started = time.perf_counter()
        splits = load_splits(spec["dataset"])  # as genaug run's worker does for every run
        synthetic = synthetic_standin(splits["train"].class_names) if spec["synthetic"] else None
        config = TrainConfig(**spec["train"])
        result = train(config, splits, spec["out"], synthetic, resume=False)
        seconds = time.perf_counter() - started
    finally:
        trainer_module.train_step, trainer_module.evaluate, trainer_module.build_optimizer = step, evaluate, build
    if torch.cuda.is_available() and spec["train"].get("device") == "cuda":
        torch.cuda.synchronize()
    return [{**spec, "top1": result.test["top1"], "seconds": seconds, "best_epoch": result.best_epoch,
             "steps": result.optimizer_steps, "evaluations": len(result.val_history), **times}]  # fmt: skip


def describe(runs: list[dict]) -> dict:
    seconds = [run["seconds"] for run in runs]
    mean = statistics.fmean(seconds)
    parts = {name: statistics.fmean(run[name] for run in runs) for name in ("step", "sgd", "evaluate")}
    return {
        "n": len(runs),
        "seconds": mean,
        "rate": 60.0 / mean,
        "forward_backward": (parts["step"] - parts["sgd"]) / mean,
        "sgd": parts["sgd"] / mean,
        "evaluate": parts["evaluate"] / mean,
        "rest": 1.0 - (parts["step"] + parts["evaluate"]) / mean,
        "top1": [run["top1"] for run in runs],
        "evaluations": statistics.fmean(run["evaluations"] for run in runs),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10, help="baseline seeds per path (default 10)")
    parser.add_argument("--synthetic-seeds", type=int, default=2, help="1x-synthetic seeds per path (default 2)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=None, help="override the recipe's 60 epochs")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--paths", default="legacy,fast", help="paths to compare, in order: legacy (fast: false), "
                        "fast, bf16 (the fast path with precision: bf16), stacked; default legacy,fast")  # fmt: skip
    parser.add_argument("--stack", type=int, default=5, help="seeds per stacked model on the stacked path (default 5)")
    parser.add_argument("--first-seed", type=int, default=0, help="the first seed (default 0): more seeds in a later run")
    parser.add_argument("--save", type=Path, help="write every run's result to this JSON file")
    parser.add_argument("--pool", type=Path, nargs="*", default=[],
                        help="JSON files of earlier runs (--save) whose accuracies join this run's comparisons (not its timings)")
    args = parser.parse_args(argv)

    from scipy import stats

    dataset = {"name": "pocket_digits", "labels_per_class": 10}
    root = Path(tempfile.mkdtemp(prefix="genaug-bench-runs-"))
    os.environ.setdefault("GENAUG_HOME", str(root / "home"))

    def spec(path: str, seed: int, synthetic: bool, epochs: int | None = None) -> dict:
        train = {"recipe": "pocket", "seed": seed, "keep_checkpoint": False, "fast": path != "legacy",
                 "logging": {"progress": False}, "device": args.device}  # fmt: skip
        if path in ("bf16", "stacked_bf16"):
            train["precision"] = "bf16"
        train["stack_seeds"] = args.stack if path.startswith("stacked") else 1
        if synthetic:
            train["data_policy"] = "concat"
        if epochs or args.epochs:
            train["epochs"] = epochs or args.epochs
        arm = "synthetic" if synthetic else "baseline"
        return {"path": path, "arm": arm, "seed": seed, "synthetic": synthetic, "dataset": dataset, "train": train,
                "out": str(root / f"{path}-{arm}-{seed}")}  # fmt: skip

    paths = args.paths.split(",")
    if unknown := sorted(set(paths) - {"legacy", "fast", "bf16", "stacked", "stacked_bf16"}):
        parser.error(f"--paths: unknown {', '.join(unknown)}; choose from legacy, fast, bf16, stacked, stacked_bf16")

    def arm_jobs(count: int, synthetic: bool) -> list[dict]:
        """Per group of ``--stack`` seeds: each single path's runs of those seeds, then the stack."""
        jobs = []
        end = args.first_seed + count
        for first in range(args.first_seed, end, args.stack):
            seeds = list(range(first, min(first + args.stack, end)))
            for path in paths:
                if path.startswith("stacked"):
                    jobs.append({**spec(path, first, synthetic), "seeds": seeds})
                else:
                    jobs += [spec(path, seed, synthetic) for seed in seeds]
        return jobs

    jobs = arm_jobs(args.seeds, False) + arm_jobs(args.synthetic_seeds, True)
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {sum(len(job.get('seeds', [0])) for job in jobs)} runs, "
          f"{args.workers} workers x 1 thread, device {args.device}", flush=True)  # fmt: skip
    context = multiprocessing.get_context("spawn")
    started = time.perf_counter()
    results: list[dict] = []
    with futures.ProcessPoolExecutor(args.workers, mp_context=context, initializer=worker_init) as pool:
        warm = [pool.submit(run_one, spec("fast", 1000 + i, False, epochs=1)) for i in range(args.workers)]
        futures.wait(warm)
        pending = [pool.submit(run_one, job) for job in jobs]
        for future in futures.as_completed(pending):
            for run in future.result():
                results.append(run)
                print(f"  {run['path']:12s} {run['arm']:9s} seed {run['seed']:2d}: {run['seconds']:6.1f} s, "
                      f"test top-1 {run['top1']:.2f}, best epoch {run['best_epoch']}", flush=True)  # fmt: skip
    wall = time.perf_counter() - started
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; wall {wall:.0f} s\n")
    if args.save:
        args.save.write_text(json.dumps(results, indent=1))
    earlier = [run for path in args.pool for run in json.loads(path.read_text())]
    if earlier:
        print(f"accuracy comparisons pooled with {len(earlier)} runs of {', '.join(map(str, args.pool))}")

    unit = "GPU-minute" if args.device == "cuda" else "core-minute"
    summary = {}
    reference = paths[0]
    for arm in ("baseline", "synthetic"):
        for path in paths:
            runs = [run for run in results if run["arm"] == arm and run["path"] == path]
            if not runs:
                continue
            summary[arm, path] = info = describe(runs)
            parts = "" if path.startswith("stacked") else (
                f"time: forward+backward {100 * info['forward_backward']:4.1f} %, SGD {100 * info['sgd']:4.1f} %, "
                f"validation+test {100 * info['evaluate']:4.1f} % ({info['evaluations']:.0f} validations), "
                f"rest {100 * info['rest']:4.1f} %")  # fmt: skip
            print(f"{arm:9s} {path:12s} n={info['n']:2d}  {info['seconds']:6.2f} s/run  {info['rate']:5.2f} runs per {unit}  {parts}")
        for path in paths[1:]:
            if (arm, reference) in summary and (arm, path) in summary:
                ratio = summary[arm, path]["rate"] / summary[arm, reference]["rate"]
                print(f"{arm:9s} speed-up of {path} over {reference}: {ratio:.2f}x runs per {unit}")
    accuracy = {(run["path"], run["seed"]): run["top1"] for run in earlier + results if run["arm"] == "baseline"}
    for path in paths[1:]:
        a = [top1 for (name, _), top1 in accuracy.items() if name == reference]
        b = [top1 for (name, _), top1 in accuracy.items() if name == path]
        if len(a) > 1 and len(b) > 1:
            welch = stats.ttest_ind(b, a, equal_var=False)
            low, high = welch.confidence_interval(0.95)
            mann = stats.mannwhitneyu(b, a, alternative="two-sided")
            print(f"\nbaseline test top-1: {reference} {statistics.fmean(a):.2f} +- {statistics.stdev(a):.2f}, "
                  f"{path} {statistics.fmean(b):.2f} +- {statistics.stdev(b):.2f} (mean +- sd, {len(a)} and {len(b)} seeds); "
                  f"difference {statistics.fmean(b) - statistics.fmean(a):+.2f} [{low:+.2f}, {high:+.2f}] points "
                  f"(Welch 95 % interval, unpaired); Welch t p = {welch.pvalue:.3f}, Mann-Whitney U p = {mann.pvalue:.3f}")  # fmt: skip
            paired = paired_difference(accuracy, reference, path)
            if paired is not None:
                print(f"  paired by seed (the same initial weights and data order on both paths, {paired[0]} seeds): "
                      f"{paired[1]:+.2f} [{paired[2]:+.2f}, {paired[3]:+.2f}] points (paired t 95 % interval), p = {paired[4]:.3f}")
    return 0


def paired_difference(by_seed: dict[tuple[str, int], float], reference: str, path: str) -> tuple | None:
    """``(seeds, mean, low, high, p)`` of ``path`` - ``reference`` test top-1 (``by_seed``: keyed by
    path and seed) over the seeds both trained (a paired t-test); None with fewer than 2 such seeds."""
    from scipy import stats

    seeds = sorted(seed for (name, seed) in by_seed if name == reference and (path, seed) in by_seed)
    if len(seeds) < 2:
        return None
    test = stats.ttest_rel([by_seed[path, seed] for seed in seeds], [by_seed[reference, seed] for seed in seeds])
    low, high = test.confidence_interval(0.95)
    mean = statistics.fmean(by_seed[path, seed] - by_seed[reference, seed] for seed in seeds)
    return len(seeds), mean, low, high, test.pvalue


if __name__ == "__main__":
    sys.exit(main())
