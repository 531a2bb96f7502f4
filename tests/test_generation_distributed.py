"""Two CPU processes under torchrun make the same set as one process."""

from __future__ import annotations

import subprocess
import sys
import textwrap
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

    config = GenerateConfig(
        output=sys.argv[1], regime="all", prompts=["make it red on blue", "make it green on black"],
        editor={{"name": "instruct", "model": sys.argv[2], "steps": 2}},
        engine={{"batch_size": 3, "progress": False}},
    )
    report = generate(config, dataset=pocket_dataset(7))
    sys.stdout.write(f"rank {{report.shard.rank}} made {{report.made}} merged {{report.merged}}\\n")  # one write: ranks share the pipe
    sys.stdout.flush()
    """
)


@pytest.mark.slow
@pytest.mark.distributed
def test_torchrun_two_processes_equal_one_process(tmp_path):
    model, script, env = tiny_ip2p_script(tmp_path, SCRIPT)

    single = subprocess.run([sys.executable, str(script), str(tmp_path / "single"), model], env=env, capture_output=True, timeout=600)
    assert single.returncode == 0, single.stderr.decode()[-2000:]
    torchrun = Path(sys.executable).parent / "torchrun"
    launched = subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node", "2", str(script), str(tmp_path / "sharded"), model],
        env=env, capture_output=True, timeout=600,
    )
    assert launched.returncode == 0, launched.stderr.decode()[-3000:]
    out = launched.stdout.decode()
    assert "rank 0 made" in out and "rank 1 made" in out and "merged True" in out

    # merged into one manifest, no shard files left
    assert sorted(p.name for p in (tmp_path / "sharded").glob("manifest*")) == ["manifest.jsonl"]
    a, b = set_pixels(tmp_path / "single"), set_pixels(tmp_path / "sharded")
    assert len(a) == 14 and a.keys() == b.keys()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    check_set_integrity(tmp_path / "sharded")
