"""Stages and training runs of an experiment, overlapped: a run starts as soon as its sets exist.

The stages run one after another in this process. Training runs go to a pool of
``workers`` processes (one thread each, ``spawn``), each run submitted the moment every
stage upstream of its arm has finished (a parity arm's subsample is written first), the
seeds of an arm submitted together as one task that trains them as one stacked model
(:mod:`genaug.training.stacked`; up to ``train.stack_seeds`` seeds, runs that cannot be
stacked one by one): the
arms on real images only (the baseline, online mixers) train while the first stage
generates, and an arm trains while the stages after its own still run. No run's result
depends on when it starts. The stage in this process takes only the threads the workers
leave (:meth:`TrainingPool.sharing_cores`): on 2 cores a stage gains little from a second
thread, so one thread for the stage and one per run is the better use of them (the demo:
529-557 s against 590 s with the stage on 2 threads, benchmarks/RESULTS.md).

While stages run, a finished run prints one line; once they are done, one bar counts the
rest and shows, every second, how far each running run is (``baseline s0 12/60``: epochs
done of its epochs, read from its metrics.csv). ``on_finished`` is called in this process
after each run finishes (the runner computes the set metrics there as soon as their judge
exists). A failing run or stage, or Ctrl-C,
ends the workers at once; every run resumes from its checkpoint on the next ``genaug run``.
With ``workers: 1`` everything runs in this process: the stages first, then the runs.
With ``launcher: slurm`` the runner gets a :class:`genaug.experiment.slurm.SlurmPool`
instead (:func:`open_pool`): the same interface, the stages and runs as Slurm jobs.
"""

from __future__ import annotations

import concurrent.futures as futures
import contextlib
import multiprocessing
import signal
from typing import Any, Callable, Iterator

from genaug.experiment.jobs import TrainJob, group_jobs, train_job, train_jobs
from genaug.experiment.slurm import SlurmPool
from genaug.progress import progress_bar
from genaug.training.recipes import resolve_recipe
from genaug.training.run_logger import METRICS_CSV

__all__ = ["TrainingPool", "train_job", "launcher_settings", "open_pool"]


class TrainingPool:
    """Training runs submitted as they become ready, in ``workers`` processes (or in this one)."""

    def __init__(self, workers: int, total: int, progress: bool, echo=print, on_finished: Callable[["TrainJob"], None] | None = None):
        self.workers, self.total, self.progress, self.echo = workers, total, progress, echo
        self.on_finished = on_finished or (lambda job: None)
        self.finished = 0
        self._queued: list[TrainJob] = []  # workers == 1: run in wait()
        self._pending: dict[futures.Future, list[TrainJob]] = {}  # a future trains a group of seeds
        self._pool: futures.ProcessPoolExecutor | None = None

    def __enter__(self) -> "TrainingPool":
        return self

    def __exit__(self, kind: Any, *rest: Any) -> None:
        if kind is not None:
            self.stop()
        elif self._pool is not None:
            self._pool.shutdown(wait=True)

    @property
    def parallel(self) -> bool:
        return self.workers > 1 and self.total > 1

    def submit(self, jobs: list["TrainJob"]) -> None:
        """Queue ``jobs``: they start as soon as a worker is free, the seeds of an arm that can
        train as one stacked model as one task (:func:`genaug.experiment.jobs.group_jobs`)."""
        if not self.parallel:
            self._queued.extend(jobs)
            return
        if self._pool is None and jobs:
            context = multiprocessing.get_context("spawn")
            self._pool = futures.ProcessPoolExecutor(
                max_workers=min(self.workers, self.total), mp_context=context, initializer=_leave_interrupts_to_parent
            )
        for group in group_jobs(jobs):
            self._pending[self._pool.submit(train_jobs, group, False)] = group

    @contextlib.contextmanager
    def sharing_cores(self) -> Iterator[None]:
        """Work in this process beside the workers: torch here takes the threads they leave (its
        thread count less one per worker, at least one), as each worker takes one.

        Measured on 2 cores: a pocket edit stage runs only 1.4x faster on 2 threads than on 1,
        so while both cores train it costs less on one. The count depends on ``workers`` and
        the machine only, never on how many runs are left to train: a stage made again gives
        the same images (pocket SD's, unlike InstructPix2Pix's, differ between 1 and 2 threads).
        """
        if self.workers < 2:
            yield
            return
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(max(1, before - self.workers))
        try:
            yield
        finally:
            torch.set_num_threads(before)

    def run_stages(self, needed: list, nodes: dict, run_stage: Callable) -> Iterator[tuple[Any, dict | None]]:
        """Run each stage of ``needed`` in this process with ``run_stage(node, nodes)``, in order:
        ``(node, None)`` when cached, else ``(node, its record)`` once it has finished (the
        runner then releases arms)."""
        for node in needed:
            if node.is_done():
                self.echo(f"stage {node.name} ({node.kind}): cached at {node.dir}")
                yield node, None
                continue
            resuming = node.dir.is_dir() and any(node.dir.iterdir())
            self.echo(f"stage {node.name} ({node.kind}): {'resuming from' if resuming else 'running into'} {node.dir}")
            with self.sharing_cores():
                record = run_stage(node, nodes)
            yield node, record

    def poll(self) -> None:
        """Print the runs that finished since the last call (a failed run raises its error)."""
        for future in [future for future in self._pending if future.done()]:
            self._finish(future, lambda line: self.echo(f"trained {line} ({self.finished}/{self.total})"))

    def wait(self) -> None:
        """Train every queued run and wait for every submitted one, under one bar."""
        self.poll()
        if self._queued:
            for group in group_jobs(self._queued):
                seeds = ", ".join(str(job.seed) for job in group)
                self.echo(f"train {group[0].arm} seed(s) {seeds} ({self.finished + 1}/{self.total})")
                for job, summary in zip(group, train_jobs(group, self.progress)):
                    self.finished += 1
                    self.echo(f"  seed {job.seed}: test top-1 {summary['top1']:.2f} % in {summary['seconds']:.0f} s")
                    self.on_finished(job)
            self._queued = []
        if not self._pending:
            return

        last = {"line": ""}

        def report(line: str) -> None:
            last["line"] = line
            bar.advance(1, message=_bar_message(line, running_line(self._running())))

        with progress_bar(self.total, "training", enabled=self.progress, completed=self.finished,
                          detail="{task.fields[message]}", fields={"message": ""}) as bar:  # fmt: skip
            remaining = set(self._pending)
            while remaining:
                done, remaining = futures.wait(remaining, timeout=1.0, return_when=futures.FIRST_COMPLETED)
                for future in sorted(done, key=list(self._pending).index):
                    self._finish(future, report if bar.shown else self.echo)
                if bar.shown and not done:
                    bar.update(message=_bar_message(last["line"], running_line(self._running())))

    def _running(self) -> list["TrainJob"]:
        """The jobs a worker has taken (a future counts as running once queued to a worker)."""
        return [job for future, group in self._pending.items() if future.running() for job in group]

    def _finish(self, future: futures.Future, report: Callable[[str], None]) -> None:
        """Count the runs of ``future`` (a failed run raises its error), report their lines, call back."""
        group = self._pending.pop(future)
        for job, summary in zip(group, future.result()):
            self.finished += 1
            report(_line(job, summary))
            with self.sharing_cores():
                self.on_finished(job)

    def stop(self, grace: float = 2.0) -> None:
        """Cancel every queued run and end the workers now (their runs resume from their checkpoints).

        A worker is terminated (SIGTERM), then killed if it has not ended within ``grace``
        seconds: training survives kill -9 (checkpoints are swapped in atomically).
        """
        self._queued = []
        if self._pool is None:
            return
        processes = list((getattr(self._pool, "_processes", None) or {}).values())
        for process in processes:
            if process.is_alive():
                process.terminate()
        self._pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.join(grace)
            if process.is_alive():
                process.kill()
                process.join(grace)
        self._pool, self._pending = None, {}


def running_line(jobs: list["TrainJob"]) -> str:
    """``arm sN done/total`` for each job that has logged an epoch: the rows of its metrics.csv
    of its epochs (``epoch N`` for a run of a fixed number of steps, whose epochs are not known)."""
    parts = []
    for job in jobs:
        try:
            with open(job.run_dir / METRICS_CSV, encoding="utf-8") as handle:
                rows = sum(1 for _ in handle) - 1
        except OSError:
            continue
        config = resolve_recipe(job.config)
        done = f"{rows}/{config.epochs}" if config.steps is None else f"epoch {rows}"
        parts.append(f"{job.arm} s{job.seed} {done}")
    return ", ".join(parts)


def _bar_message(last: str, running: str) -> str:
    return " | ".join(part for part in (f"running: {running}" if running else "", last) if part)


def _line(job: "TrainJob", summary: dict[str, Any]) -> str:
    return f"{job.arm} seed {job.seed}: {summary['top1']:.1f} % in {summary['seconds']:.0f} s"


def _leave_interrupts_to_parent() -> None:
    """Workers ignore SIGINT (Ctrl-C reaches the whole process group): the parent stops them.

    Left to itself, a worker would turn Ctrl-C into an exception, report it as its run's
    result and take the next queued run.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def launcher_settings(experiment, launcher: str | None = None):
    """The experiment's ``launcher:`` with ``launcher`` (``--launcher``) as its name when given."""
    settings = experiment.launcher
    return settings if launcher is None else settings.model_copy(update={"name": launcher})


def open_pool(settings, experiment, out_dir, artifacts, total: int, progress: bool, echo, on_finished, wait: bool = True):
    """The pool the runner hands stages and runs to: local workers, or Slurm jobs (:mod:`genaug.experiment.slurm`)."""
    if settings.name == "slurm":
        return SlurmPool(settings, out_dir, artifacts, experiment.name, total, progress, echo, on_finished, wait=wait)
    return TrainingPool(experiment.workers, total, progress, echo, on_finished=on_finished)
