"""Synthetic-set metrics: closed forms for FD, PRDC, fidelity and diversity; one set folder end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genaug.data.base import RealDataset
from genaug.manifest import SampleRecord, SetWriter
from genaug.metrics import (
    classifier_fidelity,
    frechet_distance,
    intra_class_diversity,
    per_class_frechet,
    prdc,
    set_metrics,
    zero_shot_fidelity,
)


def exact_gaussian_sample(mean: np.ndarray, cov: np.ndarray, n: int, seed: int) -> np.ndarray:
    """n points whose sample mean is ``mean`` and sample covariance exactly ``cov``."""
    z = np.random.default_rng(seed).normal(size=(n, len(mean)))
    z -= z.mean(axis=0)
    z = z @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False)).T)  # covariance I
    return mean + z @ np.linalg.cholesky(cov).T


def symmetric_root(a: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(a)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def test_frechet_distance_of_two_gaussians_is_the_analytic_value():
    # Non-commuting covariances: FD = |mu_a - mu_b|^2 + Tr(A + B - 2 (A^1/2 B A^1/2)^1/2).
    rng = np.random.default_rng(3)
    m = rng.normal(size=(5, 5))
    a = m @ m.T + 0.5 * np.eye(5)
    m = rng.normal(size=(5, 5))
    b = m @ m.T + 0.2 * np.eye(5)
    mu_a, mu_b = rng.normal(size=5), rng.normal(size=5)
    root_a = symmetric_root(a)
    expected = ((mu_a - mu_b) ** 2).sum() + np.trace(a + b - 2 * symmetric_root(root_a @ b @ root_a))
    real, synthetic = exact_gaussian_sample(mu_a, a, 400, 0), exact_gaussian_sample(mu_b, b, 300, 1)
    assert frechet_distance(real, synthetic) == pytest.approx(expected, rel=1e-7)


def test_prdc_of_identical_sets_is_one_and_of_far_sets_zero():
    x = np.random.default_rng(0).normal(size=(40, 6))
    assert prdc(x, x.copy(), k=5) == {"precision": 1.0, "recall": 1.0, "density": 1.0, "coverage": 1.0}
    assert prdc(x, x + 1000.0, k=3) == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def test_prdc_on_a_hand_made_line():
    # k = 1: every real ball has radius 1 (open). Fakes 0.5 and 0.6 sit in the balls of 0 and
    # 1; 5 and 20 in none. Fake radii: 0.1, 0.1, 4.4 (5 -> 0.6), 15 (20 -> 5); they hold the
    # real points 1 (5's ball), 10 and 11 (20's ball) but not 0.
    real = np.array([[0.0], [1.0], [10.0], [11.0]])
    fake = np.array([[0.5], [0.6], [5.0], [20.0]])
    assert prdc(real, fake, k=1) == pytest.approx({"precision": 0.5, "recall": 0.75, "density": 1.0, "coverage": 0.5})


def test_prdc_kth_neighbour_excludes_the_point_itself():
    # Real points 0, 1, 3 with k = 2: radii are 3, 2, 3. A fake at 5 is outside every ball
    # (distances 5, 4, 2: only 3's ball, radius 3, holds it) -> density 1 / (2 * 1).
    real, fake = np.array([[0.0], [1.0], [3.0]]), np.array([[5.0], [5.5], [6.0]])
    result = prdc(real, fake, k=2)
    # fakes 5 and 5.5 lie in 3's ball (2, 2.5 < 3); 6 does not (3 is not < 3).
    assert result["precision"] == pytest.approx(2 / 3)
    assert result["density"] == pytest.approx(2 / (2 * 3))
    assert result["coverage"] == pytest.approx(1 / 3)


@pytest.mark.parametrize(
    "real, fake, message",
    [
        (np.zeros((10, 3)), np.zeros((10, 4)), "feature widths differ: real 3 vs synthetic 4"),
        (np.full((10, 3), np.nan), np.zeros((10, 3)), "real features holds NaN or infinite values"),
        (np.zeros((10, 3)), np.r_[np.zeros((9, 3)), [[np.inf, 0, 0]]], "synthetic features holds NaN"),
        (np.zeros((5, 3)), np.zeros((10, 3)), r"real features need N >= 6 rows, got 5"),
        (np.zeros(10), np.zeros((10, 3)), r"must be an \(N, D\) array"),
    ],
)
def test_bad_features_are_one_line_errors(real, fake, message):
    with pytest.raises(ValueError, match=message) as error:
        prdc(real, fake, k=5)
    assert "\n" not in str(error.value)
    if real.ndim == 2 and real.shape[1] != fake.shape[1] or not np.isfinite(real).all():
        with pytest.raises(ValueError, match=message):
            frechet_distance(real, fake)


def test_diversity_fidelity_and_per_class_fd_on_hand_cases():
    eye = np.eye(4)
    assert intra_class_diversity(eye, np.zeros(4, dtype=int)) == pytest.approx(1.0)
    same = np.ones((3, 4))
    features = np.r_[same, eye]
    labels = np.array([0, 0, 0, 1, 1, 1, 1])
    assert intra_class_diversity(features, labels) == pytest.approx(0.5)  # (0 + 1) / 2
    assert np.isnan(intra_class_diversity(eye[:2], np.array([0, 1])))  # no class with two rows

    texts = np.array([[1.0, 0.0], [0.0, 1.0]])
    images = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 0.1]])
    assert zero_shot_fidelity(images, texts, np.array([0, 1, 1])) == pytest.approx(2 / 3)
    probabilities = np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4]])
    assert classifier_fidelity(probabilities, np.array([0, 1, 1])) == pytest.approx(
        {"accuracy": 2 / 3, "p_label": (0.9 + 0.7 + 0.4) / 3}
    )
    with pytest.raises(ValueError, match="labels must lie in"):
        zero_shot_fidelity(images, texts, np.array([0, 1, 2]))

    x = np.random.default_rng(1).normal(size=(20, 3))
    per_class = per_class_frechet(x, np.repeat([0, 1], 10), np.r_[x[:10], x[10:] + 1.0], np.repeat([0, 1], 10))
    assert per_class[0] == pytest.approx(0.0, abs=1e-8) and per_class[1] == pytest.approx(3.0)


class PixelClip:
    """A stand-in CLIP: an image's features are its pixels; a class text is a fixed vector."""

    def __init__(self, texts: dict[str, np.ndarray]):
        self.texts = texts

    def image_embeds(self, images, normalize=True, batch_size=256):
        x = torch.tensor(np.stack([np.asarray(im, dtype=np.float32).ravel() for im in images]))
        return torch.nn.functional.normalize(x, dim=-1) if normalize else x

    def text_embeds(self, texts, normalize=True, batch_size=256):
        return torch.tensor(np.stack([self.texts[text] for text in texts]), dtype=torch.float32)


def test_set_metrics_of_copies_of_the_real_images(tmp_path):
    """A set of exact copies of the real training images: FD 0, PRDC 1, fidelity as the real's."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(24, 2, 2, 3), dtype=np.uint8)
    labels = np.repeat([0, 1], 12)
    real = RealDataset("toy", "train", ["001.red_thing", "002.blue_thing"], labels, [f"r{i}" for i in range(24)], images=images)
    with SetWriter(tmp_path / "set") as writer:
        for i in range(24):
            name = real.class_names[labels[i]]
            record = SampleRecord(id=f"s{i:02d}", path=writer.image_path(f"s{i:02d}", name), label=int(labels[i]),
                                  class_name=name, method="copy", source_ids=[f"r{i}"])
            writer.add(record, images[i])
    red = np.zeros(12, dtype=np.float32)
    red[0::3] = 1.0  # the red channels
    clip = PixelClip({"a photo of a red thing": red, "a photo of a blue thing": np.roll(red, 2)})
    metrics = set_metrics(tmp_path / "set", real, clip, k=3)
    assert metrics["images"] == 24 and metrics["real_images"] == 24 and metrics["classes"] == 2
    assert metrics["fd"] == pytest.approx(0.0, abs=1e-6)
    assert set(metrics["fd_per_class"]) == {"001.red_thing", "002.blue_thing"}
    assert all(value == pytest.approx(0.0, abs=1e-6) for value in metrics["fd_per_class"].values())
    assert [metrics[key] for key in ("precision", "recall", "density", "coverage")] == [1.0, 1.0, 1.0, 1.0]
    assert metrics["fidelity_clip"] == metrics["fidelity_clip_real"]
    assert metrics["diversity"] == pytest.approx(metrics["diversity_real"])
    assert metrics["fidelity_classifier"] is None and metrics["notes"] == []
    import json

    json.dumps(metrics)  # JSON-able


def test_soft_labelled_images_are_measured_as_their_dominant_class(tmp_path):
    """Diff-Mix's records keep the source class as ``label`` and weigh the prompted class most:
    copies of the real images recorded under the other class, with a soft label weighing
    their own class 0.7, measure as the real images do; without it they would not."""
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(24, 2, 2, 3), dtype=np.uint8)
    labels = np.repeat([0, 1], 12)
    names = ["red", "blue"]
    real = RealDataset("toy", "train", names, labels, [f"r{i}" for i in range(24)], images=images)
    red = np.zeros(12, dtype=np.float32)
    red[0::3] = 1.0
    clip = PixelClip({"a photo of a red": red, "a photo of a blue": np.roll(red, 2)})

    def write(folder, soft: bool):
        with SetWriter(folder) as writer:
            for i in range(24):
                other = 1 - int(labels[i])
                params = {"soft_label": {"classes": [names[other], names[labels[i]]], "weights": [0.3, 0.7]}} if soft else {}
                record = SampleRecord(id=f"s{i:02d}", path=writer.image_path(f"s{i:02d}", names[other]), label=other,
                                      class_name=names[other], method="diffmix", source_ids=[f"r{i}"], params=params)
                writer.add(record, images[i])
        return set_metrics(folder, real, clip, k=3)

    soft = write(tmp_path / "soft", soft=True)
    hard = write(tmp_path / "hard", soft=False)
    assert soft["fidelity_clip"] == soft["fidelity_clip_real"]
    assert soft["fidelity_clip"] + hard["fidelity_clip"] == pytest.approx(1.0)  # every verdict flips
    assert soft["fidelity_clip"] > 0.5
    assert all(value == pytest.approx(0.0, abs=1e-6) for value in soft["fd_per_class"].values())
    assert all(value > 0.01 for value in hard["fd_per_class"].values())
    assert soft["notes"] == ["24 image(s) with a soft label measured as their dominant class (24 of them not their record's label)"]
    assert hard["notes"] == []


def test_zero_shot_prompts_use_the_cleaned_class_names():
    from genaug.metrics import class_texts

    assert class_texts(["001.Black_footed_Albatross", "aquarium fish"]) == [
        "a photo of a Black footed Albatross", "a photo of a aquarium fish"]
