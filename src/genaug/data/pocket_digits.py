"""The pocket digits: scikit-learn's 1,797 real handwritten digits, styled at 16x16 RGB.

Parts come from :func:`genaug.pocket.render.pocket_pools`, disjoint by underlying digit
image: ``pretrain`` (about half, used only to train the pocket models), ``test`` and
``train`` (the downstream pool, about 45 images per class, from which validation and the
few-shot train set are drawn). The pools and the styles are those of the pocket world
(seed 0), never the experiment seed: the shipped pocket models were trained on exactly
this pretrain pool, so moving the pools with the seed would leak their training images
into test. The experiment seed draws validation and the ``labels_per_class`` subset.

Defaults (small pool, few-shot setting): val = 0.4 of the train pool (about 18 per
class), train = 10 images per class. Ids are ``pocket/<sklearn digit index>``, e.g.
``pocket/0123``; every image has its caption.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from genaug.data.base import RealDataset
from genaug.data.registry import register_dataset
from genaug.pocket.render import DIGIT_NAMES, caption, pocket_pools, styled_digits

if TYPE_CHECKING:  # genaug.config validates names against this package's registry
    from genaug.data.config import DatasetConfig

NAME = "pocket_digits"


@register_dataset(
    NAME,
    needs_root=False,
    splits=("train", "val", "test", "pretrain"),
    default_val_fraction=0.4,
    default_labels_per_class=10,
)
def load_pocket_digits(config: DatasetConfig, parts: frozenset[str]) -> dict[str, RealDataset]:
    """The pocket pools asked for (``train``, ``test``, ``pretrain``); there is no own ``val``."""
    pools = pocket_pools()
    return {part: pocket_split(pools[part], part) for part in parts if part in pools}


def pocket_split(indices: np.ndarray, split: str) -> RealDataset:
    """The styled digits at sklearn ``indices`` as one split, with captions."""
    images, labels, fg, bg = styled_digits(indices)
    return RealDataset(
        name=NAME,
        split=split,
        class_names=list(DIGIT_NAMES),
        labels=labels,
        ids=[pocket_id(index) for index in indices],
        images=images,
        captions=[caption(label, f, b) for label, f, b in zip(labels, fg, bg)],
    )


def first_train_digits(counts: dict[int, int]) -> RealDataset:
    """The first ``counts[c]`` digits of each class c of the train pool, in index order, as a
    ``train`` split: a set that grows by a few images (incremental stages, their benchmark)."""
    indices = pocket_pools()["train"]
    labels = styled_digits(indices)[1]
    chosen = np.sort(np.concatenate([indices[labels == c][:n] for c, n in counts.items()]))
    return pocket_split(chosen, "train")


def pocket_id(index: int) -> str:
    """``pocket/0123``: the id of sklearn digit ``index``."""
    return f"pocket/{int(index):04d}"
