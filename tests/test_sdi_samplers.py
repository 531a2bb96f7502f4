"""Per-class samplers (docs/methods/sdi.md): statistics, rank deficiency, seeds, the sampling stage."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.covariance import LedoitWolf

from genaug.config import ConfigError, SdiSampleConfig
from genaug.sdi import SAMPLERS, fit_sampler
from genaug.sdi.presets import REFERENCE_MULTIPLIERS, reference_multiplier
from genaug.sdi.sample import class_seed, sample_bank, sample_id
from genaug.sdi.samplers import JITTER
from genaug.sdi.tables import FeatureTable, load_table, save_table


def known_gaussian(d: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    mean = rng.normal(size=d)
    a = rng.normal(size=(d, d))
    return mean, a @ a.T / d + 0.1 * np.eye(d)


def test_registry_names_and_unknown_kind():
    assert {"gaussian", "gmm-2", "gmm-3", "gmm-5", "shrinkage"} <= set(SAMPLERS.names())
    assert SAMPLERS.names("gmm-*") == [name for name in SAMPLERS.names() if name.startswith("gmm-")]
    with pytest.raises(ValueError, match="unknown sampler 'gmm-4'"):
        fit_sampler(np.zeros((3, 2)), "gmm-4")


def test_gaussian_fit_is_mean_and_unbiased_covariance_plus_jitter():
    features = np.random.default_rng(1).normal(size=(50, 6))
    sampler = fit_sampler(features, "gaussian")
    np.testing.assert_allclose(sampler.mean, features.mean(axis=0))
    np.testing.assert_allclose(sampler.covariance, np.cov(features, rowvar=False) + JITTER * np.eye(6), atol=1e-12)
    # N_c <= D: the low-rank form has the same covariance
    few = features[:4]
    low = fit_sampler(few, "gaussian", jitter=1e-6)
    assert low.low_rank
    np.testing.assert_allclose(low.covariance, np.cov(few, rowvar=False) + 1e-6 * np.eye(6), atol=1e-12)


def test_gaussian_samples_converge_to_a_known_gaussian():
    mean, cov = known_gaussian()
    features = np.random.default_rng(2).multivariate_normal(mean, cov, size=20000)
    samples = fit_sampler(features, "gaussian").sample(100000, seed=3)
    assert samples.shape == (100000, 4)
    np.testing.assert_allclose(samples.mean(axis=0), mean, atol=0.03)
    np.testing.assert_allclose(np.cov(samples, rowvar=False), cov, atol=0.04)


def test_low_rank_gaussian_samples_converge_to_the_fitted_moments():
    features = np.random.default_rng(4).normal(size=(5, 8))  # N_c < D
    sampler = fit_sampler(features, "gaussian")
    samples = sampler.sample(200000, seed=5)
    np.testing.assert_allclose(samples.mean(axis=0), features.mean(axis=0), atol=0.02)
    np.testing.assert_allclose(np.cov(samples, rowvar=False), np.cov(features, rowvar=False), atol=0.03)


def test_samples_of_a_small_class_lie_in_the_affine_span_of_its_features():
    """N_c < D: samples are mean + combinations of the centred features + ~1e-3 jitter."""
    rng = np.random.default_rng(6)
    features = rng.normal(size=(10, 64))
    samples = fit_sampler(features, "gaussian").sample(2000, seed=7)
    mean = features.mean(axis=0)
    basis, _ = np.linalg.qr((features - mean).T)  # orthonormal basis of the span (64 x 10)
    offsets = samples - mean
    residual = offsets - (offsets @ basis) @ basis.T
    rms = np.sqrt((residual**2).mean())
    assert 0.5e-3 < rms < 2e-3  # sqrt(1e-6) per coordinate
    assert np.sqrt(((offsets @ basis) ** 2).mean()) > 0.1  # the in-span part is O(1)


def test_same_seed_same_draws_other_seed_other_draws():
    features = np.random.default_rng(8).normal(size=(12, 5))
    for kind in SAMPLERS.names():
        sampler = fit_sampler(features, kind)
        np.testing.assert_array_equal(sampler.sample(9, seed=1), sampler.sample(9, seed=1))
        assert not np.allclose(sampler.sample(9, seed=1), sampler.sample(9, seed=2))
        assert sampler.sample(0, seed=1).shape == (0, 5)


def test_single_feature_class_samples_the_feature_plus_jitter():
    feature = np.arange(4.0)[None]
    samples = fit_sampler(feature, "gaussian").sample(1000, seed=0)
    np.testing.assert_allclose(samples.mean(axis=0), feature[0], atol=2e-4)
    np.testing.assert_allclose(samples.std(axis=0), 1e-3, rtol=0.1)


def test_gmm_recovers_separated_clusters():
    rng = np.random.default_rng(9)
    centres = np.array([[-10.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    features = np.concatenate([c + rng.normal(scale=0.5, size=(300, 2)) for c in centres])
    sampler = fit_sampler(features, "gmm-3", random_state=0)
    np.testing.assert_allclose(np.sort(sampler.weights), [1 / 3] * 3, atol=1e-3)
    samples = sampler.sample(30000, seed=1)
    nearest = np.argmin(((samples[:, None] - centres[None]) ** 2).sum(-1), axis=1)
    np.testing.assert_allclose(np.bincount(nearest) / len(samples), [1 / 3] * 3, atol=0.02)
    for k, centre in enumerate(centres):
        fitted = sampler.means[np.argmin(((sampler.means - centre) ** 2).sum(-1))]
        np.testing.assert_allclose(fitted, centre, atol=0.1)  # the fit finds the cluster
        np.testing.assert_allclose(samples[nearest == k].mean(axis=0), fitted, atol=0.02)  # samples follow the fit
        np.testing.assert_allclose(samples[nearest == k].std(axis=0), [0.5, 0.5], atol=0.05)


def test_gmm_needs_as_many_features_as_components():
    with pytest.raises(ValueError, match="at least 5 features"):
        fit_sampler(np.zeros((4, 3)), "gmm-5")
    fit_sampler(np.random.default_rng(0).normal(size=(5, 3)), "gmm-5").sample(4, seed=0)


def test_shrinkage_uses_ledoit_wolf_and_converges():
    rng = np.random.default_rng(10)
    features = rng.normal(size=(15, 30))
    sampler = fit_sampler(features, "shrinkage")
    expected = LedoitWolf().fit(features).covariance_ + JITTER * np.eye(30)
    np.testing.assert_allclose(sampler.covariance, expected, atol=1e-10)
    samples = sampler.sample(100000, seed=0)
    np.testing.assert_allclose(np.cov(samples, rowvar=False), expected, atol=0.03)


def test_invalid_features_are_refused():
    with pytest.raises(ValueError, match="non-empty"):
        fit_sampler(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="NaN"):
        fit_sampler(np.array([[0.0, np.nan]]))


# ---------------------------------------------------------------------------- the stage


def small_bank() -> FeatureTable:
    rng = np.random.default_rng(11)
    labels = np.array([0] * 4 + [1] * 4 + [2] * 3)
    return FeatureTable(rng.normal(size=(11, 6)), labels, [f"img{i}" for i in range(11)], ["001.Cat", "dog", "bird"])


def test_sample_bank_draws_multiplier_times_class_size_with_a_seed_per_class(tmp_path):
    bank = small_bank()
    table = sample_bank(bank, "gaussian", multiplier=5, seed=3)
    assert np.bincount(table.labels.numpy()).tolist() == [20, 20, 15]
    assert table.ids[0] == sample_id("gaussian", 0, 0) == "sdi-gaussian-0000-000000"
    assert len(set(table.ids)) == len(table.ids)
    assert table.info["sampler"] == "gaussian" and table.info["multiplier"] == 5
    assert table.info["class_seeds"]["dog"] == class_seed(3, "gaussian", 1)
    # classes of equal size do not share their standard-normal draws (unlike the reference)
    a = fit_sampler(bank.features[:4].numpy()).sample(20, class_seed(3, "gaussian", 0))[:3]
    np.testing.assert_allclose(table.features[:3].numpy(), a.astype(np.float32))
    assert class_seed(3, "gaussian", 0) != class_seed(3, "gaussian", 1)
    # reproducible and saved with class and sampler
    path = save_table(tmp_path / "s.safetensors", table)
    again = load_table(path)
    torch.testing.assert_close(again.features, sample_bank(bank, "gaussian", 5, 3).features)
    assert again.class_names == bank.class_names and again.info["sampler"] == "gaussian"


def test_sample_bank_gmm_and_shrinkage_record_their_names():
    bank = small_bank()
    for kind in ("gmm-2", "shrinkage"):
        table = sample_bank(bank, kind, multiplier=2, seed=0)
        assert table.info["sampler"] == kind and table.ids[0].startswith(f"sdi-{kind}-")


def test_reference_multipliers():
    assert {name: REFERENCE_MULTIPLIERS[name] for name in ("cub200", "cars", "dtd", "flowers102", "pets", "pathmnist")} == {
        "cub200": 40, "cars": 40, "dtd": 40, "flowers102": 40, "pets": 60, "pathmnist": 5,
    }
    assert reference_multiplier("imagenet100") == reference_multiplier("imagenet200") == 10
    assert reference_multiplier("folder", 7) == 7
    with pytest.raises(ConfigError, match="sample.multiplier"):
        reference_multiplier("folder")


def test_sample_config_validates_the_sampler_name():
    with pytest.raises(ValueError, match=r"sampler: unknown sampler 'gmm-7'; did you mean 'gmm-5'\? \(allowed: .*gaussian"):
        SdiSampleConfig(sampler="gmm-7")
    with pytest.raises(ValueError, match=r"sampler_kwargs.jiter: unknown key 'jiter'; did you mean 'jitter'"):
        SdiSampleConfig(sampler="gaussian", sampler_kwargs={"jiter": 1e-3})
    assert SdiSampleConfig(sampler="gmm-3").sampler == "gmm-3"
