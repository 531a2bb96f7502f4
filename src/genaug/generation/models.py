"""Which model made a set: resolve a model reference and describe it for the manifest.

A reference is a local folder (a diffusers pipeline saved with ``save_pretrained``), a
Hugging Face hub id, or ``pocket:<name>`` for genaug's own pocket models. The manifest
records what is needed to know the exact weights: for a folder its path and a content hash
of its safetensors files, for a hub id the id and the commit the local cache resolved it to.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genaug.home import cache_dir

POCKET_SCHEME = "pocket:"


@dataclass(frozen=True)
class ModelRef:
    """A resolved model: ``location`` is what ``from_pretrained`` gets; ``identity`` goes in records."""

    location: str
    revision: str | None
    identity: dict[str, Any]


def resolve_model(reference: str, revision: str | None = None) -> ModelRef:
    """Resolve ``reference`` (folder, hub id or ``pocket:clip|sd|ip2p``) and describe its weights."""
    if reference.startswith(POCKET_SCHEME):
        folder = _pocket_folder(reference[len(POCKET_SCHEME):])
        return ModelRef(str(folder), None, {"id": reference, "path": str(folder), "hash": weights_hash(folder)})
    folder = Path(reference).expanduser()
    if folder.is_dir():
        folder = folder.resolve()
        return ModelRef(str(folder), None, {"path": str(folder), "hash": weights_hash(folder)})
    if folder.exists() or reference.startswith((".", "/", "~")):
        raise ValueError(f"model {reference!r} is neither a pipeline folder nor a hub id")
    # Pin the commit: the weights loaded are then exactly those the records name, even when
    # the branch moves on the hub between this call and the download.
    commit = _hub_commit(reference, revision) or _remote_commit(reference, revision)
    return ModelRef(reference, commit or revision, {"id": reference, "revision": revision or "main", "hash": commit})


def _pocket_folder(name: str) -> Path:
    try:
        from genaug.pocket import pocket_model_dir
    except ImportError:
        raise ValueError(f"pocket model {name!r} asked for, but genaug.pocket provides no pocket_model_dir yet") from None
    return Path(pocket_model_dir(name))


def _hub_commit(repo_id: str, revision: str | None) -> str | None:
    """The commit hash of the locally cached snapshot of ``repo_id`` (None when not cached)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        snapshot = snapshot_download(repo_id, revision=revision, local_files_only=True)
    except (LocalEntryNotFoundError, OSError, ValueError):
        return None
    return Path(snapshot).name


def _remote_commit(repo_id: str, revision: str | None) -> str | None:
    """The hub's commit for ``revision`` of ``repo_id`` (None offline or when the hub cannot say)."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    try:
        return HfApi().model_info(repo_id, revision=revision).sha
    except (HfHubHTTPError, OfflineModeIsEnabled, OSError, ValueError):
        return None


def weights_hash(folder: str | Path) -> str:
    """sha256 over the folder's ``*.safetensors`` files (relative path and contents, sorted).

    File digests are cached in GENAUG_HOME by (path, size, mtime), so multi-GB weights are
    read once per change, not once per run.
    """
    folder = Path(folder)
    files = sorted(folder.rglob("*.safetensors"))
    if not files:
        raise ValueError(f"{folder} holds no .safetensors weights (genaug loads safetensors only)")
    total = hashlib.sha256()
    for path in files:
        total.update(path.relative_to(folder).as_posix().encode("utf-8") + b"\0")
        total.update(_file_digest(path).encode("ascii"))
    return "sha256:" + total.hexdigest()


def _file_digest(path: Path) -> str:
    stat = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode("utf-8")).hexdigest()[:32]
    cached = cache_dir("hashes") / f"{key}.json"
    if cached.is_file():
        try:
            return json.loads(cached.read_text(encoding="utf-8"))["sha256"]
        except (ValueError, KeyError):
            pass
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    cached.write_text(json.dumps({"path": str(path), "sha256": digest.hexdigest()}), encoding="utf-8")
    return digest.hexdigest()
