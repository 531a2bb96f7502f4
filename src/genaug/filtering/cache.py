"""The filter stage's score cache: per record and scorer, the scores once computed.

Filters choose over the whole set (keep the top fraction of a class, ...), so the verdict is
recomputed over all scores on every run; only the scores are reused. A score depends on the
record's image and class and on what its filter declares (``Filter.score_inputs``: its
parameters, the CLIP, the set's classes, the classifier), so it is cached under

- the item key (:func:`item_key`): ``sha256(json({image, class name}))[:24]`` with ``image``
  the record's ``params.input_key`` (the generator's digest of everything that decides the
  image; an incremental pass copies the image itself, so equal keys are equal pixels), else
  the SHA-256 of the image file;
- the scorer key (:func:`scorer_key`): ``sha256(json(score_inputs))[:24]``.

``<set>/filter-scores.jsonl`` holds one line per (record, scorer): ``{"item", "scorer",
"scores"}``, rewritten whole (temporary file, rename) before the manifest, so a killed run
leaves either the old or the new file. The filter stage reads the set's own file and those of
earlier sets of the stage (``reuse_from``); a score found there is not computed again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genaug.files import atomic_path
from genaug.manifest import SampleRecord, record_file
from genaug.reuse import donor_name

SCORES_FILE = "filter-scores.jsonl"


def _digest(content: Any) -> str:
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:24]


def scorer_key(inputs: dict[str, Any] | None) -> str | None:
    """The cache key of a filter's ``score_inputs`` (None: its scores are not cached)."""
    return None if inputs is None else _digest(inputs)


def item_key(set_dir: Path, record: SampleRecord) -> str:
    """The cache key of a record's image and class (module doc)."""
    image = record.params.get("input_key")
    if image is None:
        path = record_file(set_dir, record)
        image = "sha256:" + (hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "missing")
    return _digest({"image": image, "class_name": record.class_name})


@dataclass
class ScoreCache:
    """Scores by (item key, scorer key), each with the set it was read from (None: this set)."""

    entries: dict[tuple[str, str], tuple[dict[str, float], str | None]] = field(default_factory=dict)

    def get(self, item: str, scorer: str | None) -> tuple[dict[str, float], str | None] | None:
        return None if scorer is None else self.entries.get((item, scorer))


def read_cache(set_dir: Path, reuse_from: list[Path] | tuple = ()) -> ScoreCache:
    """The score files of ``set_dir`` and of the earlier sets ``reuse_from`` (first found wins);
    unreadable files and lines are skipped (their scores are computed again)."""
    cache = ScoreCache()
    for folder in [Path(set_dir), *map(Path, reuse_from)]:
        path = folder / SCORES_FILE
        if not path.is_file():
            continue
        source = None if folder.resolve() == Path(set_dir).resolve() else donor_name(folder, set_dir)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            continue
        for line in lines:
            try:
                entry = json.loads(line)
                key, scores = (entry["item"], entry["scorer"]), entry["scores"]
            except (ValueError, KeyError, TypeError):
                continue
            if isinstance(scores, dict) and key not in cache.entries:
                cache.entries[key] = ({str(k): float(v) for k, v in scores.items()}, source)
    return cache


def write_cache(set_dir: Path, entries: list[tuple[str, str, dict[str, float]]]) -> Path:
    """Rewrite ``<set>/filter-scores.jsonl`` with ``(item, scorer, scores)`` entries, atomically."""
    path = Path(set_dir) / SCORES_FILE
    with atomic_path(path, fsync=True) as tmp:
        with tmp.open("w", encoding="utf-8") as handle:
            for item, scorer, scores in entries:
                handle.write(json.dumps({"item": item, "scorer": scorer, "scores": scores}, sort_keys=True) + "\n")
    return path
