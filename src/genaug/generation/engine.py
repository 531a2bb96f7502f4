"""The generation engine: work items -> batches -> images and records in a synthetic set.

``run_job`` reads as the procedure of docs/manifest.md:

1. plan batches: the job's items, in order, cut into batches of ``batch_size``. The plan
   is a pure function of the job, so every run, resume and shard computes every image in
   the same batch at the same position;
2. take this shard's batches (every ``world``-th, from ``rank``);
3. skip the batches whose items are all recorded with a readable image (the manifest is
   the truth); a partly recorded batch (the one in flight when a run was killed) is made
   again whole and only its missing items are written;
4. render each batch with one pipeline call (halving the batch on out-of-memory,
   :mod:`genaug.memory`; the size used is recorded as ``params.batch_size``), regenerate
   degenerate outputs with the next derived seeds;
5. write the batch's images (temporary name, rename), sync them once, then append their
   records and fsync the manifest once (``SetWriter.add_batch``);
6. launched shards wait for each other and rank 0 merges the shard manifests.

Incremental passes: when the job knows each item's source content (``sources``), every
record carries ``params.input_key``, a digest of everything that decides its image
(:func:`item_input_key`: id, seed, prompt, label, the source image's content, the
renderer's parameters, the model). Given earlier sets of the same stage (``reuse_from``,
e.g. the set made before images were added), an item whose key one of them holds is
copied from it (its image and record, ``params.reused_from`` naming the set) instead of
being made; the plan of step 1 then covers only the items left to make. That plan is a
pure function of the job and the earlier sets, so a kill during an incremental pass
resumes exactly as one during a full pass (copies are written like made images: images
first, then their records).

Why a fixed plan: on the CPU, oneDNN convolutions and small GEMMs give results that
differ in the last float bits between a batch of one and larger batches, and between rows
inside and outside a full GEMM row-block (measured: ~1e-6 on the UNet output). Fixing the
batch composition makes resume and sharding bit-identical whatever the kernels do; an image
made in a batch of 8 and the same item made alone agree to about 1e-6 (at most one grey
level after rounding), see tests/test_generation_engine.py.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from genaug.degenerate import is_degenerate
from genaug.files import write_json_atomic
from genaug.generation.items import WorkItem, check_unique_ids
from genaug.home import cache_dir
from genaug.manifest import (
    SampleRecord,
    SetWriter,
    image_readable,
    merge_shards,
    read_manifest,
    record_file,
    save_image_atomic,
    storage_errors,
)
from genaug.memory import BatchBackoff
from genaug.progress import progress_bar
from genaug.reuse import copy_from_donors, find_donors
from genaug.runtime import Shard, resolve_shard, wait_for_all
from genaug.seeds import item_seed


class Renderer(Protocol):
    """What the engine needs from an editor (or any generator, e.g. SDI's)."""

    method: str

    def render(self, items: Sequence[WorkItem], seeds: Sequence[int]) -> np.ndarray: ...

    def params(self) -> dict[str, Any]: ...

    def rate_key(self) -> dict[str, Any]: ...


@dataclass
class JobReport:
    """What a run did (or, for a dry run, would do)."""

    set_dir: Path
    shard: Shard
    total_items: int  # in the whole job
    shard_items: int  # in this shard's batches
    already_done: int  # recorded with a readable image before this run
    made: int = 0  # images written by this run
    regenerated: int = 0  # extra renders of degenerate outputs
    degenerate: int = 0  # still degenerate after every allowed regeneration
    reused: int = 0  # copied from earlier sets (reuse_from) instead of made, by this run or before
    seconds: float = 0.0
    batch_size: int = 0  # final batch size (smaller than asked after out-of-memory)
    estimated_seconds: float | None = None  # dry run only
    estimate_source: str | None = None  # "stored rate" or "one timed batch"
    merged: bool = False

    @property
    def images_per_second(self) -> float:
        return self.made / self.seconds if self.seconds > 0 else 0.0


@dataclass
class RenderedBatch:
    images: np.ndarray  # uint8 (N, H, W, 3)
    seeds: list[int]
    attempts: list[int]  # renders made per item (1 = the first one was kept)
    degenerate: np.ndarray  # bool per item, after the last attempt
    extra_renders: int = 0
    batch_size: int | None = None  # images per pipeline call, after any out-of-memory halving


# ---------------------------------------------------------------------------- the stage


def run_job(
    items: Sequence[WorkItem],
    renderer: Renderer,
    set_dir: str | Path,
    *,
    experiment_seed: int,
    engine,
    model: dict[str, Any] | None = None,
    extra_params: dict[str, Any] | None = None,
    sources: Callable[[WorkItem], str] | None = None,
    reuse_from: Sequence[str | Path] = (),
) -> JobReport:
    """Make every item of ``items`` that the set does not hold yet; see the module docstring.

    ``engine`` is an :class:`genaug.config.EngineConfig`; ``model`` (the identity of the
    weights) and ``extra_params`` are copied into every record. ``sources``: an item's
    source content digest ("" for none), which turns on ``params.input_key``;
    ``reuse_from``: earlier sets whose items of equal input key are copied, not made.
    """
    set_dir = Path(set_dir)
    check_unique_ids(list(items))
    shard = resolve_shard(engine.shard)
    keys = input_keys(items, renderer, model, extra_params, sources) if sources is not None else {}
    donors = find_donors(keys, [Path(path) for path in reuse_from if Path(path).resolve() != set_dir.resolve()])
    batches = plan_batches([item for item in items if item.id not in donors], engine.batch_size)[shard.rank :: shard.world]
    copies = [item for index, item in enumerate(items) if item.id in donors and index % shard.world == shard.rank]
    if engine.dry_run:  # reads the set, writes nothing
        done = completed_ids(set_dir)
        todo = [batch for batch in batches if any(item.id not in done for item in batch)]
        report = new_report(set_dir, shard, items, batches, done, engine, copies)
        return estimate_job(todo, renderer, report, engine, copying=sum(1 for item in copies if item.id not in done))

    with storage_errors(set_dir):
        report = write_batches(
            items, batches, renderer, set_dir, shard, experiment_seed, engine, model, extra_params, keys, donors, copies
        )
    if report.made:
        store_rate(renderer, engine, report.images_per_second)
    report.merged = finish_shards(shard, set_dir)
    return report


def write_batches(
    items: Sequence[WorkItem],
    batches: list[list[WorkItem]],
    renderer: Renderer,
    set_dir: Path,
    shard: Shard,
    experiment_seed: int,
    engine,
    model: dict[str, Any] | None,
    extra_params: dict[str, Any] | None,
    keys: dict[str, str] | None = None,
    donors: dict[str, tuple[Path, SampleRecord]] | None = None,
    copies: Sequence[WorkItem] = (),
) -> JobReport:
    """Steps 3-5: copy the items earlier sets hold (``copies``, from ``donors``), render the
    batches the set lacks and write their images, then their records."""
    writer = SetWriter(set_dir, rank=shard.writer_rank)  # a sole writer also removes a killed run's temporaries
    try:
        todo = [batch for batch in batches if any(item.id not in writer.done for item in batch)]
        unreadable = records_without_image(set_dir, writer)
        report = new_report(set_dir, shard, items, batches, writer.done, engine, copies)
        copy_from_donors([item for item in copies if item.id not in writer.done], donors or {}, writer, engine.batch_size)
        render = BatchRenderer(renderer, engine.batch_size)
        started = time.perf_counter()
        description = "generating" + (f" (shard {shard.rank}/{shard.world})" if shard.world > 1 else "")
        with progress_bar(report.shard_items - report.already_done, description, enabled=engine.progress, unit="images") as progress:
            for batch in todo:
                rendered = render_with_regeneration(render, batch, experiment_seed, engine.max_regenerations)
                rendered.batch_size = render.batch_size
                report.regenerated += rendered.extra_renders
                made_before, new_records = report.made, []
                for index, item in enumerate(batch):
                    if item.id in writer.done:  # recorded before the kill; same pixels, keep the first
                        continue
                    if item.id in unreadable:  # recorded, but its file was lost: restore the file only
                        save_image_atomic(rendered.images[index], set_dir / unreadable[item.id].path)
                    else:
                        record = make_record(item, rendered, index, renderer, writer, model, extra_params, (keys or {}).get(item.id))
                        new_records.append((record, rendered.images[index]))
                    report.made += 1
                    report.degenerate += int(rendered.degenerate[index])
                writer.add_batch(new_records)  # images, one sync, then their records
                progress.advance(report.made - made_before)
        report.seconds = time.perf_counter() - started
        report.batch_size = render.batch_size
    finally:
        writer.close()
    return report


# ---------------------------------------------------------------------------- steps


def new_report(
    set_dir: Path, shard: Shard, items: Sequence[WorkItem], batches: list[list[WorkItem]], done, engine, copies=()
) -> JobReport:
    """Counts of this shard: ``shard_items`` and ``already_done`` cover the items to make and
    the items to copy (``copies``) alike; ``reused`` counts the copies."""
    return JobReport(
        set_dir=set_dir,
        shard=shard,
        total_items=len(items),
        shard_items=sum(len(batch) for batch in batches) + len(copies),
        already_done=sum(1 for batch in batches for item in batch if item.id in done)
        + sum(1 for item in copies if item.id in done),
        reused=len(copies),
        batch_size=engine.batch_size,
    )


# ---------------------------------------------------------------------------- incremental passes


def item_input_key(
    item: WorkItem, renderer_params: dict[str, Any], model: dict[str, Any] | None, extra_params: dict[str, Any] | None, source: str
) -> str:
    """``sha256(json({id, seed, label, class, prompt, negative prompt, prompt index, source id,
    source content, item params and embedding, renderer params, extra params, model}))[:24]``:
    two items of equal key make the same image (up to the batch they are made in).

    Of an item's ``embedding`` (SDI: where its sampled vector is) only what it is counts, not
    where it is stored (``file``, ``row``): the vector's content is the item's ``source``."""
    embedding = item.extra.get("embedding")
    if embedding is not None:
        embedding = {key: value for key, value in embedding.items() if key not in ("file", "row")}
    content = {
        "id": item.id, "seed": item.seed, "label": item.label, "class_name": item.class_name,
        "prompt": item.prompt, "negative_prompt": item.negative_prompt, "prompt_index": item.prompt_index,
        "source_id": item.source_id, "source": source,
        "item_params": item.extra.get("params", {}), "embedding": embedding,
        "params": renderer_params, "extra": extra_params or {}, "model": model,
    }  # fmt: skip
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:24]


def input_keys(
    items: Sequence[WorkItem], renderer: Renderer, model: dict[str, Any] | None, extra_params: dict[str, Any] | None, sources
) -> dict[str, str]:
    """:func:`item_input_key` of every item, by id."""
    params = renderer.params()
    return {item.id: item_input_key(item, params, model, extra_params, sources(item)) for item in items}


def completed_ids(set_dir: Path) -> set[str]:
    """Ids recorded with a readable image (what SetWriter would skip), without opening the set for writing."""
    if not any(set_dir.glob("manifest*.jsonl")):
        return set()
    return {record.id for record in read_manifest(set_dir) if image_readable(record_file(set_dir, record))}


def plan_batches(items: Sequence[WorkItem], batch_size: int) -> list[list[WorkItem]]:
    """The job's items, in order, cut into consecutive batches of ``batch_size``."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return [list(items[start : start + batch_size]) for start in range(0, len(items), batch_size)]


class BatchRenderer:
    """Calls ``renderer.render`` in chunks of ``batch_size``, halving it on out-of-memory.

    The back-off is :class:`genaug.memory.BatchBackoff`: a halved size stays halved for the
    rest of the run and is recorded in every record's ``params.batch_size``; an item that
    does not fit alone stops the stage with :class:`genaug.memory.DoesNotFitError` naming
    the item and the renderer's ``stage`` (e.g. "editor instruct"; else "generate <method>").
    Retrying is safe because every image's noise comes from its own seed.
    """

    def __init__(self, renderer: Renderer, batch_size: int) -> None:
        self.renderer = renderer
        stage = getattr(renderer, "stage", None) or f"generate {renderer.method}"
        self.backoff = BatchBackoff(stage, batch_size, getattr(renderer, "device", None))

    @property
    def batch_size(self) -> int:
        return self.backoff.batch_size

    def __call__(self, items: Sequence[WorkItem], seeds: Sequence[int]) -> np.ndarray:
        outputs = self.backoff.run(
            lambda start, stop: self.renderer.render(items[start:stop], seeds[start:stop]),
            len(items),
            lambda index: f"item {items[index].id}",
        )
        return np.concatenate(outputs)


def render_with_regeneration(
    render: Callable[[Sequence[WorkItem], Sequence[int]], np.ndarray],
    batch: Sequence[WorkItem],
    experiment_seed: int,
    max_regenerations: int,
) -> RenderedBatch:
    """Render a batch; remake degenerate outputs with seed attempts 1, 2, ... (at most ``max_regenerations``).

    Regenerations of one batch run together as a smaller batch; each uses
    ``item_seed(experiment seed, item id, attempt)``.
    """
    seeds = [item.seed for item in batch]
    images = render(batch, seeds)
    attempts = [1] * len(batch)
    bad = is_degenerate(images)
    extra = 0
    for attempt in range(1, max_regenerations + 1):
        redo = np.flatnonzero(bad)
        if redo.size == 0:
            break
        redo_items = [batch[i] for i in redo]
        redo_seeds = [item_seed(experiment_seed, item.id, attempt) for item in redo_items]
        images[redo] = render(redo_items, redo_seeds)
        bad[redo] = is_degenerate(images[redo])
        for i, seed in zip(redo, redo_seeds):
            seeds[i] = seed
            attempts[i] = attempt + 1
        extra += len(redo)
    return RenderedBatch(images=images, seeds=seeds, attempts=attempts, degenerate=bad, extra_renders=extra)


def make_record(
    item: WorkItem,
    rendered: RenderedBatch,
    index: int,
    renderer: Renderer,
    writer: SetWriter,
    model: dict[str, Any] | None,
    extra_params: dict[str, Any] | None,
    input_key: str | None = None,
) -> SampleRecord:
    """The manifest record of one made image (docs/manifest.md); ``input_key``, when the job
    knows its items' sources, goes into ``params`` (incremental passes reuse by it).

    ``item.extra["params"]`` (an item's own settings, e.g. its strength) override the
    renderer's. An image still degenerate after every regeneration is kept on disk and recorded with
    ``params.degenerate`` and ``kept = False``, so reruns do not try it forever and filters
    and training see the verdict.
    """
    params = {**renderer.params(), **(extra_params or {}), **item.extra.get("params", {}), "attempts": rendered.attempts[index]}
    if rendered.batch_size is not None:
        params["batch_size"] = rendered.batch_size
    if item.prompt_index is not None:
        params["prompt_index"] = item.prompt_index
    if input_key is not None:
        params["input_key"] = input_key
    degenerate = bool(rendered.degenerate[index])
    if degenerate:
        params["degenerate"] = True
    return SampleRecord(
        id=item.id,
        path=writer.image_path(item.id, item.class_name),
        label=item.label,
        class_name=item.class_name,
        method=renderer.method,
        source_ids=[item.source_id] if item.source_id else [],
        prompt=item.prompt,
        negative_prompt=item.negative_prompt,
        params=params,
        seed=rendered.seeds[index],
        model=model,
        embedding=item.extra.get("embedding"),
        kept=not degenerate,
    )


def records_without_image(set_dir: Path, writer: SetWriter) -> dict[str, SampleRecord]:
    """Records whose image is missing or unreadable (deleted or damaged after the run).

    A kill cannot cause this (records follow their images); when it happens the image is
    remade into the existing record's path, so the manifest keeps one record per id.
    """
    if not any(set_dir.glob("manifest*.jsonl")):
        return {}
    return {record.id: record for record in read_manifest(set_dir) if record.id not in writer.done}


def finish_shards(shard: Shard, set_dir: Path) -> bool:
    """Launched shards wait for each other; rank 0 then merges their manifests."""
    if not shard.launched:
        return False
    wait_for_all(shard)
    merged = False
    if shard.rank == 0:
        merge_shards(set_dir)
        merged = True
    wait_for_all(shard)
    return merged


# ---------------------------------------------------------------------------- dry run and rates


def _rate_file(renderer: Renderer, engine) -> Path:
    key = {**renderer.rate_key(), "batch_size": engine.batch_size}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:24]
    return cache_dir("rates") / f"{digest}.json"


def stored_rate(renderer: Renderer, engine) -> float | None:
    """Images per second measured by an earlier run with the same model, parameters, device and batch size."""
    path = _rate_file(renderer, engine)
    try:
        return float(json.loads(path.read_text(encoding="utf-8"))["images_per_second"])
    except (OSError, ValueError, KeyError):
        return None


def store_rate(renderer: Renderer, engine, images_per_second: float) -> None:
    path = _rate_file(renderer, engine)
    write_json_atomic(path, {"images_per_second": images_per_second, "key": renderer.rate_key()}, indent=None)


def estimate_job(todo: list[list[WorkItem]], renderer: Renderer, report: JobReport, engine, copying: int = 0) -> JobReport:
    """Dry run: count what is left and estimate its time.

    The rate is the one stored by the last real run with the same model, parameters, device,
    dtype and batch size; without one, the first batch is rendered once and timed (nothing is
    written). That timing includes loading the model and first-call warm-up, so the estimate
    errs long. ``copying``: items of ``remaining`` to be copied from earlier sets (no time counted).
    """
    remaining = report.shard_items - report.already_done
    rate = stored_rate(renderer, engine)
    report.estimate_source = "stored rate"
    if rate is None and todo:
        batch = todo[0]
        started = time.perf_counter()
        BatchRenderer(renderer, engine.batch_size)(batch, [item.seed for item in batch])
        rate = len(batch) / (time.perf_counter() - started)
        report.estimate_source = "one timed batch"
    report.estimated_seconds = (remaining - copying) / rate if rate else 0.0
    from rich.console import Console

    Console(stderr=True).print(
        f"[bold]dry run[/bold] {report.set_dir}: {report.total_items} items in the job, "
        f"{report.shard_items} in shard {report.shard.rank}/{report.shard.world}, "
        f"{report.already_done} already made, [bold]{remaining} to make[/bold]"
        + (f" ({copying} of them copied from an earlier set)" if copying else "")
        + "; "
        f"estimated {_format_seconds(report.estimated_seconds)}"
        + (f" at {rate:.2f} images/s ({report.estimate_source})" if rate else "")
    )
    return report


def _format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"
