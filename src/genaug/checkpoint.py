"""Checkpoints that survive kill -9: safetensors weights + plain training state, swapped in atomically.

``<run>/checkpoint/`` holds ``model.safetensors`` (weights and buffers), ``state.pt``
(epoch, optimiser, LR scheduler, gradient scaler, RNG and progress: tensors, numbers,
strings, lists and dicts only, loaded with ``torch.load(weights_only=True)``) and a hard
link to the best-validation weights at that moment. A new checkpoint is written to
``checkpoint.new/`` and swapped in by renames, so at any instant either the old or the new
checkpoint is complete on disk.
"""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from genaug.files import atomic_path, fsync_file, save_safetensors

CHECKPOINT_DIR = "checkpoint"
MODEL_FILE = "model.safetensors"
STATE_FILE = "state.pt"
BEST_FILE = "best.safetensors"


class UntrustedFileError(ValueError):
    """A weights or state file that is not what genaug writes; refused without running anything in it."""


def save_weights(path: Path, state_dict: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Write ``state_dict`` as safetensors to a temporary name, fsync, then rename into place."""
    save_safetensors(path, state_dict, metadata)


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file; anything else (a pickle, a truncated file) is refused."""
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as error:
        if isinstance(error, FileNotFoundError):
            raise
        raise UntrustedFileError(f"{path} is not a safetensors weights file ({error}); refused") from None


def load_training_state(path: Path) -> dict[str, Any]:
    """Plain training state with ``torch.load(weights_only=True)``: tensors, numbers, strings,
    lists and dicts only. A pickle that would build any other object (and so could run code)
    is refused before anything in it runs."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UntrustedFileError(
            f"{path} is not plain training state ({first}); refused without loading it. Delete the checkpoint to start over."
        ) from None
    if not isinstance(state, dict):
        raise UntrustedFileError(f"{path} holds a {type(state).__name__}, not training state; refused")
    return state


def save_checkpoint(
    run_dir: Path, model_state: dict[str, torch.Tensor], training_state: dict[str, Any], best: Path | None = None
) -> Path:
    """Write the run's checkpoint atomically; ``best`` (a weights file) is linked beside it."""
    run_dir = Path(run_dir)
    final, new, old = run_dir / CHECKPOINT_DIR, run_dir / f"{CHECKPOINT_DIR}.new", run_dir / f"{CHECKPOINT_DIR}.old"
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir(parents=True)
    save_weights(new / MODEL_FILE, model_state, {"epoch": str(training_state["epoch"])})
    torch.save(training_state, new / STATE_FILE)
    fsync_file(new / STATE_FILE)
    if best is not None and best.is_file():
        _link_or_copy(best, new / BEST_FILE)
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(new, final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def find_checkpoint(run_dir: Path) -> Path | None:
    """The run's complete checkpoint folder, if any (``checkpoint.old`` if killed mid-swap)."""
    for name in (CHECKPOINT_DIR, f"{CHECKPOINT_DIR}.old"):
        folder = Path(run_dir) / name
        if (folder / MODEL_FILE).is_file() and (folder / STATE_FILE).is_file():
            return folder
    return None


def checkpoint_epoch(folder: Path) -> int | None:
    """Epochs the checkpoint in ``folder`` has finished (its weights' metadata), None if unreadable."""
    from safetensors import safe_open

    try:
        with safe_open(str(Path(folder) / MODEL_FILE), framework="pt") as handle:
            return int((handle.metadata() or {})["epoch"])
    except (SafetensorError, OSError, KeyError, ValueError):
        return None


def load_checkpoint(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(model_state, training_state)``; nothing is unpickled beyond plain containers."""
    model_state = load_weights(folder / MODEL_FILE)
    training_state = load_training_state(folder / STATE_FILE)
    return model_state, training_state


def remove_checkpoints(run_dir: Path) -> None:
    for name in (CHECKPOINT_DIR, f"{CHECKPOINT_DIR}.new", f"{CHECKPOINT_DIR}.old"):
        shutil.rmtree(Path(run_dir) / name, ignore_errors=True)


def restore_best(folder: Path, best: Path) -> None:
    """Put the checkpoint's best-validation weights back at ``best`` (they may have moved on
    after the checkpoint was written, in epochs the resumed run will replay)."""
    saved = folder / BEST_FILE
    if saved.is_file():
        with atomic_path(best) as tmp:
            _link_or_copy(saved, tmp)
    else:
        best.unlink(missing_ok=True)


def _link_or_copy(source: Path, target: Path) -> None:
    # A hard link costs no space and keeps pointing at this version when `source` is later
    # replaced by a rename; fall back to a copy where links are not supported.
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)

