"""``genaug run --launcher slurm``: the experiment's stages and training runs as Slurm jobs.

The driver (``genaug run``) keeps the stage graph and the order; the work goes to the cluster
through plain ``sbatch`` / ``squeue`` / ``scancel`` (docs/scale.md says why not submitit):

- a ``generate`` stage becomes a job array of ``launcher.array`` tasks (``genaug task stage
  ... --shard i/n``) and a merge job (``genaug task merge``) with ``afterok`` on the array; an
  ``sdi`` stage first runs one ``--prepare`` task (embeddings, projector, bank, samples), then
  its images as the array and the merge (:data:`SHARDED`); every other stage is one task. A stage is submitted once the stage it
  reads has finished, so a failed stage is resubmitted without a broken dependency chain;
- each training run (arm x seed x view) is one task (``genaug task train``), submitted when
  the stages of its arm are done (the runner decides when, as with local workers).

Every task reads the run folder's ``experiment.yaml`` and derives the same keys and folders
as the driver (a stage task checks its key: a dataset or file changed since the submission
is one line, not a different stage); a training task reads its resolved run from
``slurm/specs/``. A task writes exactly what the same work writes locally, so the results
do not depend on the launcher. What a task is done with is read from the files it writes
(``stage.json``, a shard's ``slurm/shards/...json``, a run's ``metrics.json``), its liveness
from ``squeue``: a job neither alive nor done failed (or was cancelled) and is submitted
again, up to ``launcher.retries`` times (its work resumes: generation skips made items,
training restarts from its checkpoint), then the run stops with one line naming the job, its
log and its last lines.

The run folder's ``slurm/`` holds ``jobs.json`` (every unit's submitted job ids, written
after each ``sbatch``), ``scripts/`` (the sbatch script of each unit), ``logs/`` and
``specs/``. A second ``genaug run`` reads ``jobs.json``, follows the jobs still queued or
running, and submits only what is neither done nor alive; ``--no-wait`` submits what is
ready and returns (run the same command again to submit the rest and tabulate).
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from genaug.experiment.config import load_experiment
from genaug.experiment.graph import build_graph, set_dir
from genaug.experiment.jobs import TrainJob, train_job
from genaug.experiment.launcher import LauncherConfig
from genaug.files import write_json_atomic
from genaug.stage_dirs import earlier_runs, earlier_sets
from genaug.training.config import TrainConfig

if TYPE_CHECKING:  # pragma: no cover
    from genaug.experiment.graph import StageNode

__all__ = [
    "LauncherConfig", "SlurmPool", "SlurmError", "LeftRunning", "Sbatch", "slurm_plan", "shared_storage_problems",
    "run_stage_task", "run_merge_task", "run_train_task",
]  # fmt: skip

SLURM_DIR = "slurm"
JOBS_FILE = "jobs.json"
#: Path prefixes that compute nodes usually do not share with the submitting machine.
LOCAL_PREFIXES = ("/tmp", "/var/tmp", "/dev/shm", "/run")
ALIVE = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT"}  # fmt: skip


class SlurmError(RuntimeError):
    """A Slurm command failed, a task failed more often than ``retries`` allows, or the storage
    is not shared: one line (``genaug run`` prints it without a traceback, exit 2)."""


class LeftRunning(Exception):
    """``--no-wait``: the jobs that could be submitted are; the message says what is left."""


# ---------------------------------------------------------------------------- units of work


@dataclass
class Unit:
    """One thing submitted: a stage's task or array, its merge, or one training run."""

    name: str  # unique in the run folder, also the job name's tail
    kind: str  # "stage", "shards", "merge", "train"
    command: list[str]  # genaug's arguments
    done: Callable[[], bool]
    array: list[int] = field(default_factory=list)  # the shard indices to submit (kind "shards")
    count: int = 1  # shards of the stage (kind "shards")
    after: list[str] = field(default_factory=list)  # dependencies, e.g. "afterok:123"
    job: "TrainJob | None" = None
    node: "StageNode | None" = None


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.@-]+", "-", text).strip("-")


@dataclass(frozen=True)
class Sharding:
    """How a stage kind runs as an array: where its engine's ``shard`` field is, the part it runs
    once before the array (``prepare(node, nodes)``), and one shard (``make(config, node)`` ->
    images made)."""

    field: tuple[str, ...]
    make: Callable[[Any, "StageNode"], int]
    prepare: Callable[["StageNode", dict], None] | None = None


def _make_generate_shard(config: Any, node: "StageNode") -> int:
    from genaug.generation.stage import generate

    return generate(config, reuse_from=earlier_sets(node)).made


def _prepare_sdi(node: "StageNode", nodes: dict) -> None:
    from genaug.sdi import build_bank, embed_training_images, sample_features, train_projector

    work_dirs = [folder for folder, _ in earlier_runs(node)]  # incremental passes, as run_sdi_stage
    embed_training_images(node.config)
    train_projector(node.config, reuse_from=work_dirs)
    build_bank(node.config)
    sample_features(node.config, reuse_from=work_dirs)


def _make_sdi_shard(config: Any, node: "StageNode") -> int:
    from genaug.sdi import generate_from_samples

    return generate_from_samples(config, reuse_from=earlier_sets(node)).made


#: The stage kinds that run as arrays: ``generate`` (the engine's items), ``sdi`` (projector,
#: bank and samples in one task first, then its images in the array).
SHARDED = {
    "generate": Sharding(("engine",), _make_generate_shard),
    "sdi": Sharding(("generate", "engine"), _make_sdi_shard, _prepare_sdi),
}


def with_shard(config: Any, path: tuple[str, ...], shard: str) -> Any:
    """``config`` with ``shard`` set at the nested ``path`` (``("generate", "engine")``)."""
    if not path:
        return config.model_copy(update={"shard": shard})
    return config.model_copy(update={path[0]: with_shard(getattr(config, path[0]), path[1:], shard)})


def shard_record(run_dir: Path, node: "StageNode", index: int, count: int) -> Path:
    return run_dir / SLURM_DIR / "shards" / node.dir.name / f"shard-{index}-of-{count}.json"


def prepared_record(run_dir: Path, node: "StageNode") -> Path:
    return run_dir / SLURM_DIR / "shards" / node.dir.name / "prepared.json"


def stage_units(settings: LauncherConfig, run_dir: Path, node: "StageNode") -> list[Unit]:
    """What a stage is submitted as, in order: one task; or (a prepare task,) an array of
    ``launcher.array`` shard tasks and a merge job (afterok on the array)."""
    base = ["task", "stage", str(run_dir), node.name, node.key]
    sharding = SHARDED.get(node.kind)
    if sharding is None or settings.array < 2:
        return [Unit(f"stage-{node.name}-{node.key}", "stage", base, done=node.is_done, node=node)]
    count = settings.array
    units = []
    if sharding.prepare is not None:
        marker = prepared_record(run_dir, node)
        units.append(Unit(f"stage-{node.name}-{node.key}-prepare", "prepare", [*base, "--prepare"], done=marker.is_file, node=node))
    units.append(Unit(
        f"stage-{node.name}-{node.key}-shards", "shards", [*base, "--shard", f"${{SLURM_ARRAY_TASK_ID}}/{count}"],
        done=lambda: all(shard_record(run_dir, node, i, count).is_file() for i in range(count)),
        array=list(range(count)), count=count, node=node,
    ))  # fmt: skip
    units.append(Unit(
        f"stage-{node.name}-{node.key}-merge", "merge",
        ["task", "merge", str(run_dir), node.name, node.key, "--shards", str(count)], done=node.is_done, node=node,
    ))  # fmt: skip
    return units


def train_unit(run_dir: Path, job: "TrainJob") -> Unit:
    folder, run_dir = job.run_dir.resolve(), run_dir.resolve()
    relative = folder.relative_to(run_dir / "arms") if folder.is_relative_to(run_dir / "arms") else folder
    name = _slug(f"train-{relative}".replace("/", "-"))
    spec = run_dir / SLURM_DIR / "specs" / f"{name}.json"
    return Unit(name, "train", ["task", "train", str(spec)], done=lambda: job.done, job=job)


def train_spec(job: "TrainJob") -> dict[str, Any]:
    """What a training task needs to rebuild ``job`` exactly (:func:`run_train_task`)."""
    return {
        "arm": job.arm, "seed": job.seed, "config": job.config.model_dump(mode="json"), "run_dir": str(job.run_dir.resolve()),
        "sets": [str(path.resolve()) for path in job.sets], "dataset": job.dataset, "data": job.data, "view": job.view,
    }  # fmt: skip


# ---------------------------------------------------------------------------- sbatch scripts


def genaug_command() -> list[str]:
    """This interpreter running genaug (the tasks use the driver's installation)."""
    return [sys.executable, "-m", "genaug"]


def sbatch_script(settings: LauncherConfig, run_dir: Path, experiment: str, unit: Unit) -> str:
    """The sbatch script of ``unit``: its resources, log, array and dependency, then the command."""
    logs = run_dir / SLURM_DIR / "logs"
    lines = ["#!/bin/bash", f"#SBATCH --job-name=genaug-{_slug(experiment)}-{unit.name}"]
    pattern = f"{unit.name}-%A_%a.out" if unit.kind == "shards" else f"{unit.name}-%j.out"
    lines.append(f"#SBATCH --output={logs / pattern}")
    lines.append(f"#SBATCH --chdir={Path.cwd()}")  # relative paths of the experiment (dataset roots) as here
    lines.append(f"#SBATCH --cpus-per-task={settings.cpus_per_task}")
    for flag, value in (("partition", settings.partition), ("account", settings.account), ("time", settings.time),
                        ("mem", settings.memory)):  # fmt: skip
        if value:
            lines.append(f"#SBATCH --{flag}={value}")
    if settings.gpus_per_task:
        lines.append(f"#SBATCH --gpus-per-task={settings.gpus_per_task}")
    if unit.kind == "shards":
        lines.append(f"#SBATCH --array={','.join(map(str, unit.array))}")
    if unit.after:
        lines.append(f"#SBATCH --dependency={','.join(unit.after)}")
        lines.append("#SBATCH --kill-on-invalid-dep=yes")
    lines += [f"#SBATCH {line}" for line in settings.sbatch]
    lines += ["set -euo pipefail", *settings.setup]
    lines.append("export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}")
    command = " ".join(shlex.quote(part) if "$" not in part else f'"{part}"' for part in [*genaug_command(), *unit.command])
    lines.append(f"exec {command}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- the Slurm commands


class Sbatch:
    """``sbatch``, ``squeue`` and ``scancel`` through subprocess (a test can stand in its own)."""

    def submit(self, script: Path) -> str:
        done = self._run(["sbatch", "--parsable", str(script)])
        return done.stdout.strip().split(";")[0]

    def states(self) -> dict[str, str]:
        """Job id (``123`` or ``123_4`` for an array task) -> state, for this user's queued and running jobs."""
        done = self._run(["squeue", "-h", "-r", "-u", getpass.getuser(), "-o", "%i %T"])
        states = {}
        for line in done.stdout.splitlines():
            parts = line.split()
            if len(parts) == 2:
                states[parts[0]] = parts[1]
        return states

    def cancel(self, job_ids: list[str]) -> None:
        if job_ids:
            self._run(["scancel", *job_ids], check=False)

    def _run(self, command: list[str], check: bool = True) -> subprocess.CompletedProcess:
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        except FileNotFoundError:
            raise SlurmError(f"{command[0]} not found: --launcher slurm runs on a machine with Slurm's commands") from None
        except subprocess.TimeoutExpired:
            raise SlurmError(f"{' '.join(command[:2])} did not answer in 2 minutes") from None
        if check and done.returncode != 0:
            message = (done.stderr or done.stdout).strip().splitlines()
            raise SlurmError(f"{' '.join(command[:2])} failed: {message[-1] if message else f'exit {done.returncode}'}")
        return done


# ---------------------------------------------------------------------------- shared storage


def shared_storage_problems(paths: dict[str, Path]) -> list[str]:
    """The named paths that look node-local (under /tmp, /var/tmp, /dev/shm, /run)."""
    problems = []
    for what, path in paths.items():
        resolved = Path(path).expanduser().resolve()
        for prefix in LOCAL_PREFIXES:
            if resolved == Path(prefix) or resolved.is_relative_to(prefix):
                problems.append(f"{what} {resolved} is under {prefix}")
                break
    return problems


def storage_paths(run_dir: Path, artifacts: Path) -> dict[str, Path]:
    """What the tasks read and write: the run folder, the stage outputs, GENAUG_HOME, the HF cache."""
    paths = {"the run folder": run_dir, "the artifacts folder": artifacts}
    paths["GENAUG_HOME"] = Path(os.environ.get("GENAUG_HOME", Path.home() / ".cache" / "genaug"))
    hub = os.environ.get("HF_HUB_CACHE") or os.environ.get("HF_HOME")
    if hub:
        paths["the Hugging Face cache"] = Path(hub)
    return paths


def check_shared(settings: LauncherConfig, run_dir: Path, artifacts: Path) -> None:
    """One line (an error, before anything is submitted) when a path the tasks use looks node-local."""
    if settings.shared:
        return
    problems = shared_storage_problems(storage_paths(run_dir, artifacts))
    if problems:
        raise SlurmError(
            f"--launcher slurm: {problems[0]}, which compute nodes usually do not see"
            f"{f' (and {len(problems) - 1} more path(s))' if len(problems) > 1 else ''}; put it on a shared "
            "filesystem, or set launcher.shared=true if it is shared"
        )


# ---------------------------------------------------------------------------- the pool


class SlurmPool:
    """The :class:`~genaug.experiment.schedule.TrainingPool` interface on Slurm (module doc):
    ``submit`` training runs, ``poll``, ``wait``, ``total``, ``sharing_cores``, ``stop``, and
    :meth:`run_stages`, the stages of the graph as jobs."""

    def __init__(
        self,
        settings: LauncherConfig,
        run_dir: Path,
        artifacts: Path,
        experiment: str,
        total: int,
        progress: bool = True,
        echo=print,
        on_finished: Callable[["TrainJob"], None] | None = None,
        wait: bool = True,
        slurm: Sbatch | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings, self.experiment = settings, experiment
        self.run_dir, self.artifacts = Path(run_dir).resolve(), Path(artifacts).resolve()
        self.total, self.progress, self.echo, self.wait_for_jobs = total, progress, echo, wait
        self.on_finished = on_finished or (lambda job: None)
        self.slurm = slurm or Sbatch()
        self.sleep = sleep
        self.finished = 0
        self.folder = self.run_dir / SLURM_DIR
        self.record = self._load()
        self._training: dict[str, Unit] = {}  # submitted and not yet finished
        self._stage_units: dict[str, Unit] = {}
        self._states: dict[str, str] = {}
        self._durations: list[float] = []
        self._failures: dict[str, list[str]] = {}
        self._stages_submitted = False
        self._announced: set[str] = set()
        self._stages_left = 0  # --no-wait: stages not finished when run_stages returned
        self._deferred: list[TrainJob] = []
        self._last_line = ("", 0.0)
        check_shared(settings, self.run_dir, self.artifacts)
        self.folder.mkdir(parents=True, exist_ok=True)
        write_launch(self.folder, self.artifacts)

    # -- the record of submitted jobs

    def _load(self) -> dict[str, Any]:
        path = self.folder / JOBS_FILE
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except ValueError:
            raise SlurmError(f"{path} is not valid JSON; remove it to submit every job again") from None

    def _save(self) -> None:
        write_json_atomic(self.folder / JOBS_FILE, self.record)

    def _entry(self, unit: Unit) -> dict[str, Any]:
        return self.record.setdefault(unit.name, {"kind": unit.kind, "jobs": [], "failures": 0})

    # -- context manager

    def __enter__(self) -> "SlurmPool":
        return self

    def __exit__(self, kind: Any, *rest: Any) -> None:
        if kind is not None:
            self.stop()

    @contextlib.contextmanager
    def sharing_cores(self) -> Iterator[None]:
        """Nothing to share: the work runs on the cluster's nodes."""
        yield

    def stop(self) -> None:
        """Leave the submitted jobs to the cluster: a second ``genaug run`` follows them."""
        alive = [job for entry in self.record.values() for job in entry["jobs"][-1:] if job in self._states]
        if alive:
            self.echo(
                f"slurm: {len(alive)} job(s) keep running; `genaug run` again follows them, "
                f"`scancel --name <name>` (names genaug-{_slug(self.experiment)}-*) cancels them"
            )

    # -- submitting

    def _submit(self, unit: Unit, jobs: list[str] | None = None) -> list[str]:
        """sbatch ``unit`` (its array tasks ``jobs`` only, when given); the job ids, recorded at once."""
        if jobs is not None:
            unit.array = [int(job.rsplit("_", 1)[1]) for job in jobs]
        script = self.folder / "scripts" / f"{unit.name}.sbatch"
        script.parent.mkdir(parents=True, exist_ok=True)
        (self.folder / "logs").mkdir(parents=True, exist_ok=True)
        script.write_text(sbatch_script(self.settings, self.run_dir, self.experiment, unit), encoding="utf-8")
        job_id = self.slurm.submit(script)
        ids = [f"{job_id}_{index}" for index in unit.array] if unit.kind == "shards" else [job_id]
        entry = self._entry(unit)
        entry["jobs"] = [job for job in entry["jobs"] if job not in ids] + ids if unit.kind == "shards" else entry["jobs"] + ids
        entry["submitted"] = entry.get("submitted", 0) + 1
        self._save()
        for job in ids:
            self._states[job] = "PENDING"
        return ids

    def _live(self, unit: Unit) -> list[str]:
        """The recorded jobs of ``unit`` still queued or running (for an array: its tasks')."""
        entry = self.record.get(unit.name)
        if not entry:
            return []
        latest = self._latest_shards(entry) if unit.kind == "shards" else entry["jobs"][-1:]
        return [job for job in latest.values() if job in self._states] if unit.kind == "shards" else [
            job for job in latest if job in self._states
        ]  # fmt: skip

    @staticmethod
    def _latest_shards(entry: dict[str, Any]) -> dict[int, str]:
        latest: dict[int, str] = {}
        for job in entry["jobs"]:
            latest[int(job.rsplit("_", 1)[1])] = job
        return latest

    def _refresh(self) -> None:
        self._states = self.slurm.states()

    def submit(self, jobs: list["TrainJob"]) -> None:
        """Submit a task per training run (one already queued or running from an earlier ``genaug run`` is followed).

        Runs handed in before the stages have been submitted wait for them: the stages are the
        longer path, so they go into the queue first."""
        if not self._stages_submitted:
            self._deferred += jobs
            return
        if not jobs:
            return
        self._refresh()
        specs = self.folder / "specs"
        specs.mkdir(parents=True, exist_ok=True)

        for job in jobs:
            unit = train_unit(self.run_dir, job)
            self._training[unit.name] = unit
            if unit.done():
                continue
            write_json_atomic(Path(unit.command[-1]), train_spec(job))
            if self._live(unit):
                continue
            self._submit(unit)

    # -- following

    def poll(self) -> None:
        """Count the runs that finished (calling back for each); resubmit failed ones (module doc)."""
        self._refresh()
        self._poll_training()

    def _poll_training(self) -> None:
        for name, unit in list(self._training.items()):
            if unit.done():
                del self._training[name]
                self.finished += 1
                summary = _run_summary(unit.job)
                if summary.get("seconds"):
                    self._durations.append(summary["seconds"])
                self.echo(f"trained {unit.job.arm} seed {unit.job.seed}"
                          f"{'' if unit.job.view == 'natural' else f' ({unit.job.view})'}: "
                          f"{summary.get('top1', float('nan')):.1f} % ({self.finished}/{self.total})")  # fmt: skip
                self.on_finished(unit.job)
            elif not self._live(unit):
                self._failed(unit)

    def _failed(self, unit: Unit, jobs: list[str] | None = None) -> None:
        """``unit`` (or these array tasks of it) ended without its output: submit again, or stop."""
        entry = self._entry(unit)
        last = jobs or entry["jobs"][-1:]
        counted = self._failures.setdefault(unit.name, [])  # this genaug run's: a new one retries afresh
        if not last or set(last) <= set(counted):
            return
        counted += [job for job in last if job not in counted]
        entry["failed_jobs"] = list(dict.fromkeys([*entry.get("failed_jobs", []), *last]))
        # an array task counts against its own shard: the most failed shard decides
        per_task = {}
        for job in counted:
            slot = job.rsplit("_", 1)[1] if unit.kind == "shards" else ""
            per_task[slot] = per_task.get(slot, 0) + 1
        entry["failures"] = max(per_task.values())
        if entry["failures"] > self.settings.retries:
            self._save()
            raise SlurmError(failure_line(self.run_dir, unit, last[0], entry["failures"]))
        self.echo(
            f"slurm: {unit.name} (job {', '.join(last)}) ended without its output; submitting it again "
            f"(retry {entry['failures']} of {self.settings.retries})"
        )
        self._submit(unit, jobs)

    def run_stages(
        self, needed: list["StageNode"], nodes: dict[str, "StageNode"], run_stage: Callable | None = None
    ) -> Iterator[tuple["StageNode", dict | None]]:
        """Each stage of ``needed`` as it finishes: ``(node, None)`` when cached, else ``(node, its
        record)``. ``run_stage`` is not used: the stages run as jobs (:func:`run_stage_task`).

        A stage is submitted once the stage it reads is done; while stages run, finished
        training runs are counted (:meth:`poll`). With ``--no-wait`` the ready stages are
        submitted and the iteration ends.
        """
        waiting: list[StageNode] = []
        for node in needed:
            if node.is_done():
                self.echo(f"stage {node.name} ({node.kind}): cached at {node.dir}")
                yield node, None
            else:
                waiting.append(node)
        units = {node.name: stage_units(self.settings, self.run_dir, node) for node in waiting}
        if not waiting:
            self._flush()
        while waiting:
            self._refresh()
            for node in list(waiting):
                source = nodes[node.input.split("/", 1)[0]] if node.input else None
                if (source is None or source.is_done()) and self._advance(node, units[node.name]):
                    waiting.remove(node)
                    yield node, node.record()
            self._flush()
            self._poll_training()
            if not self.wait_for_jobs:
                self._stages_left = len(waiting)
                return
            if waiting:
                self._progress_line()
                self.sleep(self.settings.poll_seconds)

    def _advance(self, node: "StageNode", units: list[Unit]) -> bool:
        """Submit what the stage needs next (its first unit not done), or resubmit what failed; whether it is done."""
        if units[-1].done():
            return True
        unit = next(unit for unit in units if not unit.done())
        if unit.kind == "shards":
            self._advance_shards(node, unit, units[-1])
        elif not self._live(unit):
            unit.after = []
            if self.record.get(unit.name, {}).get("jobs"):  # submitted before, ended without its output
                self._failed(unit)
            else:
                self._announce(node, self._submit(unit))
        else:
            self._announce(node, self._live(unit), following=True)
        return False

    def _advance_shards(self, node: "StageNode", shards: Unit, merge: Unit) -> None:
        """Submit the shards not made and not queued, resubmit the failed ones; keep a merge queued after them."""
        latest = self._latest_shards(self.record.get(shards.name, {"jobs": []}))
        missing = [i for i in range(shards.count) if not shard_record(self.run_dir, node, i, shards.count).is_file()]
        dead = [i for i in missing if latest.get(i) not in self._states]
        older = sorted({job.split("_")[0] for job in self._live(shards)})
        if not dead:
            self._announce(node, self._live(shards), following=True)
            if not self._live(merge):
                merge.after = [f"afterok:{job}" for job in older]
                self._submit(merge)
            return
        self.slurm.cancel(self._live(merge))  # its afterok can no longer be met, or it waits for the wrong arrays
        failed = [latest[i] for i in dead if i in latest]
        fresh = [i for i in dead if i not in latest]
        if failed:
            self._failed(shards, failed)
        if fresh:
            shards.array = fresh
            self._announce(node, self._submit(shards))
        newer = sorted({job.split("_")[0] for job in self._live(shards)} - set(older))
        # a task of an older array may have failed too: the merge checks every shard's record
        merge.after = [f"afterok:{job}" for job in newer] + [f"afterany:{job}" for job in older]
        self._submit(merge)

    def _announce(self, node: "StageNode", jobs: list[str], following: bool = False) -> None:
        """The stage's first line in this ``genaug run``: what it runs into, as which jobs."""
        if node.name in self._announced or not jobs:
            return
        self._announced.add(node.name)
        arrays = sorted({job.split("_")[0] for job in jobs})
        tasks = f" ({len(jobs)} array task(s))" if any("_" in job for job in jobs) else ""
        if following:
            self.echo(f"stage {node.name} ({node.kind}): following job(s) {', '.join(arrays)}{tasks} submitted earlier")
        else:
            verb = "resuming from" if node.dir.is_dir() and any(node.dir.iterdir()) else "running into"
            self.echo(f"stage {node.name} ({node.kind}): {verb} {node.dir} as job(s) {', '.join(arrays)}{tasks}")

    def _flush(self) -> None:
        if not self._stages_submitted:
            self._stages_submitted = True
            self.submit(self._deferred)
            self._deferred = []

    def wait(self) -> None:
        """Follow every submitted run until it is done (``--no-wait``: return at once, LeftRunning)."""
        self._flush()
        if not self.wait_for_jobs and (self._training or self._stages_left):
            raise LeftRunning(self._left_line())
        while self._training:
            self.poll()
            if self._training:
                self._progress_line()
                self.sleep(self.settings.poll_seconds)

    # -- progress

    def counts(self) -> dict[str, int]:
        pending = running = 0
        for entry in self.record.values():
            jobs = entry["jobs"] if entry["kind"] == "shards" else entry["jobs"][-1:]
            for job in jobs:
                state = self._states.get(job)
                if state in ("PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD"):
                    pending += 1
                elif state is not None:
                    running += 1
        failed = sum(len(jobs) for jobs in self._failures.values())
        return {"pending": pending, "running": running, "done": self.finished, "failed": failed}

    def eta_seconds(self) -> float | None:
        """The runs left times the mean duration of the finished ones, over the runs running at once."""
        if not self._durations:
            return None
        counts = self.counts()
        return statistics.fmean(self._durations) * len(self._training) / max(1, counts["running"])

    def _progress_line(self) -> None:
        counts = self.counts()
        eta = self.eta_seconds()
        line = (f"slurm: {counts['pending']} pending, {counts['running']} running, {counts['done']}/{self.total} runs done, "
                f"{counts['failed']} failed{'' if eta is None else f'; about {eta / 60:.1f} min left'}")  # fmt: skip
        text, when = self._last_line
        if line.split(";")[0] != text.split(";")[0] or time.monotonic() - when > 60:
            self.echo(line)
            self._last_line = (line, time.monotonic())

    def _left_line(self) -> str:
        counts = self.counts()
        return (f"submitted: {counts['pending']} job(s) pending, {counts['running']} running ({self.folder / JOBS_FILE}); "
                "run the same command again to follow them, submit what is left and tabulate")  # fmt: skip


def _run_summary(job: "TrainJob") -> dict[str, Any]:
    try:
        from genaug.training.trainer import RunResult

        result = RunResult.load(job.run_dir)
        return {"top1": result.test["top1"], "seconds": result.wall_seconds}
    except (OSError, ValueError, KeyError):
        return {}


def failure_line(run_dir: Path, unit: Unit, job_id: str, attempts: int, tail: int = 3) -> str:
    """One line: the unit, its job, its log and the log's last lines."""
    logs = run_dir / SLURM_DIR / "logs"
    base, _, index = job_id.partition("_")
    log = logs / (f"{unit.name}-{base}_{index}.out" if index else f"{unit.name}-{job_id}.out")
    try:
        lines = [line.strip() for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    except OSError:
        lines = ["(no log)"]
    return (f"slurm: {unit.name} failed {attempts} time(s), last as job {job_id}; log {log}: "
            f"{' | '.join(lines[-tail:])}")  # fmt: skip


def write_launch(folder: Path, artifacts: Path) -> None:
    """``slurm/launch.json``: what a task needs besides ``experiment.yaml`` (the artifacts folder)."""
    write_json_atomic(folder / "launch.json", {"artifacts": str(artifacts.resolve())})


# ---------------------------------------------------------------------------- dry run


def task_costs(experiment: Any, settings: LauncherConfig, arms: list[str], seeds: list[int]) -> dict[str, float]:
    """FLOPs of one task of each job, from the dry run's estimate (:func:`genaug.rehearsal.cost.estimate_experiment`):
    ``<stage>`` (a single task), ``<stage>/prepare``, ``<stage>/shard`` (the array's images over
    ``launcher.array``), ``train:<arm>`` (one seed). Empty when there is no estimate (a model whose config files cannot be read)."""
    from genaug.rehearsal.cost import estimate_experiment

    try:
        estimate = estimate_experiment(experiment, seeds=seeds, arms=arms)
    except (ValueError, OSError):
        return {}
    costs: dict[str, float] = {}
    for row in estimate["rows"]:
        name = row["stage"]
        if row["kind"] == "train":
            costs[name] = row["flops"] / max(1, len(seeds))
        elif row["kind"] in SHARDED and settings.array > 1:
            sharded = row["part"] in (None, "generate")
            key = f"{name}/shard" if sharded else f"{name}/prepare"
            costs[key] = costs.get(key, 0.0) + (row["flops"] / settings.array if sharded else row["flops"])
        else:
            costs[name] = costs.get(name, 0.0) + row["flops"]
    return costs


def cost_text(flops: float | None) -> str:
    """`` [~0.07 A100-h, 0.18 V100-h per task]`` (FLOPs at the assumed share of each GPU's peak)."""
    if flops is None:
        return ""
    from genaug.rehearsal.cost import GPU_EFFICIENCY, GPU_PEAKS

    hours = {gpu: flops / (GPU_PEAKS[gpu] * 1e12 * GPU_EFFICIENCY) / 3600 for gpu in ("A100", "V100")}
    return f" [~{hours['A100']:.2f} A100-h, {hours['V100']:.2f} V100-h per task]"


def slurm_plan(
    settings: LauncherConfig, experiment: Any, needed: list["StageNode"], jobs: list["TrainJob"], run_dir: Path,
    arms: list[str] | None = None, seeds: list[int] | None = None,
) -> str:
    """The jobs ``--launcher slurm`` would submit (arrays, sizes, dependencies, the estimated cost
    of a task) and each sbatch script."""
    costs = task_costs(experiment, settings, arms or [arm.name for arm in experiment.arms], seeds or list(experiment.seeds))
    lines = [f"slurm jobs (partition {settings.partition or 'default'}, {settings.cpus_per_task} CPU(s)"
             f"{f', {settings.gpus_per_task} GPU(s)' if settings.gpus_per_task else ''} per task, "
             f"retries {settings.retries}):"]  # fmt: skip
    scripts = []
    todo = [node for node in needed if not node.is_done()]
    for node in todo:
        units = stage_units(settings, run_dir, node)
        after = f", after stage {node.input.split('/')[0]} has finished" if node.input and node.input.split("/")[0] in {
            n.name for n in todo} else ""  # fmt: skip
        if units[-1].kind == "merge":
            shards = units[-2]
            if len(units) == 3:
                lines.append(f"  stage {node.name}: 1 prepare task (--prepare: what runs once before the array){after}"
                             f"{cost_text(costs.get(f'{node.name}/prepare'))}")  # fmt: skip
            lines.append(f"  stage {node.name}: {'then an ' if len(units) == 3 else ''}array of {shards.count} tasks "
                         f"(--shard i/{shards.count}){after if len(units) == 2 else ''}{cost_text(costs.get(f'{node.name}/shard'))}; "
                         f"then {units[-1].name} (afterok on the array)")  # fmt: skip
            units[-1].after = ["afterok:<the array's job id>"]
        else:
            lines.append(f"  stage {node.name}: 1 task{after}{cost_text(costs.get(node.name))}")
        scripts += units
    runs = [job for job in jobs if not job.done]
    lines.append(f"  training: {len(runs)} task(s), one per arm x seed x view, each submitted when its arm's stages have finished "
                 "(a matched run whose natural run already makes the matched steps is not)")
    for job in runs:
        unit = train_unit(run_dir, job)
        lines.append(f"    {unit.name}{cost_text(costs.get(f'train:{job.arm}'))}")
        scripts.append(unit)
    for unit in scripts:
        lines.append(f"--- {run_dir / SLURM_DIR / 'scripts' / (unit.name + '.sbatch')}")
        lines.append(sbatch_script(settings, run_dir, experiment.name, unit).rstrip())
    return "\n".join(lines)


# ---------------------------------------------------------------------------- the tasks


def _task_graph(run_dir: Path, name: str, key: str):
    """The run folder's experiment and stage graph as the driver built them; the node ``name``."""
    from genaug.data import load_splits
    from genaug.data.identity import splits_identity

    run_dir = Path(run_dir)
    experiment = load_experiment(run_dir / "experiment.yaml")
    launch = json.loads((run_dir / SLURM_DIR / "launch.json").read_text(encoding="utf-8"))
    nodes = build_graph(experiment, Path(launch["artifacts"]), splits_identity(load_splits(experiment.dataset)))
    if name not in nodes:
        raise SlurmError(f"{run_dir / 'experiment.yaml'} has no stage {name!r}")
    node = nodes[name]
    if node.key != key:
        raise SlurmError(
            f"stage {name}: its key is {node.key} here, {key} when it was submitted: the dataset or "
            f"{run_dir / 'experiment.yaml'} changed since; run genaug run again"
        )
    return nodes, node


@contextlib.contextmanager
def _task_threads() -> Iterator[None]:
    """Torch in a stage task takes the task's CPUs (the thread count is part of what a CPU stage computes)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(int(os.environ.get("SLURM_CPUS_PER_TASK", "1")))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_stage_task(run_dir: Path, name: str, key: str, shard: str | None = None, prepare: bool = False, echo=print) -> None:
    """``genaug task stage``: the whole stage (its record written); with ``prepare``, the part of a
    sharded stage that runs once before its array (SDI's projector, bank and samples); with
    ``shard`` (``i/n``), one shard of its images."""
    nodes, node = _task_graph(run_dir, name, key)
    with _task_threads():
        if shard is None and not prepare:
            from genaug.experiment.stages import run_stage

            record = run_stage(node, nodes)
            echo(f"stage {name}: {sum(record['images'].values())} images in {record['seconds']:.1f} s")
            return
        sharding = SHARDED.get(node.kind)
        if sharding is None:
            raise SlurmError(f"stage {name}: a {node.kind} stage does not run in shards")
        node.dir.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        if prepare:
            if sharding.prepare is not None:
                sharding.prepare(node, nodes)
            seconds = time.perf_counter() - started
            marker = prepared_record(Path(run_dir), node)
            marker.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(marker, {"seconds": seconds})
            echo(f"stage {name}: prepared in {seconds:.1f} s")
            return
        from genaug.runtime import parse_shard

        parsed = parse_shard(shard)
        index, count = parsed.rank, parsed.world
        made = sharding.make(with_shard(node.config, sharding.field, f"{index}/{count}"), node)
        seconds = time.perf_counter() - started
        record = shard_record(Path(run_dir), node, index, count)
        record.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(record, {"made": made, "seconds": seconds})
        echo(f"stage {name} shard {index}/{count}: {made} images in {seconds:.1f} s")


def run_merge_task(run_dir: Path, name: str, key: str, shards: int, echo=print) -> None:
    """``genaug task merge``: join the shards' manifests, finish the stage, record it with the shards' cost."""
    from genaug.experiment.stages import run_stage
    from genaug.manifest import merge_shards

    nodes, node = _task_graph(run_dir, name, key)
    parts = [shard_record(Path(run_dir), node, index, shards) for index in range(shards)]
    missing = [path for path in parts if not path.is_file()]
    if missing:
        raise SlurmError(f"stage {name}: shard record {missing[0]} is missing; its shard has not finished")
    merge_shards(set_dir(node))
    with _task_threads():
        record = run_stage(node, nodes)
    made = [json.loads(path.read_text(encoding="utf-8")) for path in parts]
    prepared = prepared_record(Path(run_dir), node)
    before = json.loads(prepared.read_text(encoding="utf-8"))["seconds"] if prepared.is_file() else 0.0
    seconds = before + sum(part["seconds"] for part in made) + record["seconds"]
    total = sum(part["made"] for part in made) + record["made"]
    record.update(made=total, seconds=seconds, shards=shards, images_per_second=total / seconds if seconds > 0 and total else None)
    write_json_atomic(node.record_path, record)
    echo(f"stage {name}: {shards} shards merged, {sum(record['images'].values())} images in {seconds:.1f} s of tasks")


def run_train_task(spec_path: Path, echo=print) -> None:
    """``genaug task train``: the training run written in ``spec_path`` (:func:`train_spec`)."""
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    job = TrainJob(
        arm=spec["arm"], seed=spec["seed"], config=TrainConfig.model_validate(spec["config"]), run_dir=Path(spec["run_dir"]),
        sets=tuple(Path(path) for path in spec["sets"]), dataset=spec["dataset"], data=spec["data"], view=spec["view"],
    )  # fmt: skip
    summary = train_job(job, False)
    echo(f"trained {job.arm} seed {job.seed} ({job.view}): test top-1 {summary['top1']:.2f} % in {summary['seconds']:.0f} s")
