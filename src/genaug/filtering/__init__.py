"""Filtering synthetic sets: scorers and filters that mark, never delete (docs/methods/filters.md, diffusemix.md).

- :func:`clip_rank_filter` - SDI's per-class top ``keep_ratio`` by CLIP score (docs/README.md);
- :func:`filter_set` - the ``filter`` stage: a configured list of filters applied in order
  to a set; scores go into ``record.scores``, the verdict into ``record.kept``;
- the filter registry (:data:`FILTERS`, ``FILTERS.names()``): ``frames``,
  ``clip_rank``, ``clip_posneg``, ``classifier``, ``dedupe``;
- :mod:`genaug.filtering.scores`: the math, as pure functions over arrays.
"""

from __future__ import annotations

from genaug.lazy import lazy_exports

_LAZY = {
    "genaug.filtering.filters": ("DEDUPE_THRESHOLDS", "clip_rank_filter"),
    "genaug.filtering.registry": ("FILTERS", "Filter", "create_filter"),
    "genaug.filtering.scores": (
        "classifier_scores", "clip_class_scores", "confidence_verdict", "max_cosine", "pixel_features",
        "positive_probability", "top_fraction_per_class",
    ),
    "genaug.filtering.stage": ("FilterReport", "filter_set"),
    "genaug.filtering.config": ("FilterConfig",),
    "genaug.training.classifier": ("load_classifier", "Classifier"),
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)

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
    "filter_set",
    "load_classifier",
    "max_cosine",
    "pixel_features",
    "positive_probability",
    "top_fraction_per_class",
]


