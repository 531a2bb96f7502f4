"""Classifier training: recipes, the packed input pipeline, data policies, checkpoints, DDP.

``train(config, splits, out_dir, synthetic=None)`` runs one recipe (docs/methods/training-recipes.md) and
returns a :class:`RunResult`; ``resolve_recipe(config)`` shows the fully specified config
a preset plus overrides amounts to.
"""

from __future__ import annotations

from genaug.lazy import lazy_exports

_LAZY = {
    "AugmentationConfig": "genaug.training.config",
    "TrainConfig": "genaug.training.config",
    "TrainLoggingConfig": "genaug.training.config",
    "bce_softmax": "genaug.training.losses",
    "create_loss": "genaug.training.losses",
    "soft_cross_entropy": "genaug.training.losses",
    "cosine_factor": "genaug.training.lr_schedule",
    "lr_factor": "genaug.training.lr_schedule",
    "step_factor": "genaug.training.lr_schedule",
    "InputPipeline": "genaug.training.pipeline",
    "pack_dataset": "genaug.training.pipeline",
    "DataPolicy": "genaug.training.policies",
    "EpochPlan": "genaug.training.policies",
    "TrainPool": "genaug.training.policies",
    "create_policy": "genaug.training.policies",
    "RECIPES": "genaug.training.recipes",
    "resolve_recipe": "genaug.training.recipes",
    "RunResult": "genaug.training.trainer",
    "train": "genaug.training.trainer",
    "train_seeds": "genaug.training.stacked",
    "TrainRunConfig": "genaug.training.config",
    "LOSSES": "genaug.training.registry",
    "LR_SCHEDULES": "genaug.training.registry",
    "POLICIES": "genaug.training.registry",
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)


__all__ = sorted(_LAZY)
