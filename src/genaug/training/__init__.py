"""Classifier training: recipes, the packed input pipeline, data policies, checkpoints, DDP.

``train(config, splits, out_dir, synthetic=None)`` runs one recipe (docs/methods/training-recipes.md) and
returns a :class:`RunResult`; ``resolve_recipe(config)`` shows the fully specified config
a preset plus overrides amounts to.
"""

from __future__ import annotations

from genaug.lazy import exported, lazy_exports

_LAZY = {
    "genaug.training.config": ("AugmentationConfig", "TrainConfig", "TrainLoggingConfig", "TrainRunConfig"),
    "genaug.training.losses": ("bce_softmax", "create_loss", "soft_cross_entropy"),
    "genaug.training.lr_schedule": ("cosine_factor", "lr_factor", "step_factor"),
    "genaug.training.pipeline": ("InputPipeline", "pack_dataset"),
    "genaug.training.policies": ("DataPolicy", "EpochPlan", "TrainPool", "create_policy"),
    "genaug.training.recipes": ("RECIPES", "resolve_recipe"),
    "genaug.training.trainer": ("RunResult", "train"),
    "genaug.training.stacked": ("train_seeds",),
    "genaug.training.registry": ("LOSSES", "LR_SCHEDULES", "POLICIES"),
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)


__all__ = sorted(exported(_LAZY))
