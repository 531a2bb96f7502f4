"""Per-class distributions over projected features, and sampling from them (docs/methods/sdi.md).

``fit_sampler(features, kind)`` fits one class's features (N_c, D) and returns an object
whose ``sample(n, seed)`` draws ``n`` new vectors (float64, (n, D)); the same ``seed``
gives the same draws. Kinds (a small registry, :data:`SAMPLERS`):

- ``gaussian`` (the reference default): mean ``mu = mean(X)`` and unbiased covariance
  ``S = (X - mu)^T (X - mu) / (N_c - 1)`` plus ``1e-6 I``; samples ``x ~ N(mu, S + 1e-6 I)``.
- ``gmm-2``, ``gmm-3``, ``gmm-5``: scikit-learn ``GaussianMixture`` with full covariances
  and ``reg_covar = 1e-6``; a sample picks a component by its weight, then draws from it.
- ``shrinkage``: Ledoit-Wolf covariance (scikit-learn), a better-conditioned estimate when
  N_c is small against D, plus the same ``1e-6 I``.

With N_c <= D the Gaussian's S has rank N_c - 1 at most, so it is sampled in its exact
low-rank form ``x = mu + A z + sqrt(eps) w`` with ``A = (X - mu)^T / sqrt(N_c - 1)``
(``A A^T = S``), ``z ~ N(0, I_{N_c})``, ``w ~ N(0, I_D)``: the same distribution
``N(mu, S + eps I)`` the reference draws from, costing O(N_c D) per sample instead of a
D x D factorisation. It makes plain what the method does: samples are random Gaussian
combinations of the centred class features plus a tiny isotropic jitter.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from genaug.config import StrictModel
from genaug.registry import Registry

#: The reference's covariance regulariser (added to every covariance).
JITTER = 1e-6

#: Sampler name -> its fitting function ``fit(features, **kw) -> Sampler``; ``params``: the ``kw``.
SAMPLERS = Registry("sampler", key="sampler")


class GaussianParams(StrictModel):
    jitter: float = Field(default=JITTER, ge=0.0)


class MixtureParams(StrictModel):
    reg_covar: float = Field(default=JITTER, ge=0.0)
    random_state: int = 0


def fit_sampler(features, kind: str = "gaussian", **kw: Any) -> "Sampler":
    """Fit the distribution ``kind`` to one class's features ``(N_c, D)``; see the module doc."""
    fit = SAMPLERS.get(kind)
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) == 0:
        raise ValueError(f"features must be a non-empty (N, D) array, got shape {features.shape}")
    if not np.isfinite(features).all():
        raise ValueError("features contain NaN or infinite values")
    return fit(features, **kw)


class Sampler(ABC):
    """A fitted distribution over D-dimensional vectors."""

    kind: ClassVar[str]

    @property
    @abstractmethod
    def dim(self) -> int: ...

    @abstractmethod
    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray: ...

    def sample(self, n: int, seed: int) -> np.ndarray:
        """``n`` vectors ``(n, D)`` float64, a deterministic function of ``seed``."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        return self.draw(n, np.random.default_rng(seed))


# ---------------------------------------------------------------------------- math


def class_mean_and_factor(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(mu, A)`` with ``mu = mean(X)`` and ``A = (X - mu)^T / sqrt(N - 1)``, so ``A A^T`` is the
    unbiased covariance (``np.cov(X, rowvar=False)``). With one feature ``A`` is zero (the
    covariance of a single point is undefined; it is taken as 0, leaving only the jitter)."""
    mean = features.mean(axis=0)
    centred = features - mean
    scale = np.sqrt(max(len(features) - 1, 1))
    return mean, centred.T / scale


def gaussian_draws(mean: np.ndarray, chol: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``mu + L z`` with ``z ~ N(0, I)``: samples of ``N(mu, L L^T)``."""
    z = rng.standard_normal((n, chol.shape[1]))
    return mean + z @ chol.T


def regularised_cholesky(covariance: np.ndarray, jitter: float) -> np.ndarray:
    """Lower Cholesky factor of ``covariance + jitter I`` (symmetrised first against rounding)."""
    symmetric = (covariance + covariance.T) / 2.0
    return np.linalg.cholesky(symmetric + jitter * np.eye(len(symmetric)))


# ---------------------------------------------------------------------------- gaussian


class GaussianSampler(Sampler):
    """``N(mu, S + eps I)`` with the unbiased class covariance ``S`` (module doc)."""

    kind = "gaussian"

    def __init__(self, mean: np.ndarray, factor: np.ndarray, jitter: float, low_rank: bool) -> None:
        self.mean = mean
        self.factor = factor  # A with A A^T = S (low rank) or the Cholesky factor of S + eps I
        self.jitter = jitter
        self.low_rank = low_rank

    @property
    def dim(self) -> int:
        return len(self.mean)

    @property
    def covariance(self) -> np.ndarray:
        """``S + eps I``, the covariance samples are drawn with."""
        if self.low_rank:
            return self.factor @ self.factor.T + self.jitter * np.eye(self.dim)
        return self.factor @ self.factor.T

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        if not self.low_rank:
            return gaussian_draws(self.mean, self.factor, n, rng)
        z = rng.standard_normal((n, self.factor.shape[1]))
        w = rng.standard_normal((n, self.dim))
        return self.mean + z @ self.factor.T + np.sqrt(self.jitter) * w


@SAMPLERS.register("gaussian", params=GaussianParams)
def fit_gaussian(features: np.ndarray, jitter: float = JITTER) -> GaussianSampler:
    """Mean and unbiased covariance + ``jitter I``; exact low-rank sampling when N_c <= D."""
    mean, factor = class_mean_and_factor(features)
    if len(features) <= features.shape[1]:
        return GaussianSampler(mean, factor, jitter, low_rank=True)
    return GaussianSampler(mean, regularised_cholesky(factor @ factor.T, jitter), jitter, low_rank=False)


# ---------------------------------------------------------------------------- shrinkage


@SAMPLERS.register("shrinkage", params=GaussianParams)
def fit_shrinkage(features: np.ndarray, jitter: float = JITTER) -> GaussianSampler:
    """``N(mu, LW + eps I)``: scikit-learn's Ledoit-Wolf covariance ``LW = (1 - a) S_ml + a (tr S_ml / D) I``
    (``S_ml`` the maximum-likelihood covariance, ``a`` the estimated optimal shrinkage)."""
    from sklearn.covariance import LedoitWolf

    mean = features.mean(axis=0)
    if len(features) < 2:
        covariance = np.zeros((features.shape[1], features.shape[1]))
    else:
        covariance = LedoitWolf(assume_centered=False).fit(features).covariance_
    return GaussianSampler(mean, regularised_cholesky(covariance, jitter), jitter, low_rank=False)


# ---------------------------------------------------------------------------- mixtures


class MixtureSampler(Sampler):
    """A Gaussian mixture: component ``k`` with probability ``weights[k]``, then ``N(means[k], covariances[k])``."""

    kind = "gmm"

    def __init__(self, weights: np.ndarray, means: np.ndarray, chols: np.ndarray) -> None:
        self.weights = weights
        self.means = means
        self.chols = chols  # lower Cholesky factors of the components' covariances

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        components = rng.choice(len(self.weights), size=n, p=self.weights)
        z = rng.standard_normal((n, self.dim))
        out = np.empty((n, self.dim))
        for k in range(len(self.weights)):
            rows = components == k
            out[rows] = self.means[k] + z[rows] @ self.chols[k].T
        return out


def fit_mixture(features: np.ndarray, n_components: int, reg_covar: float = JITTER, random_state: int = 0) -> MixtureSampler:
    """scikit-learn ``GaussianMixture(n_components, covariance_type="full", reg_covar)`` fitted to
    ``features``; its covariances already include ``reg_covar I``."""
    from sklearn.mixture import GaussianMixture

    if len(features) < n_components:
        raise ValueError(f"a {n_components}-component mixture needs at least {n_components} features, got {len(features)}")
    mixture = GaussianMixture(
        n_components=n_components, covariance_type="full", reg_covar=reg_covar, random_state=random_state
    ).fit(features)
    chols = np.stack([regularised_cholesky(cov, 0.0) for cov in mixture.covariances_])
    weights = mixture.weights_ / mixture.weights_.sum()
    return MixtureSampler(weights, mixture.means_, chols)


@SAMPLERS.register("gmm-2", params=MixtureParams)
def fit_gmm2(features: np.ndarray, reg_covar: float = JITTER, random_state: int = 0) -> MixtureSampler:
    """A 2-component full-covariance Gaussian mixture (reg_covar 1e-6)."""
    return fit_mixture(features, 2, reg_covar=reg_covar, random_state=random_state)


@SAMPLERS.register("gmm-3", params=MixtureParams)
def fit_gmm3(features: np.ndarray, reg_covar: float = JITTER, random_state: int = 0) -> MixtureSampler:
    """A 3-component full-covariance Gaussian mixture (reg_covar 1e-6)."""
    return fit_mixture(features, 3, reg_covar=reg_covar, random_state=random_state)


@SAMPLERS.register("gmm-5", params=MixtureParams)
def fit_gmm5(features: np.ndarray, reg_covar: float = JITTER, random_state: int = 0) -> MixtureSampler:
    """A 5-component full-covariance Gaussian mixture (reg_covar 1e-6)."""
    return fit_mixture(features, 5, reg_covar=reg_covar, random_state=random_state)
