"""The training registries: losses, learning-rate schedules and data policies.

Importing this module needs no torch: the built-in entries are registered by path
(``"genaug.training.losses:bce_softmax"``) and imported when used, so a config naming them
is checked when it is loaded. A data policy's keyword arguments are checked against its
params model there too. A policy of one's own is one class decorated with
:func:`genaug.training.policies.register_policy`.
"""

from __future__ import annotations

from pydantic import ConfigDict, Field, model_validator

from genaug.config import StrictModel, did_you_mean
from genaug.registry import Registry
from genaug.training.schedules import BLEND_SCHEDULES, blend_ratio, schedule_parameters

__all__ = ["LOSSES", "LR_SCHEDULES", "POLICIES", "NoParams"]


class NoParams(StrictModel):
    """An entry without parameters: any keyword is an unknown key."""


#: Loss name -> ``fn(logits, targets) -> loss`` (docs/methods/training-recipes.md).
LOSSES = Registry("loss", key="loss")
LOSSES.register("ce", "genaug.training.losses:soft_cross_entropy")
LOSSES.register("bce_softmax", "genaug.training.losses:bce_softmax")

#: Learning-rate schedule name -> ``factor(config, epoch)``; stepped once per epoch.
LR_SCHEDULES = Registry("lr schedule", key="lr_schedule")
LR_SCHEDULES.register("step", "genaug.training.lr_schedule:step_schedule")
LR_SCHEDULES.register("cosine", "genaug.training.lr_schedule:cosine_schedule")


class SubsetParams(StrictModel):
    labels_per_class: int | None = Field(default=None, ge=1)
    seed: int = 0


class CurriculumParams(StrictModel):
    """``schedule`` (a blend schedule, :data:`genaug.training.schedules.BLEND_SCHEDULES`) and its parameters."""

    model_config = ConfigDict(extra="allow")
    schedule: str = "linear"

    @model_validator(mode="after")
    def _check(self) -> "CurriculumParams":
        if self.schedule not in BLEND_SCHEDULES:
            raise ValueError(str(BLEND_SCHEDULES.unknown(self.schedule, key="schedule")))
        params = dict(self.model_extra or {})
        allowed = sorted(schedule_parameters(self.schedule))
        unknown = sorted(set(params) - set(allowed))
        if unknown:
            raise ValueError(
                f"{unknown[0]}: unknown parameter of schedule '{self.schedule}'{did_you_mean(unknown[0], allowed)} "
                f"(allowed: {', '.join(allowed) or 'none'})"
            )
        blend_ratio(self.schedule, 0, 1, **params)
        return self


class SyntheticProbabilityParams(StrictModel):
    p: float = Field(default=0.5, ge=0.0, le=1.0)


class MultiplesParams(StrictModel):
    multiples: float = Field(default=1.0, gt=0.0)
    seed: int = 0


#: Data policy name -> its class (docs/methods/progressive-scheduling.md); ``params``: its keyword arguments.
POLICIES = Registry("data policy", key="data_policy")
POLICIES.register("real_only", "genaug.training.policies:RealOnly", params=NoParams)
POLICIES.register("concat", "genaug.training.policies:Concat", params=NoParams)
POLICIES.register("subset", "genaug.training.policies:Subset", params=SubsetParams)
POLICIES.register("curriculum", "genaug.training.policies:Curriculum", params=CurriculumParams)
POLICIES.register(
    "synthetic_probability", "genaug.training.policies:SyntheticProbability", params=SyntheticProbabilityParams
)
POLICIES.register("multiples", "genaug.training.policies:Multiples", params=MultiplesParams)



class SyntheticReplacementParams(StrictModel):
    p: float = Field(default=0.1, ge=0.0, le=1.0)


POLICIES.register(
    "synthetic_replacement", "genaug.training.policies:SyntheticReplacement", params=SyntheticReplacementParams
)
