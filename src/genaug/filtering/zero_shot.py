"""``clip_zero_shot``: Real-Guidance's CLIP selection (He et al., ICLR 2023; CVMI-Lab/SyntheticData,
``src/classifier-tuning/src/select_glide_ims_by_clip.py``).

CLIP classifies every synthetic image zero-shot over the set's K classes: the probability
of its own class is ``p_i = softmax_k(logit_scale * cos(e_i, t_k))[y_i]`` with ``t_k`` the
embedding of ``template`` filled with class k. An image is kept when ``p_i > 1/K`` (better
than chance). With ``per_class: n``, as the official script, each class then keeps exactly
n images when it has them: when fewer than n pass, its n most confident images (passing or
not); else n drawn at random (``seed``) among those that pass.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from pydantic import Field

from genaug.data.names import class_prompt
from genaug.filtering.filters import _Params
from genaug.filtering.registry import FILTERS, Filter
from genaug.filtering.scores import normalize_rows

if TYPE_CHECKING:
    from genaug.filtering.stage import FilterContext


def class_probability(image_embeds, text_embeds, labels, logit_scale: float) -> np.ndarray:
    """``softmax_k(logit_scale * cos(e_i, t_k))[labels[i]]`` for each image i (K = len(text_embeds))."""
    image = normalize_rows(image_embeds)
    text = normalize_rows(text_embeds)
    logits = logit_scale * image @ text.T
    logits -= logits.max(axis=1, keepdims=True)
    probabilities = np.exp(logits)
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    return probabilities[np.arange(len(image)), np.asarray(labels)]


def zero_shot_keep(probabilities, labels, num_classes: int, per_class: int | None = None, seed: int = 0,
                   candidates=None) -> np.ndarray:
    """The keep mask: ``p_i > 1 / num_classes`` among ``candidates``; with ``per_class`` the
    official per-class count (module doc). Draws use ``default_rng((seed, class))``."""
    p = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels)
    candidates = np.ones(len(p), dtype=bool) if candidates is None else np.asarray(candidates, dtype=bool)
    above = candidates & (p > 1.0 / num_classes)
    if per_class is None:
        return above
    keep = np.zeros(len(p), dtype=bool)
    for label in np.unique(labels[candidates]):
        members = np.flatnonzero(candidates & (labels == label))
        passing = np.flatnonzero(above & (labels == label))
        if len(passing) < per_class:
            order = members[np.argsort(-p[members], kind="stable")]
            keep[order[:per_class]] = True
        else:
            rng = np.random.default_rng((int(seed), int(label)))
            keep[rng.choice(passing, size=per_class, replace=False)] = True
    return keep


class ClipZeroShotParams(_Params):
    template: str = "a photo of a {class}."
    per_class: int | None = Field(None, ge=1)
    seed: int = 0


@FILTERS.register("clip_zero_shot", params=ClipZeroShotParams)
class ClipZeroShotFilter(Filter):
    """CLIP's zero-shot probability of the record's class over all the set's classes; keep
    p > 1/K (optionally exactly ``per_class`` per class, as the official script)."""

    uses_clip = True

    def prepare(self, context: "FilterContext") -> None:
        self.text = context.text_embeds([class_prompt(self.params.template, name) for name in context.class_names])
        self.logit_scale = context.logit_scale
        self.num_classes = len(context.class_names)

    def score_inputs(self, context):
        """Also every class of the set (the softmax runs over all of them)."""
        return {**super().score_inputs(context), "classes": context.class_names}

    def score(self, chunk, context):
        embeds = context.image_embeds(chunk)
        return {"clip_zero_shot": class_probability(embeds, self.text, context.class_ids[chunk.rows], self.logit_scale)}

    def decide(self, scores, labels, candidates):
        return zero_shot_keep(scores["clip_zero_shot"], labels, self.num_classes, self.params.per_class,
                              self.params.seed, candidates)
