"""The DiffuseMix ``mix`` stage (docs/methods/diffusemix.md): combine generated images with their sources.

``mix`` reads as the method: read the generated set, find each record's real source image
by id, resize the generated image to the original's size, and write one new set per mixing
method, each record pointing to both sources (``source_ids = [real id, generated id]``).
The methods are registered in :mod:`genaug.mixing.methods`:

- ``concat``: feathered halves, the orientation drawn per item from its seed;
- ``rect``: random rectangles of the edit pasted on the original, realised coverage recorded;
- ``fractal``: a fractal from the bank blended in with alpha 0.2 (into the feathered
  concatenation, as DiffuseMix does, or into the generated image alone), index recorded;
- ``shb``: CLIP-guided semantic hybrid blending (docs/methods/semantic-hybrid-blending.md), every patch of a batch of
  pairs scored through CLIP at once; the realised replaced fraction and the SHB parameters
  recorded, and optionally the similarity map saved as ``heatmaps/<id>.png``.

Every mixed item's randomness comes from ``item_seed(mix seed, mixed id)``, and the
mixing operations are per-sample, so a rerun skips what is recorded and remakes the rest
bit-identically (SetWriter).

Incremental passes: every record carries ``params.input_key`` (:func:`mix_input_key`: the
method and its settings, the seed, the generated record's own input key or image bytes, the
real source's content). Given the sets an earlier run of the stage wrote (``reuse_from``,
e.g. before images were added), a pair whose key one of them holds is copied from it
(``params.reused_from``) instead of mixed again; mixing is per-sample, so the copy equals
what mixing it now would make.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

from genaug.data.base import RealDataset
from genaug.data.identity import row_digest
from genaug.data.images import load_rgb
from genaug.manifest import SampleRecord, SetWriter, check_relative_path, read_manifest, record_file, save_image_atomic
from genaug.mixing.fractals import load_fractal_bank, resize_images
from genaug.mixing.registry import MIX_METHODS
from genaug.progress import progress_bar
from genaug.reuse import copy_from_donors, find_donors
from genaug.seeds import item_seed, seed_rng

if TYPE_CHECKING:  # pragma: no cover
    from genaug.mixing.config import MixConfig


@dataclass(frozen=True)
class Pair:
    """A generated record and the row of its real source image."""

    record: SampleRecord
    source_row: int

    @property
    def source_id(self) -> str:
        return self.record.source_ids[0]


@dataclass
class MixBatch:
    """One batch of pairs as a mixer sees it: originals and resized edits, uint8 (N, 3, H, W)."""

    method: str
    pairs: list[Pair]
    originals: torch.Tensor
    generated: torch.Tensor
    rngs: list[np.random.Generator]

    @property
    def class_names(self) -> list[str]:
        return [pair.record.class_name for pair in self.pairs]

    @property
    def ids(self) -> list[str]:
        return [mixed_id(pair, self.method) for pair in self.pairs]


@dataclass
class Mixed:
    """A mixer's output: the mixed uint8 batch, params per item, and extra files per item.

    ``files[i]`` maps paths relative to the set to uint8 images written (atomically)
    before item i's record, so a record never points to a missing file.
    """

    images: torch.Tensor
    params: list[dict[str, Any]]
    files: list[dict[str, np.ndarray]] | None = None


@dataclass
class MixResources:
    """What mixers share across batches, loaded once: the fractal bank, the SHB CLIP."""

    bank: torch.Tensor | None = None
    clip: Any = None
    clip_identity: dict[str, Any] | None = None


@dataclass
class MixReport:
    set_dir: Path
    method: str
    total: int
    already_done: int
    made: int = 0
    reused: int = 0  # copied from an earlier set of the stage by this run
    skipped_without_source: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------- the stage


def mix(config: MixConfig, dataset: RealDataset | None = None, reuse_from: list[Path] | tuple = ()) -> dict[str, MixReport]:
    """Write ``config.output/<method>`` for every method in ``config.methods``; ``reuse_from``:
    sets of an earlier run of this stage (one per method, named by it) to copy unchanged items from."""
    generated = read_manifest(config.generated)
    real = dataset if dataset is not None else _load_real_dataset(config)
    pairs, without_source = pair_with_sources(generated, real)
    resources = load_resources(config)
    reports = {}
    for method in config.methods:
        mixer = MIX_METHODS.get(method)
        donors = [Path(folder) for folder in reuse_from if Path(folder).name == method]
        reports[method] = write_mixed_set(method, mixer, pairs, real, config, resources, donors)
        reports[method].skipped_without_source = without_source
    return reports


def load_resources(config: MixConfig) -> MixResources:
    """What the methods asked for declare they need (``resources`` of their registration):
    the fractal bank (``bank``, for ``fractal``), the SHB CLIP (``clip``, for ``shb``)."""
    resources = MixResources()
    needs = {need for method in config.methods for need in MIX_METHODS.spec(method).metadata.get("resources", ())}
    if "bank" in needs:
        resources.bank = load_fractal_bank(config.fractals)
    if "clip" in needs:
        from genaug.clip import Clip
        from genaug.runtime import select_device

        device, _ = select_device(config.shb.device, "fp32")
        resources.clip = Clip.from_reference(config.shb.clip, device, stage="mix shb", field="shb.clip")
        resources.clip_identity = resources.clip.identity
    return resources


def _load_real_dataset(config: MixConfig) -> RealDataset:
    from genaug.data import load_dataset

    return load_dataset(config.dataset)


def pair_with_sources(records: list[SampleRecord], real: RealDataset) -> tuple[list[Pair], list[str]]:
    """Each generated record with its real source's row; ids of records made from no real image.

    A record whose source id the real set lacks, or whose class the real set lacks, is an
    error: mixing it with something else would silently change the method.
    """
    rows = {image_id: row for row, image_id in enumerate(real.ids)}
    classes = set(real.class_names)
    pairs, without_source = [], []
    for record in records:
        if record.class_name not in classes:
            raise ValueError(
                f"generated record {record.id} has class {record.class_name!r}, which the real dataset "
                f"{real.name}/{real.split} lacks (classes: {real.class_names[:10]}...)"
            )
        if not record.source_ids:
            without_source.append(record.id)  # txt2img / sdi images have no original to mix with
            continue
        if record.source_ids[0] not in rows:
            raise ValueError(
                f"generated record {record.id}: source id {record.source_ids[0]!r} is not in the real dataset "
                f"{real.name}/{real.split}: mix with the dataset and split the set was generated from"
            )
        pairs.append(Pair(record, rows[record.source_ids[0]]))
    pairs.sort(key=lambda pair: pair.record.id)
    return pairs, without_source


def write_mixed_set(
    method: str,
    mixer: Callable[[MixBatch, MixConfig, MixResources], Mixed],
    pairs: list[Pair],
    real: RealDataset,
    config: MixConfig,
    resources: MixResources,
    reuse_from: list[Path] | tuple = (),
) -> MixReport:
    """Mix every pair not yet recorded in ``output/<method>``, batch by batch of equal image size,
    after copying those an earlier set (``reuse_from``) holds under the same input key.

    A mixer's extra files (SHB heatmaps) are written before the item's image and record.
    """
    set_dir = Path(config.output) / method
    keys = mix_input_keys(pairs, method, real, config)
    with SetWriter(set_dir) as writer:
        todo = [pair for pair in pairs if mixed_id(pair, method) not in writer.done]
        report = MixReport(set_dir, method, total=len(pairs), already_done=len(pairs) - len(todo))
        donors = find_donors({mixed_id(pair, method): keys[mixed_id(pair, method)] for pair in todo}, list(reuse_from))
        copies = [SimpleNamespace(id=mixed_id(pair, method), class_name=pair.record.class_name) for pair in todo if mixed_id(pair, method) in donors]
        copy_from_donors(copies, donors, writer, config.batch_size)
        report.reused = len(copies)
        todo = [pair for pair in todo if mixed_id(pair, method) not in donors]
        work_size = (config.shb.size,) * 2 if method == "shb" and config.shb.size else None
        with progress_bar(len(todo), f"mix {method}", enabled=config.progress, unit="images") as progress:
            for batch in size_batches(todo, real, config.batch_size):
                originals, generated = load_pair_batch(batch, real, Path(config.generated), work_size)
                rngs = [seed_rng(item_seed(config.seed, mixed_id(pair, method))) for pair in batch]
                mixed = mixer(MixBatch(method, batch, originals, generated, rngs), config, resources)
                for i, pair in enumerate(batch):
                    for path, image in (mixed.files[i] if mixed.files else {}).items():
                        save_image_atomic(image, set_dir / check_relative_path(path))
                    params = {**mixed.params[i], "input_key": keys[mixed_id(pair, method)]}
                    record = mixed_record(pair, method, params, config, writer)
                    writer.add(record, mixed.images[i].permute(1, 2, 0).numpy())
                    report.made += 1
                    progress.advance(1)
    return report


# ---------------------------------------------------------------------------- steps


def mixed_id(pair: Pair, method: str) -> str:
    return f"{pair.record.id}-{method}"


def mix_input_key(pair: Pair, method: str, source: str, settings: dict[str, Any], generated_dir: Path) -> str:
    """``sha256(json({method, mixed id, settings, generated record's input key (else its image's
    bytes), id, seed and prompt, real source content}))[:24]``."""
    record = pair.record
    edit = record.params.get("input_key")
    if edit is None:
        edit = hashlib.sha256(record_file(generated_dir, record).read_bytes()).hexdigest()
    content = {
        "method": method, "id": mixed_id(pair, method), "settings": settings, "edit": edit,
        "edit_id": record.id, "edit_seed": record.seed, "prompt": record.prompt, "source": source,
    }  # fmt: skip
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:24]


def mix_input_keys(pairs: list[Pair], method: str, real: RealDataset, config: MixConfig) -> dict[str, str]:
    """:func:`mix_input_key` of every pair, by mixed id. The settings are the config without
    where it reads and writes and how it batches (per-sample mixing does not depend on it)."""
    settings = config.model_dump(mode="json", exclude={"generated", "output", "dataset", "methods", "batch_size", "progress"})
    return {
        mixed_id(pair, method): mix_input_key(pair, method, row_digest(real, pair.source_row), settings, Path(config.generated))
        for pair in pairs
    }


def size_batches(pairs: list[Pair], real: RealDataset, batch_size: int) -> list[list[Pair]]:
    """Consecutive batches of pairs whose originals share one size (mixing is batched per size)."""
    by_size: dict[tuple[int, int], list[Pair]] = defaultdict(list)
    for pair in pairs:
        by_size[real.image_hw(pair.source_row)].append(pair)
    batches = []
    for group in by_size.values():
        batches += [group[start : start + batch_size] for start in range(0, len(group), batch_size)]
    return batches


def load_pair_batch(
    batch: list[Pair], real: RealDataset, generated_dir: Path, size: tuple[int, int] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (N, 3, H, W) originals and the generated images resized to the originals' size,
    or both resized to ``size`` (the edits from their own files, not from a downsized copy)."""
    originals = np.stack(real.rgb_batch([pair.source_row for pair in batch]))
    originals = torch.from_numpy(originals).permute(0, 3, 1, 2).contiguous()
    if size is not None:
        originals = resize_images(originals, size)
    size = tuple(originals.shape[-2:])
    generated = []
    for pair in batch:
        array = torch.from_numpy(np.array(load_rgb(record_file(generated_dir, pair.record)), dtype=np.uint8)).permute(2, 0, 1)
        generated.append(resize_images(array.unsqueeze(0), size)[0])
    return originals, torch.stack(generated)


def mixed_record(pair: Pair, method: str, params: dict[str, Any], config: MixConfig, writer: SetWriter) -> SampleRecord:
    source = pair.record
    item_id = mixed_id(pair, method)
    return SampleRecord(
        id=item_id,
        path=writer.image_path(item_id, source.class_name),
        label=source.label,
        class_name=source.class_name,
        method=method,
        source_ids=[pair.source_id, source.id],
        prompt=source.prompt,
        negative_prompt=source.negative_prompt,
        params=params,
        seed=item_seed(config.seed, item_id),
        model=source.model,
        kept=source.kept,
    )
