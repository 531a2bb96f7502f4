"""Projector-training presets (docs/methods/sdi.md) and the reference sample multipliers (5.3).

``sd15`` is the reference setting. ``pocket`` scales it to the pocket world: 16 px images
(the pocket VAE's input), hidden 256 (pocket CLIP and the pocket UNet's cross-attention
are 128-d), and, since a few-shot train set of 100 digits gives a projector little to
learn from, the unlabeled pretraining pool too (labels are not needed to train it). The
few-shot set still alone makes the feature bank.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from genaug.config import ConfigError
from genaug.data import dataset_spec
from genaug.diffusion.models import POCKET_SCHEME

if TYPE_CHECKING:  # pragma: no cover
    from genaug.sdi.config import ProjectorTrainConfig, SdiConfig

SDI_PRESETS: dict[str, dict[str, Any]] = {
    "sd15": {
        "hidden": 1024,
        "epochs": 100,
        "batch_size": 64,
        "lr": 5e-4,
        "weight_decay": 0.01,
        "embedding_dropout": 0.05,
        "resolution": 512,
        "pools": ["train"],
    },
    "pocket": {
        "hidden": 256,
        "epochs": 30,
        "batch_size": 64,
        "lr": 1e-3,
        "weight_decay": 0.01,
        "embedding_dropout": 0.05,
        "resolution": 16,
        "pools": ["train", "pretrain"],
    },
}

#: Samples per class = multiplier x N_c (docs/methods/sdi.md), by dataset name. The reference's
#: values, plus genaug's choice for the pocket digits (not a reference number).
REFERENCE_MULTIPLIERS: dict[str, int] = {
    "cub200": 40,
    "cars": 40,
    "dtd": 40,
    "flowers102": 40,
    "pets": 60,
    "imagenet100": 10,
    "imagenet200": 10,
    "imagenet_subset": 10,
    "pathmnist": 5,
    "pocket_digits": 10,
}


def preset_for(model: str, train: ProjectorTrainConfig) -> str:
    """The preset's name: the configured one, else ``pocket`` for ``pocket:`` models and ``sd15`` otherwise."""
    if train.preset is not None:
        return train.preset
    return "pocket" if model.startswith(POCKET_SCHEME) else "sd15"


def resolve_train_config(model: str, train: ProjectorTrainConfig) -> ProjectorTrainConfig:
    """``train`` with every None field filled from its preset (the preset name is filled in too)."""
    name = preset_for(model, train)
    data = train.model_dump()
    data["preset"] = name
    for key, value in SDI_PRESETS[name].items():
        if data[key] is None:
            data[key] = value
    return type(train).model_validate(data)


def reference_multiplier(dataset_name: str, multiplier: int | None = None) -> int:
    """``multiplier`` if given, else the reference multiplier of ``dataset_name``."""
    if multiplier is not None:
        return multiplier
    key = dataset_name.lower()
    if key not in REFERENCE_MULTIPLIERS:
        known = ", ".join(f"{name} {value}" for name, value in REFERENCE_MULTIPLIERS.items())
        raise ConfigError(f"sample.multiplier: no reference multiplier for dataset '{dataset_name}'; set it (known: {known})")
    return REFERENCE_MULTIPLIERS[key]


def training_pools(config: SdiConfig) -> list[str]:
    """The pools the projector trains on: the preset's (``pretrain`` only where the dataset has it) or the configured ones."""
    train = resolve_train_config(config.model, config.train)
    if config.train.pools is None and "pretrain" in train.pools:
        if "pretrain" not in dataset_spec(config.dataset.name).splits:
            return ["train"]
    return list(train.pools)
