"""The math of the filters: pure functions over arrays, each linear in the number of records.

Scores are computed per record; verdicts are boolean masks (True = keep). Nothing here
reads files or loads models.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image


def normalize_rows(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """``x_i / max(||x_i||, eps)``."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), eps)


# ---------------------------------------------------------------------------- per-class ranking


def top_fraction_per_class(scores: np.ndarray, labels: np.ndarray, keep_ratio: float, candidates: np.ndarray | None = None) -> np.ndarray:
    """Per class, keep the ``floor(n_c * keep_ratio)`` highest-scoring candidates.

    ``n_c`` counts the candidates of class ``c`` (all records when ``candidates`` is None);
    non-candidates are never kept. Ties keep the earlier record (a stable sort), so the
    verdict is a deterministic function of the inputs. O(n log n) through one sort.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    if not 0.0 <= keep_ratio <= 1.0:
        raise ValueError(f"keep_ratio must be in [0, 1], got {keep_ratio}")
    if scores.shape != labels.shape:
        raise ValueError(f"one score per record: {scores.shape} scores, {labels.shape} labels")
    candidates = np.ones(len(scores), dtype=bool) if candidates is None else np.asarray(candidates, dtype=bool)
    rows = np.flatnonzero(candidates)
    keep = np.zeros(len(scores), dtype=bool)
    if rows.size == 0:
        return keep
    cand_labels, cand_scores = labels[rows], scores[rows]
    # NaN scores (unscorable images) rank last.
    order = np.lexsort((np.where(np.isnan(cand_scores), np.inf, -cand_scores), cand_labels))
    sorted_labels = cand_labels[order]
    starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])
    sizes = np.diff(np.r_[starts, len(order)])
    rank = np.arange(len(order)) - np.repeat(starts, sizes)
    quota = np.repeat(np.floor(sizes * keep_ratio + 1e-9).astype(np.int64), sizes)
    keep[rows[order[rank < quota]]] = True
    return keep


# ---------------------------------------------------------------------------- CLIP scores


def clip_class_scores(image_embeds: np.ndarray, text_embeds: np.ndarray, labels: np.ndarray, mode: str = "cosine") -> np.ndarray:
    """Score of image i against its class prompt ``text_embeds[labels[i]]``.

    ``cosine``: ``<e_i / |e_i|, t / |t|>``. ``reference``: ``<e_i, t / |t|>``, the
    reference's product of the unnormalised image feature with the normalised text feature
    (it also grows with the image feature's norm).
    """
    text = normalize_rows(text_embeds)[np.asarray(labels)]
    if mode == "cosine":
        image = normalize_rows(image_embeds)
    elif mode == "reference":
        image = np.asarray(image_embeds, dtype=np.float32)
    else:
        raise ValueError(f"score mode must be 'cosine' or 'reference', got {mode!r}")
    return np.einsum("nd,nd->n", image, text)


def positive_probability(image_embeds: np.ndarray, prompt_embeds: np.ndarray, positive: np.ndarray, logit_scale: float) -> np.ndarray:
    """``sum_{j positive} softmax_j(logit_scale * cos(e_i, t_j))`` for each image.

    ``prompt_embeds`` (N, P, D): each image's own prompts (positives and negatives);
    ``positive`` (P,) bool marks the positive ones. CLIP's zero-shot probability that the
    image shows what the positive prompts say rather than the negative ones.
    """
    image = normalize_rows(image_embeds)
    prompts = np.asarray(prompt_embeds, dtype=np.float32)
    prompts = prompts / np.maximum(np.linalg.norm(prompts, axis=-1, keepdims=True), 1e-12)
    logits = logit_scale * np.einsum("nd,npd->np", image, prompts)
    logits -= logits.max(axis=1, keepdims=True)
    probabilities = np.exp(logits)
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    return probabilities[:, np.asarray(positive, dtype=bool)].sum(axis=1)


# ---------------------------------------------------------------------------- classifier


def confidence_verdict(
    p_label: np.ndarray,
    p_predicted: np.ndarray,
    correct: np.ndarray,
    wrong_confidence: float | None = 0.9,
    easy_confidence: float | None = None,
) -> np.ndarray:
    """Keep unless confidently wrong (the prediction is not the label and its probability
    ``p_predicted >= wrong_confidence``) or, when ``easy_confidence`` is set, too easy
    (the label's probability ``p_label >= easy_confidence``)."""
    keep = np.ones(len(p_label), dtype=bool)
    if wrong_confidence is not None:
        keep &= ~(~np.asarray(correct, dtype=bool) & (np.asarray(p_predicted) >= wrong_confidence))
    if easy_confidence is not None:
        keep &= np.asarray(p_label) < easy_confidence
    return keep


def classifier_scores(probabilities: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
    """``p_label`` (probability of the record's class), ``p_max`` (of the predicted class) and
    ``correct`` (1.0 when the prediction is the record's class) from (N, K) probabilities."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    targets = np.asarray(targets)
    predicted = probabilities.argmax(axis=1)
    return {
        "p_label": probabilities[np.arange(len(targets)), targets],
        "p_max": probabilities.max(axis=1),
        "correct": (predicted == targets).astype(np.float64),
    }


# ---------------------------------------------------------------------------- near duplicates


def max_cosine(queries: np.ndarray, bank: np.ndarray, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """For each query row, the highest cosine similarity to any bank row and that row's index.

    Rows are L2-normalised, then ``Q B^T`` is taken in bank chunks of ``chunk`` rows with a
    running maximum, so memory stays ``O(len(queries) * chunk)`` and time is linear in
    the number of queries for a fixed bank.
    """
    q = normalize_rows(queries)
    best = np.full(len(q), -np.inf, dtype=np.float32)
    where = np.zeros(len(q), dtype=np.int64)
    if len(bank) == 0:
        return best, where
    for start in range(0, len(bank), chunk):
        block = normalize_rows(bank[start : start + chunk])
        sims = q @ block.T
        arg = sims.argmax(axis=1)
        value = sims[np.arange(len(q)), arg]
        better = value > best
        best[better] = value[better]
        where[better] = arg[better] + start
    return best, where


def pixel_features(images: Sequence[np.ndarray], size: int = 16) -> np.ndarray:
    """Downsampled pixels as near-duplicate features: each image resized to ``size x size``
    (bilinear), each colour channel's mean subtracted, flattened. The cosine of two such
    vectors is the correlation of the two thumbnails' channel patterns: blind to brightness
    offsets and contrast scaling, and driven by the layout rather than the overall colour."""
    rows = []
    for image in images:
        array = np.asarray(image)
        if array.shape[:2] != (size, size) or array.ndim != 3:
            array = np.asarray(Image.fromarray(array).convert("RGB").resize((size, size), Image.Resampling.BILINEAR))
        rows.append(array.astype(np.float32))
    if not rows:
        return np.zeros((0, size * size * 3), dtype=np.float32)
    thumbnails = np.stack(rows)
    thumbnails -= thumbnails.mean(axis=(1, 2), keepdims=True)
    return thumbnails.reshape(len(thumbnails), -1)
