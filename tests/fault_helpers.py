"""Kill -9 machinery for the fault suite: a fork server, a seeded kill loop, artifact comparisons.

Importing torch, diffusers and transformers takes seconds; a fault test starts a stage
dozens of times. So one server process imports them once and forks a fresh child per
run. Each child is a real process running the stage from scratch (nothing is shared with
earlier runs but the files on disk), and the test kills it with SIGKILL: no handler, no
cleanup, exactly what the OOM killer or a pulled plug does.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load_file

TESTS = Path(__file__).parent

SERVER = textwrap.dedent(
    """
    import importlib, json, os, sys, traceback
    sys.path.insert(0, {tests!r})
    for name in {preload!r}:
        importlib.import_module(name)
    out = sys.stdout
    sys.stdout = sys.stderr
    for line in sys.stdin:
        command = json.loads(line)
        if command["op"] == "run":
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    os.environ.update(command["env"])
                    log = os.open(command["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                    os.dup2(log, 1)
                    os.dup2(log, 2)
                    module, function = command["target"].split(":")
                    getattr(importlib.import_module(module), function)(*command["args"])
                    code = 0
                except SystemExit as stop:
                    code = stop.code if isinstance(stop.code, int) else 1
                except BaseException:
                    traceback.print_exc()
                finally:
                    sys.stdout.flush(); sys.stderr.flush()
                    os._exit(code)
            out.write(json.dumps({{"pid": pid}}) + "\\n"); out.flush()
        elif command["op"] == "wait":
            _, status = os.waitpid(command["pid"], 0)
            out.write(json.dumps({{"status": os.waitstatus_to_exitcode(status)}}) + "\\n"); out.flush()
    """
)


class ForkServer:
    """A process that has imported ``preload`` and forks one child per :meth:`start`."""

    def __init__(self, env: dict[str, str], preload: tuple[str, ...]) -> None:
        code = SERVER.format(tests=str(TESTS), preload=list(preload))
        self.process = subprocess.Popen(
            [sys.executable, "-c", code], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
        )

    def _ask(self, command: dict[str, Any]) -> dict[str, Any]:
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"fork server died (exit {self.process.wait()})")
        return json.loads(line)

    def start(self, target: str, args: list[Any], log: Path, env: dict[str, str] | None = None) -> int:
        """Fork a child running ``module:function(*args)``; its output goes to ``log``; returns its pid."""
        return self._ask({"op": "run", "target": target, "args": [str(a) if isinstance(a, Path) else a for a in args],
                          "log": str(log), "env": env or {}})["pid"]

    def wait(self, pid: int) -> int:
        """Reap the child; its exit code (-9 when it was killed)."""
        return self._ask({"op": "wait", "pid": pid})["status"]

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


def alive(pid: int) -> bool:
    """True while the child runs (a finished, not yet reaped child is a zombie: not alive)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def count_lines(root: Path, patterns: tuple[str, ...] = ("*.jsonl", "*.csv")) -> int:
    """Complete lines in every file matching ``patterns`` under ``root``: how far a stage has got.

    The stage renames folders while this runs (checkpoint swaps): os.walk skips what vanished.
    """
    import fnmatch

    total = 0
    for folder, _, names in os.walk(root):
        for name in names:
            if any(fnmatch.fnmatch(name, pattern) for pattern in patterns):
                try:
                    total += (Path(folder) / name).read_bytes().count(b"\n")
                except OSError:
                    pass
    return total


@dataclass
class KillLog:
    """What a kill loop did: kills that landed on a running stage, and what each one interrupted."""

    kills: int = 0
    attempts: int = 0
    progress_at_kill: list[int] = field(default_factory=list)
    seconds: float = 0.0


def run_to_completion(server: ForkServer, target: str, args: list[Any], log: Path, env: dict[str, str] | None = None,
                      timeout: float = 600) -> float:
    """One uninterrupted run; returns its wall time. Fails with the child's output if it fails."""
    started = time.monotonic()
    pid = server.start(target, args, log, env)
    deadline = started + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    if alive(pid):
        os.kill(pid, signal.SIGKILL)
    status = server.wait(pid)
    assert status == 0, f"{target} exited {status}:\n{log.read_text()[-3000:]}"
    return time.monotonic() - started


def kill_repeatedly(
    server: ForkServer,
    target: str,
    args: list[Any],
    log: Path,
    rng: random.Random,
    *,
    kills: int,
    progress: Callable[[], int] | None = None,
    total: int | None = None,
    step: int = 2,
    jitter: float = 0.3,
    span: float = 5.0,
    env: dict[str, str] | None = None,
    restart_when_done: bool = False,
    after_kill: Callable[[], None] | None = None,
    max_attempts: int = 60,
) -> KillLog:
    """Start the stage and SIGKILL it at seeded random moments until ``kills`` kills landed.

    With ``progress`` (a monotone count such as records written), each kill waits until the
    count has grown by ``randint(1, step)`` since the run started (by 0, during start-up, for one
    kill in five) and then ``uniform(0, jitter)`` seconds more, so kills land during start-up, mid-batch, mid-write and mid-append, spread
    over the whole run. ``total`` (the count a finished run reaches) keeps the targets short
    enough that the kills left still fit before the end. Without it, a kill comes ``uniform(0, span)`` seconds after the start.
    A run that finishes first is not a kill; with ``restart_when_done`` (stages that redo
    their work on every run, like the filter) the loop goes on, otherwise it stops there.
    ``after_kill`` checks the state a kill left behind (before any rerun repairs it).
    """
    record = KillLog()
    started = time.monotonic()
    while record.kills < kills and record.attempts < max_attempts:
        record.attempts += 1
        base = progress() if progress else 0
        room = step if total is None else min(step, max(0, (total - base) // (kills - record.kills + 1)))
        # one kill in five lands during start-up (before any new progress), the rest after some
        low = 0 if rng.random() < 0.2 else min(1, room)
        target_count = base + rng.randint(low, room)
        delay = rng.uniform(0.0, jitter if progress else span)
        pid = server.start(target, args, log, env)
        deadline = time.monotonic() + 600
        while progress and alive(pid) and progress() < target_count and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(delay)
        if alive(pid):
            at = progress() if progress else int(1000 * (time.monotonic() - started))
            os.kill(pid, signal.SIGKILL)
            status = server.wait(pid)
            if status == -signal.SIGKILL:
                record.progress_at_kill.append(at)
                record.kills += 1
                if after_kill is not None:
                    after_kill()
                continue
            # the run finished between the check and the signal: not a kill (handled below)
        else:
            status = server.wait(pid)
        assert status == 0, f"{target} exited {status}:\n{log.read_text()[-3000:]}"
        if not restart_when_done:
            break
    record.seconds = time.monotonic() - started
    return record


# ---------------------------------------------------------------------------- comparisons


def file_digests(root: Path, pattern: str = "*") -> dict[str, str]:
    """sha256 of every file under ``root`` matching ``pattern`` (temporaries excluded), by relative path."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob(pattern))
        if p.is_file() and ".tmp" not in p.name
    }


def assert_same_tensors(a: Path, b: Path) -> int:
    """Two safetensors files hold the same tensor names, dtypes and values; returns the count."""
    left, right = load_file(str(a)), load_file(str(b))
    assert left.keys() == right.keys(), f"{b}: other tensors than {a}"
    for name in left:
        assert left[name].dtype == right[name].dtype and torch.equal(left[name], right[name]), f"{b}: {name} differs"
    return len(left)


def check_records_have_images(set_dir: Path) -> int:
    """What a kill may leave: every record's image is complete, no id twice. Returns the record count."""
    from genaug.manifest import image_readable, read_manifest, record_file

    if not any(set_dir.glob("manifest*.jsonl")):
        return 0
    lines = [line for path in set_dir.glob("manifest*.jsonl") for line in path.read_text().split("\n")[:-1] if line.strip()]
    records = read_manifest(set_dir)
    assert len(lines) == len(records), f"{set_dir}: duplicate records after a kill"
    for record in records:
        assert image_readable(record_file(set_dir, record)), f"{set_dir}: record {record.id} without a complete image"
    return len(records)


def write_generated_set(set_dir: Path, images: int, size: int = 32) -> None:
    """A set standing in for generated edits: one random ``size`` px image per pocket digit, sourced from it."""
    import numpy as np

    from genaug.manifest import SampleRecord, SetWriter
    from generation_helpers import pocket_dataset

    dataset = pocket_dataset(images)
    rng = np.random.default_rng(0)
    with SetWriter(set_dir) as writer:
        for row, source_id in enumerate(dataset.ids):
            label = int(dataset.labels[row])
            item_id = f"{source_id.replace('/', '_')}-instruct-p0"
            writer.add(SampleRecord(id=item_id, path=writer.image_path(item_id, dataset.class_names[label]), label=label,
                                    class_name=dataset.class_names[label], method="instruct", source_ids=[source_id],
                                    prompt="snowy", model={"path": "fake"}),
                       rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


def manifest_view(set_dir: Path, drop: tuple[str, ...] = ("created",)) -> dict[str, dict[str, Any]]:
    """id -> record without the fields that legitimately differ between runs (creation time)."""
    from genaug.manifest import read_manifest

    return {r.id: {k: v for k, v in r.__dict__.items() if k not in drop} for r in read_manifest(set_dir)}


def write_figures(path: Path, stage: str, figures: dict[str, Any]) -> None:
    """Merge one stage's measured figures into a JSON file (read when docs/reliability.md is updated)."""
    data = json.loads(path.read_text()) if path.is_file() else {}
    data[stage] = figures
    path.write_text(json.dumps(data, indent=1, sort_keys=True))


# ---------------------------------------------------------------------------- stage workers
# Each runs in a forked child; arguments are strings (paths) so they pass through JSON.


def generate_worker(set_dir: str, model: str, images: int) -> None:
    """DiffuseMix generation with the tiny InstructPix2Pix pipeline on ``images`` pocket digits, batches of 2."""
    from genaug.config import GenerateConfig
    from genaug.generation.stage import generate

    from generation_helpers import pocket_dataset

    torch.set_num_threads(1)
    config = GenerateConfig(
        output=set_dir, regime="random", prompts="pocket",
        editor={"name": "instruct", "model": model, "steps": 3}, engine={"batch_size": 2, "progress": False},
    )
    generate(config, dataset=pocket_dataset(int(images)))


def mix_worker(generated: str, output: str, images: int) -> None:
    """concat, rect and fractal sets from a generated set of ``images`` pocket digits, in small batches."""
    from genaug.config import MixConfig
    from genaug.mixing.stage import mix

    from generation_helpers import pocket_dataset

    torch.set_num_threads(1)
    config = MixConfig(generated=generated, output=output, methods=["concat", "rect", "fractal"], band=4,
                       fractals={"count": 5, "size": 16, "seed": 3}, batch_size=2, progress=False)
    mix(config, dataset=pocket_dataset(int(images)))


def filter_worker(set_dir: str, clip: str) -> None:
    """frames then clip_rank over a set, scored in chunks of 4."""
    from genaug.config import FilterConfig
    from genaug.filtering import filter_set

    torch.set_num_threads(1)
    filter_set(FilterConfig(set_dir=set_dir, filters=[{"name": "frames"}, {"name": "clip_rank", "keep_ratio": 0.5}],
                            clip=clip, device="cpu", batch_size=4, progress=False))


def projector_worker(work_dir: str, sd: str, clip: str) -> None:
    """SDI embed + projector training on 4 digits per class (40 images, batch 8, 12 epochs: 60 steps), checkpoint every 2 steps."""
    from genaug.config import SdiConfig
    from genaug.sdi.embed import embed_training_images
    from genaug.sdi.train import train_projector

    from test_sdi_helpers import digits

    torch.set_num_threads(1)
    config = SdiConfig(
        work_dir=work_dir, clip=clip, model=sd, device="cpu",
        train={"preset": "pocket", "pools": ["train"], "hidden": 32, "batch_size": 8, "epochs": 12,
               "checkpoint_every": 2, "log_every": 1, "progress": False},
    )
    data = {"train": digits(4)}
    embed_training_images(config, datasets=data)
    train_projector(config, datasets=data)


def classifier_worker(out_dir: str, epochs: int) -> None:
    """The pocket recipe on 5 digits per class with a tiny network, checkpoint every epoch."""
    from genaug.config import TrainConfig
    from genaug.training import train

    from training_helpers import pocket_splits, tiny_net

    torch.set_num_threads(1)
    splits = pocket_splits(labels_per_class=5, val_per_class=5)
    config = TrainConfig(recipe="pocket", epochs=int(epochs), batch_size=16, lr=0.1, checkpoint_every=1,
                         logging={"progress": False, "tensorboard": False})
    train(config, splits, out_dir, model=tiny_net())


def cli_worker(*args: str) -> None:
    """``genaug ARGS...`` as the command line runs it."""
    from genaug.cli import app

    torch.set_num_threads(1)
    app(list(args), standalone_mode=False)


def seed_items(n: int, seed: int = 0) -> list:
    """``n`` work items over three classes, with derived seeds (for renderers without a model)."""
    from genaug.generation.items import WorkItem
    from genaug.generation.seeds import item_seed

    return [WorkItem(id=f"item-{i:03d}", seed=item_seed(seed, f"item-{i:03d}"), label=i % 3, class_name=f"c{i % 3}")
            for i in range(n)]
