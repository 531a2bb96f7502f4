"""The data policies a config names (``data_policy: curriculum``, docs/methods/progressive-scheduling.md),
each registered in :data:`genaug.training.registry.POLICIES` beside its params model.

A registered policy is a function ``build(**kwargs)`` returning the
:class:`genaug.training.policies.DataPolicy` the trainer asks for each epoch's samples; it
imports the torch code of :mod:`genaug.training.policies` when called, so this module, and a
config naming a policy with its ``data_policy_kwargs``, need no torch. A policy of one's own
is a ``DataPolicy`` subclass and one more decorated function (in a module imported before use).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import ConfigDict, Field, model_validator

from genaug.config import StrictModel, did_you_mean
from genaug.training.registry import POLICIES
from genaug.training.schedules import BLEND_SCHEDULES, blend_ratio, schedule_parameters

if TYPE_CHECKING:
    from genaug.training.policies import DataPolicy

__all__ = ["NoParams"]


class NoParams(StrictModel):
    """A policy without parameters: any keyword is an unknown key."""


@POLICIES.register("real_only", params=NoParams)
def real_only() -> "DataPolicy":
    """The real training set, shuffled."""
    from genaug.training.policies import RealOnly

    return RealOnly()


@POLICIES.register("concat", params=NoParams)
def concat() -> "DataPolicy":
    """Real and synthetic joined and shuffled."""
    from genaug.training.policies import Concat

    return Concat()


class SubsetParams(StrictModel):
    labels_per_class: int | None = Field(default=None, ge=1)
    seed: int = 0


@POLICIES.register("subset", params=SubsetParams)
def subset(**kwargs: Any) -> "DataPolicy":
    """``labels_per_class`` per class from the union of real and synthetic (lossy; warns)."""
    from genaug.training.policies import Subset

    return Subset(**kwargs)


class CurriculumParams(StrictModel):
    """``schedule`` (a blend schedule, :data:`genaug.training.schedules.BLEND_SCHEDULES`) and its parameters."""

    model_config = ConfigDict(extra="allow")
    schedule: str = "linear"

    @model_validator(mode="after")
    def _check(self) -> "CurriculumParams":
        BLEND_SCHEDULES.spec(self.schedule, key="schedule")
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


@POLICIES.register("curriculum", params=CurriculumParams)
def curriculum(**kwargs: Any) -> "DataPolicy":
    """Real-set length, each sample replaced by a synthetic one with probability rho(t)."""
    from genaug.training.policies import Curriculum

    return Curriculum(**kwargs)


class SyntheticProbabilityParams(StrictModel):
    p: float = Field(default=0.5, ge=0.0, le=1.0)


@POLICIES.register("synthetic_probability", params=SyntheticProbabilityParams)
def synthetic_probability(**kwargs: Any) -> "DataPolicy":
    """DA-Fusion: each real sample replaced by an edit of it with probability ``p``."""
    from genaug.training.policies import SyntheticProbability

    return SyntheticProbability(**kwargs)


class MultiplesParams(StrictModel):
    multiples: float = Field(default=1.0, gt=0.0)
    seed: int = 0


@POLICIES.register("multiples", params=MultiplesParams)
def multiples(**kwargs: Any) -> "DataPolicy":
    """SDI: the real set plus ``multiples`` x its per-class counts of synthetic images."""
    from genaug.training.policies import Multiples

    return Multiples(**kwargs)


class SyntheticReplacementParams(StrictModel):
    p: float = Field(default=0.1, ge=0.0, le=1.0)


@POLICIES.register("synthetic_replacement", params=SyntheticReplacementParams)
def synthetic_replacement(**kwargs: Any) -> "DataPolicy":
    """Diff-Mix: each access replaced, with probability ``p``, by any synthetic sample."""
    from genaug.training.policies import SyntheticReplacement

    return SyntheticReplacement(**kwargs)
