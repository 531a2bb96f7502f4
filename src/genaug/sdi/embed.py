"""Step 1 of SDI: CLIP ``image_embeds`` of every training image, cached with their ids.

``embed_training_images`` writes ``<work_dir>/embeds/<pool>.safetensors`` (a feature table: one row
per image, its id, label and class) for the few-shot ``train`` split and any other pool the
projector trains on (the pocket world's ``pretrain`` pool). The embedding is CLIP's pooled
projected ``image_embeds``, not normalised (what ``CLIPVisionModelWithProjection`` returns
and the reference feeds its projector). The table's info lists every image's content digest
(``content``, :func:`genaug.generation.stage.row_digest`): what the projector and the
per-class samples of an incremental pass are keyed by. A table is reused when it holds the
same ids and contents embedded by the same CLIP weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from genaug.config import ConfigError
from genaug.data.base import RealDataset
from genaug.data.identity import row_digest
from genaug.diffusion.architecture import check_projector_input, clip_embed_dim
from genaug.diffusion.models import clip_reference, resolve_model
from genaug.sdi.presets import training_pools
from genaug.sdi.projector import trained_projectors
from genaug.sdi.tables import FeatureTable, load_table, save_table, table_info

if TYPE_CHECKING:  # pragma: no cover
    from genaug.sdi.config import SdiConfig

EMBEDS_DIR = "embeds"


def embeds_path(work_dir: str | Path, pool: str) -> Path:
    return Path(work_dir) / EMBEDS_DIR / f"{pool}.safetensors"


def embed_training_images(
    config: SdiConfig,
    pools: list[str] | None = None,
    datasets: dict[str, RealDataset] | None = None,
    clip=None,
) -> dict[str, Path]:
    """Embed every pool in ``pools`` (default: what the projector trains on) and return their tables' paths.

    ``datasets`` may hold the pools' real datasets (tests, notebooks); else they are loaded
    from ``config.dataset``. ``clip`` may be a loaded :class:`genaug.clip.Clip`.
    """
    pools = pools or training_pools(config)
    check_against_projector(config, clip)
    identity = None
    paths = {}
    for pool in pools:
        dataset = pool_dataset(config, pool, datasets)
        path = embeds_path(config.work_dir, pool)
        if clip is None:
            clip = _load_clip(config)
        identity = identity or clip.identity or {"name": clip.name}
        content = content_digests(dataset)
        if not is_current(path, dataset.ids, identity, content):
            features = image_embeds(clip, dataset, config.embed_batch_size)
            info = {"clip": identity, "normalized": False, "pool": pool, "dataset": dataset.name, "split": dataset.split,
                    "clip_batch_size": clip.batch_size_used(config.embed_batch_size),  # after any out-of-memory halving
                    "content": content}
            save_table(path, FeatureTable(features, dataset.labels, list(dataset.ids), list(dataset.class_names), info))
        paths[pool] = path
    return paths


def check_against_projector(config: SdiConfig, clip=None) -> None:
    """A projector already trained in the work dir reads this CLIP's embedding width (checked
    from the CLIP's config before it loads): embedding with another CLIP would replace the
    tables it was fitted to."""
    trained = trained_projectors(config.work_dir)
    if not trained:
        return
    if clip is not None:
        width, source = clip.embed_dim, f"CLIP {clip.name}"
    else:
        ref = resolve_model(clip_reference(config.clip))
        width, source = clip_embed_dim(ref), f"CLIP at {ref.location}"
    if width is not None:
        path, (in_dim, _) = trained[0]
        check_projector_input("sdi embed", path, in_dim, source, width)


def pool_dataset(config: SdiConfig, pool: str, datasets: dict[str, RealDataset] | None = None) -> RealDataset:
    """The real images of ``pool``: a given dataset, or ``config.dataset`` with ``split = pool``."""
    if datasets and pool in datasets:
        return datasets[pool]
    from genaug.data import dataset_spec, load_dataset

    if pool not in dataset_spec(config.dataset.name).splits:
        raise ConfigError(f"train.pools: dataset '{config.dataset.name}' has no '{pool}' split")
    return load_dataset(config.dataset, split=pool)


def _load_clip(config: SdiConfig):
    from genaug.clip import Clip
    from genaug.runtime import select_device

    device, _ = select_device(config.device, "fp32")
    return Clip.from_reference(config.clip, device, stage="sdi embed")


def content_digests(dataset: RealDataset) -> list[str]:
    """Every image's content digest, in row order (:func:`genaug.generation.stage.row_digest`)."""
    return [row_digest(dataset, row) for row in range(len(dataset))]


def is_current(path: Path, ids: list[str], clip_identity: dict, content: list[str] | None = None) -> bool:
    """True when ``path`` holds embeddings of exactly ``ids`` (of these ``content`` digests, when
    given) made by the same CLIP."""
    if not path.is_file():
        return False
    try:
        info = table_info(path)
        if content is not None and info.get("content") != list(content):
            return False
        return info.get("clip") == clip_identity and load_table(path).ids == list(ids)
    except Exception:  # noqa: BLE001 - an unreadable cache is simply remade
        return False


def image_embeds(clip, dataset: RealDataset, batch_size: int = 64) -> torch.Tensor:
    """CLIP ``image_embeds`` (unnormalised) of every image of ``dataset``, ``(N, d_clip)`` float32."""
    chunks = [
        clip.image_embeds(dataset.rgb_batch(range(start, min(start + batch_size, len(dataset)))), normalize=False, batch_size=batch_size)
        for start in range(0, len(dataset), batch_size)
    ]
    if not chunks:
        return torch.zeros(0, clip.embed_dim)
    return torch.cat(chunks).float()


def concat_tables(tables: list[FeatureTable]) -> FeatureTable:
    """Rows of several tables with the same classes, in order."""
    names = tables[0].class_names
    for table in tables[1:]:
        if table.class_names != names:
            raise ValueError("embedding tables of different class lists cannot be joined")
    return FeatureTable(
        features=torch.cat([t.features for t in tables]),
        labels=torch.cat([t.labels for t in tables]),
        ids=[i for t in tables for i in t.ids],
        class_names=list(names),
        info={"joined": [t.info.get("pool") for t in tables]},
    )


def load_embeddings(work_dir: str | Path, pools: list[str]) -> FeatureTable:
    """The embedding tables of ``pools`` joined; a clear error when the embed stage has not run."""
    tables = []
    for pool in pools:
        path = embeds_path(work_dir, pool)
        if not path.is_file():
            raise FileNotFoundError(f"no CLIP embeddings of pool '{pool}' at {path}: run `genaug sdi embed` first")
        tables.append(load_table(path))
    return concat_tables(tables) if len(tables) > 1 else tables[0]
