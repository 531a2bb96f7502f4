"""Two processes under torchrun train what one process trains (CPU, gloo)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

HERE = Path(__file__).parent
TORCHRUN = Path(sys.executable).with_name("torchrun")


def launch(processes: int, out_dir: Path, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "GENAUG_HOME": str(home), "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
    # No BatchNorm: with it each rank normalises by its half batch's statistics, which one
    # process holding the whole batch cannot reproduce (and CPU has no SyncBatchNorm).
    worker = [str(HERE / "training_worker.py"), str(out_dir), "--no-norm"]
    command = [str(TORCHRUN), "--standalone", f"--nproc_per_node={processes}", *worker]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
@pytest.mark.distributed
def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path):
    two = launch(2, tmp_path / "two", tmp_path / "home")
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("rank done: world 2") == 2
    one = launch(1, tmp_path / "one", tmp_path / "home")
    assert one.returncode == 0, one.stderr[-3000:]

    # rank 0 wrote the run; no rank wrote a second copy of anything
    run = tmp_path / "two"
    assert {p.name for p in run.iterdir()} == {
        "config.yaml", "dataset.json", "warnings.log", "metrics.csv", "per_class_val.csv", "metrics.json",
        "best.safetensors", "checkpoint", "tb",
    }  # fmt: skip
    assert len(list((run / "tb").iterdir())) == 1
    assert len((run / "metrics.csv").read_text().splitlines()) == 1 + 3
    two_result = json.loads((run / "metrics.json").read_text())
    one_result = json.loads((tmp_path / "one" / "metrics.json").read_text())
    assert (two_result["world_size"], one_result["world_size"]) == (2, 1)
    assert two_result["real_samples"] == one_result["real_samples"] == 150

    # same global batches, same augmentation parameters, gradients averaged exactly
    weights_two = load_file(run / "checkpoint" / "model.safetensors")
    weights_one = load_file(tmp_path / "one" / "checkpoint" / "model.safetensors")
    for name, tensor in weights_one.items():
        torch.testing.assert_close(weights_two[name], tensor, rtol=1e-5, atol=1e-6)
    # evaluation gathered from both shards: metrics of the whole split
    assert two_result["test"]["top1"] == pytest.approx(one_result["test"]["top1"], abs=1e-9)
    assert two_result["best_epoch"] == one_result["best_epoch"]
