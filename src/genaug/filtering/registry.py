"""The filter registry: name -> a :class:`Filter` class with its typed parameters.

A filter works in two phases so that the stage reads every image once and stays linear
in the number of records:

- ``score(chunk, context)``: per-record score columns for one chunk of images (streamed);
- ``decide(scores, labels, candidates)``: the verdict over the whole set from the score
  columns, among the records the previous filters kept (``candidates``); True = keep.

A record's scores are cached with the set (:mod:`genaug.filtering.cache`), keyed by the
record's image and class and by what else the scores depend on (``score_inputs``): a rerun,
or the filter stage on a set that gained images, scores only the records it has no scores for.

Adding a filter = one class decorated with ``@FILTERS.register("name", params=Params)`` (its
params model beside it) in a module the registry discovers (``genaug.filtering.filters``,
``genaug.filtering.zero_shot``, or any module imported before use). Importing this module
needs no torch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import BaseModel, ValidationError

from genaug.registry import Registry

if TYPE_CHECKING:
    from genaug.filtering.stage import FilterContext, ImageChunk

#: Filter name -> its :class:`Filter` class (``params``: the class's ``Params`` model).
FILTERS = Registry("filter", key="name", discover=("genaug.filtering.filters", "genaug.filtering.zero_shot"))


class Filter(ABC):
    """One way of scoring and judging synthetic images."""

    name: ClassVar[str]  # set by the registration
    #: Whether it scores with the stage's CLIP (``FilterConfig.clip``; checked before a run).
    uses_clip: ClassVar[bool] = False

    def __init__(self, params: BaseModel) -> None:
        self.params = params

    def prepare(self, context: "FilterContext") -> None:
        """Load what scoring needs (models, text embeddings, reference features); once per run."""

    def score_inputs(self, context: "FilterContext") -> dict[str, Any] | None:
        """What a record's scores depend on besides its image and its class name (JSON-able), or
        None when they cannot be cached. Default: the filter's name and parameters, and the
        CLIP's identity when it scores with CLIP; a filter whose scores read more (other
        classes, a classifier, the real images) says so."""
        inputs: dict[str, Any] = {"name": self.name, "params": self.params.model_dump(mode="json")}
        if self.uses_clip:
            inputs["clip"] = context.clip_identity
        return inputs

    @abstractmethod
    def score(self, chunk: "ImageChunk", context: "FilterContext") -> dict[str, np.ndarray]:
        """Score columns (name -> one float per image of ``chunk``); names go into ``record.scores``."""

    @abstractmethod
    def decide(self, scores: dict[str, np.ndarray], labels: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """Boolean keep mask over all records; only ``candidates`` matter (others are already dropped)."""

    def notes(self, rows: np.ndarray) -> dict[str, Any]:
        """Extra facts about the dropped ``rows`` for the filter report (e.g. the nearest real id)."""
        return {}


def parse_filter_spec(spec: dict[str, Any], key: str = "name") -> tuple[str, BaseModel]:
    """``{"name": ..., **params}`` -> (name, validated params); errors name the filter and field
    (``key``: where the name is written, for an unknown one)."""
    if not isinstance(spec, dict) or "name" not in spec:
        raise ValueError(f"a filter is a mapping with a 'name' (one of {', '.join(FILTERS.names())}), got {spec!r}")
    name = spec["name"]
    FILTERS.spec(name, key=key)
    params = {key: value for key, value in spec.items() if key != "name"}
    try:
        return name, FILTERS.spec(name).params.model_validate(params)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise ValueError(f"filter {name!r}: {problems}") from None


def validate_filter_specs(specs: list[dict[str, Any]]) -> None:
    """Check every spec of a filter list (used by :class:`genaug.config.FilterConfig`)."""
    if not specs:
        raise ValueError(f"filters must name at least one filter of {', '.join(FILTERS.names())}")
    for i, spec in enumerate(specs):
        parse_filter_spec(spec, key=f"filters.{i}.name")


def create_filter(spec: dict[str, Any]) -> Filter:
    """The filter a spec describes, with validated parameters."""
    name, params = parse_filter_spec(spec)
    return FILTERS[name](params)

