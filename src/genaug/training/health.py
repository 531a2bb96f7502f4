"""Warnings about a training run whose numbers cannot be trusted as they stand.

Each check is a pure function returning the warning's text, or None when all is well:

- :func:`loss_warning`: the epoch's training loss is not finite (NaN / inf), or diverged:
  above ``DIVERGENCE_FACTOR`` times the loss of a uniform guess (equal logits; ``ln K``
  for cross-entropy over K classes), which a model that learns anything stays below;
- :func:`validation_warning`: a class with fewer than 2 validation images, so the
  best-validation epoch is picked on noise;
- :func:`warmup_warning`: a learning-rate warm-up (or a curriculum warm-up) as long as
  training or longer, so the full learning rate (ratio) is never reached;
- :func:`skipped_warning`: input files skipped while loading the dataset;
- :func:`convergence_warning`: validation top-1 still rising over the last 10 % of
  training (:func:`still_rising`), so the run stopped before it converged.

The trainer keeps each warning once (in its checkpointed progress, so a resumed run
neither loses nor repeats them), prints it once (:func:`genaug.warn.warn_once`), keeps it in
the run folder's ``warnings.log`` beside the warnings about its configuration and data, and
stores them in ``metrics.json``; the experiment's results and report list them.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from genaug.data.base import RealDataset
from genaug.training.config import TrainConfig

__all__ = [
    "DIVERGENCE_FACTOR",
    "loss_warning",
    "validation_warning",
    "warmup_warning",
    "skipped_warning",
    "uniform_loss",
    "add_warning",
    "CONVERGENCE_WINDOW",
    "convergence_window",
    "validation_rise",
    "still_rising",
    "convergence_warning",
    "RISING_ALPHA",
]

DIVERGENCE_FACTOR = 3.0
_NOT_FINITE = "training loss is not finite"
_DIVERGED = "training loss diverged"


def uniform_loss(loss_fn, num_classes: int) -> float:
    """The loss of a uniform guess (all logits equal) against a one-hot target."""
    logits = torch.zeros(1, num_classes)
    target = F.one_hot(torch.zeros(1, dtype=torch.int64), num_classes).float()
    return float(loss_fn(logits, target))


def loss_warning(loss: float, uniform: float, epoch: int, epochs: int | None) -> str | None:
    """Not finite, or above ``DIVERGENCE_FACTOR * uniform``; ``epoch`` counts from 0 (``epochs``
    None: a run of a fixed number of steps, whose epoch count is not known in advance)."""
    where = f"in epoch {epoch + 1}" + (f" of {epochs}" if epochs is not None else "")
    if not math.isfinite(loss):
        return f"{_NOT_FINITE} ({loss}) {where}: the weights are no longer trustworthy; lower lr or use fp32"
    if loss > DIVERGENCE_FACTOR * uniform:
        return (
            f"{_DIVERGED} {where}: {loss:.3g} is over {DIVERGENCE_FACTOR:g} x the loss of a uniform guess "
            f"({uniform:.3g}); lower lr"
        )
    return None


def validation_warning(val: RealDataset | None, min_per_class: int = 2) -> str | None:
    """Classes with fewer than ``min_per_class`` validation images (none when there is no val split)."""
    if val is None or len(val) == 0:
        return None
    counts = np.bincount(val.labels, minlength=val.num_classes)
    short = [f"{val.class_names[k]} ({counts[k]})" for k in np.flatnonzero(counts < min_per_class)]
    if not short:
        return None
    listed = ", ".join(short[:5]) + (f" and {len(short) - 5} more" if len(short) > 5 else "")
    return (
        f"the validation split has fewer than {min_per_class} images in {len(short)} class(es): {listed}; "
        "the best epoch is chosen on noise (raise dataset.val_fraction)"
    )


def warmup_warning(config: TrainConfig) -> str | None:
    """An LR warm-up (``step`` schedule) or a curriculum warm-up of ``epochs`` or more epochs."""
    if config.lr_schedule == "step" and config.warmup_epochs and config.warmup_epochs >= config.epochs:
        return (
            f"warmup_epochs ({config.warmup_epochs}) >= epochs ({config.epochs}): "
            "the learning rate never reaches lr"
        )
    policy_warmup = config.data_policy_kwargs.get("warmup_epochs")
    if isinstance(policy_warmup, (int, float)) and policy_warmup >= config.epochs:
        return (
            f"data_policy_kwargs.warmup_epochs ({policy_warmup}) >= epochs ({config.epochs}): "
            "the curriculum never reaches its full synthetic ratio"
        )
    return None


def skipped_warning(count: int) -> str | None:
    if not count:
        return None
    return f"{count} input file(s) were skipped while loading the dataset (unreadable or unusable images)"


def add_warning(warnings: list[str], message: str | None) -> bool:
    """Append ``message`` unless it is None or already there (loss warnings: once per kind)."""
    if message is None:
        return False
    for kind in (_NOT_FINITE, _DIVERGED):
        if message.startswith(kind) and any(existing.startswith(kind) for existing in warnings):
            return False
    if message in warnings:
        return False
    warnings.append(message)
    return True


#: The share of training at its end over which validation accuracy must have stopped rising.
CONVERGENCE_WINDOW = 0.1
#: The fewest evaluations a slope is fitted to (more than the window holds in short runs).
MIN_WINDOW_EVALUATIONS = 3


def convergence_window(history: list[list[float]], window: float = CONVERGENCE_WINDOW) -> list[list[float]]:
    """The evaluations ``[position, top1]`` (position: fraction of training done, in (0, 1]) that
    the convergence check looks at: those at ``position >= 1 - window``, or the last
    ``MIN_WINDOW_EVALUATIONS`` when the window holds fewer (short runs, rare validation)."""
    inside = [point for point in history if point[0] >= 1.0 - window - 1e-9]
    return inside if len(inside) >= MIN_WINDOW_EVALUATIONS else history[-MIN_WINDOW_EVALUATIONS:]


def validation_rise(points: list[list[float]]) -> float:
    """The least-squares line's rise over ``points`` ``[x, y]``: ``b * (x_last - x_first)``
    with ``b = sum((x - mean x) (y - mean y)) / sum((x - mean x)^2)``; 0 with fewer than 2
    distinct x."""
    if len(points) < 2:
        return 0.0
    x = np.array([point[0] for point in points], dtype=np.float64)
    y = np.array([point[1] for point in points], dtype=np.float64)
    spread = float(((x - x.mean()) ** 2).sum())
    if spread == 0.0:
        return 0.0
    slope = float(((x - x.mean()) * (y - y.mean())).sum()) / spread
    return slope * float(x[-1] - x[0])


#: One-sided significance level of the convergence check's slope.
RISING_ALPHA = 0.05


def still_rising(history: list[list[float]], num_val: int, window: float = CONVERGENCE_WINDOW) -> bool:
    """True when validation top-1 (in %) is still rising at the end of training.

    ``history``: ``[position, top1]`` per evaluation, position the fraction of training done
    (epochs or optimizer steps) when it was taken. Over :func:`convergence_window` (the
    evaluations in the last ``window`` of training, at least the last 3), both hold:

    - the fitted rise across the window (:func:`validation_rise`, least squares of top-1
      against position) exceeds one validation image, ``100 / num_val`` points, a rise the
      resolution of the validation split can show;
    - the slope is positive beyond noise: the one-sided p-value of the least-squares slope
      (``scipy.stats.linregress``, t with n - 2 degrees of freedom) is below
      ``RISING_ALPHA`` (0.05). Without it a plateau whose evaluations scatter by an image or
      two (179 pocket validation images: 0.56 points each) is flagged in about a third of
      runs by chance.

    False without validation (``num_val`` 0) or with fewer than 3 evaluations.
    """
    points = convergence_window(history, window)
    if num_val <= 0 or len(points) < 3 or validation_rise(points) <= 100.0 / num_val:
        return False
    from scipy.stats import linregress

    fit = linregress([point[0] for point in points], [point[1] for point in points])
    if fit.stderr == 0.0:  # the points lie on a line, rising (the rise above is positive)
        return True
    return bool(fit.slope > 0 and fit.pvalue / 2 < RISING_ALPHA)


def convergence_warning(history: list[list[float]], num_val: int, window: float = CONVERGENCE_WINDOW) -> str | None:
    """The warning for a run whose validation top-1 is :func:`still_rising`, else None."""
    if not still_rising(history, num_val, window):
        return None
    points = convergence_window(history, window)
    return (
        f"validation top-1 was still rising at the end of training (+{validation_rise(points):.1f} points fitted "
        f"over the last {len(points)} evaluations, from {100 * points[0][0]:.0f} % of training): the run had not "
        "converged; train longer (more epochs or steps) before comparing it"
    )
