"""The training registries: losses, learning-rate schedules and data policies.

Their entries are registered beside their code by the registry's decorator: the losses in
:mod:`genaug.training.losses`, the LR schedules in :mod:`genaug.training.lr_schedule`, the
data policies (with their params models) in :mod:`genaug.training.data_policies`. Those
modules import without torch (the registered functions import it when called), so a config
naming an entry, and a policy's keyword arguments, are checked when it is loaded.
"""

from __future__ import annotations

from genaug.registry import Registry

__all__ = ["LOSSES", "LR_SCHEDULES", "POLICIES"]

#: Loss name -> ``fn(logits, targets) -> loss`` (docs/methods/training-recipes.md).
LOSSES = Registry("loss", key="loss", discover=("genaug.training.losses",))

#: Learning-rate schedule name -> ``factor(config, epoch)``; stepped once per epoch.
LR_SCHEDULES = Registry("lr schedule", key="lr_schedule", discover=("genaug.training.lr_schedule",))

#: Data policy name -> ``build(**kwargs) -> DataPolicy`` (docs/methods/progressive-scheduling.md);
#: ``params``: its keyword arguments.
POLICIES = Registry("data policy", key="data_policy", discover=("genaug.training.data_policies",))
