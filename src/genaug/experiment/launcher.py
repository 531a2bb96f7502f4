"""Where ``genaug run`` does its work: the ``launcher`` section of an experiment (:class:`LauncherConfig`).

Its own module, below :mod:`genaug.experiment.slurm` (which runs tasks through the experiment
runner), so that the experiment config does not import the Slurm launcher.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from genaug.config import StrictModel

__all__ = ["LauncherConfig"]


class LauncherConfig(StrictModel):
    """Where ``genaug run`` does its work: ``local`` (this machine, ``workers`` processes) or
    ``slurm`` (module doc). The other fields are Slurm's:

    ``partition``, ``account``, ``time`` (``--time``, e.g. ``"04:00:00"``), ``memory``
    (``--mem``, e.g. ``"16G"``), ``gpus_per_task`` (``--gpus-per-task``), ``cpus_per_task``
    (also the torch threads of a stage task), ``array`` (tasks of a ``generate`` stage's array,
    its ``--shard i/n``), ``sbatch`` (extra ``#SBATCH`` lines, e.g. ``"--qos=high"``),
    ``setup`` (shell lines before the command, e.g. ``"module load cuda"``), ``retries`` (a
    failed task is submitted again this many times), ``poll_seconds`` (how often ``squeue`` is
    asked), ``shared`` (true: the run folder and caches are on storage the nodes share even
    where the path looks node-local, e.g. under /tmp on a one-machine cluster).
    """

    name: Literal["local", "slurm"] = "local"
    partition: str | None = None
    account: str | None = None
    time: str | None = None
    memory: str | None = None
    gpus_per_task: int = Field(default=0, ge=0)
    cpus_per_task: int = Field(default=1, ge=1)
    array: int = Field(default=1, ge=1)
    sbatch: list[str] = Field(default_factory=list)
    setup: list[str] = Field(default_factory=list)
    retries: int = Field(default=2, ge=0)
    poll_seconds: float = Field(default=10.0, gt=0)
    shared: bool = False
