"""Metrics of synthetic sets: distribution distances over image features, and set-level summaries.

The feature functions are pure (numpy / scipy / scikit-learn, no models):

- :func:`frechet_distance`: Frechet distance between Gaussians fitted to two feature sets
  (FID's formula; "FD_CLIP" on CLIP image features).
- :func:`prdc`: precision, recall, density and coverage (Naeem et al., ICML 2020) from
  k-nearest-neighbour balls.
- :func:`zero_shot_fidelity`, :func:`classifier_fidelity`: the fraction of images a judge
  (CLIP's zero-shot prompts, or a classifier trained on real images) assigns to the class
  they were made for.
- :func:`intra_class_diversity`: mean pairwise cosine distance within each class, averaged
  over classes.
- :func:`per_class_frechet`: FD per class and its mean.

:func:`set_metrics` computes all of them for one synthetic set folder against the real
training split, with a given CLIP and optional classifier, and returns a JSON-able dict.
Bad input (feature arrays of different widths, NaN or infinite values, too few rows) is a
:class:`ValueError` of one line.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from genaug.data.names import class_prompt

__all__ = [
    "check_features",
    "classifier_fidelity",
    "frechet_distance",
    "gaussian_moments",
    "intra_class_diversity",
    "per_class_frechet",
    "prdc",
    "set_metrics",
    "zero_shot_fidelity",
]


def check_features(features: np.ndarray, name: str = "features", min_rows: int = 1) -> np.ndarray:
    """``features`` as a float64 ``(N, D)`` array; a one-line ValueError when it is not one,
    holds NaN or infinite values, or has fewer than ``min_rows`` rows."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{name} must be an (N, D) array, got shape {x.shape}")
    if len(x) < min_rows:
        raise ValueError(f"{name} need N >= {min_rows} rows, got {len(x)}")
    if not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).any(axis=1).sum())
        raise ValueError(f"{name} holds NaN or infinite values ({bad} of {len(x)} rows)")
    return x


def _check_pair(real: np.ndarray, synthetic: np.ndarray, min_rows: int) -> tuple[np.ndarray, np.ndarray]:
    x = check_features(real, "real features", min_rows)
    y = check_features(synthetic, "synthetic features", min_rows)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"feature widths differ: real {x.shape[1]} vs synthetic {y.shape[1]}")
    return x, y


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

    real, synthetic = _check_pair(real_features, synthetic_features, min_rows=2)
    mu_r, cov_r = gaussian_moments(real)
    mu_s, cov_s = gaussian_moments(synthetic)
    root = linalg.sqrtm(cov_r @ cov_s)
    if not np.isfinite(root).all():
        offset = np.eye(len(mu_r)) * 1e-6
        root = linalg.sqrtm((cov_r + offset) @ (cov_s + offset))
    root = np.real(root)
    diff = mu_r - mu_s
    return float(diff @ diff + np.trace(cov_r) + np.trace(cov_s) - 2.0 * np.trace(root))


# ---------------------------------------------------------------------------- precision / recall / density / coverage


def knn_radii(features: np.ndarray, k: int, block_bytes: int = 32 << 20) -> np.ndarray:
    """Distance of each row to its ``k``-th nearest other row (the row itself excluded).

    Distances are scipy's exact ``cdist`` (the same call :func:`prdc` compares against, so
    a point at the radius is never inside its own ball by round-off), in blocks of rows.
    """
    from scipy.spatial.distance import cdist

    radii = np.empty(len(features))
    block = max(1, block_bytes // (8 * len(features)))
    for start in range(0, len(features), block):
        distances = cdist(features[start : start + block], features)
        # The k + 1 smallest distances include the row itself at 0; a duplicate of it is also
        # at 0, so the (k + 1)-th smallest is the k-th neighbour's either way.
        radii[start : start + block] = np.partition(distances, k, axis=1)[:, k]
    return radii


def prdc(real_features: np.ndarray, synthetic_features: np.ndarray, k: int = 5) -> dict[str, float]:
    """Precision, recall, density and coverage of ``synthetic_features`` (M, D) against
    ``real_features`` (N, D) (Naeem et al., ICML 2020), with exact Euclidean distances.

    ``B(x, r)`` is the open ball of radius ``r``; ``NND_k(x)`` the distance from ``x`` to its
    ``k``-th nearest neighbour in its own set (``x`` excluded). With ``X`` real, ``Y`` synthetic:

    - precision = (1/M) sum_j 1[Y_j in some B(X_i, NND_k(X_i))]
    - recall    = (1/N) sum_i 1[X_i in some B(Y_j, NND_k(Y_j))]
    - density   = (1/(kM)) sum_j sum_i 1[Y_j in B(X_i, NND_k(X_i))]
    - coverage  = (1/N) sum_i 1[some Y_j in B(X_i, NND_k(X_i))]

    Both sets need at least ``k + 1`` rows. Every distance is scipy's exact ``cdist``, taken
    in blocks of rows, so memory stays bounded; time is ``O((N + M)^2 D)``.
    """
    from scipy.spatial.distance import cdist

    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    real, synthetic = _check_pair(real_features, synthetic_features, min_rows=k + 1)
    real_radii = knn_radii(real, k)
    synthetic_radii = knn_radii(synthetic, k)
    inside_count = np.zeros(len(synthetic), dtype=np.int64)  # real balls holding each synthetic row
    real_covered = np.zeros(len(real), dtype=bool)  # real balls holding any synthetic row
    real_recalled = np.zeros(len(real), dtype=bool)  # real rows inside any synthetic ball
    block = max(1, (32 << 20) // (8 * len(real)))
    for start in range(0, len(synthetic), block):
        distances = cdist(real, synthetic[start : start + block])  # (N, b)
        inside = distances < real_radii[:, None]
        inside_count[start : start + block] = inside.sum(axis=0)
        real_covered |= inside.any(axis=1)
        real_recalled |= (distances < synthetic_radii[None, start : start + block]).any(axis=1)
    return {
        "precision": float((inside_count > 0).mean()),
        "recall": float(real_recalled.mean()),
        "density": float(inside_count.sum() / (k * len(synthetic))),
        "coverage": float(real_covered.mean()),
    }


# ---------------------------------------------------------------------------- fidelity and diversity


def _check_labels(labels: np.ndarray, rows: int, classes: int | None = None) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != (rows,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be {rows} integers (one per feature row), got {labels.dtype} {labels.shape}")
    if classes is not None and rows and (labels.min() < 0 or labels.max() >= classes):
        raise ValueError(f"labels must lie in [0, {classes}), got {labels.min()}..{labels.max()}")
    return labels


def _unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def zero_shot_fidelity(image_features: np.ndarray, text_features: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of images whose most similar class prompt (cosine of ``image_features`` (N, D)
    with the rows of ``text_features`` (K, D), one prompt per class) is their own class."""
    images = check_features(image_features, "image features", 1)
    texts = check_features(text_features, "text features", 1)
    if images.shape[1] != texts.shape[1]:
        raise ValueError(f"feature widths differ: images {images.shape[1]} vs texts {texts.shape[1]}")
    labels = _check_labels(labels, len(images), len(texts))
    predicted = (_unit_rows(images) @ _unit_rows(texts).T).argmax(axis=1)
    return float((predicted == labels).mean())


def classifier_fidelity(probabilities: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """A classifier's verdict on (N, K) class ``probabilities``: ``accuracy`` (its top class is
    the label) and ``p_label`` (the mean probability it gives the label)."""
    p = check_features(probabilities, "probabilities", 1)
    labels = _check_labels(labels, len(p), p.shape[1])
    return {
        "accuracy": float((p.argmax(axis=1) == labels).mean()),
        "p_label": float(p[np.arange(len(p)), labels].mean()),
    }


def intra_class_diversity(features: np.ndarray, labels: np.ndarray) -> float:
    """Mean pairwise cosine distance ``1 - cos(f_i, f_j)`` over the pairs ``i < j`` of each
    class, averaged over the classes with at least two rows (NaN when none has)."""
    x = _unit_rows(check_features(features, "features", 1))
    labels = _check_labels(labels, len(x))
    means = []
    for label in np.unique(labels):
        rows = x[labels == label]
        n = len(rows)
        if n < 2:
            continue
        total = rows.sum(axis=0)
        # sum_{i<j} cos = (|sum f|^2 - sum |f|^2) / 2, the rows being unit vectors.
        pair_cos = (total @ total - n) / 2.0
        means.append(1.0 - pair_cos / (n * (n - 1) / 2.0))
    return float(np.mean(means)) if means else math.nan


def per_class_frechet(
    real_features: np.ndarray, real_labels: np.ndarray, synthetic_features: np.ndarray, synthetic_labels: np.ndarray
) -> dict[int, float]:
    """:func:`frechet_distance` per class present in both sets with at least two rows each."""
    real, synthetic = _check_pair(real_features, synthetic_features, min_rows=1)
    real_labels = _check_labels(real_labels, len(real))
    synthetic_labels = _check_labels(synthetic_labels, len(synthetic))
    out = {}
    for label in np.unique(synthetic_labels):
        r, s = real[real_labels == label], synthetic[synthetic_labels == label]
        if len(r) >= 2 and len(s) >= 2:
            out[int(label)] = frechet_distance(r, s)
    return out


# ---------------------------------------------------------------------------- one synthetic set


def class_texts(class_names: Sequence[str], template: str = "a photo of a {class}") -> list[str]:
    """The zero-shot prompt of each class: ``template`` with the cleaned class name
    (``001.Black_footed_Albatross`` -> "a photo of a Black footed Albatross")."""
    return [class_prompt(template, name) for name in class_names]


def real_reference(real_train, clip, batch_size: int = 256) -> dict[str, np.ndarray]:
    """CLIP image features of the real training split (L2-normalised) with its labels."""
    images = [real_train.rgb(i) for i in range(len(real_train))]
    return {
        "features": clip.image_embeds(images, batch_size=batch_size).numpy().astype(np.float64),
        "labels": np.asarray(real_train.labels, dtype=np.int64),
    }


def set_metrics(
    set_dir: str | Path | Sequence[str | Path],
    real_train,
    clip,
    classifier=None,
    k: int = 5,
    batch_size: int = 256,
    reference: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Every metric of the synthetic set ``set_dir`` (its kept records; several folders are
    measured as one set) against ``real_train``
    (a :class:`~genaug.data.base.RealDataset`, the real training split), as a JSON-able dict.

    Features are ``clip``'s image embeddings, L2-normalised (the space where CLIP compares
    images); the real reference is the real training images of the classes the set holds.
    An image with a soft label (``params.soft_label``, e.g. Diff-Mix's) counts as the class
    its label weighs most (the first of equal weights), for every per-class metric.
    ``classifier`` (a :class:`genaug.training.classifier.Classifier` trained on real
    images only) adds its fidelity. ``reference``: :func:`real_reference` when computed
    already. Metrics a small set cannot have (PRDC needs ``k + 1`` images on each side, FD
    two) are None with a note. Keys: ``images``, ``real_images``, ``classes``, ``fd``,
    ``fd_per_class`` (class name -> FD), ``fd_class_mean``, ``k``, ``precision``,
    ``recall``, ``density``, ``coverage``, ``fidelity_clip``, ``fidelity_classifier``,
    ``p_label_classifier``, ``diversity``, ``diversity_real``, ``notes``, ``seconds``.
    """
    from genaug.data.synthetic import concat_synthetic_sets, load_synthetic_set

    started = time.perf_counter()
    names = list(real_train.class_names)
    dirs = [Path(set_dir)] if isinstance(set_dir, (str, Path)) else [Path(d) for d in set_dir]
    loaded = [load_synthetic_set(folder, class_names=names) for folder in dirs]
    synthetic = loaded[0] if len(loaded) == 1 else concat_synthetic_sets(loaded)
    if len(synthetic) == 0:
        raise ValueError(f"synthetic set {', '.join(map(str, dirs))} has no kept images to measure")
    images = [np.array(synthetic.image(i).convert("RGB")) for i in range(len(synthetic))]
    labels = np.asarray(synthetic.labels, dtype=np.int64)
    notes = []
    soft = synthetic.soft_targets(names)
    if soft is not None:  # e.g. Diff-Mix's: an image counts as the class its label weighs most
        dominant = soft.argmax(axis=1)
        notes.append(f"{len(synthetic.soft_labels)} image(s) with a soft label measured as their dominant class "
                     f"({int((dominant != labels).sum())} of them not their record's label)")
        labels = dominant.astype(np.int64)
    features = clip.image_embeds(images, batch_size=batch_size).numpy().astype(np.float64)
    reference = reference or real_reference(real_train, clip, batch_size)
    present = np.unique(labels)
    of_classes = np.isin(reference["labels"], present)
    real, real_labels = reference["features"][of_classes], reference["labels"][of_classes]

    fd = frechet_distance(real, features) if len(real) >= 2 and len(features) >= 2 else None
    per_class = per_class_frechet(real, real_labels, features, labels)
    if len(per_class) < len(present):
        notes.append(f"FD per class left out {len(present) - len(per_class)} class(es) with fewer than 2 images")
    if len(real) > k and len(features) > k:
        quality = prdc(real, features, k=k)
    else:
        quality = dict.fromkeys(("precision", "recall", "density", "coverage"))
        notes.append(f"precision/recall/density/coverage need more than k={k} images on each side")
    texts = clip.text_embeds(class_texts(names), batch_size=batch_size).numpy()
    judged = None
    if classifier is not None:
        if list(classifier.class_names) != names:
            raise ValueError("the classifier's class names differ from the real training split's")
        judged = classifier_fidelity(classifier.probabilities(images, batch_size=batch_size), labels)
    return {
        "images": len(features),
        "real_images": int(len(real)),
        "classes": int(len(present)),
        "fd": fd,
        "fd_per_class": {names[label]: value for label, value in per_class.items()},
        "fd_class_mean": float(np.mean(list(per_class.values()))) if per_class else None,
        "k": k,
        **quality,
        "fidelity_clip": zero_shot_fidelity(features, texts, labels),
        "fidelity_clip_real": zero_shot_fidelity(real, texts, real_labels),
        "fidelity_classifier": judged["accuracy"] if judged else None,
        "p_label_classifier": judged["p_label"] if judged else None,
        "diversity": _none_if_nan(intra_class_diversity(features, labels)),
        "diversity_real": _none_if_nan(intra_class_diversity(real, real_labels)),
        "notes": notes,
        "seconds": time.perf_counter() - started,
    }


def _none_if_nan(value: float) -> float | None:
    return None if math.isnan(value) else value
