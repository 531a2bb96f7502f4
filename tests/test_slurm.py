"""``genaug run --launcher slurm`` (genaug.experiment.slurm).

The dry run, the storage check and the sbatch scripts need no Slurm. The rest runs against a
real single-node Slurm started on this machine from Debian's packages (tests/slurm_cluster.py;
skipped with the reason where it cannot be installed or started): the quick demo through
sbatch equals a local run, a task killed with scancel is resubmitted, an interrupted driver
restarted submits nothing twice, and a task that always fails stops the run with one line.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from genaug.experiment.slurm import LauncherConfig, Unit, failure_line, sbatch_script, shared_storage_problems

sys.path.insert(0, str(Path(__file__).parent))
from slurm_cluster import SlurmUnavailable, running, start_cluster, stop_cluster  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "configs" / "demo.yaml"
GENAUG = [sys.executable, "-m", "genaug"]


def genaug(*args: str, env: dict | None = None, cwd: Path | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([*GENAUG, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)


def test_dry_run_prints_arrays_dependencies_and_every_script(tmp_path):
    done = genaug("run", str(DEMO), "--quick", "--dry-run", "--launcher", "slurm", "--out", str(tmp_path / "run"),
                  "launcher.array=4", "launcher.partition=gpu", "launcher.gpus_per_task=1", "launcher.time=02:00:00",
                  "launcher.sbatch=[--qos=high]", "launcher.setup=[module load cuda]")  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = done.stdout
    # each line ends with its task's cost when the stage's models have a known architecture (the pocket models do)
    priced = r"(?: \[~\d+\.\d\d A100-h, \d+\.\d\d V100-h per task\])"
    assert re.search(r"stage edit_random: array of 4 tasks \(--shard i/4\)" + priced + r"; then stage-edit_random-\w+-merge \(afterok on the array\)", out)
    assert re.search(r"stage mix_random: 1 task, after stage edit_random has finished", out)
    # 4 arms x 2 seeds natural + 4 x 2 matched (the quick demo matches every arm)
    assert "training: 16 task(s)" in out
    scripts = out.split("--- ")[1:]
    assert len(scripts) == 2 + 1 + 16  # edit_random's array and merge, mix_random, the runs
    array = next(script for script in scripts if "-shards.sbatch" in script.splitlines()[0])
    assert "#SBATCH --array=0,1,2,3" in array and "--shard \"${SLURM_ARRAY_TASK_ID}/4\"" in array
    merge = next(script for script in scripts if "-merge.sbatch" in script.splitlines()[0])
    assert "#SBATCH --dependency=afterok:" in merge and "task merge" in merge and "--shards 4" in merge
    for script in scripts:
        for line in ("#SBATCH --partition=gpu", "#SBATCH --gpus-per-task=1", "#SBATCH --time=02:00:00",
                     "#SBATCH --qos=high", "module load cuda"):  # fmt: skip
            assert line in script
    assert not (tmp_path / "run").exists()  # a dry run writes nothing


def test_dry_run_prices_each_task_from_the_cost_table(tmp_path):
    done = genaug("run", str(ROOT / "configs" / "cub_sdi.yaml"), "--dry-run", "--launcher", "slurm", "launcher.array=16",
                  "--out", str(tmp_path / "run"))  # fmt: skip
    out = done.stdout
    table = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("  ") and len(line.split()) == 11}
    a100 = {name: float(cells[9]) for name, cells in table.items()}  # the cost table's "h A100" column

    def per_task(pattern: str) -> float:
        found = re.search(pattern + r".*?\[~(\d+\.\d\d) A100-h, \d+\.\d\d V100-h per task\]", out)
        assert found, pattern
        return float(found.group(1))

    assert per_task(r"stage sdi: then an array of 16 tasks") == pytest.approx(a100["sdi/generate"] / 16, abs=0.006)
    prepare = a100["sdi/embed"] + a100["sdi/latents"] + a100["sdi/train"]
    assert per_task(r"stage sdi: 1 prepare task") == pytest.approx(prepare, abs=0.02)
    assert per_task(r"stage txt2img: array of 16 tasks") == pytest.approx(a100["txt2img"] / 16, abs=0.006)
    assert per_task(r"train-sdi_unfiltered-seed-0-\w+") == pytest.approx(a100["train:sdi_unfiltered"] / 3, abs=0.006)


def test_run_under_tmp_stops_before_submitting_with_one_line(tmp_path):
    run_dir = Path(tempfile.gettempdir()) / f"genaug-slurm-check-{os.getpid()}"
    done = genaug("run", str(DEMO), "--quick", "--launcher", "slurm", "--out", str(run_dir), "--only", "baseline")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("error: --launcher slurm: the run folder ") and "is under /tmp" in lines[-1]
    assert "launcher.shared=true" in lines[-1]
    assert not (run_dir / "slurm" / "jobs.json").exists()


def test_shared_storage_problems_name_each_local_looking_path(tmp_path):
    problems = shared_storage_problems({"the run folder": Path("/tmp/x/run"), "GENAUG_HOME": Path("/dev/shm/home"),
                                        "the artifacts folder": Path("/srv/shared/artifacts")})  # fmt: skip
    assert problems == ["the run folder /tmp/x/run is under /tmp", "GENAUG_HOME /dev/shm/home is under /dev/shm"]


def test_failure_line_names_job_log_and_last_lines(tmp_path):
    unit = Unit("train-baseline-seed-0-abc", "train", ["task", "train", "spec.json"], done=lambda: False)
    log = tmp_path / "slurm" / "logs" / "train-baseline-seed-0-abc-17.out"
    log.parent.mkdir(parents=True)
    log.write_text("loading\nepoch 1\n\nTraceback ...\nValueError: broken input\n", encoding="utf-8")
    line = failure_line(tmp_path, unit, "17", 3)
    assert line == (f"slurm: train-baseline-seed-0-abc failed 3 time(s), last as job 17; log {log}: "
                    "epoch 1 | Traceback ... | ValueError: broken input")  # fmt: skip


def test_sbatch_script_of_an_array_and_a_dependency(tmp_path):
    settings = LauncherConfig(name="slurm", account="lab", memory="8G", cpus_per_task=4)
    unit = Unit("stage-edit-k-shards", "shards", ["task", "stage", str(tmp_path), "edit", "k", "--shard", "${SLURM_ARRAY_TASK_ID}/3"],
                done=lambda: False, array=[0, 2], count=3, after=["afterok:12"])  # fmt: skip
    script = sbatch_script(settings, tmp_path, "my study", unit)
    lines = script.splitlines()
    assert lines[0] == "#!/bin/bash"
    assert "#SBATCH --job-name=genaug-my-study-stage-edit-k-shards" in lines
    assert f"#SBATCH --output={tmp_path}/slurm/logs/stage-edit-k-shards-%A_%a.out" in lines
    assert {"#SBATCH --account=lab", "#SBATCH --mem=8G", "#SBATCH --cpus-per-task=4", "#SBATCH --array=0,2",
            "#SBATCH --dependency=afterok:12"} <= set(lines)  # fmt: skip
    assert lines[-1].endswith(f'task stage {tmp_path} edit k --shard "${{SLURM_ARRAY_TASK_ID}}/3"')


# ---------------------------------------------------------------------------- against a real Slurm


@pytest.fixture(scope="module")
def slurm_env():
    base = Path(tempfile.gettempdir()) / "genaug-slurm"
    was_running = running(base)
    try:
        extra = start_cluster(base)
    except SlurmUnavailable as error:
        pytest.skip(f"Slurm cannot run here: {error}")
    yield {**os.environ, **extra, "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": os.pathsep.join(
        part for part in [str(ROOT / "src"), os.environ.get("PYTHONPATH", "")] if part)}  # fmt: skip
    if not was_running:
        stop_cluster(base)


def slurm_jobs(env: dict) -> list[dict[str, str]]:
    """Every job the controller knows (MinJobAge keeps finished ones for an hour), as key=value fields."""
    done = subprocess.run(["scontrol", "-o", "show", "job"], capture_output=True, text=True, env=env, timeout=60)
    jobs = []
    for line in done.stdout.splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        if fields.get("JobId"):
            jobs.append(fields)
    return jobs


def last_job_id(env: dict) -> int:
    return max((int(job.get("ArrayJobId") or job["JobId"]) for job in slurm_jobs(env)), default=0)


def submissions(env: dict, prefix: str, after: int) -> dict[str, set[str]]:
    """Job name (without ``prefix``) -> the distinct sbatch submissions (array jobs once) carrying
    it, of the jobs submitted after job id ``after``."""
    found: dict[str, set[str]] = {}
    for job in slurm_jobs(env):
        name = job.get("JobName", "")
        if name.startswith(prefix) and int(job.get("ArrayJobId") or job["JobId"]) > after:
            found.setdefault(name[len(prefix):], set()).add(job.get("ArrayJobId") or job["JobId"])
    return found


def cancel_since(env: dict, after: int) -> None:
    ids = [job["JobId"] for job in slurm_jobs(env) if int(job.get("ArrayJobId") or job["JobId"]) > after
           and job.get("JobState") in ("PENDING", "RUNNING")]  # fmt: skip
    if ids:
        subprocess.run(["scancel", *ids], env=env, timeout=60)


def per_seed_top1(run_dir: Path) -> dict[tuple[str, str, int], float]:
    results = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    table = {}
    for arm in results["arms"]:
        for view, entry in arm["views"].items():
            for run in entry["runs"]:
                table[(arm["name"], view, run["seed"])] = run["top1"]
    return table


def wait_for(condition, timeout: float, what: str, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.mark.slow
def test_quick_demo_through_slurm_equals_local_survives_scancel_and_restart(tmp_path, slurm_env):
    env = slurm_env
    out = tmp_path / "slurm-run"
    prefix = "genaug-demo-"
    before = last_job_id(env)
    # launcher.shared: this one-machine cluster shares /tmp; 2 shards for the generate stage
    # two of the quick demo's four arms: a stage chain (edit, mix) and a run on real images only
    args = ["run", str(DEMO), "--quick", "--only", "baseline", "--only", "dm_random", "--launcher", "slurm",
            "--out", str(out), "launcher.shared=true", "launcher.array=2", "launcher.poll_seconds=1"]  # fmt: skip
    driver = subprocess.Popen([*GENAUG, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        jobs_file = out / "slurm" / "jobs.json"

        def running_train_job():
            for job in slurm_jobs(env):
                name = job.get("JobName", "")
                started = job.get("StartTime", "")
                if name.startswith(prefix + "train-") and job.get("JobState") == "RUNNING" and int(job["JobId"]) > before:
                    return job if time.time() - time.mktime(time.strptime(started, "%Y-%m-%dT%H:%M:%S")) >= 4 else None
            return None

        killed = wait_for(running_train_job, 600, "a training task running for 4 s")
        subprocess.run(["scancel", killed["JobId"]], check=True, env=env)
        killed_unit = killed["JobName"][len(prefix):]

        def resubmitted():
            try:
                record = json.loads(jobs_file.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return False
            return len(record.get(killed_unit, {}).get("jobs", [])) >= 2

        wait_for(resubmitted, 300, f"{killed_unit} submitted again after scancel")
        # Ctrl-C the driver mid-run; its jobs keep running on the cluster
        driver.send_signal(signal.SIGINT)
        first_output, _ = driver.communicate(timeout=120)
    except BaseException:
        cancel_since(env, before)  # leave no jobs of a failed test in the queue
        raise
    finally:
        if driver.poll() is None:
            driver.kill()
    assert "ended without its output; submitting it again" in first_output, first_output[-3000:]
    # the second driver follows what is queued or running and submits only what is missing
    second = genaug(*args, env=env)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]

    # a Slurm task trains one run; locally an arm's seeds train as one stacked model unless
    # stack_seeds is 1 (a stacked seed is not bit-equal to the seed alone)
    local = genaug("run", str(DEMO), "--quick", "--only", "baseline", "--only", "dm_random", "--out", str(tmp_path / "local-run"),
                   "train.stack_seeds=1", env=env)  # fmt: skip
    assert local.returncode == 0, local.stderr[-3000:]
    table = per_seed_top1(out)
    assert {(arm, seed) for arm, _, seed in table} == {(arm, seed) for arm in ("baseline", "dm_random") for seed in (0, 1)}
    assert table == per_seed_top1(tmp_path / "local-run")

    record = json.loads((out / "slurm" / "jobs.json").read_text(encoding="utf-8"))
    made = submissions(env, prefix, before)
    assert set(made) == set(record)  # every recorded unit went through sbatch, nothing else did
    for name, ids in made.items():
        assert len(ids) == (2 if name == killed_unit else 1), (name, ids)
    # every stage and every run of the results went through sbatch
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    stages = {row["dir"].split("/")[-1].split("-", 1)[1] for arm in results["arms"] for row in arm["stages"]}
    assert {"edit_random", "mix_random"} <= {row["name"] for arm in results["arms"] for row in arm["stages"]}
    for key in stages:
        assert any(key in name and name.startswith("stage-") for name in made), key
    for arm in results["arms"]:
        for entry in arm["views"].values():
            for run in entry["runs"]:
                tail = run["dir"].removeprefix("arms/").replace("/", "-")
                assert f"train-{tail}" in made, tail
    merged = [json.loads(path.read_text()) for path in (out / "artifacts").glob("generate-*/stage.json")]
    assert [record["shards"] for record in merged] == [2]


@pytest.mark.slow
def test_a_task_that_always_fails_stops_the_run_with_one_line(tmp_path, slurm_env):
    out = tmp_path / "failing"
    done = genaug("run", str(DEMO), "--quick", "--launcher", "slurm", "--only", "baseline", "--seeds", "0",
                  "--out", str(out), "launcher.shared=true", "launcher.poll_seconds=1", "launcher.retries=1",
                  "launcher.setup=[echo no licence for this node >&2, exit 3]", "compute.matched_steps=null",
                  env=slurm_env, timeout=300)  # fmt: skip
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert re.fullmatch(
        r"error: slurm: train-baseline-seed-0-\w+ failed 2 time\(s\), last as job \d+; log \S+/slurm/logs/train-baseline-seed-0-\w+-\d+\.out: no licence for this node",
        last,
    ), last
    assert done.stdout.count("ended without its output; submitting it again (retry 1 of 1)") == 1


SDI_SMALL = """
name: sdi_small
dataset: {name: pocket_digits, labels_per_class: 10}
seeds: [0, 1]
workers: 2
train: {recipe: pocket, epochs: 3}
metrics: {enabled: false}
stages:
  sdi:
    kind: sdi
    train: {epochs: 2}
    sample: {sampler: gaussian, multiplier: 1}
    generate: {steps: 4, engine: {batch_size: 25}}
arms:
  - {name: baseline}
  - {name: sdi, data: sdi}
"""


@pytest.mark.slow
def test_an_sdi_stage_runs_as_prepare_array_and_merge_and_equals_local(tmp_path, slurm_env):
    config = tmp_path / "sdi_small.yaml"
    config.write_text(SDI_SMALL, encoding="utf-8")
    before = last_job_id(slurm_env)
    out = tmp_path / "slurm-run"
    done = genaug("run", str(config), "--launcher", "slurm", "--out", str(out), "launcher.array=2",
                  "launcher.shared=true", "launcher.poll_seconds=1", env=slurm_env)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    local = genaug("run", str(config), "--out", str(tmp_path / "local-run"), "train.stack_seeds=1", env=slurm_env)  # as Slurm: each seed alone
    assert local.returncode == 0, local.stderr[-3000:]
    assert per_seed_top1(out) == per_seed_top1(tmp_path / "local-run")
    made = submissions(slurm_env, "genaug-sdi_small-", before)
    stage = [name for name in made if name.startswith("stage-sdi-")]
    assert sorted(name.rsplit("-", 1)[1] for name in stage) == ["merge", "prepare", "shards"]
    array = next(job for job in slurm_jobs(slurm_env) if job.get("JobName", "").endswith("-shards") and int(job["JobId"]) > before)
    assert sum(1 for job in slurm_jobs(slurm_env) if job.get("ArrayJobId") == array["ArrayJobId"]) == 2
    record = json.loads(next((out / "artifacts").glob("sdi-*/stage.json")).read_text(encoding="utf-8"))
    assert record["shards"] == 2 and sum(record["images"].values()) == 100


@pytest.mark.slow
def test_no_wait_submits_and_exits_and_a_second_run_submits_only_what_is_missing(tmp_path, slurm_env):
    before = last_job_id(slurm_env)
    out = tmp_path / "run"
    args = ["run", str(DEMO), "--quick", "--only", "baseline", "--launcher", "slurm", "--out", str(out),
            "launcher.shared=true", "launcher.poll_seconds=1"]  # fmt: skip
    first = genaug(*args, "--no-wait", env=slurm_env)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "submitted: " in first.stdout and "run the same command again" in first.stdout
    assert not (out / "results.json").exists()
    record = json.loads((out / "slurm" / "jobs.json").read_text(encoding="utf-8"))
    assert sorted(name.split("-seed-")[0] for name in record) == ["train-baseline", "train-baseline", "train-baseline-matched",
                                                                  "train-baseline-matched"]  # fmt: skip
    second = genaug(*args, env=slurm_env)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert (out / "results.json").is_file()
    made = submissions(slurm_env, "genaug-demo-", before)
    assert set(made) == set(record) and all(len(ids) == 1 for ids in made.values()), made
