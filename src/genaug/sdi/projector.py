"""SDI's projector (docs/methods/sdi.md): CLIP image_embeds -> one token of SD's text context.

``Linear(d_clip, hidden) - ReLU - Linear(hidden, cross_attention_dim)``, no normalisation.
At real scale (768, 1024, 768) it has 1,574,656 parameters; the pocket world scales it to
its 128-d CLIP and 128-d cross-attention.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from genaug.checkpoint import MODEL_FILE, UntrustedFileError, find_checkpoint
from genaug.files import save_safetensors

PROJECTOR_FILE = "projector.safetensors"
PROJECTOR_DIR = "projector"


def projector_param_count(in_dim: int, hidden: int, out_dim: int) -> int:
    """``in_dim * hidden + hidden + hidden * out_dim + out_dim`` (two linear layers with biases)."""
    return in_dim * hidden + hidden + hidden * out_dim + out_dim


class Projector(nn.Module):
    """``token = W2 relu(W1 e + b1) + b2`` for a CLIP image embedding ``e``."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int) -> None:
        super().__init__()
        self.in_dim, self.hidden, self.out_dim = in_dim, hidden, out_dim
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))

    def forward(self, embeds: torch.Tensor) -> torch.Tensor:
        return self.net(embeds)

    @property
    def dims(self) -> dict[str, int]:
        return {"in_dim": self.in_dim, "hidden": self.hidden, "out_dim": self.out_dim}


def save_projector(path: str | Path, projector: Projector, metadata: dict[str, str] | None = None) -> Path:
    """Weights as safetensors (temporary name, fsync, rename); the sizes go in the metadata."""
    return save_safetensors(path, projector.state_dict(), {"dims": json.dumps(projector.dims), **(metadata or {})})


def stored_dims(path: str | Path) -> tuple[int, int] | None:
    """``(in_dim, out_dim)`` of projector weights in a safetensors file, from its header only
    (``net.0.weight`` is (hidden, in), ``net.2.weight`` (out, hidden)); None when absent or not a projector."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            first, last = handle.get_slice("net.0.weight").get_shape(), handle.get_slice("net.2.weight").get_shape()
    except (OSError, SafetensorError, KeyError, ValueError, TypeError):
        return None
    return int(first[1]), int(last[0])


def load_projector(path: str | Path, device: str | torch.device = "cpu") -> Projector:
    """A :class:`Projector` rebuilt from the sizes in its file and loaded with its weights."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no projector at {path}: run `genaug sdi train` first")
    try:
        with safe_open(str(path), framework="pt") as handle:
            dims = json.loads((handle.metadata() or {})["dims"])
            state = {name: handle.get_tensor(name) for name in handle.keys()}
    except (SafetensorError, KeyError, ValueError, TypeError) as error:
        raise UntrustedFileError(
            f"{path} is not a projector written by genaug (safetensors with 'dims' metadata): {error!r}; refused"
        ) from None
    projector = Projector(**dims)
    projector.load_state_dict(state)
    return projector.to(device).eval()


def projector_dir(work_dir: str | Path) -> Path:
    return Path(work_dir) / PROJECTOR_DIR


def projector_path(work_dir: str | Path) -> Path:
    return projector_dir(work_dir) / PROJECTOR_FILE


def trained_projectors(work_dir: str | Path) -> list[tuple[Path, tuple[int, int]]]:
    """``(file, (in_dim, out_dim))`` of the projector and the checkpoint already in ``work_dir``."""
    folder = find_checkpoint(projector_dir(work_dir))
    files = [projector_path(work_dir)] + ([folder / MODEL_FILE] if folder is not None else [])
    return [(path, dims) for path in files if (dims := stored_dims(path)) is not None]


def load_trained_projector(work_dir: str | Path, device: str | torch.device = "cpu") -> Projector:
    """The projector ``train_projector`` wrote into ``work_dir``."""
    return load_projector(projector_path(work_dir), device)
