"""Synthetic sets: ``images/<class>/<id>.png`` plus ``manifest.jsonl``, one record per image.

The manifest is the truth about a set (DESIGN.md 4). A record is appended, flushed and
fsynced only after its image is on disk under its final name, so a killed run never
leaves a record without its image; a torn last line (killed mid-write) is ignored on read
and cut off before the next append. Reading never depends on directory names.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Iterator

import numpy as np
from PIL import Image

MANIFEST = "manifest.jsonl"
SHARD_PATTERN = re.compile(r"^manifest\.(\d+)\.jsonl$")
_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]*$")


class ManifestError(ValueError):
    """A manifest that cannot be trusted; the message names the file and line."""


@dataclass
class SampleRecord:
    """One synthetic image (DESIGN.md 4.1)."""

    id: str
    path: str
    label: int
    class_name: str
    method: str
    source_ids: list[str] = field(default_factory=list)
    prompt: str | None = None
    negative_prompt: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    model: dict[str, Any] | None = None
    embedding: dict[str, Any] | None = None
    scores: dict[str, float] = field(default_factory=dict)
    kept: bool = True
    created: str = ""

    def __post_init__(self) -> None:
        check_id(self.id)
        check_relative_path(self.path)
        if isinstance(self.label, bool) or not isinstance(self.label, (int, np.integer)) or self.label < 0:
            raise ValueError(f"record {self.id}: label must be a non-negative integer, got {self.label!r}")
        self.label = int(self.label)
        if not self.created:
            self.created = datetime.now(timezone.utc).isoformat(timespec="seconds")

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=False, default=_json_default)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SampleRecord":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown field(s) {unknown}")
        missing = [name for name in ("id", "path", "label", "class_name", "method") if name not in data]
        if missing:
            raise ValueError(f"missing field(s) {missing}")
        return cls(**data)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return value.as_posix()
    raise TypeError(f"cannot write {type(value).__name__} into a manifest")


def check_id(item_id: str) -> str:
    """Ids become file names: letters, digits, '.', '_', '-' only, no leading dot."""
    if not isinstance(item_id, str) or not _ID_PATTERN.match(item_id) or len(item_id) > 200:
        raise ValueError(f"invalid id {item_id!r}: use letters, digits, '.', '_' and '-' (at most 200)")
    return item_id


def check_relative_path(path: str) -> str:
    """A record's path must stay inside its set: relative, no '..', no NUL."""
    if not isinstance(path, str) or not path or "\x00" in path or "\\" in path:
        raise ValueError(f"invalid path {path!r}")
    posix = PurePosixPath(path)
    if posix.is_absolute() or ".." in posix.parts or path.startswith("~"):
        raise ValueError(f"path {path!r} must be relative and stay inside the set")
    return path


def safe_folder_name(name: str) -> str:
    """A class name as a human-readable folder name (never read back)."""
    cleaned = re.sub(r"[^A-Za-z0-9._\-]+", "_", name).strip("._") or "class"
    return cleaned[:80]


# ---------------------------------------------------------------------------- reading


def _read_lines(path: Path) -> Iterator[tuple[int, str]]:
    with path.open("r", encoding="utf-8") as handle:
        data = handle.read()
    lines = data.split("\n")
    # A last line without its newline was torn by a kill mid-write: it never counted.
    complete = lines[:-1]
    for number, line in enumerate(complete, start=1):
        if line.strip():
            yield number, line


def read_records(path: str | Path) -> list[SampleRecord]:
    """Records of one manifest file; a duplicate id keeps its first record."""
    path = Path(path)
    records: list[SampleRecord] = []
    seen: set[str] = set()
    for number, line in _read_lines(path):
        try:
            record = SampleRecord.from_dict(json.loads(line))
        except (ValueError, TypeError) as error:
            raise ManifestError(f"{path}:{number}: {error}") from None
        if record.id in seen:
            continue
        seen.add(record.id)
        records.append(record)
    return records


def shard_manifests(set_dir: str | Path) -> list[Path]:
    """The ``manifest.<rank>.jsonl`` files of a set, by rank."""
    set_dir = Path(set_dir)
    shards = [p for p in set_dir.glob("manifest.*.jsonl") if SHARD_PATTERN.match(p.name)]
    return sorted(shards, key=lambda p: int(SHARD_PATTERN.match(p.name).group(1)))


def read_manifest(set_dir: str | Path) -> list[SampleRecord]:
    """All records of a synthetic set: ``manifest.jsonl`` plus any unmerged shards."""
    set_dir = Path(set_dir)
    files = ([set_dir / MANIFEST] if (set_dir / MANIFEST).is_file() else []) + shard_manifests(set_dir)
    if not files:
        raise ManifestError(f"{set_dir} holds no {MANIFEST}: not a synthetic set")
    merged: dict[str, SampleRecord] = {}
    for path in files:
        for record in read_records(path):
            merged.setdefault(record.id, record)
    return list(merged.values())


def record_file(set_dir: str | Path, record: SampleRecord) -> Path:
    return Path(set_dir) / record.path


def image_readable(path: Path) -> bool:
    """True when the file exists and decodes as an image."""
    try:
        with Image.open(path) as image:
            image.load()
        return True
    except (OSError, ValueError, SyntaxError):
        return False


# ---------------------------------------------------------------------------- writing


def write_manifest(set_dir: str | Path, records: Iterable[SampleRecord], name: str = MANIFEST) -> Path:
    """Replace a manifest atomically (filters rewrite scores this way)."""
    path = Path(set_dir) / name
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with tmp.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(record.to_json() + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return path


def merge_shards(set_dir: str | Path) -> list[SampleRecord]:
    """Join ``manifest.jsonl`` and every ``manifest.<rank>.jsonl`` into ``manifest.jsonl``."""
    set_dir = Path(set_dir)
    records = read_manifest(set_dir)
    records.sort(key=lambda record: record.id)
    write_manifest(set_dir, records)
    for shard in shard_manifests(set_dir):
        shard.unlink()
    return records


def save_image_atomic(image: Image.Image | np.ndarray, path: Path) -> None:
    """Write a PNG under a temporary name, fsync, then rename into place."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.png")
    with tmp.open("wb") as handle:
        image.save(handle, format="PNG")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


class SetWriter:
    """Appends images and their records to a synthetic set, resumably.

    ``done`` holds the ids already recorded with a readable image; callers skip those.
    Each :meth:`add` writes the image first, then appends and fsyncs the record.
    """

    def __init__(self, set_dir: str | Path, rank: int | None = None, verify_images: bool = True) -> None:
        self.set_dir = Path(set_dir)
        self.set_dir.mkdir(parents=True, exist_ok=True)
        name = MANIFEST if rank is None else f"manifest.{rank}.jsonl"
        self.path = self.set_dir / name
        self._cut_torn_tail()
        self.done: dict[str, SampleRecord] = {}
        if any(self.set_dir.glob("manifest*.jsonl")):
            for record in read_manifest(self.set_dir):
                if not verify_images or image_readable(record_file(self.set_dir, record)):
                    self.done[record.id] = record
        self._handle = self.path.open("a", encoding="utf-8")

    def _cut_torn_tail(self) -> None:
        if not self.path.is_file():
            return
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end != len(data):
            with self.path.open("r+b") as handle:
                handle.truncate(end)

    def image_path(self, item_id: str, class_name: str) -> str:
        return f"images/{safe_folder_name(class_name)}/{check_id(item_id)}.png"

    def add(self, record: SampleRecord, image: Image.Image | np.ndarray) -> None:
        save_image_atomic(image, self.set_dir / record.path)
        self._handle.write(record.to_json() + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self.done[record.id] = record

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> "SetWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
