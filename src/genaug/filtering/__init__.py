"""Filtering synthetic sets: scorers and filters that mark, never delete (METHODS.md 5.5, 2.1).

- :func:`clip_rank_filter` - SDI's per-class top ``keep_ratio`` by CLIP score (DESIGN.md 4.3);
- :func:`filter_set` - the ``filter`` stage: a configured list of filters applied in order
  to a set; scores go into ``record.scores``, the verdict into ``record.kept``;
- the filter registry (:func:`filter_names`, :func:`register_filter`): ``frames``,
  ``clip_rank``, ``clip_posneg``, ``classifier``, ``dedupe``;
- :mod:`genaug.filtering.scores`: the math, as pure functions over arrays.
"""

from __future__ import annotations

from typing import Any

from genaug.filtering.filters import DEDUPE_THRESHOLDS, clip_rank_filter
from genaug.filtering.registry import FILTERS, Filter, create_filter, filter_names, register_filter
from genaug.filtering.scores import (
    classifier_scores,
    clip_class_scores,
    confidence_verdict,
    max_cosine,
    pixel_features,
    positive_probability,
    top_fraction_per_class,
)
from genaug.filtering.stage import FilterReport, filter_set

__all__ = [
    "DEDUPE_THRESHOLDS",
    "FILTERS",
    "Filter",
    "FilterReport",
    "classifier_scores",
    "clip_class_scores",
    "clip_rank_filter",
    "confidence_verdict",
    "create_filter",
    "filter_names",
    "filter_set",
    "load_classifier",
    "max_cosine",
    "pixel_features",
    "positive_probability",
    "register_filter",
    "top_fraction_per_class",
]


def __getattr__(name: str) -> Any:
    if name in ("load_classifier", "Classifier"):
        from genaug.filtering import classifier

        return getattr(classifier, name)
    raise AttributeError(f"module 'genaug.filtering' has no attribute '{name}'")
