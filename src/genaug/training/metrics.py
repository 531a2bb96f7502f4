"""Classification metrics from a confusion matrix: top-1, top-5, per-class and balanced accuracy.

Evaluation accumulates a K x K confusion matrix, the top-5 hit count and the summed loss;
these are sums, so several processes combine them exactly with one all-reduce.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

import torch


@dataclass
class EvalAccumulator:
    """Running sums over evaluated batches (rows of ``confusion`` are true classes)."""

    num_classes: int
    confusion: torch.Tensor = field(init=False)
    top5_hits: torch.Tensor = field(init=False)
    loss_sum: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        self.confusion = torch.zeros(self.num_classes, self.num_classes, dtype=torch.float64)
        self.top5_hits = torch.zeros((), dtype=torch.float64)
        self.loss_sum = torch.zeros((), dtype=torch.float64)

    def update(self, logits: torch.Tensor, labels: torch.Tensor, loss_sum: float) -> None:
        logits, labels = logits.detach().float().cpu(), labels.cpu()
        predicted = logits.argmax(dim=1)
        flat = labels * self.num_classes + predicted
        self.confusion += torch.bincount(flat, minlength=self.num_classes**2).view_as(self.confusion)
        if self.num_classes >= 5:
            top5 = logits.topk(5, dim=1).indices
            self.top5_hits += (top5 == labels[:, None]).any(dim=1).sum()
        self.loss_sum += loss_sum

    def as_vector(self) -> torch.Tensor:
        """All sums as one float64 vector (for a single all-reduce)."""
        return torch.cat([self.confusion.flatten(), self.top5_hits.view(1), self.loss_sum.view(1)])

    def load_vector(self, vector: torch.Tensor) -> None:
        k2 = self.num_classes**2
        self.confusion = vector[:k2].view(self.num_classes, self.num_classes).clone()
        self.top5_hits = vector[k2].clone()
        self.loss_sum = vector[k2 + 1].clone()

    def summary(self) -> dict[str, float | list[float | None]]:
        """``loss``, ``top1``, ``top5`` (K >= 5), ``balanced_accuracy``, ``per_class`` (in %)."""
        return classification_metrics(self.confusion, float(self.top5_hits), float(self.loss_sum))


def classification_metrics(confusion: torch.Tensor, top5_hits: float, loss_sum: float) -> dict:
    """Accuracies in percent from a confusion matrix (rows true, columns predicted).

    ``balanced_accuracy`` is the mean recall over classes that have samples (as
    scikit-learn's ``balanced_accuracy_score``); ``per_class`` holds ``None`` for classes
    without samples.
    """
    total = float(confusion.sum())
    support = confusion.sum(dim=1)
    recall = confusion.diagonal() / support.clamp(min=1)
    present = support > 0
    metrics: dict = {
        "loss": loss_sum / total if total else math.nan,
        "top1": 100.0 * float(confusion.diagonal().sum()) / total if total else math.nan,
    }
    if confusion.shape[0] >= 5:
        metrics["top5"] = 100.0 * top5_hits / total if total else math.nan
    metrics["balanced_accuracy"] = 100.0 * float(recall[present].mean()) if bool(present.any()) else math.nan
    metrics["per_class"] = [100.0 * float(r) if p else None for r, p in zip(recall, present)]
    return metrics


def median_of_last(values: list[float], count: int = 10) -> float:
    """The median of the last ``count`` values (the reference's "median of the last 10 epochs")."""
    return float(statistics.median(values[-count:])) if values else math.nan
