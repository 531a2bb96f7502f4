"""The ``filter`` stage: score every image of a synthetic set and mark which ones to keep.

:func:`filter_set` reads as the procedure:

1. read the set's records (shard manifests are merged first);
2. take the verdict before filtering: what the generator decided (degenerate outputs are
   recorded ``kept = False`` with ``params.degenerate``), so rerunning the stage with other
   filters starts from the same place rather than from the previous run's verdict;
3. build the configured filters and let each prepare (models, text embeddings, real
   reference features);
4. take the scores the set's score cache or those of earlier sets of the stage hold for a
   record's image and the filter's inputs (:mod:`genaug.filtering.cache`);
5. read the images of the other records once, in chunks, and let every filter score each
   chunk (CLIP image embeddings are computed once per chunk and shared by the CLIP filters);
6. apply the filters in order over all scores, each deciding among the records the previous
   ones kept (the selection is always recomputed over the whole set);
7. write the score cache, the scores into ``record.scores`` and the verdict into
   ``record.kept``, rewrite the manifest atomically, and write ``filter.json`` (counts, what
   dropped which id, how many scores were reused and from which set).

Files are never deleted or moved. Unreadable images are marked not kept (listed in the
report). Time and memory are linear in the number of records.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from genaug.data.images import load_rgb
from genaug.data.progress import default_workers
from genaug.diffusion.models import clip_reference, resolve_model
from genaug.files import write_json_atomic
from genaug.filtering.cache import write_cache
from genaug.filtering.registry import Filter, create_filter
from genaug.manifest import SampleRecord, merge_shards, read_manifest, record_file, shard_manifests, write_manifest
from genaug.progress import progress_bar

if TYPE_CHECKING:  # pragma: no cover
    from genaug.filtering.config import FilterConfig

REPORT_FILE = "filter.json"


@dataclass
class ImageChunk:
    """Consecutive records ``rows`` and their images (uint8 (H, W, 3)); ``readable`` per image."""

    index: int
    rows: np.ndarray
    images: list[np.ndarray]
    readable: np.ndarray


@dataclass
class FilterReport:
    """What a filter run did; also written to ``<set>/filter.json``."""

    set_dir: Path
    total: int
    kept: int
    dropped_before: int  # not kept before filtering (degenerate outputs)
    unreadable: list[str]
    dropped: dict[str, list[str]]  # filter name -> ids it dropped
    score_keys: list[str] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    clip_batch_size: int | None = None  # images per CLIP call, after any out-of-memory halving (None: CLIP unused)
    scores_reused: dict[str, dict[str, int]] = field(default_factory=dict)  # filter -> set read from ("" = this set) -> records
    scores_made: dict[str, int] = field(default_factory=dict)  # filter -> records scored by this run

    def to_json(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "kept": self.kept,
            "dropped_before": self.dropped_before,
            "dropped_counts": {name: len(ids) for name, ids in self.dropped.items()},
            "unreadable": self.unreadable,
            "dropped": self.dropped,
            "score_keys": self.score_keys,
            "notes": self.notes,
            "seconds": self.seconds,
            "clip_batch_size": self.clip_batch_size,
            "scores_reused": self.scores_reused,
            "scores_made": self.scores_made,
        }


# ---------------------------------------------------------------------------- context


class FilterContext:
    """What filters share: the records' classes, CLIP (loaded once), per-chunk CLIP
    embeddings, the real dataset, the classifier."""

    def __init__(self, config: FilterConfig, records: list[SampleRecord], clip=None, real=None, classifier=None) -> None:
        from genaug.runtime import select_device

        self.config = config
        self.batch_size = config.batch_size
        self.device, _ = select_device(config.device, "fp32")
        self.num_records = len(records)
        # Classes by name, ordered by label: the class of a record is its class_name.
        by_label = sorted({(record.label, record.class_name) for record in records})
        self.class_names = list(dict.fromkeys(name for _, name in by_label))
        index = {name: i for i, name in enumerate(self.class_names)}
        self.class_ids = np.array([index[record.class_name] for record in records], dtype=np.int64)
        self._clip = clip
        self._real = real
        self._classifier = classifier
        self._embeds: tuple[int, np.ndarray] | None = None

    @property
    def clip(self):
        if self._clip is None:
            from genaug.clip import Clip

            self._clip = Clip.from_reference(self.config.clip, self.device, stage="filter")
        return self._clip

    @property
    def clip_identity(self) -> dict:
        """The CLIP's identity (weights hash, id or path) without loading it, for score cache keys."""
        if self._clip is not None:
            return self._clip.identity or {"name": self._clip.name}
        return resolve_model(clip_reference(self.config.clip), field="clip").identity

    @property
    def clip_batch_size(self) -> int | None:
        """Images per CLIP call this run used (None when no filter needed CLIP)."""
        return self._clip.batch_size_used(self.batch_size) if self._clip is not None else None

    @property
    def logit_scale(self) -> float:
        return float(self.clip.model.logit_scale.detach().exp())

    def text_embeds(self, texts: list[str]) -> np.ndarray:
        """Normalised CLIP text embeddings (len(texts), D)."""
        return self.clip.text_embeds(texts, batch_size=self.batch_size).numpy()

    def embed_images(self, images: list[np.ndarray]) -> np.ndarray:
        """Unnormalised CLIP image embeddings (N, D)."""
        return self.clip.image_embeds(images, normalize=False, batch_size=self.batch_size).numpy()

    def image_embeds(self, chunk: ImageChunk) -> np.ndarray:
        """:meth:`embed_images` of a chunk, computed once however many filters ask."""
        if self._embeds is None or self._embeds[0] != chunk.index:
            self._embeds = (chunk.index, self.embed_images(chunk.images))
        return self._embeds[1]

    def real_splits(self, splits: list[str]) -> dict[str, Any]:
        """The real dataset's ``splits`` (from ``config.dataset`` unless given)."""
        if self._real is None:
            if self.config.dataset is None:
                raise ValueError("this filter compares against the real dataset: set 'dataset' in the filter config")
            from genaug.data import load_splits

            self._real = load_splits(self.config.dataset)
        missing = [s for s in splits if s not in self._real]
        if missing:
            raise ValueError(f"the real dataset has no split(s) {missing}")
        return {split: self._real[split] for split in splits}

    def classifier(self, run: Path | None):
        if self._classifier is None:
            if run is None:
                raise ValueError("the classifier filter needs 'run' (a genaug train run folder) or a classifier passed in")
            # across siblings on purpose: the filter scores with a classifier genaug trained, loaded by training
            from genaug.training.classifier import load_classifier

            self._classifier = load_classifier(run, self.device)
        return self._classifier


# ---------------------------------------------------------------------------- the stage


def filter_set(config: FilterConfig, *, clip=None, real=None, classifier=None, reuse_from=()) -> FilterReport:
    """Score and mark the synthetic set ``config.set_dir`` (module doc).

    ``clip`` (a :class:`genaug.clip.Clip`), ``real`` (``{"train": RealDataset, ...}``) and
    ``classifier`` (a :class:`genaug.training.classifier.Classifier`) may be passed in;
    otherwise they are loaded from the config. ``reuse_from``: earlier filtered sets (of this
    stage, e.g. before images were added) whose cached scores are taken where they apply.
    """
    started = time.perf_counter()
    set_dir = Path(config.set_dir)
    records = read_set(set_dir)
    before = verdict_before_filtering(records)
    filters = [create_filter(spec) for spec in config.filters]
    context = FilterContext(config, records, clip=clip, real=real, classifier=classifier)
    for f in filters:
        f.prepare(context)

    cached = CachedScores.plan(set_dir, records, filters, context, reuse_from)
    scores, readable = score_records(set_dir, records, filters, context, cached)
    keep, dropped, notes = apply_in_order(filters, scores, context.class_ids, before & readable, records)

    write_cache(set_dir, cached.entries(scores, readable))
    mark_records(records, scores, keep, stale=previous_score_keys(set_dir) - set(scores))
    write_manifest(set_dir, records)
    report = FilterReport(
        set_dir=set_dir,
        total=len(records),
        kept=int(keep.sum()),
        dropped_before=int((~before).sum()),
        unreadable=[records[i].id for i in np.flatnonzero(~readable)],
        dropped=dropped,
        score_keys=sorted(scores),
        notes=notes,
        seconds=time.perf_counter() - started,
        clip_batch_size=context.clip_batch_size,
        scores_reused=cached.reused_counts(),
        scores_made=cached.made_counts(),
    )
    write_filter_report(set_dir, report, config)
    return report


def apply_in_order(
    filters: list[Filter], scores: dict[str, np.ndarray], labels: np.ndarray, keep: np.ndarray, records: list[SampleRecord]
) -> tuple[np.ndarray, dict[str, list[str]], dict[str, Any]]:
    """Each filter decides among the records the previous ones kept; returns the final keep
    mask, the ids each filter dropped and the filters' notes on them (by record id)."""
    keep = keep.copy()
    dropped: dict[str, list[str]] = {}
    notes: dict[str, Any] = {}
    for position, f in enumerate(filters):
        label = f.name if f.name not in dropped else f"{f.name}#{position}"  # the same filter twice
        verdict = np.asarray(f.decide(scores, labels, keep.copy()), dtype=bool)
        lost = np.flatnonzero(keep & ~verdict)
        dropped[label] = [records[i].id for i in lost]
        note = f.notes(lost)
        if note:
            notes[label] = {key: {records[row].id: value for row, value in found.items()} for key, found in note.items()}
        keep &= verdict
    return keep, dropped, notes


def read_set(set_dir: Path) -> list[SampleRecord]:
    """The set's records, shard manifests merged into ``manifest.jsonl`` first (the filter rewrites it)."""
    if shard_manifests(set_dir):
        return merge_shards(set_dir)
    return read_manifest(set_dir)


def verdict_before_filtering(records: list[SampleRecord]) -> np.ndarray:
    """The generator's verdict: False for outputs recorded as degenerate, True otherwise."""
    return np.array([not record.params.get("degenerate", False) for record in records], dtype=bool)


def filter_labels(filters: list[Filter]) -> list[str]:
    """Each filter's name in reports (``name#position`` for a repeated filter)."""
    labels: list[str] = []
    for position, f in enumerate(filters):
        labels.append(f.name if f.name not in labels else f"{f.name}#{position}")
    return labels


@dataclass
class CachedScores:
    """Which scores of which records come from a score cache (:mod:`genaug.filtering.cache`).

    ``have[f]``: records whose filter-f scores were found; ``found[f][row]``: those scores;
    ``source[f][row]``: the set they were read from (None: this set's own cache).
    """

    labels: list[str]
    items: list[str]
    scorers: list[str | None]
    have: list[np.ndarray]
    found: list[dict[int, dict[str, float]]]
    source: list[dict[int, str | None]]
    columns: list[set[str]] = field(default_factory=list)  # score names of each filter

    @classmethod
    def plan(cls, set_dir: Path, records: list[SampleRecord], filters: list[Filter], context, reuse_from=()) -> "CachedScores":
        from genaug.filtering.cache import item_key, read_cache, scorer_key

        scorers = [scorer_key(f.score_inputs(context)) for f in filters]
        items = [item_key(set_dir, record) for record in records] if any(s is not None for s in scorers) else []
        cache = read_cache(set_dir, reuse_from) if items else None
        have, found, source = [], [], []
        for scorer in scorers:
            mine_found, mine_source = {}, {}
            for row, item in enumerate(items):
                entry = cache.get(item, scorer) if cache is not None else None
                if entry is not None:
                    mine_found[row], mine_source[row] = entry
            mask = np.zeros(len(records), dtype=bool)
            mask[list(mine_found)] = True
            have.append(mask)
            found.append(mine_found)
            source.append(mine_source)
        return cls(filter_labels(filters), items, scorers, have, found, source, [set() for _ in filters])

    def rows_to_score(self, n: int) -> np.ndarray:
        """Records some filter has no cached scores for."""
        missing = np.zeros(n, dtype=bool)
        for mask in self.have:
            missing |= ~mask
        return np.flatnonzero(missing)

    def entries(self, scores: dict[str, np.ndarray], readable: np.ndarray) -> list[tuple[str, str, dict[str, float]]]:
        """What the set's score cache holds after this run: every readable record's finite
        scores of every cached filter."""
        out = []
        for f, scorer in enumerate(self.scorers):
            if scorer is None:
                continue
            for row in np.flatnonzero(readable):
                values = {name: float(scores[name][row]) for name in sorted(self.columns[f]) if np.isfinite(scores[name][row])}
                if values:
                    out.append((self.items[row], scorer, values))
        return out

    def reused_counts(self) -> dict[str, dict[str, int]]:
        """Filter -> the set its scores were read from (``""``: this set's own cache) -> records."""
        counts: dict[str, dict[str, int]] = {}
        for label, sources in zip(self.labels, self.source):
            for where in sources.values():
                per = counts.setdefault(label, {})
                per[where or ""] = per.get(where or "", 0) + 1
        return counts

    def made_counts(self) -> dict[str, int]:
        return {label: int((~mask).sum()) for label, mask in zip(self.labels, self.have)}


def score_records(
    set_dir: Path, records: list[SampleRecord], filters: list[Filter], context: FilterContext, cached: CachedScores | None = None
):
    """Every filter's score columns over all records and the readable mask: cached scores taken,
    the other records' images read once and scored. A record scored only from the cache counts as
    readable when its image file is there."""
    columns: dict[str, np.ndarray] = {}
    readable = np.ones(len(records), dtype=bool)
    if cached is None:
        cached = CachedScores(filter_labels(filters), [], [None] * len(filters),
                              [np.zeros(len(records), dtype=bool) for _ in filters], [{} for _ in filters],
                              [{} for _ in filters], [set() for _ in filters])  # fmt: skip
    for f, found in enumerate(cached.found):
        for row, values in found.items():
            for name, value in values.items():
                columns.setdefault(name, np.full(len(records), np.nan))[row] = value
                cached.columns[f].add(name)
    todo = cached.rows_to_score(len(records))
    for row in np.setdiff1d(np.arange(len(records)), todo):
        readable[row] = record_file(set_dir, records[row]).is_file()
    shown = context.config.progress and len(todo) >= 1000  # small sets finish before a bar helps
    with progress_bar(len(todo), "filtering", enabled=shown, stderr=True, transient=True) as progress:
        for chunk in image_chunks(set_dir, records, context.batch_size, todo):
            readable[chunk.rows] = chunk.readable
            for f, filt in enumerate(filters):
                missing = ~cached.have[f][chunk.rows]
                if not missing.any():
                    continue
                for name, values in filt.score(chunk, context).items():
                    column = columns.setdefault(name, np.full(len(records), np.nan))
                    column[chunk.rows[missing]] = np.asarray(values)[missing]
                    cached.columns[f].add(name)
            progress.advance(len(chunk.rows))
    for column in columns.values():
        column[~readable] = np.nan
    return columns, readable


def previous_score_keys(set_dir: Path) -> set[str]:
    """The score names the previous filter run wrote (from its report), if any."""
    try:
        return set(json.loads((set_dir / REPORT_FILE).read_text(encoding="utf-8")).get("score_keys", []))
    except (OSError, ValueError):
        return set()


def mark_records(records: list[SampleRecord], scores: dict[str, np.ndarray], keep: np.ndarray, stale: set[str] = frozenset()) -> None:
    """Write each record's scores (finite values only) and verdict; drop ``stale`` scores a previous
    filter run wrote and this one did not recompute (they no longer back the verdict)."""
    names = list(scores)
    for i, record in enumerate(records):
        for name in stale:
            record.scores.pop(name, None)
        for name in names:
            value = float(scores[name][i])
            if np.isfinite(value):
                record.scores[name] = value
            else:
                record.scores.pop(name, None)
        record.kept = bool(keep[i])


def write_filter_report(set_dir: Path, report: FilterReport, config: FilterConfig) -> Path:
    path = set_dir / REPORT_FILE
    data = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "filters": config.filters,
        "clip": config.clip,
        **report.to_json(),
    }
    return write_json_atomic(path, data, indent=1)


# ---------------------------------------------------------------------------- reading images


#: Stands in for an unreadable image so that arrays stay aligned; its scores are discarded.
_PLACEHOLDER = np.zeros((8, 8, 3), dtype=np.uint8)


def read_image(path: Path) -> np.ndarray | None:
    """An RGB uint8 array (:func:`genaug.data.images.load_rgb`), or None when the file is missing or does not decode."""
    try:
        return np.array(load_rgb(path))  # a writable copy (torch warns on read-only arrays)
    except (OSError, ValueError, SyntaxError):
        return None


def image_chunks(set_dir: Path, records: list[SampleRecord], batch_size: int, rows: np.ndarray | None = None) -> Iterator[ImageChunk]:
    """The images of the records ``rows`` (default all), ``batch_size`` at a time, decoded in
    threads (Pillow releases the GIL); a chunk's ``rows`` index ``records``."""
    order = np.arange(len(records)) if rows is None else np.asarray(rows, dtype=np.int64)
    with ThreadPoolExecutor(default_workers()) as pool:
        for index, start in enumerate(range(0, len(order), batch_size)):
            rows = order[start : start + batch_size]
            images = list(pool.map(lambda i: read_image(record_file(set_dir, records[i])), rows))
            readable = np.array([image is not None for image in images], dtype=bool)
            yield ImageChunk(index, rows, [image if image is not None else _PLACEHOLDER for image in images], readable)
