"""Distribution metrics over image features (pure functions, no models)."""

from __future__ import annotations

import numpy as np


def gaussian_moments(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance of ``(N, D)`` features (``N >= 2``)."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"features must be (N, D) with N >= 2, got shape {x.shape}")
    return x.mean(axis=0), np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1])


def frechet_distance(real_features: np.ndarray, synthetic_features: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (FID's formula).

        FD = |mu_r - mu_s|^2 + Tr(S_r + S_s - 2 (S_r S_s)^(1/2))

    with ``mu``, ``S`` the mean and covariance of each set. In CLIP space (features = CLIP
    image embeddings) this is "FD_CLIP"; with Inception pool features it is FID. The
    matrix square root is scipy's ``sqrtm``; its negligible imaginary part (round-off) is
    dropped, and a singular product gets a small diagonal offset, as FID's reference code does.
    """
    from scipy import linalg

    mu_r, cov_r = gaussian_moments(real_features)
    mu_s, cov_s = gaussian_moments(synthetic_features)
    if mu_r.shape != mu_s.shape:
        raise ValueError(f"feature widths differ: {mu_r.shape[0]} vs {mu_s.shape[0]}")
    root = linalg.sqrtm(cov_r @ cov_s)
    if not np.isfinite(root).all():
        offset = np.eye(len(mu_r)) * 1e-6
        root = linalg.sqrtm((cov_r + offset) @ (cov_s + offset))
    root = np.real(root)
    diff = mu_r - mu_s
    return float(diff @ diff + np.trace(cov_r) + np.trace(cov_s) - 2.0 * np.trace(root))
