"""Data policies: which samples of the real + synthetic pool an epoch trains on (METHODS.md 1.3).

The training pool is the real train set followed by the synthetic set, packed together:
positions ``0 .. num_real - 1`` are real, the rest synthetic. Each epoch, a policy returns
the epoch's ordered list of pool positions, and the trainer logs how many of them were
real and how many synthetic, so budgets can be compared fairly.

Adding a policy = one class with ``plan`` + ``@register_policy("name")`` (and its name in
``genaug.config.DataPolicyName``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = ["TrainPool", "EpochPlan", "DataPolicy", "register_policy", "create_policy", "POLICIES"]


@dataclass
class TrainPool:
    """Real then synthetic training samples: uint8 images (N, 3, S, S) and labels (N,).

    ``source`` gives, for every synthetic sample, the pool position of the real image it was
    made from (-1 when unknown, e.g. txt2img or SDI), for policies that pair them.
    """

    images: torch.Tensor
    labels: torch.Tensor
    num_real: int
    source: torch.Tensor

    @property
    def num_synthetic(self) -> int:
        return len(self.labels) - self.num_real

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class EpochPlan:
    """One epoch: ordered pool positions, and how many of them are real or synthetic."""

    indices: torch.Tensor
    real: int
    synthetic: int

    @classmethod
    def from_indices(cls, indices: torch.Tensor, pool: TrainPool) -> "EpochPlan":
        synthetic = int((indices >= pool.num_real).sum())
        return cls(indices=indices, real=len(indices) - synthetic, synthetic=synthetic)


class DataPolicy(ABC):
    """Chooses each epoch's samples. ``generator`` is seeded from (seed, epoch) by the trainer,
    so a plan must depend only on it, the epoch and the pool (resume replays it exactly)."""

    name: str = ""

    @abstractmethod
    def plan(self, epoch: int, total_epochs: int, pool: TrainPool, generator: torch.Generator) -> EpochPlan:
        """The ordered pool positions of ``epoch`` (0-based, of ``total_epochs``)."""


POLICIES: dict[str, type[DataPolicy]] = {}


def register_policy(name: str) -> Callable[[type[DataPolicy]], type[DataPolicy]]:
    def register(cls: type[DataPolicy]) -> type[DataPolicy]:
        cls.name = name
        POLICIES[name] = cls
        return cls

    return register


def create_policy(name: str, **kwargs: object) -> DataPolicy:
    """The policy called ``name``, built with ``kwargs``."""
    try:
        cls = POLICIES[name]
    except KeyError:
        raise ValueError(f"data_policy: unknown policy '{name}'; allowed: {', '.join(sorted(POLICIES))}") from None
    try:
        return cls(**kwargs)
    except TypeError as error:
        raise ValueError(f"data_policy_kwargs: {error}") from None


@register_policy("real_only")
class RealOnly(DataPolicy):
    """The real training set, shuffled; synthetic samples are never used."""

    def plan(self, epoch: int, total_epochs: int, pool: TrainPool, generator: torch.Generator) -> EpochPlan:
        return EpochPlan(torch.randperm(pool.num_real, generator=generator), real=pool.num_real, synthetic=0)


@register_policy("concat")
class Concat(DataPolicy):
    """Real and synthetic joined and shuffled (reference flag ``--enlarge_dataset``)."""

    def plan(self, epoch: int, total_epochs: int, pool: TrainPool, generator: torch.Generator) -> EpochPlan:
        order = torch.randperm(len(pool), generator=generator)
        return EpochPlan(order, real=pool.num_real, synthetic=pool.num_synthetic)
