"""Kill -9 a real generate run at random points, rerun, compare with an uninterrupted run."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from generation_helpers import check_set_integrity, set_pixels, tiny_ip2p_script

SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    from genaug.config import GenerateConfig
    from genaug.generation.stage import generate
    from generation_helpers import pocket_dataset

    set_dir, model = sys.argv[1], sys.argv[2]
    config = GenerateConfig(
        output=set_dir, regime="random", prompts="pocket",
        editor={{"name": "instruct", "model": model, "steps": 3}},
        engine={{"batch_size": 4, "progress": False}},
    )
    generate(config, dataset=pocket_dataset(20))
    """
)


def _records_written(set_dir: Path) -> int:
    manifest = set_dir / "manifest.jsonl"
    return manifest.read_bytes().count(b"\n") if manifest.exists() else 0


def _run(script: Path, set_dir: Path, model: str, env: dict, kill_after: int | None = None, delay: float = 0.0) -> bool:
    """Run the generate script; with ``kill_after``, SIGKILL it ``delay`` s after that many records. True if killed."""
    process = subprocess.Popen([sys.executable, str(script), str(set_dir), model], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if kill_after is None:
        _, err = process.communicate(timeout=600)
        assert process.returncode == 0, err.decode()[-2000:]
        return False
    deadline = time.monotonic() + 600
    while process.poll() is None and _records_written(set_dir) < kill_after and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(delay)
    if process.poll() is not None:
        return False
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    return True


@pytest.mark.slow
def test_killed_and_resumed_run_equals_an_uninterrupted_one(tmp_path):
    model, script, env = tiny_ip2p_script(tmp_path, SCRIPT)

    _run(script, tmp_path / "reference", model, env)
    reference = set_pixels(tmp_path / "reference")
    assert len(reference) == 20

    # Kill points: during start-up (no record yet), then at random record counts, each
    # after a random delay so the kill lands anywhere: mid-batch, mid-write, mid-append.
    rng = random.Random(1234)
    kills, target = 0, 0
    for _ in range(5):
        killed = _run(script, tmp_path / "resumed", model, env, kill_after=target, delay=rng.uniform(0.0, 0.4))
        kills += killed
        target = min(19, _records_written(tmp_path / "resumed") + rng.randint(1, 6))
    assert kills >= 3, "the run finished before it could be killed often enough"
    _run(script, tmp_path / "resumed", model, env)

    resumed = set_pixels(tmp_path / "resumed")
    assert resumed.keys() == reference.keys()
    assert all(np.array_equal(resumed[k], reference[k]) for k in reference)
    check_set_integrity(tmp_path / "resumed")
