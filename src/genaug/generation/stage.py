"""The ``generate`` stage of every editor (DiffuseMix's edits, docs/methods/diffusemix.md, and any
registered editor): make images from every training image, or per class.

``generate`` reads as the method: load the real training set, pick the editor and the
prompt list, plan one work item per (image, prompt) under the prompt regime, and let the
engine make the images resumably. The mixing that follows is ``genaug.mixing.stage.mix``.
Its config and stage registration are in :mod:`genaug.generation.config`.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from genaug.config import dump_config
from genaug.data.base import RealDataset
from genaug.data.identity import row_digest
from genaug.data.names import class_prompt
from genaug.files import write_text_atomic
from genaug.generation.editors import Editor, create_editor
from genaug.generation.engine import JobReport, run_job
from genaug.generation.items import WorkItem, unique_ids
from genaug.generation.prompts import prompt_indices, resolve_prompts
from genaug.seeds import item_seed

if TYPE_CHECKING:  # pragma: no cover
    from genaug.generation.config import GenerateConfig


def generate(
    config: GenerateConfig,
    dataset: RealDataset | None = None,
    editor: Editor | None = None,
    reuse_from: Sequence[str | Path] = (),
) -> JobReport:
    """Make the generated set ``config.output`` from the real dataset ``config.dataset``.

    ``dataset`` and ``editor`` may be passed in (tests, notebooks); otherwise they are built
    from the config. Rerunning continues where a previous run stopped. ``reuse_from``:
    earlier sets of this stage (e.g. made before images were added to the dataset); the
    items whose inputs they made already are copied from them, not made again
    (:mod:`genaug.generation.engine`, incremental passes).
    """
    dataset = dataset if dataset is not None else load_real_dataset(config)
    editor = editor or create_editor(
        config.editor, sources=dataset_sources(dataset), device=config.engine.device, dtype=config.engine.dtype
    )
    editor.prepare(dataset, config)
    items = editor.plan(dataset, config)
    if items is None:
        prompts = resolve_prompts(config.prompts or editor.prompts_for(config.editor))
        if editor.needs_source:
            items = plan_edit_items(dataset, editor.name, prompts, config)
        else:
            items = plan_text_items(dataset, editor.name, prompts, config)
    if not config.engine.dry_run:
        write_stage_config(config)
    return run_job(
        items,
        editor,
        config.output,
        experiment_seed=config.seed,
        engine=config.engine,
        model=editor.model.identity,
        extra_params={"regime": config.regime},
        sources=source_digests(dataset),
        reuse_from=reuse_from,
    )


def source_digests(dataset: RealDataset):
    """An item's source content digest, for its input key: the file's content digest (folder
    trees), else its path, size and modification time, else the array row's SHA-256; "" for
    an item made from no real image."""

    def digest(item: WorkItem) -> str:
        return "" if item.source_index is None else row_digest(dataset, item.source_index)

    return digest


def load_real_dataset(config: GenerateConfig) -> RealDataset:
    from genaug.data import load_dataset

    return load_dataset(config.dataset)


def dataset_sources(dataset: RealDataset):
    """The source fetcher of an editor: a work item's real image, by its dataset row."""

    def source(item: WorkItem):
        return dataset.rgb(item.source_index)

    return source


def plan_edit_items(dataset: RealDataset, editor_name: str, prompts: list[str], config: GenerateConfig) -> list[WorkItem]:
    """One item per (real image, chosen prompt); id ``<source id>-<editor>-p<prompt index>``."""
    items = []
    safe_ids = unique_ids(dataset.ids)
    for row, source_id in enumerate(dataset.ids):
        label = int(dataset.labels[row])
        class_name = dataset.class_names[label]
        base_id = f"{safe_ids[row]}-{editor_name}"
        items += regime_items(base_id, label, class_name, prompts, config, source_id=source_id, source_index=row)
    return items


def plan_text_items(dataset: RealDataset, editor_name: str, prompts: list[str], config: GenerateConfig) -> list[WorkItem]:
    """txt2img: as many images per class as the real set has, under the same prompt regime.

    Id ``<class>-<editor>-<n>-p<prompt index>`` with n counting the class's images; no
    source ids (the images are not made from a real one).
    """
    items = []
    counts = Counter(int(label) for label in np.asarray(dataset.labels))
    safe_names = unique_ids(dataset.class_names)
    for label in sorted(counts):
        class_name = dataset.class_names[label]
        for n in range(counts[label]):
            base_id = f"{safe_names[label]}-{editor_name}-{n:05d}"
            items += regime_items(base_id, label, class_name, prompts, config)
    return items


def regime_items(base_id: str, label: int, class_name: str, prompts: list[str], config: GenerateConfig,
                 source_id: str | None = None, source_index: int | None = None) -> list[WorkItem]:
    """The items of one image (real or per class) under the prompt regime: one per chosen prompt
    index k, id ``<base id>-p<k>``, seed ``item_seed(config.seed, id)``, the class prompt."""
    items = []
    for k in prompt_indices(config.regime, len(prompts), config.seed, base_id, config.prompt_index):
        item_id = f"{base_id}-p{k}"
        items.append(
            WorkItem(
                id=item_id,
                seed=item_seed(config.seed, item_id),
                label=label,
                class_name=class_name,
                prompt=class_prompt(prompts[k], class_name),
                prompt_index=k,
                negative_prompt=config.editor.negative_prompt,
                source_id=source_id,
                source_index=source_index,
            )
        )
    return items


def write_stage_config(config: GenerateConfig) -> Path:
    """The resolved config beside the set (``generate.yaml``), for provenance."""
    path = Path(config.output) / "generate.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text_atomic(path, dump_config(config))  # shards may write it at once: each write is whole
