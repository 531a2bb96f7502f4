"""Recipe presets (docs/methods/training-recipes.md, with the pocket digits') and their resolution.

A :class:`~genaug.config.TrainConfig` names a preset in ``recipe`` and may override any
field of it; every field left at ``None`` takes the preset's value. :func:`resolve_recipe`
returns the fully specified config a run uses and writes beside itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from genaug.config import ConfigError, parse_config
from genaug.data.needs import DataNeeds

if TYPE_CHECKING:  # pragma: no cover
    from genaug.training.config import TrainConfig

CIFAR_MEAN = (129.3 / 255, 124.1 / 255, 112.4 / 255)
CIFAR_STD = (68.2 / 255, 65.4 / 255, 70.4 / 255)
#: Channel statistics of all 1,797 styled pocket digits (seed 0 styles).
POCKET_MEAN = (0.504, 0.510, 0.518)
POCKET_STD = (0.314, 0.283, 0.306)

#: What the fine-grained and pocket recipes share: SGD with momentum 0.9 (no Nesterov), a
#: cosine schedule without warmup (milestones and decay unused), cross-entropy.
_COSINE_SGD: dict[str, Any] = {
    "momentum": 0.9,
    "nesterov": False,
    "lr_schedule": "cosine",
    "warmup_epochs": 0,
    "warmup_factor": 1.0,
    "milestones": [],
    "lr_decay": 0.1,
    "loss": "ce",
}

RECIPES: dict[str, dict[str, Any]] = {
    # docs/methods/training-recipes.md: the DiffuseMix study's CIFAR-100 recipe.
    "cifar": {
        "model": "preactresnet18",
        "width": 1.0,
        "epochs": 300,
        "batch_size": 128,
        "lr": 0.1,
        "momentum": 0.9,
        "nesterov": False,
        "weight_decay": 1e-4,
        "lr_schedule": "step",
        "warmup_epochs": 5,
        "warmup_factor": 0.01,
        "milestones": [100, 200],
        "lr_decay": 0.1,
        "loss": "ce",
        "augmentation": {
            "image_size": 32,
            "crop": 32,
            "padding": 2,
            "padding_mode": "constant",
            "flip": True,
            "rotation": 0.0,
            "mean": CIFAR_MEAN,
            "std": CIFAR_STD,
        },
    },
    # docs/methods/training-recipes.md: SDI's fine-grained recipe (ResNet-50 from scratch, CIFAR statistics).
    "finegrained": {
        "model": "resnet50",
        "width": 1.0,
        "epochs": 100,
        "batch_size": 128,
        "lr": 0.01,
        "weight_decay": 1e-4,
        **_COSINE_SGD,
        "augmentation": {
            "image_size": 256,
            "crop": 224,
            "padding": 0,
            "padding_mode": "constant",
            "flip": True,
            "rotation": 15.0,
            "mean": CIFAR_MEAN,
            "std": CIFAR_STD,
        },
    },
    # The 16x16 pocket digits, few-shot (10 per class): a narrow PreActResNet-18, no flip
    # (digits are not mirror-symmetric), a 1-pixel shift with edge padding (zero padding
    # draws a black frame, a false cue on coloured backgrounds), batch 16 so that 100
    # images still give 7 steps per epoch, cosine over 60 epochs. Measured on 2 shared CPU
    # cores with the pocket digits' own splits: about 18 s, test top-1 44-49 % over seeds
    # 0-2 (chance 10 %); lr 0.01 / 0.05, zero padding 2 and batch 32 were all worse.
    "pocket": {
        "model": "preactresnet18",
        "width": 0.25,
        "epochs": 60,
        "batch_size": 16,
        "lr": 0.02,
        "weight_decay": 5e-4,
        **_COSINE_SGD,
        # One CPU thread: this model is too small to gain from more, and on a machine
        # shared with other jobs, 2 OpenMP threads made it 17x slower (330 s instead of 20 s).
        "cpu_threads": 1,
        "augmentation": {
            "image_size": 16,
            "crop": 16,
            "padding": 1,
            "padding_mode": "edge",
            "flip": False,
            "rotation": 0.0,
            "mean": POCKET_MEAN,
            "std": POCKET_STD,
        },
    },
}


def resolve_recipe(config: TrainConfig) -> TrainConfig:
    """``config`` with every ``None`` recipe field filled from its preset (idempotent)."""
    preset = RECIPES.get(config.recipe)
    if preset is None:  # the config's Literal keeps this unreachable; RECIPES and it must agree
        raise ConfigError(f"recipe: unknown preset '{config.recipe}'; allowed: {sorted(RECIPES)}")
    data = config.model_dump()
    for name, value in preset.items():
        if name == "augmentation":
            section = data["augmentation"]
            for key, default in value.items():
                if section[key] is None:
                    section[key] = default
        elif data[name] is None:
            data[name] = value
    try:
        return parse_config(type(config), data, source=None)
    except ConfigError as error:
        problems = "; ".join(problem.line() for problem in error.problems) or str(error)
        raise ConfigError(f"recipe '{config.recipe}' with these overrides is invalid: {problems}") from None


def is_resolved(config: TrainConfig) -> bool:
    """True when no recipe field is left at ``None``."""
    data = config.model_dump()
    recipe_fields = [name for name in RECIPES[config.recipe] if name != "augmentation"]
    return all(data[name] is not None for name in recipe_fields) and all(
        value is not None for value in data["augmentation"].values()
    )


def training_needs(train_config: Any, where: str = "train") -> DataNeeds:
    """A training recipe needs images at least as large as the size it trains at, and two classes."""
    size = resolve_recipe(train_config).augmentation.image_size
    return DataNeeds(
        who=f"{where} (recipe '{train_config.recipe}')",
        min_side=size,
        classes=2,
        why=f"it trains at {size} px: set {where}.augmentation.image_size and crop to the data's size"
        if size
        else "",
    )
