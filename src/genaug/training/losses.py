"""Classification losses over (possibly soft) one-hot targets (docs/methods/training-recipes.md).

Both take ``logits`` (N, K) and ``targets`` (N, K) rows summing to 1 (one-hot, or mixed by
an online mixer) and are computed in float32 whatever the autocast precision.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from genaug.training.registry import LOSSES

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``mean_i( -sum_k t_ik * log softmax(z_i)_k )``; plain cross-entropy for one-hot targets."""
    return F.cross_entropy(logits.float(), targets.float())


def bce_softmax(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The reference's loss (inherited from PuzzleMix): ``BCELoss()(softmax(z), t)``.

    ``mean_{i,k}( -t_ik log p_ik - (1 - t_ik) log(1 - p_ik) )`` with ``p = softmax(z)``,
    averaged over all N * K entries as ``nn.BCELoss`` does (its log is clamped at -100).
    """
    return F.binary_cross_entropy(torch.softmax(logits.float(), dim=1), targets.float())


def create_loss(name: str) -> LossFn:
    """The loss called ``name`` (a name of :data:`genaug.training.registry.LOSSES`: ``ce``, ``bce_softmax``)."""
    if name not in LOSSES:
        raise ValueError(f"loss: unknown loss '{name}'; allowed: {', '.join(LOSSES.names())}")
    return LOSSES.get(name)
