"""The filters' math (docs/methods/filters.md, 2.1): exact verdicts on small inputs."""

from __future__ import annotations

import numpy as np
import pytest

from genaug.filtering import (
    classifier_scores,
    clip_class_scores,
    clip_rank_filter,
    confidence_verdict,
    max_cosine,
    pixel_features,
    positive_probability,
    top_fraction_per_class,
)
from genaug.data.names import class_prompt
from genaug.filtering.filters import FramesFilter, FramesParams
from genaug.filtering.stage import ImageChunk
from genaug.manifest import SampleRecord


def records_of(labels):
    return [SampleRecord(id=f"r{i}", path=f"images/x/r{i}.png", label=label, class_name=str(label), method="sdi")
            for i, label in enumerate(labels)]


def test_clip_rank_filter_keeps_the_top_half_of_every_class():
    records = records_of([0, 0, 0, 0, 0, 1, 1, 1])
    scores = [0.1, 0.5, 0.3, 0.9, 0.2, 0.7, 0.1, 0.4]
    keep = clip_rank_filter(records, scores)  # floor(5/2) = 2 of class 0, floor(3/2) = 1 of class 1
    assert keep.tolist() == [False, True, False, True, False, True, False, False]


@pytest.mark.parametrize("ratio, kept", [(1.0, 6), (0.667, 4), (0.5, 3), (0.333, 1), (0.25, 1), (0.0, 0)])
def test_clip_rank_filter_keeps_floor_n_times_ratio(ratio, kept):
    records = records_of([3] * 6)
    scores = np.arange(6.0)
    keep = clip_rank_filter(records, scores, keep_ratio=ratio)
    assert keep.sum() == kept
    assert keep.tolist() == [i >= 6 - kept for i in range(6)]  # the highest scores


def test_ties_keep_the_earlier_record_and_nan_ranks_last():
    keep = top_fraction_per_class(np.array([1.0, 1.0, 1.0, np.nan]), np.zeros(4, dtype=int), 0.5)
    assert keep.tolist() == [True, True, False, False]
    keep = top_fraction_per_class(np.array([np.nan, 0.0]), np.zeros(2, dtype=int), 0.5)
    assert keep.tolist() == [False, True]


def test_rank_counts_only_the_candidates():
    scores = np.array([5.0, 4.0, 3.0, 2.0, 1.0, 0.0])
    candidates = np.array([False, True, True, True, True, False])
    keep = top_fraction_per_class(scores, np.zeros(6, dtype=int), 0.5, candidates)
    assert keep.tolist() == [False, True, True, False, False, False]


def test_clip_scores_cosine_and_the_reference_product():
    image = np.array([[3.0, 4.0], [0.0, 2.0]])
    text = np.array([[1.0, 0.0], [0.0, 10.0]])
    labels = np.array([0, 1])
    np.testing.assert_allclose(clip_class_scores(image, text, labels, "cosine"), [0.6, 1.0], rtol=1e-6)
    np.testing.assert_allclose(clip_class_scores(image, text, labels, "reference"), [3.0, 2.0], rtol=1e-6)
    with pytest.raises(ValueError):
        clip_class_scores(image, text, labels, "dot")


def test_positive_probability_is_a_scaled_softmax():
    image = np.array([[1.0, 0.0]])
    prompts = np.array([[[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]])
    p = positive_probability(image, prompts, np.array([True, False, False]), logit_scale=2.0)
    expected = np.exp(2.0) / (np.exp(2.0) + np.exp(0.0) + np.exp(-2.0))
    np.testing.assert_allclose(p, [expected], rtol=1e-6)
    both = positive_probability(image, prompts, np.array([True, True, False]), logit_scale=2.0)
    np.testing.assert_allclose(both, [(np.exp(2.0) + 1) / (np.exp(2.0) + 1 + np.exp(-2.0))], rtol=1e-6)


def test_classifier_confidence_verdicts():
    probabilities = np.array([
        [0.95, 0.05],  # label 1: confidently wrong -> dropped
        [0.60, 0.40],  # label 1: wrong but unsure -> kept
        [0.02, 0.98],  # label 1: right and very easy -> dropped only with easy_confidence
        [0.30, 0.70],  # label 1: right -> kept
    ])
    found = classifier_scores(probabilities, np.array([1, 1, 1, 1]))
    np.testing.assert_allclose(found["p_label"], [0.05, 0.40, 0.98, 0.70])
    np.testing.assert_allclose(found["correct"], [0, 0, 1, 1])
    keep = confidence_verdict(found["p_label"], found["p_max"], found["correct"], 0.9, None)
    assert keep.tolist() == [False, True, True, True]
    keep = confidence_verdict(found["p_label"], found["p_max"], found["correct"], 0.9, 0.95)
    assert keep.tolist() == [False, True, False, True]


def test_frames_check_flags_both_black_and_white():
    images = np.full((4, 10, 10, 3), 128, dtype=np.uint8)
    images[0, :, :] = 0  # all black
    images[1, :, :] = 255  # all white
    images[1, :1, :] = 128  # 90 % white: exactly the limit, kept
    images[2, :] = 255
    images[2, 0, 0] = 128  # 99 % white: dropped
    images[3, :8] = 0  # 80 % black: kept
    f = FramesFilter(FramesParams())
    chunk = ImageChunk(0, np.arange(4), list(images), np.ones(4, dtype=bool))
    scores = f.score(chunk, None)
    np.testing.assert_allclose(scores["black_fraction"], [1.0, 0.0, 0.0, 0.8])
    np.testing.assert_allclose(scores["white_fraction"], [0.0, 0.9, 0.99, 0.0])
    assert f.decide(scores, np.zeros(4), np.ones(4, dtype=bool)).tolist() == [False, True, False, True]


def test_frames_check_handles_mixed_sizes():
    images = [np.zeros((4, 4, 3), np.uint8), np.full((6, 8, 3), 128, np.uint8), np.full((4, 4, 3), 250, np.uint8)]
    scores = FramesFilter(FramesParams()).score(ImageChunk(0, np.arange(3), images, np.ones(3, bool)), None)
    assert scores["black_fraction"].tolist() == [1.0, 0.0, 0.0] and scores["white_fraction"].tolist() == [0.0, 0.0, 1.0]


def test_max_cosine_equals_brute_force_in_any_chunking():
    rng = np.random.default_rng(0)
    queries, bank = rng.normal(size=(50, 7)), rng.normal(size=(33, 7))
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    b = bank / np.linalg.norm(bank, axis=1, keepdims=True)
    sims = q @ b.T
    for chunk in (1, 5, 33, 1000):
        value, index = max_cosine(queries, bank, chunk=chunk)
        np.testing.assert_allclose(value, sims.max(axis=1), rtol=1e-5)
        np.testing.assert_array_equal(index, sims.argmax(axis=1))


def test_pixel_features_see_a_copy_through_brightness_and_contrast_changes():
    rng = np.random.default_rng(1)
    real = rng.integers(30, 200, size=(16, 16, 3), dtype=np.uint8)
    copy = np.clip(real.astype(int) // 2 + 40, 0, 255).astype(np.uint8)
    other = rng.integers(30, 200, size=(16, 16, 3), dtype=np.uint8)
    big = np.asarray(__import__("PIL.Image").Image.fromarray(real).resize((32, 32)))
    value, index = max_cosine(pixel_features([copy, other, big]), pixel_features([real]))
    assert value[0] > 0.99 and value[1] < 0.3 and value[2] > 0.9


def test_class_prompt_uses_clean_class_names():
    assert class_prompt("a photo of a {class}", "001.Black_footed_Albatross") == "a photo of a Black footed Albatross"
    assert class_prompt("a photo of a {class}", "aquarium fish") == "a photo of a aquarium fish"
