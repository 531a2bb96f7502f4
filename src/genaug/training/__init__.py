"""Classifier training: recipes, the packed input pipeline, data policies, checkpoints, DDP.

``train(config, splits, out_dir, synthetic=None)`` runs one recipe (METHODS.md 1) and
returns a :class:`RunResult`; ``resolve_recipe(config)`` shows the fully specified config
a preset plus overrides amounts to.
"""

from genaug.config import AugmentationConfig, TrainConfig, TrainLoggingConfig
from genaug.training.losses import bce_softmax, create_loss, soft_cross_entropy
from genaug.training.lr_schedule import cosine_factor, lr_factor, step_factor
from genaug.training.pipeline import InputPipeline, pack_dataset
from genaug.training.policies import DataPolicy, EpochPlan, TrainPool, create_policy, register_policy
from genaug.training.recipes import RECIPES, resolve_recipe
from genaug.training.trainer import RunResult, train

__all__ = [
    "AugmentationConfig",
    "DataPolicy",
    "EpochPlan",
    "InputPipeline",
    "RECIPES",
    "RunResult",
    "TrainConfig",
    "TrainLoggingConfig",
    "TrainPool",
    "bce_softmax",
    "cosine_factor",
    "create_loss",
    "create_policy",
    "lr_factor",
    "pack_dataset",
    "register_policy",
    "resolve_recipe",
    "soft_cross_entropy",
    "step_factor",
    "train",
]
