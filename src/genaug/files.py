"""Writes that are either complete or absent: the one atomic write and the one safetensors save.

Every file genaug writes in place of an older one goes through :func:`atomic_path`: the
content goes to a temporary sibling (``.<name>.tmp-<pid>-<thread><suffix>``, so processes
and threads writing the same file never share one), is optionally fsynced, and is renamed
over the target; a reader sees the old file or the new one, never a torn one, and a
failed write leaves no temporary behind.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

if TYPE_CHECKING:
    import torch

__all__ = [
    "atomic_path",
    "display_path",
    "fsync_file",
    "json_safe",
    "save_safetensors",
    "write_bytes_atomic",
    "write_json_atomic",
    "write_text_atomic",
]


def display_path(path: str | Path, start: str | Path) -> str:
    """``path`` relative to ``start`` when it lies inside it (as records and reports show it),
    else absolute (a folder elsewhere, such as a shared ``--artifacts``)."""
    try:
        return Path(path).resolve().relative_to(Path(start).resolve()).as_posix()
    except ValueError:
        return str(Path(path).resolve())


def fsync_file(path: str | Path) -> None:
    """Flush ``path``'s content to the disk."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


@contextlib.contextmanager
def atomic_path(path: str | Path, *, fsync: bool = False, suffix: str = "") -> Iterator[Path]:
    """A temporary sibling of ``path`` to write; renamed onto ``path`` when the block ends.

    ``fsync``: the content is flushed to the disk before the rename. ``suffix`` ends the
    temporary name (``".png"`` for writers that pick the format by extension). On an
    exception the temporary is removed and ``path`` is left as it was.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem if suffix else path.name}.tmp-{os.getpid()}-{threading.get_ident()}{suffix}")
    try:
        yield tmp
        if fsync:
            fsync_file(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: str | Path, data: bytes, *, fsync: bool = False) -> Path:
    """Write ``data`` to ``path`` through :func:`atomic_path`."""
    with atomic_path(path, fsync=fsync) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | Path, text: str, *, fsync: bool = False) -> Path:
    """Write UTF-8 ``text`` to ``path`` through :func:`atomic_path`: a reader sees the old file or the new one."""
    return write_bytes_atomic(path, text.encode("utf-8"), fsync=fsync)


def json_safe(value: Any) -> Any:
    """NaN and infinities become null (strict JSON has no NaN); paths become strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    return value


def write_json_atomic(
    path: str | Path, data: Any, *, indent: int | None = 2, sort_keys: bool = False, fsync: bool = False
) -> Path:
    """:func:`write_text_atomic` of strict JSON (:func:`json_safe`; other objects as their ``str``)."""
    text = json.dumps(json_safe(data), indent=indent, sort_keys=sort_keys, allow_nan=False, default=str)
    return write_text_atomic(path, text + "\n", fsync=fsync)


def save_safetensors(
    path: str | Path, tensors: Mapping[str, "torch.Tensor"], metadata: Mapping[str, str] | None = None
) -> Path:
    """Write ``tensors`` (detached, on the CPU, contiguous) as safetensors: temporary name, fsync, rename.

    The parent folder is created. ``metadata``: string pairs stored in the header.
    """
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cpu = {name: tensor.detach().cpu().contiguous() for name, tensor in tensors.items()}
    with atomic_path(path, fsync=True) as tmp:
        save_file(cpu, str(tmp), metadata=dict(metadata) if metadata is not None else None)
    return path
