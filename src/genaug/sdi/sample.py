"""Steps 3 and 4 of SDI: the feature bank and new features sampled per class (docs/methods/sdi.md).

- :func:`build_bank`: ``projector(CLIP image_embeds)`` of every training image, grouped by
  class, written to ``<work_dir>/bank.safetensors``.
- :func:`sample_features`: per class, fit the configured sampler to the class's bank rows
  and draw ``multiplier x N_c`` vectors with the class's own seed; written to
  ``<work_dir>/samples/<sampler>.safetensors`` (rows with their class; the sampler, its
  arguments and every class's seed in the table's info).

The reference seeds every class with one seed, so classes of equal size get the same
standard-normal draws; genaug derives a seed per class from (seed, sampler, class index)
instead, so classes are sampled independently (this is not the reference's behaviour).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from genaug.diffusion.architecture import check_projector_input
from genaug.sdi.embed import embeds_path, load_embeddings
from genaug.sdi.presets import reference_multiplier
from genaug.sdi.projector import Projector, load_trained_projector, projector_path
from genaug.sdi.samplers import SAMPLERS, fit_sampler
from genaug.sdi.tables import FeatureTable, load_table, save_table
from genaug.seeds import item_seed

if TYPE_CHECKING:  # pragma: no cover
    from genaug.sdi.config import SdiConfig

BANK_FILE = "bank.safetensors"
SAMPLES_DIR = "samples"


def bank_path(work_dir: str | Path) -> Path:
    return Path(work_dir) / BANK_FILE


def samples_path(work_dir: str | Path, sampler: str) -> Path:
    return Path(work_dir) / SAMPLES_DIR / f"{sampler}.safetensors"


# ---------------------------------------------------------------------------- feature bank


@torch.no_grad()
def project_features(projector: torch.nn.Module, embeds: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """``projector(e)`` for every row (no dropout), float32 on the CPU."""
    device = next(projector.parameters()).device
    out = [projector(embeds[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(embeds), batch_size)]
    return torch.cat(out) if out else torch.zeros(0, projector.out_dim)


def build_bank(config: SdiConfig, projector: torch.nn.Module | None = None) -> Path:
    """The feature bank of the training images (the ``train`` pool only: the classes' real members)."""
    where = projector_path(config.work_dir) if projector is None else "given"
    projector = projector if projector is not None else load_trained_projector(config.work_dir)
    embeds = load_embeddings(config.work_dir, ["train"])
    if isinstance(projector, Projector):
        check_projector_input("sdi bank", where, projector.in_dim,
                              f"the embedding table {embeds_path(config.work_dir, 'train')}", embeds.dim)
    features = project_features(projector, embeds.features)
    info = {"source": "projector(image_embeds)", "pool": "train", "dataset": embeds.info.get("dataset"), "clip": embeds.info.get("clip")}
    return save_table(bank_path(config.work_dir), FeatureTable(features, embeds.labels, embeds.ids, embeds.class_names, info))


# ---------------------------------------------------------------------------- sampling


def class_seed(seed: int, sampler: str, label: int) -> int:
    """The seed of one class's draws (and mixture fit): ``item_seed(seed, "sdi-sample/<sampler>/<label>")``."""
    return item_seed(seed, f"sdi-sample/{sampler}/{label}")


def sample_id(sampler: str, label: int, index: int) -> str:
    """``sdi-<sampler>-<label>-<index>``: stable, unique, and the id of the image made from the sample."""
    return f"sdi-{sampler}-{label:04d}-{index:06d}"


def sample_class(features: np.ndarray, sampler: str, n: int, seed: int, **kwargs) -> np.ndarray:
    """Fit ``sampler`` to one class's features and draw ``n`` vectors from ``seed`` (float32)."""
    if "random_state" in inspect.signature(SAMPLERS[sampler]).parameters and "random_state" not in kwargs:
        kwargs["random_state"] = seed % (2**32)  # mixtures fit from a seeded initialisation
    return fit_sampler(features, sampler, **kwargs).sample(n, seed).astype(np.float32)


def sample_bank(bank: FeatureTable, sampler: str, multiplier: int, seed: int, sampler_kwargs: dict | None = None) -> FeatureTable:
    """``multiplier x N_c`` samples of every class of ``bank`` (see the module doc).

    The per-class linear algebra (D x D at most) runs with one BLAS thread: at these sizes
    threads gain little, and on a shared machine they lose a lot (a 768 x 768 Cholesky took
    1.0 s with 2 OpenBLAS threads on 2 busy cores, 0.03 s with one).
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return _sample_classes(bank, sampler, multiplier, seed, sampler_kwargs)


def _sample_classes(bank: FeatureTable, sampler: str, multiplier: int, seed: int, sampler_kwargs: dict | None) -> FeatureTable:
    features, labels, ids, seeds = [], [], [], {}
    for label in range(len(bank.class_names)):
        rows = bank.rows_of_class(label)
        if len(rows) == 0:
            continue
        seeds[bank.class_names[label]] = class_seed(seed, sampler, label)
        n = multiplier * len(rows)
        drawn = sample_class(bank.features[rows].numpy(), sampler, n, seeds[bank.class_names[label]], **(sampler_kwargs or {}))
        features.append(torch.from_numpy(drawn))
        labels.append(torch.full((n,), label, dtype=torch.int64))
        ids += [sample_id(sampler, label, k) for k in range(n)]
    info = {"sampler": sampler, "sampler_kwargs": sampler_kwargs or {}, "multiplier": multiplier, "seed": seed, "class_seeds": seeds}
    return FeatureTable(torch.cat(features), torch.cat(labels), ids, list(bank.class_names), info)


def sample_features(config: SdiConfig) -> Path:
    """Sample the bank of ``config.work_dir`` with ``config.sample`` and write the samples table."""
    sample = config.sample
    bank = load_table(bank_path(config.work_dir)) if bank_path(config.work_dir).is_file() else None
    if bank is None:
        raise FileNotFoundError(f"no feature bank at {bank_path(config.work_dir)}: run `genaug sdi bank` first")
    multiplier = reference_multiplier(config.dataset.name, sample.multiplier)
    table = sample_bank(bank, sample.sampler, multiplier, sample.seed, sample.sampler_kwargs)
    table.info["bank"] = str(bank_path(config.work_dir).resolve())
    return save_table(samples_path(config.work_dir, sample.sampler), table)
