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

from genaug.config import ConfigError, did_you_mean
from genaug.home import cache_dir
from genaug.pocket.store import MODEL_NAMES, pocket_model_dir

POCKET_SCHEME = "pocket:"


def clip_reference(name: str) -> str:
    """``"pocket"`` -> ``"pocket:clip"`` (the form :func:`resolve_model` takes); other names unchanged."""
    return f"{POCKET_SCHEME}clip" if name == "pocket" else name


class ModelError(ConfigError):
    """A model reference that cannot be used: an unknown pocket model, a missing folder, or
    a hub id that is neither in the local cache nor reachable. The message names the field."""


@dataclass(frozen=True)
class ModelRef:
    """A resolved model: ``location`` is what ``from_pretrained`` gets; ``identity`` goes in records."""

    location: str
    revision: str | None
    identity: dict[str, Any]


def resolve_model(reference: str, revision: str | None = None, field: str = "model") -> ModelRef:
    """Resolve ``reference`` (folder, hub id or ``pocket:clip|sd|ip2p``) and describe its weights.

    Raises :class:`ModelError` naming ``field`` (the config key the reference came from)
    when the reference cannot be used, before anything is loaded or written: an unknown
    pocket model, a path that is no folder, or a hub id that is not cached while the hub
    cannot be reached.
    """
    if reference.startswith(POCKET_SCHEME):
        folder = _pocket_folder(reference[len(POCKET_SCHEME):], field)
        return ModelRef(str(folder), None, {"id": reference, "path": str(folder), "hash": weights_hash(folder)})
    folder = Path(reference).expanduser()
    if folder.is_dir():
        folder = folder.resolve()
        return ModelRef(str(folder), None, {"path": str(folder), "hash": weights_hash(folder)})
    if folder.exists() or reference.startswith((".", "/", "~")) or reference.count("/") > 1:
        raise ModelError(
            f"{field}: {reference!r} is no folder (a model is a pipeline folder saved with save_pretrained, "
            "a hub id such as 'timbrooks/instruct-pix2pix', or pocket:clip|sd|ip2p)"
        )
    # Pin the commit: the weights loaded are then exactly those the records name, even when
    # the branch moves on the hub between this call and the download.
    commit = _hub_commit(reference, revision) or _remote_commit(reference, revision, field)
    return ModelRef(reference, commit or revision, {"id": reference, "revision": revision or "main", "hash": commit})


def _pocket_folder(name: str, field: str) -> Path:
    if name not in MODEL_NAMES:
        allowed = [f"{POCKET_SCHEME}{known}" for known in MODEL_NAMES]
        raise ModelError(
            f"{field}: unknown pocket model '{POCKET_SCHEME}{name}'{did_you_mean(POCKET_SCHEME + name, allowed)} "
            f"(allowed: {', '.join(allowed)})"
        )
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


def _remote_commit(repo_id: str, revision: str | None, field: str = "model") -> str | None:
    """The hub's commit for ``revision`` of ``repo_id`` (None when the hub answers without one).

    The model is not in the local cache here, so it would have to be downloaded: when the
    hub cannot be reached (``HF_HUB_OFFLINE``, no network: any transport error) or says the
    repository or revision does not exist, this is a :class:`ModelError` naming the remedies.
    """
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled, RepositoryNotFoundError, RevisionNotFoundError

    try:
        return HfApi().model_info(repo_id, revision=revision).sha
    except (RepositoryNotFoundError, RevisionNotFoundError) as error:
        what = f"revision '{revision}' of '{repo_id}'" if isinstance(error, RevisionNotFoundError) else f"'{repo_id}'"
        raise ModelError(f"{field}: the Hugging Face hub has no model {what} (or it is private)") from None
    except OfflineModeIsEnabled:
        reason = "HF_HUB_OFFLINE is set"
    except HfHubHTTPError:
        return None  # the hub answered, but not with the commit: loading will say more
    except Exception as error:  # noqa: BLE001  any transport error: no network, DNS, proxy, timeout
        reason = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else 'no answer'}"
    raise ModelError(
        f"{field}: model '{repo_id}' is not in the Hugging Face cache ({_hub_cache()}) and the hub cannot be "
        f"reached ({reason}); use a local pipeline folder ({field}=/path/to/folder, saved with save_pretrained) "
        f"or download it first where a network exists (hf download {repo_id})"
    ) from None


def _hub_cache() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


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
