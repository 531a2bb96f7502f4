"""Data policies: which samples of the real + synthetic pool an epoch trains on (docs/methods/progressive-scheduling.md).

The training pool is the real train set followed by the synthetic set, packed together:
positions ``0 .. num_real - 1`` are real, the rest synthetic. Each epoch, a policy returns
the epoch's ordered list of pool positions, and the trainer logs how many of them were
real and how many synthetic, so budgets can be compared fairly.

- ``real_only``: the real set.
- ``concat``: real and synthetic joined (the reference's ``--enlarge_dataset``).
- ``subset``: the reference's default, ``labels_per_class`` per class from the union (lossy; warns).
- ``curriculum``: real-set length, each sample replaced with probability rho(t).
- ``synthetic_probability``: the same with a constant p per access (DA-Fusion).
- ``multiples``: the real set plus ``multiples x`` its per-class counts of synthetic images (SDI).

Replacement pairs a real sample with a synthetic sample made from it when the pool records
one (``TrainPool.source``), else with a synthetic sample of its class.

Pairing across arms: an epoch's generator is seeded from ``(seed, epoch)`` only, and every
policy except ``subset`` draws the real images' order first, as ``randperm(num_real)``, the
very draw of ``real_only``. So runs of the same seed see the real images in the same
relative order in every arm: ``concat`` and ``multiples`` place the synthetic samples at
random slots drawn from a stream of their own (:func:`interleave`), leaving the real
subsequence as ``real_only``'s; ``curriculum`` and ``synthetic_probability`` keep that order
and swap some positions for synthetic partners. ``subset`` draws a fixed subset of the
union and is not paired. (The trainer pairs the real samples' augmentation the same way,
``genaug.training.trainer.epoch_augment_params``; the initial weights come from
``(seed, "init")`` in every arm.)

Adding a policy = one class with ``plan`` here and its registered builder with its params
model in :mod:`genaug.training.data_policies` (which imports no torch, so that a config
naming the policy is checked without it).
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch

from genaug.config import ConfigError
from genaug.seeds import training_seed
from genaug.training.registry import POLICIES
from genaug.training.schedules import blend_ratio, check_probability

__all__ = [
    "TrainPool",
    "EpochPlan",
    "DataPolicy",
    "create_policy",
    "replace_with_synthetic",
    "interleave",
    "synthetic_partners",
]


@dataclass
class TrainPool:
    """Real then synthetic training samples: uint8 images (N, 3, S, S) and labels (N,).

    ``source`` gives, for every synthetic sample, the pool position of the real image it was
    made from (-1 when unknown, e.g. txt2img or SDI), for policies that pair them.
    ``soft``: (N, K) target rows when some samples have soft labels (Diff-Mix), else None
    (targets are one-hot on ``labels``).
    """

    images: torch.Tensor
    labels: torch.Tensor
    num_real: int
    source: torch.Tensor
    soft: torch.Tensor | None = None

    def targets(self, indices: torch.Tensor, num_classes: int) -> torch.Tensor:
        """(n, K) float targets of the samples ``indices``: their soft rows, else one-hot labels."""
        if self.soft is not None:
            return self.soft[indices].float()
        return torch.nn.functional.one_hot(self.labels[indices], num_classes).float()

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


def create_policy(name: str, **kwargs: object) -> DataPolicy:
    """The policy called ``name``, built with ``kwargs`` (a :class:`ConfigError` names a bad one)."""
    build = POLICIES.get(name)
    try:
        return build(**kwargs)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"data_policy_kwargs of '{name}': {error}") from None


class RealOnly(DataPolicy):
    """The real training set, shuffled; synthetic samples are never used."""

    name = "real_only"

    def plan(self, epoch: int, total_epochs: int, pool: TrainPool, generator: torch.Generator) -> EpochPlan:
        return EpochPlan(torch.randperm(pool.num_real, generator=generator), real=pool.num_real, synthetic=0)


class Concat(DataPolicy):
    """Real and synthetic joined and shuffled (reference flag ``--enlarge_dataset``); the real
    images keep ``real_only``'s order for the same seed and epoch (:func:`interleave`)."""

    name = "concat"

    def plan(self, epoch: int, total_epochs: int, pool: TrainPool, generator: torch.Generator) -> EpochPlan:
        real_order = torch.randperm(pool.num_real, generator=generator)
        order = interleave(real_order, torch.arange(pool.num_real, len(pool)), generator)
        return EpochPlan(order, real=pool.num_real, synthetic=pool.num_synthetic)


class Subset(DataPolicy):
    """The reference's default (no ``--enlarge_dataset``): a fixed random ``labels_per_class``
    positions per class drawn from the union of real and synthetic, shuffled every epoch.

    As in the reference, one permutation of the whole pool seeded with ``seed`` (0 there)
    is drawn once, and each class keeps its first ``labels_per_class`` members in that
    order (all of them when it has fewer); the subset is the same at every epoch and for
    every run seed. ``None`` takes each class's real count, the reference's setting (500
    for CIFAR-100). With as many synthetic as real images per class this silently trains
    on about half of the real images, so it warns whenever synthetic images displace real
    ones; it is offered only to reproduce the reference's numbers.
    """

    name = "subset"

    def __init__(self, labels_per_class: int | None = None, seed: int = 0):
        if labels_per_class is not None and labels_per_class < 1:
            raise ValueError(f"labels_per_class must be >= 1, got {labels_per_class}")
        self.labels_per_class = labels_per_class
        self.seed = seed
        self._warned = False

    def chosen_positions(self, pool: TrainPool) -> torch.Tensor:
        """The fixed subset's pool positions, class by class."""
        labels = pool.labels.cpu()
        real_counts = class_counts(labels[: pool.num_real], labels)
        order = torch.randperm(len(pool), generator=torch.Generator().manual_seed(self.seed))
        ordered_labels = labels[order]
        chosen = []
        for label in range(len(real_counts)):
            quota = self.labels_per_class if self.labels_per_class is not None else int(real_counts[label])
            chosen.append(order[ordered_labels == label][:quota])
        return torch.cat(chosen) if chosen else torch.zeros(0, dtype=torch.int64)

    def plan(self, epoch: int, total_epochs: int, pool: TrainPool, generator: torch.Generator) -> EpochPlan:
        chosen = self.chosen_positions(pool)
        if not self._warned:
            self.warn_if_real_images_are_displaced(chosen, pool)
            self._warned = True
        return EpochPlan.from_indices(chosen[torch.randperm(len(chosen), generator=generator)], pool)

    def warn_if_real_images_are_displaced(self, chosen: torch.Tensor, pool: TrainPool) -> None:
        labels = pool.labels.cpu()
        real_counts = class_counts(labels[: pool.num_real], labels)
        quota = real_counts if self.labels_per_class is None else real_counts.clamp(max=self.labels_per_class)
        real_kept = int((chosen < pool.num_real).sum())
        if real_kept < int(quota.sum()):
            warnings.warn(
                f"data_policy 'subset' reproduces the reference's default: drawing per class from real and "
                f"synthetic images together, it trains on {real_kept} of the {int(quota.sum())} real images "
                f"a real-only subset would use ({len(chosen) - real_kept} synthetic images took the place of "
                "the others); use 'concat' or 'curriculum' to keep every real image",
                UserWarning,
                stacklevel=3,  # the trainer line that planned the epoch
            )


class Curriculum(DataPolicy):
    """Progressive scheduling: an epoch as long as the real set, each real sample replaced
    by a synthetic one with probability rho(t) = ``blend_ratio(schedule, t, T, **params)``.

    ``schedule`` is a registered rho schedule (linear, step, warmup, cosine, constant) and
    the other keyword arguments are its parameters, e.g. ``{schedule: step, milestones:
    [100, 200]}``. A replaced sample becomes a synthetic sample made from that very image
    when the pool records one, else a synthetic sample of its class
    (:func:`replace_with_synthetic`); the reference instead paired the i-th files of the two
    class folders, an arbitrary image of the class.
    """

    name = "curriculum"

    def __init__(self, schedule: str = "linear", **schedule_params: object):
        blend_ratio(schedule, 0, 1, **schedule_params)  # an unknown schedule or parameter fails here
        self.schedule = schedule
        self.schedule_params = schedule_params

    def plan(self, epoch: int, total_epochs: int, pool: TrainPool, generator: torch.Generator) -> EpochPlan:
        rho = blend_ratio(self.schedule, epoch, total_epochs, **self.schedule_params)
        order = torch.randperm(pool.num_real, generator=generator)
        return EpochPlan.from_indices(replace_with_synthetic(pool, order, rho, generator), pool)


class SyntheticProbability(DataPolicy):
    """DA-Fusion's sampling: every access to a real sample returns, with probability ``p``,
    a synthetic image made from it (else of its class) instead; the epoch keeps the real
    set's length. The same replacement as ``curriculum`` with a constant rho."""

    name = "synthetic_probability"

    def __init__(self, p: float = 0.5):
        self.p = check_probability("p", p)

    def plan(self, epoch: int, total_epochs: int, pool: TrainPool, generator: torch.Generator) -> EpochPlan:
        order = torch.randperm(pool.num_real, generator=generator)
        return EpochPlan.from_indices(replace_with_synthetic(pool, order, self.p, generator), pool)


class Multiples(DataPolicy):
    """SDI's budget: the real set plus, per class, ``multiples x`` its real count of synthetic
    images (rounded), drawn once with ``seed`` and shuffled with the real ones every epoch.

    A class draws without replacement when it has enough synthetic images, else with
    replacement; each class has its own random stream ``(seed, class)``, so the draw of one
    class does not depend on the others. A class with real images but no synthetic one is
    an error: the budget could not be met.
    """

    name = "multiples"

    def __init__(self, multiples: float = 1.0, seed: int = 0):
        if not multiples > 0:
            raise ValueError(f"multiples must be > 0, got {multiples}")
        self.multiples = multiples
        self.seed = seed

    def chosen_synthetic(self, pool: TrainPool) -> torch.Tensor:
        """The fixed draw of synthetic pool positions, class by class."""
        labels = pool.labels.cpu()
        real_counts = class_counts(labels[: pool.num_real], labels)
        synthetic_positions = torch.arange(pool.num_real, len(pool))
        synthetic_labels = labels[pool.num_real :]
        chosen = []
        for label, real_count in enumerate(real_counts.tolist()):
            wanted = round(self.multiples * real_count)
            if wanted == 0:
                continue
            members = synthetic_positions[synthetic_labels == label]
            if len(members) == 0:
                raise ValueError(
                    f"data_policy 'multiples': class {label} has {real_count} real images but no synthetic "
                    f"image, so {wanted} synthetic images cannot be drawn for it"
                )
            generator = torch.Generator().manual_seed(training_seed(self.seed, "multiples", label))
            if wanted <= len(members):
                chosen.append(members[torch.randperm(len(members), generator=generator)[:wanted]])
            else:
                chosen.append(members[torch.randint(len(members), (wanted,), generator=generator)])
        return torch.cat(chosen) if chosen else torch.zeros(0, dtype=torch.int64)

    def plan(self, epoch: int, total_epochs: int, pool: TrainPool, generator: torch.Generator) -> EpochPlan:
        real_order = torch.randperm(pool.num_real, generator=generator)
        return EpochPlan.from_indices(interleave(real_order, self.chosen_synthetic(pool), generator), pool)


# ----------------------------------------------------------------------------- pairing real and synthetic


def interleave(real_order: torch.Tensor, others: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``real_order`` and ``others`` shuffled together, the real positions keeping their order.

    One number drawn from ``generator`` (after the real order) seeds a second stream, which
    shuffles ``others`` and picks their ``len(others)`` slots among all, uniformly; the real
    positions fill the remaining slots in the order given. Every interleaving of the two is
    equally likely, so with ``real_order`` a uniform permutation the whole order is one too.
    """
    if len(others) == 0:
        return real_order
    side = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
    total = len(real_order) + len(others)
    is_other = torch.zeros(total, dtype=torch.bool)
    is_other[torch.randperm(total, generator=side)[: len(others)]] = True
    order = torch.empty(total, dtype=torch.int64)
    order[~is_other] = real_order
    order[is_other] = others[torch.randperm(len(others), generator=side)]
    return order


def replace_with_synthetic(
    pool: TrainPool, positions: torch.Tensor, probability: float, generator: torch.Generator
) -> torch.Tensor:
    """``positions`` (real pool positions) with each replaced, with ``probability``, by its
    synthetic partner (:func:`synthetic_partners`); a sample without one stays real.

    Draws two uniforms per position from ``generator`` whatever ``probability`` is, so the
    stream, and with it the plan, depends only on the generator's seed.
    """
    replace = torch.rand(len(positions), generator=generator) < probability
    choice = torch.rand(len(positions), generator=generator)
    partners = synthetic_partners(pool, positions, choice)
    return torch.where(replace & (partners >= 0), partners, positions)


def synthetic_partners(pool: TrainPool, positions: torch.Tensor, choice: torch.Tensor) -> torch.Tensor:
    """For each real pool position, a synthetic pool position, or -1 when there is none.

    The partner is made from that real image when the pool records such synthetic samples
    (``pool.source``), else it is a synthetic sample of the same class. Among the
    candidates (in pool order) the one at ``floor(choice * count)`` is taken, ``choice``
    holding one uniform in [0, 1) per position.
    """
    labels = pool.labels.cpu()
    synthetic_positions = torch.arange(pool.num_real, len(pool))
    by_source = pick_in_groups(pool.source.cpu(), synthetic_positions, positions, choice, pool.num_real)
    num_classes = int(labels.max()) + 1 if len(labels) else 0
    by_class = pick_in_groups(labels[pool.num_real :], synthetic_positions, labels[positions], choice, num_classes)
    return torch.where(by_source >= 0, by_source, by_class)


def pick_in_groups(
    keys: torch.Tensor, values: torch.Tensor, wanted: torch.Tensor, choice: torch.Tensor, num_keys: int
) -> torch.Tensor:
    """For each key of ``wanted``, the value at ``floor(choice * count)`` among the ``values``
    whose key it is (in their order), or -1 when no value has that key; negative keys are
    no group."""
    grouped = keys >= 0
    keys, values = keys[grouped], values[grouped]
    if len(values) == 0:
        return torch.full(wanted.shape, -1, dtype=torch.int64)
    order = torch.argsort(keys, stable=True)
    sorted_values = values[order]
    counts = torch.bincount(keys, minlength=num_keys)
    starts = torch.cumsum(counts, 0) - counts
    count = counts[wanted]
    offset = torch.minimum((choice * count).long(), (count - 1).clamp(min=0))
    picked = sorted_values[(starts[wanted] + offset).clamp(max=len(sorted_values) - 1)]
    return torch.where(count > 0, picked, torch.full_like(picked, -1))


def class_counts(labels: torch.Tensor, all_labels: torch.Tensor) -> torch.Tensor:
    """Per-class counts of ``labels`` over every class that ``all_labels`` holds."""
    num_classes = int(all_labels.max()) + 1 if len(all_labels) else 0
    return torch.bincount(labels, minlength=num_classes)


class SyntheticReplacement(DataPolicy):
    """Diff-Mix's sampling (its ``dataset/base.py``): an epoch as long as the real set, every
    access to a real sample returning, with probability ``p``, a synthetic sample drawn
    uniformly from the whole synthetic pool instead (unpaired: any class, any source; its
    own label, soft or not, comes with it). A pool without synthetic samples trains on the
    real set. Diff-Mix runs p = 0.1 with a pool 5x the real set (the editor's ``multiplier``)."""

    name = "synthetic_replacement"

    def __init__(self, p: float = 0.1):
        self.p = check_probability("p", p)

    def plan(self, epoch: int, total_epochs: int, pool: TrainPool, generator: torch.Generator) -> EpochPlan:
        order = torch.randperm(pool.num_real, generator=generator)
        replace = torch.rand(len(order), generator=generator) < self.p
        picks = pool.num_real + torch.randint(max(pool.num_synthetic, 1), (len(order),), generator=generator)
        if pool.num_synthetic == 0:
            return EpochPlan.from_indices(order, pool)
        return EpochPlan.from_indices(torch.where(replace, picks, order), pool)
