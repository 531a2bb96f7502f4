"""Multi-process data parallel training: ranks from the launcher, DDP, exact reductions.

Launch with ``torchrun --nproc_per_node N -m ...`` (or ``accelerate launch`` on GPUs);
accelerate's :class:`~accelerate.PartialState` reads the ranks from the environment and
starts the process group (gloo on CPU, NCCL on CUDA). On CPU, ``accelerate launch --cpu
--num_processes 2`` starts a single process: use ``torchrun --nproc_per_node 2``.

Conventions: ``batch_size`` is global and every batch is split across ranks
(:func:`shard`); each rank's loss is scaled so that DDP's gradient average equals the
gradient of the global batch mean even when shards differ in size; evaluation sums are
all-reduced; only rank 0 writes files.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as torch_dist
from torch import nn


@dataclass(frozen=True)
class Distributed:
    """This process's place in the run."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def wrap(self, model: nn.Module) -> nn.Module:
        """``model`` in DistributedDataParallel when several processes train it."""
        if not self.enabled:
            return model
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The element-wise sum of ``tensor`` over ranks (a new tensor on ``tensor``'s device)."""
        if not self.enabled:
            return tensor
        reduced = tensor.to(self.device, copy=True)
        torch_dist.all_reduce(reduced, op=torch_dist.ReduceOp.SUM)
        return reduced.to(tensor.device)

    def sync_buffers(self, model: nn.Module) -> None:
        """Copy rank 0's buffers (BatchNorm running statistics) to every rank.

        DDP broadcasts them at the start of each training forward, so after the last
        batch each rank holds its own update; evaluation and checkpoints use rank 0's.
        """
        if self.enabled:
            for buffer in model.buffers():
                torch_dist.broadcast(buffer.data, src=0)

    def barrier(self) -> None:
        if self.enabled:
            torch_dist.barrier()


def setup_distributed(device: str = "auto") -> Distributed:
    """Read rank and world size set by the launcher (torchrun / accelerate launch).

    ``device``: ``cpu``, ``cuda`` or ``auto`` (CUDA when available). A single process
    without launcher variables is rank 0 of 1.
    """
    from accelerate import PartialState

    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: 'cuda' was asked for but CUDA is not available; allowed here: cpu, auto")
    state = PartialState(cpu=not use_cuda)
    return Distributed(rank=state.process_index, world_size=state.num_processes, device=torch.device(state.device))


def shard(positions: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """Rank ``rank``'s contiguous part of ``positions`` (sizes differ by at most one)."""
    return torch.tensor_split(positions, world_size)[rank]
