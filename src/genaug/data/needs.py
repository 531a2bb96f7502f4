"""What a method needs of the real data, and the one-line problems when the data falls short.

Every method declares its needs next to its own code, as a :class:`DataNeeds`:

- an editor, by a ``data_needs(config)`` class method (DA-Fusion: images per class for
  textual inversion);
- a stage config, by a ``data_needs()`` method (the generate stage asks its editor);
- a training recipe, by the size it trains at (:func:`genaug.training.recipes.training_needs`).

:func:`need_problems` checks one declaration against the training split;
:func:`empty_class_problems` finds classes without a training image, which are an error
unless the dataset opts in (``dataset.allow_empty_classes``: training keeps a class it
never sees). ``genaug data info``, ``genaug run`` and its dry run check all of them before
any stage runs, one line each.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from statistics import median
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np


if TYPE_CHECKING:
    from genaug.data.base import RealDataset

__all__ = ["DataNeeds", "need_problems", "empty_class_problems", "image_side", "stage_needs"]

#: Image headers read to find a file dataset's typical side (spread evenly over the split).
SIDE_PROBES = 200


@dataclass(frozen=True)
class DataNeeds:
    """What ``who`` needs of the training split.

    ``per_class``: real training images in every class that has any; ``min_side``: the
    smallest side (px) of the images it is given (see :func:`image_side`); ``classes``:
    at least this many classes (labels); ``why``: the reason, shown in the problem line.
    """

    who: str
    per_class: int = 0
    min_side: int | None = None
    classes: int = 0
    why: str = ""


def image_side(train: RealDataset, packed_size: int | None = None) -> int | None:
    """The side the images are given at: an array's side; for files the median smaller side of
    their headers (at most :data:`SIDE_PROBES` read), capped by the size they are packed at."""
    if len(train) == 0:
        return None
    if train.images is not None:
        return int(min(train.images.shape[1:3]))
    picks = np.unique(np.linspace(0, len(train) - 1, num=min(SIDE_PROBES, len(train))).astype(int))
    sides = []
    for index in picks:
        try:
            sides.append(min(train.image_hw(int(index))))
        except Exception:  # noqa: BLE001 - an unreadable header was listed when the split was loaded
            continue
    if not sides:
        return None
    side = int(median(sides))
    return min(side, packed_size) if packed_size else side


def need_problems(train: RealDataset, needs: DataNeeds, packed_size: int | None = None) -> list[str]:
    """One line per need of ``needs`` that ``train`` does not meet (empty when it meets all)."""
    problems = []
    why = f" ({needs.why})" if needs.why else ""
    if needs.classes and train.num_classes < needs.classes:
        problems.append(f"{needs.who} needs at least {needs.classes} classes{why}; the dataset has {train.num_classes}")
    if needs.per_class:
        counts = train.class_counts()
        short = [(name, int(n)) for name, n in zip(train.class_names, counts) if 0 < n < needs.per_class]
        if short:
            listed = ", ".join(f"{name!r} {n}" for name, n in short[:5]) + (f" and {len(short) - 5} more" if len(short) > 5 else "")
            problems.append(
                f"{needs.who} needs at least {needs.per_class} real training images per class{why}; "
                f"{len(short)} class(es) have fewer: {listed}"
            )
    if needs.min_side:
        side = image_side(train, packed_size)
        if side is not None and side < needs.min_side:
            problems.append(
                f"{needs.who} needs images of at least {needs.min_side} px{why}; the dataset's images are {side} px"
            )
    return problems


def empty_class_problems(train: RealDataset, allowed: bool) -> list[str]:
    """``dataset: class(es) 'x', 'y' have no training image`` unless ``allowed``."""
    if allowed:
        return []
    empty = [name for name, n in zip(train.class_names, train.class_counts()) if n == 0]
    if not empty:
        return []
    listed = ", ".join(repr(name) for name in empty[:5]) + (f" and {len(empty) - 5} more" if len(empty) > 5 else "")
    return [
        f"dataset: {len(empty)} class(es) have no training image: {listed}; add images, remove the folder, "
        "or set dataset.allow_empty_classes: true to train with a class it never sees"
    ]


def stage_needs(config: Any, where: str) -> Iterable[DataNeeds]:
    """The needs a stage config declares (its ``data_needs()``), named ``where``."""
    declare = getattr(config, "data_needs", None)
    if not callable(declare):
        return []

    return [replace(needs, who=f"{where}{needs.who}") for needs in declare()]
