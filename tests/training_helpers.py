"""Small data and models shared by the training tests (and the torchrun worker)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from genaug.config import TrainConfig
from genaug.data.base import RealDataset
from genaug.pocket.render import DIGIT_NAMES, pocket_pools, styled_digits


def pocket_splits(labels_per_class: int = 10, val_per_class: int = 10, seed: int = 0) -> dict[str, RealDataset]:
    """Few-shot pocket digits: ``labels_per_class`` train and ``val_per_class`` val images per
    class from the downstream train pool, and the whole pocket test pool."""
    pools = pocket_pools()
    rng = np.random.default_rng(seed)
    labels = styled_digits(pools["train"])[1]
    train_idx, val_idx = [], []
    for digit in range(10):
        members = rng.permutation(pools["train"][labels == digit])
        val_idx.append(members[:val_per_class])
        train_idx.append(members[val_per_class : val_per_class + labels_per_class])
    return {
        "train": _split(np.sort(np.concatenate(train_idx)), "train"),
        "val": _split(np.sort(np.concatenate(val_idx)), "val"),
        "test": _split(pools["test"], "test"),
    }


def _split(indices: np.ndarray, split: str) -> RealDataset:
    images, labels, _, _ = styled_digits(indices)
    return RealDataset(
        name="pocket_digits",
        split=split,
        class_names=list(DIGIT_NAMES),
        labels=labels,
        ids=[f"pocket/{int(i):04d}" for i in indices],
        images=images,
    )


class TinyNet(nn.Module):
    """Two convolutions and a linear layer; ``norm`` adds BatchNorm, ``dropout`` a dropout layer."""

    def __init__(self, num_classes: int = 10, norm: bool = True, dropout: float = 0.0) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, 8, 3, padding=1)]
        layers += [nn.BatchNorm2d(8)] if norm else []
        layers += [nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2, padding=1)]
        layers += [nn.BatchNorm2d(16)] if norm else []
        layers += [nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(16, num_classes)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def tiny_net(seed: int = 0, **kwargs: object) -> TinyNet:
    torch.manual_seed(seed)
    return TinyNet(**kwargs)


class Killed(Exception):
    """Stands for a kill: raised inside a run by :func:`train_killed_in_epoch`."""


def train_killed_in_epoch(monkeypatch, epoch: int, *args, **kwargs) -> None:
    """``train(*args, **kwargs)`` killed as training epoch ``epoch`` (numbered from 0) starts:
    whatever the run wrote before stays, as after a real kill; the trainer is restored after."""
    import pytest

    from genaug.training import trainer as trainer_module

    real_epoch = trainer_module.train_one_epoch

    def dies(*epoch_args, **epoch_kwargs):
        if epoch_args[-2] == epoch:  # (..., epoch, dist)
            raise Killed
        return real_epoch(*epoch_args, **epoch_kwargs)

    monkeypatch.setattr(trainer_module, "train_one_epoch", dies)
    try:
        with pytest.raises(Killed):
            trainer_module.train(*args, **kwargs)
    finally:
        monkeypatch.setattr(trainer_module, "train_one_epoch", real_epoch)


def quick(**overrides) -> TrainConfig:
    """The pocket recipe for 3 epochs at batch 16, no progress bar or TensorBoard, with ``overrides``."""
    settings = dict(recipe="pocket", epochs=3, batch_size=16, logging={"progress": False, "tensorboard": False})
    settings.update(overrides)
    return TrainConfig(**settings)
