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

Incremental passes: a class's vectors depend on all of its bank rows (the distribution is
fitted to them) and on nothing of other classes. The samples table records every class's
key (:func:`class_key`: the projector's weights, the CLIP, the class's name, label and
images (ids and contents), the sampler, its arguments, the multiplier and the seed); given
the work dirs of earlier runs (``reuse_from``), a class whose key one of their tables holds
takes its vectors from there (``info.reused_classes``) instead of being sampled again.
"""

from __future__ import annotations

import hashlib
import inspect
import json
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
    from genaug.sdi.train import weights_digest

    info = {"source": "projector(image_embeds)", "pool": "train", "dataset": embeds.info.get("dataset"), "clip": embeds.info.get("clip"),
            "content": embeds.info.get("content"), "projector": weights_digest(projector.state_dict())}  # fmt: skip
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


def sample_bank(
    bank: FeatureTable, sampler: str, multiplier: int, seed: int, sampler_kwargs: dict | None = None,
    earlier: dict[str, tuple[Path, FeatureTable]] | None = None,
) -> FeatureTable:
    """``multiplier x N_c`` samples of every class of ``bank`` (see the module doc).

    The per-class linear algebra (D x D at most) runs with one BLAS thread: at these sizes
    threads gain little, and on a shared machine they lose a lot (a 768 x 768 Cholesky took
    1.0 s with 2 OpenBLAS threads on 2 busy cores, 0.03 s with one).
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return _sample_classes(bank, sampler, multiplier, seed, sampler_kwargs, earlier or {})


def _sample_classes(
    bank: FeatureTable, sampler: str, multiplier: int, seed: int, sampler_kwargs: dict | None,
    earlier: dict[str, tuple[Path, FeatureTable]],
) -> FeatureTable:
    """Every class's vectors: those of ``earlier`` (class name -> a table of equal class key)
    copied from it, the others drawn."""
    features, labels, ids, seeds = [], [], [], {}
    for label in range(len(bank.class_names)):
        rows = bank.rows_of_class(label)
        if len(rows) == 0:
            continue
        seeds[bank.class_names[label]] = class_seed(seed, sampler, label)
        n = multiplier * len(rows)
        if bank.class_names[label] in earlier:
            _, table = earlier[bank.class_names[label]]
            copied = table.rows_of_class(label)
            if len(copied) == n:  # equal keys: the same class, label and count
                features.append(table.features[copied].clone())
                labels.append(torch.full((n,), label, dtype=torch.int64))
                ids += [table.ids[row] for row in copied]
                continue
        drawn = sample_class(bank.features[rows].numpy(), sampler, n, seeds[bank.class_names[label]], **(sampler_kwargs or {}))
        features.append(torch.from_numpy(drawn))
        labels.append(torch.full((n,), label, dtype=torch.int64))
        ids += [sample_id(sampler, label, k) for k in range(n)]
    info = {"sampler": sampler, "sampler_kwargs": sampler_kwargs or {}, "multiplier": multiplier, "seed": seed, "class_seeds": seeds}
    return FeatureTable(torch.cat(features), torch.cat(labels), ids, list(bank.class_names), info)


def sample_features(config: SdiConfig, reuse_from: list[str | Path] | tuple = ()) -> Path:
    """Sample the bank of ``config.work_dir`` with ``config.sample`` and write the samples table.

    ``reuse_from``: work dirs of earlier runs of the stage; a class whose key their samples
    table holds takes its vectors from it (module doc)."""
    sample = config.sample
    bank = load_table(bank_path(config.work_dir)) if bank_path(config.work_dir).is_file() else None
    if bank is None:
        raise FileNotFoundError(f"no feature bank at {bank_path(config.work_dir)}: run `genaug sdi bank` first")
    multiplier = reference_multiplier(config.dataset.name, sample.multiplier)
    keys = class_keys(bank, sample.sampler, multiplier, sample.seed, sample.sampler_kwargs)
    donors = earlier_classes(keys, [samples_path(folder, sample.sampler) for folder in reuse_from])
    table = sample_bank(bank, sample.sampler, multiplier, sample.seed, sample.sampler_kwargs, donors)
    table.info["bank"] = str(bank_path(config.work_dir).resolve())
    if keys is not None:
        table.info["class_keys"] = keys
        table.info["reused_classes"] = {name: Path(path).parent.parent.name for name, (path, _) in donors.items()}
    return save_table(samples_path(config.work_dir, sample.sampler), table)


def class_key(bank: FeatureTable, label: int, sampler: str, multiplier: int, seed: int, sampler_kwargs: dict | None) -> str:
    """``sha256(json({projector weights, CLIP, class name, label, the class's (id, content) in bank
    order, sampler, arguments, multiplier, seed}))[:24]``: what one class's vectors depend on."""
    rows = bank.rows_of_class(label)
    content = {
        "projector": bank.info.get("projector"), "clip": bank.info.get("clip"), "class_name": bank.class_names[label],
        "label": label, "members": [[bank.ids[row], bank.info["content"][row]] for row in rows],
        "sampler": sampler, "sampler_kwargs": sampler_kwargs or {}, "multiplier": multiplier, "seed": seed,
    }  # fmt: skip
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:24]


def class_keys(bank: FeatureTable, sampler: str, multiplier: int, seed: int, sampler_kwargs: dict | None) -> dict[str, str] | None:
    """:func:`class_key` of every class with bank rows, by name; None for a bank that does not
    know its images' contents or its projector (made before banks recorded them)."""
    if not bank.info.get("content") or not bank.info.get("projector"):
        return None
    return {
        bank.class_names[label]: class_key(bank, label, sampler, multiplier, seed, sampler_kwargs)
        for label in range(len(bank.class_names))
        if len(bank.rows_of_class(label))
    }


def earlier_classes(keys: dict[str, str] | None, tables: list[Path]) -> dict[str, tuple[Path, FeatureTable]]:
    """For each class whose key an earlier samples table (``tables``, first match wins) holds:
    that table and the table itself (read once)."""
    from genaug.sdi.tables import table_info

    found: dict[str, tuple[Path, FeatureTable]] = {}
    for path in tables:
        if keys is None or not Path(path).is_file():
            continue
        try:
            earlier = table_info(path).get("class_keys") or {}
        except Exception:  # noqa: BLE001 - an unreadable earlier table is simply not used
            continue
        matching = [name for name, key in keys.items() if name not in found and earlier.get(name) == key]
        if matching:
            table = load_table(path)
            found.update({name: (Path(path), table) for name in matching})
    return found
