"""Where a job runs: device and dtype, and which shard of the work this process makes."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch

from genaug.config import ConfigError

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def select_device(device: str = "auto", dtype: str = "auto") -> tuple[torch.device, torch.dtype]:
    """The device and dtype to run a pipeline in.

    ``auto``: CUDA in fp16 when a GPU is visible (under torchrun the GPU of ``LOCAL_RANK``),
    else the CPU in fp32. bf16 is an explicit option on the CPU (faster on CPUs with bf16
    units, not bit-identical to fp32); fp16 on the CPU is refused (many CPU kernels lack it).
    """
    if device == "auto":
        if torch.cuda.is_available():
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0)) % torch.cuda.device_count()}"
        else:
            device = "cpu"
    chosen = torch.device(device)
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but no CUDA device is visible")
    if dtype == "auto":
        dtype = "fp16" if chosen.type == "cuda" else "fp32"
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of auto, {', '.join(DTYPES)}; got {dtype!r}")
    if chosen.type == "cpu" and dtype == "fp16":
        raise ValueError("dtype fp16 is not supported on the CPU: use fp32 (default) or bf16")
    return chosen, DTYPES[dtype]


def autocast_context(precision: str, device: torch.device, field: str | None = None):
    """``torch.autocast`` for ``bf16`` / ``fp16`` (weights keep their dtype), nothing for ``fp32``.

    bf16 autocast roughly doubles the speed of convolutions and matrix products on CPUs with
    bf16 units (avx512_bf16, AMX) and on GPUs; fp16 autocast is CUDA only: on another device
    it is an error, a :class:`genaug.config.ConfigError` naming ``field`` when given.
    """
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision not in ("bf16", "fp16"):
        raise ValueError(f"precision must be one of fp32, bf16, fp16; got {precision!r}")
    if precision == "fp16" and device.type != "cuda":
        if field is not None:
            raise ConfigError(f"{field}: 'fp16' needs a CUDA device; on CPU use 'bf16' or 'fp32'")
        raise ValueError("precision fp16 needs a CUDA device; on the CPU use fp32 or bf16")
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


@dataclass(frozen=True)
class Shard:
    """This process's share of a job: every ``world``-th batch starting at ``rank``.

    ``launched`` is true when the ranks came from a launcher (torchrun / accelerate launch):
    the processes then wait for each other at the end and rank 0 merges the manifests.
    """

    rank: int = 0
    world: int = 1
    launched: bool = False

    @property
    def writer_rank(self) -> int | None:
        """The manifest rank to write: ``manifest.<rank>.jsonl`` when sharded, else ``manifest.jsonl``."""
        return self.rank if self.world > 1 else None


def parse_shard(text: str) -> Shard:
    """``"i/n"`` (0-based i) as a :class:`Shard`; the ``--shard`` option of Slurm arrays."""
    try:
        rank_text, world_text = text.split("/")
        rank, world = int(rank_text), int(world_text)
    except ValueError:
        raise ValueError(f"shard must look like 'i/n' (e.g. 0/4), got {text!r}") from None
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"shard {text!r}: need 0 <= i < n")
    return Shard(rank, world, launched=False)


def resolve_shard(shard: str | None = None) -> Shard:
    """An explicit ``i/n``, else the launcher's ranks (RANK / WORLD_SIZE), else the whole job."""
    if shard:
        return parse_shard(shard)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        return Shard(int(os.environ.get("RANK", "0")), world, launched=True)
    return Shard()


def wait_for_all(shard: Shard) -> None:
    """Barrier across launched processes (gloo on the CPU, NCCL on GPUs, via accelerate)."""
    if not shard.launched:
        return
    from accelerate import PartialState

    PartialState().wait_for_everyone()
