"""Which image was in which split when a run folder last ran, and what has changed since.

A run folder records the membership of its splits in ``splits.json``: for every split the
ids of its images with their content digests (empty for array datasets)::

    {"format": "genaug-splits-v1", "dataset": "folder", "splits": {"train": {"cat/01.jpg": "<sha256>", ...}, ...}}

:func:`split_report` compares the splits of this run with that record and returns the
lines to show: per split the images added, removed, moved in from another split and
edited (same id, other bytes), and, when the test split differs, that results on it are
not comparable with the folder's earlier ones. A folder written before splits were
recorded gets a one-time notice instead (the record is written from then on).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from genaug.data.base import RealDataset
from genaug.files import write_text_atomic

__all__ = ["SPLITS_FILE", "split_record", "read_split_record", "split_changes", "change_lines", "split_report"]

SPLITS_FILE = "splits.json"
RECORD_FORMAT = "genaug-splits-v1"
SPLITS = ("train", "val", "test")
#: A file every finished or started run folder holds (written by ``genaug run``).
RUN_MARKER = "experiment.yaml"


def split_record(splits: Mapping[str, RealDataset | None]) -> dict[str, Any]:
    """The JSON-ready membership of ``splits`` (module docstring)."""
    first = next(dataset for dataset in splits.values() if dataset is not None)
    members = {}
    for name in SPLITS:
        dataset = splits.get(name)
        if dataset is not None:
            content = dataset.content or [""] * len(dataset)
            members[name] = dict(zip(dataset.ids, content))
    return {"format": RECORD_FORMAT, "dataset": first.name, "splits": members}


def read_split_record(out_dir: str | Path) -> dict[str, Any] | None:
    """The record in ``out_dir/splits.json``, or None when there is none (or it is unreadable)."""
    try:
        record = json.loads((Path(out_dir) / SPLITS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("format") == RECORD_FORMAT else None


def split_changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, dict[str, list]]:
    """Per split: ``added`` ids (new to the dataset), ``removed`` ids (gone from it),
    ``moved_in`` ``[id, from split]`` pairs, ``moved_out`` ``[id, to split]`` pairs and ``edited``
    ids (same id and split, other content). Splits without any change are left out."""
    old, new = before.get("splits", {}), after.get("splits", {})
    where_old = {image_id: split for split, members in old.items() for image_id in members}
    where_new = {image_id: split for split, members in new.items() for image_id in members}
    changes: dict[str, dict[str, list]] = {}
    for split in SPLITS:
        then, now = old.get(split, {}), new.get(split, {})
        entry = {
            "added": sorted(i for i in now if i not in where_old),
            "removed": sorted(i for i in then if i not in where_new),
            "moved_in": sorted([i, where_old[i]] for i in now if i in where_old and where_old[i] != split),
            "moved_out": sorted([i, where_new[i]] for i in then if i in where_new and where_new[i] != split),
            "edited": sorted(i for i in now if i in then and then[i] != now[i]),
        }
        if any(entry.values()):
            changes[split] = entry
    return changes


def change_lines(changes: dict[str, dict[str, list]], shown: int = 3) -> list[str]:
    """One line per changed split: ``test: 2 added (a.jpg, b.jpg), 1 moved in from train (c.jpg)``."""

    def listing(items: list[str]) -> str:
        more = f", and {len(items) - shown} more" if len(items) > shown else ""
        return f" ({', '.join(items[:shown])}{more})"

    lines = []
    for split, entry in changes.items():
        parts = [f"{len(entry[kind])} {kind}{listing(entry[kind])}" for kind in ("added", "removed", "edited") if entry[kind]]
        for direction, word in (("moved_in", "moved in from"), ("moved_out", "moved out to")):
            by_split: dict[str, list[str]] = {}
            for image_id, other in entry[direction]:
                by_split.setdefault(other, []).append(image_id)
            parts += [f"{len(ids)} {word} {other}{listing(ids)}" for other, ids in sorted(by_split.items())]
        lines.append(f"  {split}: {', '.join(parts)}")
    return lines


def split_report(out_dir: str | Path, splits: Mapping[str, RealDataset | None] | None, *, write: bool = False) -> list[str]:
    """The lines to show about how the splits changed since ``out_dir`` last ran (module docstring);
    with ``write``, record the splits of this run in ``out_dir/splits.json``.

    Returns no lines for a new folder, or when nothing changed.
    """
    if not splits or all(dataset is None for dataset in splits.values()):
        return []
    out_dir = Path(out_dir)
    now = split_record(splits)
    before = read_split_record(out_dir)
    lines: list[str] = []
    if before is not None:
        changes = split_changes(before, now)
        if changes:
            lines.append(f"the dataset's splits changed since {out_dir} last ran:")
            lines += change_lines(changes)
        if "test" in changes:
            lines.append(
                "the test split changed: results of this run are not comparable with the earlier ones in "
                f"{out_dir} (other test images)"
            )
    elif (out_dir / RUN_MARKER).is_file():
        lines.append(
            f"notice: {out_dir} was made before runs recorded their splits; they are recorded from now on "
            f"({SPLITS_FILE}). Folder datasets are now split by each image's content, so that added images "
            "never move others: runs trained on the earlier split of a folder are trained again"
            if any(dataset is not None and dataset.content is not None for dataset in splits.values())
            else f"notice: {out_dir} was made before runs recorded their splits; they are recorded from now on ({SPLITS_FILE})"
        )
    if write:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out_dir / SPLITS_FILE, json.dumps(now, ensure_ascii=False, sort_keys=True))
    return lines
