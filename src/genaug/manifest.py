"""Synthetic sets: ``images/<class>/<id>.png`` plus ``manifest.jsonl``, one record per image.

The manifest is the truth about a set (docs/manifest.md). A record is appended, flushed and
fsynced only after its image is on disk under its final name, so a killed run never
leaves a record without its image; a torn last line (killed mid-write) is ignored on read
and cut off before the next append. Reading never depends on directory names.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import re
import shutil
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
from PIL import Image

from genaug.files import atomic_path

MANIFEST = "manifest.jsonl"
SHARD_PATTERN = re.compile(r"^manifest\.(\d+)\.jsonl$")
_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]*$")
#: A record is a few hundred bytes; a longer line is not a record (and is not read into memory whole).
MAX_LINE_BYTES = 1 << 20
MAX_CLASS_NAME = 1000


class ManifestError(ValueError):
    """A manifest that cannot be trusted; the message names the file and line."""


class StorageError(OSError):
    """The output folder cannot take more data (full, read-only, over quota or a file size limit)."""


#: errno values that mean "the output cannot be written now" rather than a bug.
STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}


@contextlib.contextmanager
def storage_errors(set_dir: str | Path):
    """Turn a failed write into a :class:`StorageError` that says what happened and that a rerun resumes.

    Records follow their images, so whatever write failed, no record lacks its image.
    """
    try:
        yield
    except StorageError:
        raise
    except OSError as error:
        if error.errno not in STORAGE_ERRNOS:
            raise
        where = f" ({error.filename})" if error.filename else ""
        raise StorageError(
            error.errno,
            f"cannot write to {set_dir}: {os.strerror(error.errno)}{where}. Every image recorded so far is complete; "
            "run the same command again once there is space (or write permission) and it resumes where it stopped",
        ) from error


@dataclass
class SampleRecord:
    """One synthetic image (docs/manifest.md)."""

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
        self.class_name = check_class_name(self.class_name, self.id)
        if not isinstance(self.method, str) or not self.method or "\x00" in self.method:
            raise ValueError(f"record {self.id}: method must be a non-empty string, got {self.method!r}")
        if isinstance(self.source_ids, (str, bytes)) or not isinstance(self.source_ids, (list, tuple)):
            raise ValueError(f"record {self.id}: source_ids must be a list of ids, got {self.source_ids!r}")
        self.source_ids = list(self.source_ids)
        for source in self.source_ids:
            if not isinstance(source, str) or not source or "\x00" in source:
                raise ValueError(f"record {self.id}: source_ids must hold non-empty strings, got {source!r}")
        for name in ("prompt", "negative_prompt"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"record {self.id}: {name} must be a string or null, got {value!r}")
        for name in ("params", "scores"):
            if not isinstance(getattr(self, name), dict):
                raise ValueError(f"record {self.id}: {name} must be a mapping, got {getattr(self, name)!r}")
        for name in ("model", "embedding"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), dict):
                raise ValueError(f"record {self.id}: {name} must be a mapping or null, got {getattr(self, name)!r}")
        for key, value in self.scores.items():
            if not isinstance(key, str) or isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
                raise ValueError(f"record {self.id}: scores must map names to numbers, got {key!r}: {value!r}")
        if self.seed is not None:
            if isinstance(self.seed, (bool, np.bool_)) or not isinstance(self.seed, (int, np.integer)):
                raise ValueError(f"record {self.id}: seed must be an integer or null, got {self.seed!r}")
            self.seed = int(self.seed)
        if not isinstance(self.kept, (bool, np.bool_)):
            raise ValueError(f"record {self.id}: kept must be true or false, got {self.kept!r}")
        self.kept = bool(self.kept)
        if not isinstance(self.created, str):
            raise ValueError(f"record {self.id}: created must be a string, got {self.created!r}")
        if not self.created:
            self.created = datetime.now(timezone.utc).isoformat(timespec="seconds")

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=False, default=_json_default)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SampleRecord":
        if not isinstance(data, dict):
            raise ValueError(f"a record must be a JSON object, got {type(data).__name__}")
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


def check_class_name(name: str, item_id: str = "?") -> str:
    """Class names are data, any language, but a non-empty string without NUL or line breaks."""
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_CLASS_NAME:
        raise ValueError(f"record {item_id}: class_name must be a non-empty string (at most {MAX_CLASS_NAME}), got {name!r}")
    if any(ch in name for ch in "\x00\n\r"):
        raise ValueError(f"record {item_id}: class_name {name!r} holds a NUL or a line break")
    return name


#: Characters some file system refuses in a name (Windows' set, a superset of POSIX's "/" and NUL).
_REFUSED = re.compile(r'[\x00-\x1f\x7f<>:"/\\|?*]')


def safe_folder_name(name: str) -> str:
    """A class name as a folder name, kept as it is (spaces, accents, CJK) except for what a
    file system refuses: control characters and ``<>:"/\\|?*`` become ``_``, trailing dots and
    spaces go, ``.`` / ``..`` / an empty name become ``class``; at most 80 characters.
    Never read back: records carry their class name and label."""
    cleaned = _REFUSED.sub("_", name).rstrip(". ").lstrip()
    cleaned = cleaned[:80].rstrip(". ")
    return cleaned if cleaned and cleaned not in (".", "..") else "class"


# ---------------------------------------------------------------------------- reading


def _read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Complete lines of a manifest, decoded; an over-long or non-UTF-8 line is an error naming it."""
    with path.open("rb") as handle:
        number = 0
        while True:
            raw = handle.readline(MAX_LINE_BYTES + 1)
            if not raw:
                return
            number += 1
            if not raw.endswith(b"\n"):
                if len(raw) > MAX_LINE_BYTES:
                    raise ManifestError(f"{path}:{number}: line longer than {MAX_LINE_BYTES} bytes: not a record")
                return  # a last line without its newline was torn by a kill mid-write: it never counted
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise ManifestError(f"{path}:{number}: not UTF-8 text ({error.reason} at byte {error.start})") from None
            if line.strip(" \t\r\n"):  # JSON's whitespace only: str.strip() would also drop "\x1c" etc.
                yield number, line


def read_records(path: str | Path) -> list[SampleRecord]:
    """Records of one manifest file; a duplicate id keeps its first record."""
    path = Path(path)
    records: list[SampleRecord] = []
    seen: set[str] = set()
    for number, line in _read_lines(path):
        try:
            record = SampleRecord.from_dict(json.loads(line))
        except RecursionError:
            raise ManifestError(f"{path}:{number}: nested too deeply to be a record") from None
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
    with atomic_path(path, fsync=True) as tmp, tmp.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(record.to_json() + "\n")
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


def save_image_atomic(image: Image.Image | np.ndarray, path: Path, sync: bool = True) -> None:
    """Write a PNG under a temporary name, fsync (unless ``sync`` is False: the caller syncs a
    whole batch, :func:`sync_files`), then rename into place."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, fsync=sync, suffix=".png") as tmp:
        image.save(tmp, format="PNG")


def sync_files(paths: Sequence[Path]) -> None:
    """Make written files (and their renames) durable: one ``syncfs(2)`` of their file system
    on Linux (one call for a whole batch), else an fsync of each file."""
    paths = list(paths)
    if not paths:
        return
    fd = os.open(paths[0], os.O_RDONLY)
    try:
        if _syncfs(fd) and all(path.stat().st_dev == os.fstat(fd).st_dev for path in paths):
            return
    finally:
        os.close(fd)
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _syncfs(fd: int) -> bool:
    """``syncfs(fd)`` through libc; False where it does not exist or fails (then files are fsynced one by one)."""
    try:
        return _libc().syncfs(fd) == 0
    except (OSError, AttributeError):
        return False


@functools.lru_cache(maxsize=1)
def _libc():
    import ctypes
    import ctypes.util

    return ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


def remove_stale_temporaries(set_dir: str | Path) -> int:
    """Delete temporary image files a killed run left (call only when no other process writes the set)."""
    removed = 0
    images = Path(set_dir) / "images"
    if images.is_dir():
        for path in images.glob("*/.*.tmp-*.png"):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


class SetWriter:
    """Appends images and their records to a synthetic set, resumably.

    ``done`` holds the ids already recorded with a readable image; callers skip those.
    Each :meth:`add` writes the image first, then appends and fsyncs the record; a write the
    output cannot take (full, read-only) raises :class:`StorageError`. The only
    writer of a set (``rank=None``) also deletes temporary files a killed run left; shard
    writers (``rank`` given) leave them, another shard may be writing its own.
    """

    def __init__(self, set_dir: str | Path, rank: int | None = None, verify_images: bool = True) -> None:
        self.set_dir = Path(set_dir)
        self.set_dir.mkdir(parents=True, exist_ok=True)
        name = MANIFEST if rank is None else f"manifest.{rank}.jsonl"
        self.path = self.set_dir / name
        with storage_errors(self.set_dir):
            self._cut_torn_tail()
            if rank is None:
                remove_stale_temporaries(self.set_dir)
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

    def _target(self, record: SampleRecord) -> Path:
        target = self.set_dir / record.path
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.parent.resolve().is_relative_to(self.set_dir.resolve()):
            raise ValueError(f"record {record.id}: {target.parent} leads outside the set {self.set_dir} (a symbolic link?)")
        return target

    def add(self, record: SampleRecord, image: Image.Image | np.ndarray) -> None:
        with storage_errors(self.set_dir):
            save_image_atomic(image, self._target(record))
            self._handle.write(record.to_json() + "\n")
            self._handle.flush()
            os.fsync(self._handle.fileno())
        self.done[record.id] = record

    def add_batch(self, entries: Sequence[tuple[SampleRecord, Image.Image | np.ndarray]]) -> None:
        """:meth:`add` for a batch with two syncs instead of two per image: every image is
        written and renamed, the file system synced once (:func:`sync_files`), then every
        record appended and the manifest fsynced once. No record is written before all the
        batch's images are on disk under their final names; a kill loses at most the batch."""
        if not entries:
            return
        with storage_errors(self.set_dir):
            targets = []
            for record, image in entries:
                targets.append(self._target(record))
                save_image_atomic(image, targets[-1], sync=False)
            sync_files(targets)
            self._handle.write("".join(record.to_json() + "\n" for record, _ in entries))
            self._handle.flush()
            os.fsync(self._handle.fileno())
        for record, _ in entries:
            self.done[record.id] = record

    def close(self) -> None:
        with storage_errors(self.set_dir):
            self._handle.close()

    def __enter__(self) -> "SetWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def link_set(source: Path, target: Path) -> None:
    """``target`` shows ``source``'s images (relative symlinks) with its own copy of the manifest.

    The copy is ``target``'s own: scores and verdicts written there never touch ``source``.
    A manifest already in ``target`` is kept.
    """
    target.mkdir(parents=True, exist_ok=True)
    for entry in source.iterdir():
        if entry.name.startswith(".") or entry.name.startswith("manifest"):
            continue
        if entry.name in ("filter.json", "stage.json", "filter-scores.jsonl"):  # the target's own
            continue
        link = target / entry.name
        if not link.exists() and not link.is_symlink():
            link.symlink_to(Path(os.path.relpath(entry.resolve(), target.resolve())))
    if not (target / MANIFEST).is_file():
        with atomic_path(target / MANIFEST) as tmp:
            shutil.copyfile(source / MANIFEST, tmp)
