"""The filters (docs/methods/filters.md, diffusemix.md): frames, clip_rank, clip_posneg, classifier, dedupe.

Each one scores records (columns that go into ``record.scores``) and decides among the
records still kept; none deletes a file.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from genaug.data.names import class_prompt
from genaug.degenerate import black_white_fractions
from genaug.filtering.registry import FILTERS, Filter
from genaug.filtering.scores import (
    classifier_scores,
    clip_class_scores,
    confidence_verdict,
    max_cosine,
    pixel_features,
    positive_probability,
    top_fraction_per_class,
)

if TYPE_CHECKING:
    from genaug.filtering.stage import FilterContext, ImageChunk


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------------------- frames


class FramesParams(_Params):
    max_fraction: float = Field(0.9, gt=0.0, lt=1.0)


@FILTERS.register("frames", params=FramesParams)
class FramesFilter(Filter):
    """Drop frames more than ``max_fraction`` black or more than ``max_fraction`` white (both
    directions; the reference checks one). Pixel levels as in :mod:`genaug.degenerate`."""

    def score(self, chunk: "ImageChunk", context: "FilterContext") -> dict[str, np.ndarray]:
        black = np.zeros(len(chunk.images))
        white = np.zeros(len(chunk.images))
        by_shape: dict[tuple, list[int]] = defaultdict(list)
        for i, image in enumerate(chunk.images):
            by_shape[image.shape].append(i)
        for members in by_shape.values():  # one vectorised call per image size
            b, w = black_white_fractions(np.stack([chunk.images[i] for i in members]))
            black[members], white[members] = b, w
        return {"black_fraction": black, "white_fraction": white}

    def decide(self, scores, labels, candidates):
        limit = self.params.max_fraction
        return ~((scores["black_fraction"] > limit) | (scores["white_fraction"] > limit))


# ---------------------------------------------------------------------------- CLIP rank


class ClipRankParams(_Params):
    keep_ratio: float = Field(0.5, ge=0.0, le=1.0)
    score: Literal["cosine", "reference"] = "cosine"
    template: str = "a photo of a {class}"


def clip_rank_filter(records, scores, keep_ratio: float = 0.5) -> np.ndarray:
    """SDI's filter (docs/methods/filters.md): per class, keep the ``floor(n * keep_ratio)`` records with
    the highest ``scores`` (one per record, e.g. CLIP similarity to "a photo of a {class}").

    Returns the keep mask (True = keep), aligned with ``records``; classes are the records'
    labels; ties keep the earlier record.
    """
    labels = np.array([record.label for record in records], dtype=np.int64)
    return top_fraction_per_class(np.asarray(scores, dtype=np.float64), labels, keep_ratio)


@FILTERS.register("clip_rank", params=ClipRankParams)
class ClipRankFilter(Filter):
    """CLIP score against "a photo of a {class}" (cosine, or the reference's unnormalised
    image feature times the normalised text feature), ranked per class, top ``keep_ratio`` kept."""

    uses_clip = True

    def prepare(self, context: "FilterContext") -> None:
        prompts = [class_prompt(self.params.template, name) for name in context.class_names]
        self.text = context.text_embeds(prompts)

    @property
    def column(self) -> str:
        return "clip_score" if self.params.score == "cosine" else "clip_score_reference"

    def score(self, chunk, context):
        embeds = context.image_embeds(chunk)
        return {self.column: clip_class_scores(embeds, self.text, context.class_ids[chunk.rows], self.params.score)}

    def decide(self, scores, labels, candidates):
        return top_fraction_per_class(scores[self.column], labels, self.params.keep_ratio, candidates)


# ---------------------------------------------------------------------------- CLIP positive vs negative


class ClipPosNegParams(_Params):
    positive: list[str] = ["a photo of a {class}"]
    negative: list[str] | Literal["other_classes"] = "other_classes"
    threshold: float = Field(0.5, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _check(self) -> "ClipPosNegParams":
        if not self.positive or (isinstance(self.negative, list) and not self.negative):
            raise ValueError("positive and negative prompt lists must not be empty")
        return self


@FILTERS.register("clip_posneg", params=ClipPosNegParams)
class ClipPosNegFilter(Filter):
    """Softmax of CLIP's scaled similarities over positive and negative prompts; keep when the
    positives' probability reaches ``threshold``. ``negative``: prompts (``{class}`` filled in,
    e.g. "a photo without a {class} on it"), or ``other_classes``: the first positive template
    filled with every other class (CLIP's zero-shot belief that the image shows its class)."""

    uses_clip = True

    def prepare(self, context: "FilterContext") -> None:
        names = context.class_names
        per_class = []
        for name in names:
            positives = [class_prompt(t, name) for t in self.params.positive]
            if self.params.negative == "other_classes":
                negatives = [class_prompt(self.params.positive[0], other) for other in names if other != name]
            else:
                negatives = [class_prompt(t, name) for t in self.params.negative]
            per_class.append(positives + negatives)
        if not all(len(p) == len(per_class[0]) for p in per_class) or len(per_class[0]) <= len(self.params.positive):
            raise ValueError("clip_posneg needs at least one negative prompt per class (a set of one class has no other classes)")
        flat = context.text_embeds([text for prompts in per_class for text in prompts])
        self.prompts = flat.reshape(len(names), len(per_class[0]), -1)
        self.positive_mask = np.arange(len(per_class[0])) < len(self.params.positive)
        self.logit_scale = context.logit_scale

    def score_inputs(self, context):
        """Also every class of the set (``other_classes`` negatives are the other classes' prompts)."""
        return {**super().score_inputs(context), "classes": context.class_names}

    def score(self, chunk, context):
        embeds = context.image_embeds(chunk)
        prompts = self.prompts[context.class_ids[chunk.rows]]
        return {"clip_posneg": positive_probability(embeds, prompts, self.positive_mask, self.logit_scale)}

    def decide(self, scores, labels, candidates):
        return scores["clip_posneg"] >= self.params.threshold


# ---------------------------------------------------------------------------- classifier confidence


class ClassifierParams(_Params):
    run: Path | None = None
    wrong_confidence: float | None = Field(0.9, ge=0.0, le=1.0)
    easy_confidence: float | None = Field(None, ge=0.0, le=1.0)


@FILTERS.register("classifier", params=ClassifierParams)
class ClassifierFilter(Filter):
    """A trained classifier's verdict: drop confidently wrong images (predicted class is not
    the record's with probability >= ``wrong_confidence``) and, optionally, too easy ones
    (the record's class with probability >= ``easy_confidence``). ``run``: a ``genaug train``
    run folder (or pass a loaded classifier to ``filter_set``)."""

    def prepare(self, context: "FilterContext") -> None:
        self.classifier = context.classifier(self.params.run)
        known = {name: i for i, name in enumerate(self.classifier.class_names)}
        missing = [name for name in context.class_names if name not in known]
        if missing:
            raise ValueError(f"the classifier does not know the set's classes {missing}; it knows {self.classifier.class_names}")
        self.targets = np.array([known[name] for name in context.class_names], dtype=np.int64)

    def score_inputs(self, context):
        """Also the classifier's weights (``best.safetensors`` of ``run``) and the set's classes;
        None (not cached) for a classifier passed in without a run folder."""
        from genaug.training.classifier import classifier_identity  # up a floor: tests/test_imports.py says why

        identity = classifier_identity(self.params.run) if self.params.run is not None else None
        if identity is None:
            return None
        return {**super().score_inputs(context), "classifier": identity, "classes": context.class_names}

    def score(self, chunk, context):
        probabilities = self.classifier.probabilities(chunk.images)
        found = classifier_scores(probabilities, self.targets[context.class_ids[chunk.rows]])
        return {f"classifier_{key}": value for key, value in found.items()}

    def decide(self, scores, labels, candidates):
        return confidence_verdict(
            scores["classifier_p_label"], scores["classifier_p_max"], scores["classifier_correct"],
            self.params.wrong_confidence, self.params.easy_confidence,
        )


# ---------------------------------------------------------------------------- near duplicates


class DedupeParams(_Params):
    features: Literal["pixels", "clip"] = "pixels"
    threshold: float | None = Field(None, gt=-1.0, le=1.0)
    splits: list[Literal["train", "val", "test"]] = ["train", "test"]
    pixel_size: int = Field(16, ge=2)


#: Default cosine above which an image counts as a copy of a real one. Pixels: exact and
#: resized / re-encoded copies score above 0.99, while distinct pocket digits (tiny, often
#: alike) reach 0.96; CLIP: semantic near-duplicates.
DEDUPE_THRESHOLDS = {"pixels": 0.98, "clip": 0.95}


@FILTERS.register("dedupe", params=DedupeParams)
class DedupeFilter(Filter):
    """Near-duplicate (leakage) check against the real train and test images: the highest
    cosine to any real image, on downsampled pixels (correlation of thumbnails) or CLIP
    embeddings; drop above ``threshold``. Chunked matrix products: linear in the records."""

    @property
    def threshold(self) -> float:
        return self.params.threshold if self.params.threshold is not None else DEDUPE_THRESHOLDS[self.params.features]

    def features_of(self, images, context: "FilterContext", chunk=None) -> np.ndarray:
        if self.params.features == "pixels":
            return pixel_features(images, self.params.pixel_size)
        return context.image_embeds(chunk) if chunk is not None else context.embed_images(images)

    def prepare(self, context: "FilterContext") -> None:
        banks, self.real_ids = [], []
        for split, dataset in context.real_splits(self.params.splits).items():
            for start in range(0, len(dataset), context.batch_size):
                rows = range(start, min(start + context.batch_size, len(dataset)))
                images = dataset.rgb_batch(rows)
                banks.append(self.features_of(images, context))
            self.real_ids += [f"{split}:{image_id}" for image_id in dataset.ids]
        self.bank = np.concatenate(banks) if banks else np.zeros((0, 1), dtype=np.float32)
        self.nearest = np.full(context.num_records, -1, dtype=np.int64)

    def score_inputs(self, context):
        """Not cached: a score is the nearest of every real train and test image (any image added
        to the data may be the new nearest), and its note names that image."""
        return None

    def score(self, chunk, context):
        similarity, nearest = max_cosine(self.features_of(chunk.images, context, chunk), self.bank)
        self.nearest[chunk.rows] = nearest
        return {"dedupe_max_cosine": similarity.astype(np.float64)}

    def decide(self, scores, labels, candidates):
        return scores["dedupe_max_cosine"] < self.threshold

    def notes(self, rows: np.ndarray) -> dict[str, Any]:
        return {"nearest_real": {int(row): self.real_ids[self.nearest[row]] for row in rows if self.nearest[row] >= 0}}
