"""A single-node Slurm on this machine for the tests: Debian's ``slurm-wlm`` and ``munge``.

:func:`start_cluster` installs the packages when they are missing (as root, ``apt-get``),
starts ``munged`` as user munge with the key the package made, then ``slurmctld`` and
``slurmd`` with a generated ``slurm.conf`` naming this host (``hostname -s``) as controller
and node (CPUs = the machine's, auth/munge, proctrack/linuxproc, task/none, cons_tres, one
default partition, state and spool folders under ``base``). It returns the environment
the Slurm commands need (``SLURM_CONF``) once ``sinfo`` shows the node idle, or raises
:class:`SlurmUnavailable` with the reason it cannot. :func:`stop_cluster` ends the daemons
it started, by their process ids.

``MinJobAge`` is an hour, so ``scontrol show job`` lists every job of the session
(without an accounting database ``sacct`` knows none): the tests count submissions there.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

PACKAGES = ("slurm-wlm", "munge")


class SlurmUnavailable(RuntimeError):
    """Slurm cannot be installed or started here (the reason is the message)."""


def _run(command: list[str], timeout: float = 60, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kwargs)


def install() -> None:
    """``apt-get install slurm-wlm munge`` when ``slurmctld`` is missing (needs root and the Debian mirror)."""
    if shutil.which("slurmctld") and shutil.which("munged") and shutil.which("sbatch"):
        return
    if os.geteuid() != 0:
        raise SlurmUnavailable("Slurm is not installed and installing it needs root")
    if not shutil.which("apt-get"):
        raise SlurmUnavailable("Slurm is not installed and this machine has no apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *PACKAGES]):
        try:
            done = _run(command, timeout=900, env=env)
        except subprocess.TimeoutExpired:
            raise SlurmUnavailable(f"{' '.join(command)} did not finish in 15 minutes") from None
        if done.returncode != 0:
            last = (done.stderr or done.stdout).strip().splitlines()[-1:] or [""]
            raise SlurmUnavailable(f"{' '.join(command)} failed: {last[0]}")


def slurm_conf(base: Path, host: str, cpus: int, memory_mb: int) -> str:
    return "\n".join([
        "ClusterName=genaugtest",
        f"SlurmctldHost={host}",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_CPU",
        "SchedulerType=sched/backfill",
        "SlurmUser=root",
        "SlurmdUser=root",
        f"StateSaveLocation={base / 'state'}",
        f"SlurmdSpoolDir={base / 'spool'}",
        f"SlurmctldPidFile={base / 'slurmctld.pid'}",
        f"SlurmdPidFile={base / 'slurmd.pid'}",
        f"SlurmctldLogFile={base / 'slurmctld.log'}",
        f"SlurmdLogFile={base / 'slurmd.log'}",
        "SlurmctldPort=6817",
        "SlurmdPort=6818",
        "ReturnToService=2",
        "MinJobAge=3600",
        "MaxArraySize=1001",
        "KillWait=5",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        f"NodeName={host} CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN",
        f"PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP",
        "",
    ])  # fmt: skip


def start_munge() -> None:
    """``munged`` as user munge with the package's key (once; a running one is kept)."""
    if _run(["munge", "-n"]).returncode == 0:
        return
    for folder in (Path("/run/munge"), Path("/var/log/munge"), Path("/var/lib/munge")):
        folder.mkdir(parents=True, exist_ok=True)
        shutil.chown(folder, "munge", "munge")
    key = Path("/etc/munge/munge.key")
    if not key.is_file():
        raise SlurmUnavailable(f"{key} is missing (the munge package makes it)")
    started = _run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"])
    if started.returncode != 0:
        raise SlurmUnavailable(f"munged did not start: {(started.stderr or started.stdout).strip()}")
    for _ in range(50):
        if _run(["munge", "-n"]).returncode == 0:
            return
        time.sleep(0.1)
    raise SlurmUnavailable("munged started but munge -n fails")


def start_cluster(base: Path) -> dict[str, str]:
    """Install (if needed) and start a one-node cluster under ``base``; the environment to use it."""
    install()
    if os.geteuid() != 0:
        raise SlurmUnavailable("starting slurmctld and slurmd needs root")
    base.mkdir(parents=True, exist_ok=True)
    conf = base / "slurm.conf"
    if conf.is_file() and _alive(base / "slurmctld.pid") and _alive(base / "slurmd.pid"):
        env = {**os.environ, "SLURM_CONF": str(conf)}
        if _run(["sinfo", "-h", "-o", "%T"], env=env).stdout.strip() == "idle":
            return {"SLURM_CONF": str(conf)}  # started earlier under this folder and idle
    for folder in ("state", "spool"):
        (base / folder).mkdir(exist_ok=True)
    host = socket.gethostname().split(".")[0]
    memory = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20 * 0.5)
    conf.write_text(slurm_conf(base, host, os.cpu_count() or 1, memory), encoding="utf-8")
    env = {**os.environ, "SLURM_CONF": str(conf)}
    start_munge()
    for daemon in ("slurmctld", "slurmd"):
        started = _run([f"/usr/sbin/{daemon}", "-f", str(conf)], env=env)
        if started.returncode != 0:
            stop_cluster(base)
            raise SlurmUnavailable(f"{daemon} did not start: {(started.stderr or started.stdout).strip()}")
    deadline = time.monotonic() + 60
    state = ""
    while time.monotonic() < deadline:
        shown = _run(["sinfo", "-h", "-o", "%T"], env=env)
        state = shown.stdout.strip()
        if shown.returncode == 0 and state == "idle":
            return {"SLURM_CONF": str(conf)}
        time.sleep(0.5)
    stop_cluster(base)
    raise SlurmUnavailable(f"the node is not idle after a minute (sinfo: {state!r}); see {base}/slurmctld.log")


def running(base: Path) -> bool:
    """Whether slurmctld and slurmd started under ``base`` are running."""
    return _alive(base / "slurmctld.pid") and _alive(base / "slurmd.pid")


def _alive(pid_file: Path) -> bool:
    try:
        os.kill(int(pid_file.read_text().strip()), 0)
    except (OSError, ValueError):
        return False
    return True


def stop_cluster(base: Path) -> None:
    """End the slurmctld and slurmd started under ``base`` (by the process ids in their pid files)."""
    for name in ("slurmd.pid", "slurmctld.pid"):
        path = base / name
        try:
            pid = int(path.read_text().strip())
        except (OSError, ValueError):
            continue
        try:
            os.kill(pid, 15)
        except ProcessLookupError:
            continue
        for _ in range(50):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
