"""The training pool's line of running runs (epochs done, read from each run's metrics.csv)."""

from genaug.config import TrainConfig
from genaug.experiment.runner import TrainJob
from genaug.experiment.schedule import _bar_message, running_line


def job(tmp_path, arm, seed, rows, **train):
    run_dir = tmp_path / f"{arm}-{seed}"
    if rows is not None:
        run_dir.mkdir()
        lines = ["epoch,lr", *(f"{i + 1},0.1" for i in range(rows))]
        (run_dir / "metrics.csv").write_text("\n".join(lines) + "\n")
    return TrainJob(arm, seed, TrainConfig(recipe="pocket", seed=seed, **train), run_dir, (), {})


def test_running_runs_show_their_epochs_done_of_their_epochs(tmp_path):
    jobs = [job(tmp_path, "baseline", 0, 12), job(tmp_path, "dm_single", 1, None),
            job(tmp_path, "matched", 2, 3, steps=500), job(tmp_path, "short", 3, 0, epochs=5)]  # fmt: skip
    assert running_line(jobs) == "baseline s0 12/60, matched s2 epoch 3, short s3 0/5"
    assert running_line([]) == ""
    assert _bar_message("baseline seed 0: 52.1 % in 9 s", "x s1 3/60") == "running: x s1 3/60 | baseline seed 0: 52.1 % in 9 s"
    assert _bar_message("", "") == ""
