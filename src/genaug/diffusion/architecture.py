"""Does a model folder have the architecture its stage needs? Checked from config files, before any work.

A stage given the wrong model would otherwise fail deep inside a pipeline call, after its
output folder exists, with a tensor-shape error that names neither the model nor the
stage. These checks read only the ``config.json`` files of the resolved model (a pipeline
folder's ``unet/``, ``vae/``, ``text_encoder/``; a CLIP folder's own), so nothing heavy
loads first, and raise :class:`ArchitectureError`: one line naming the stage, the folder
and both shapes. A config that cannot be read (a hub model not in the local cache while
offline) is not checked here; loading it fails on its own terms.

The shapes checked:

- UNet input channels: Stable Diffusion (txt2img, img2img, SDI) takes the VAE's latent
  channels (4); InstructPix2Pix takes twice that (4 latent + 4 image);
- a pipeline's text context: the text encoder's ``hidden_size`` is the width of the tokens
  the UNet cross-attends to (``cross_attention_dim``);
- SDI's projector: its input width is the CLIP ``image_embeds`` width it was trained on,
  its output width the UNet's ``cross_attention_dim``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from genaug.config import ConfigError
from genaug.diffusion.models import ModelRef

UnetInputs = Literal["latent", "latent+image"]
#: SD's VAE latent channels, what diffusers assumes when a VAE config does not say.
DEFAULT_LATENT_CHANNELS = 4


class ArchitectureError(ConfigError):
    """A model whose architecture does not fit the stage it was given to (one line, both shapes)."""


def component_config(model: ModelRef, subfolder: str = "") -> dict[str, Any] | None:
    """``<subfolder>/config.json`` of a resolved model as a dict, or None when it cannot be read.

    A local folder is read directly; a hub model from the local cache (or the hub, one small
    file, as ``from_pretrained`` would fetch it anyway).
    """
    name = f"{subfolder}/config.json" if subfolder else "config.json"
    folder = Path(model.location)
    if folder.is_dir():
        path = folder / name
    else:
        path = _hub_file(model, name)
        if path is None:
            return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _hub_file(model: ModelRef, name: str) -> Path | None:
    """A hub model's file from the local cache, else from the hub when the model resolved to a
    commit there (a model with no commit is unreachable: not asked again); None on failure."""
    from huggingface_hub import hf_hub_download

    for local_only in (True, False):
        if not local_only and model.revision is None:
            return None
        try:
            return Path(hf_hub_download(model.location, name, revision=model.revision, local_files_only=local_only))
        except Exception:  # noqa: BLE001 - offline, gated, absent: the load reports it
            continue
    return None


def where(model: ModelRef, subfolder: str = "") -> str:
    """How messages name a model part: its folder path, or ``<hub id>/<subfolder>``."""
    base = model.location
    return f"{base}/{subfolder}" if subfolder else base


# ---------------------------------------------------------------------------- diffusion pipelines


def check_unet_inputs(stage: str, model: ModelRef, inputs: UnetInputs) -> None:
    """The UNet's ``in_channels`` must be the VAE's latent channels (``"latent"``, Stable
    Diffusion) or twice them (``"latent+image"``, InstructPix2Pix)."""
    unet = component_config(model, "unet")
    if unet is None or "in_channels" not in unet:
        return
    vae = component_config(model, "vae") or {}
    latent = int(vae.get("latent_channels", DEFAULT_LATENT_CHANNELS))
    have = int(unet["in_channels"])
    if inputs == "latent+image":
        need, what = 2 * latent, f"InstructPix2Pix needs {2 * latent} ({latent} latent + {latent} image)"
        hint = "; this is a text-to-image UNet: give an InstructPix2Pix model" if have == latent else ""
    else:
        need, what = latent, f"Stable Diffusion needs {latent} (the VAE's latent channels)"
        hint = "; this is an InstructPix2Pix UNet: use it with the instruct editor" if have == 2 * latent else ""
    if have != need:
        raise ArchitectureError(f"{stage}: UNet at {where(model, 'unet')} takes {have} input channels; {what}{hint}")


def check_text_context(stage: str, model: ModelRef) -> None:
    """The text encoder's token width must be the UNet's ``cross_attention_dim``."""
    unet = component_config(model, "unet")
    text = component_config(model, "text_encoder")
    if not unet or not text or "cross_attention_dim" not in unet or "hidden_size" not in text:
        return
    context, width = unet["cross_attention_dim"], int(text["hidden_size"])
    if isinstance(context, int) and context != width:
        raise ArchitectureError(
            f"{stage}: text encoder at {where(model, 'text_encoder')} gives {width}-d token states; "
            f"the UNet at {where(model, 'unet')} cross-attends to {context}-d tokens (they must be equal)"
        )


def check_pipeline(stage: str, model: ModelRef, inputs: UnetInputs) -> None:
    """Both pipeline checks: UNet input channels and the text context width."""
    check_unet_inputs(stage, model, inputs)
    check_text_context(stage, model)


def cross_attention_dim(model: ModelRef) -> int | None:
    """The width of the tokens the pipeline's UNet cross-attends to (None when its config cannot be read)."""
    unet = component_config(model, "unet") or {}
    value = unet.get("cross_attention_dim")
    return int(value) if isinstance(value, int) else None


# ---------------------------------------------------------------------------- SDI's projector and CLIP


def clip_embed_dim(model: ModelRef) -> int | None:
    """The width of a CLIP folder's ``image_embeds`` (``projection_dim``), None when unreadable."""
    config = component_config(model)
    value = (config or {}).get("projection_dim")
    return int(value) if isinstance(value, int) else None


def check_projector_input(stage: str, projector: str | Path, reads: int, source: str, width: int) -> None:
    """A projector trained on ``reads``-d CLIP embeddings must be given ``reads``-d embeddings
    (``source``, e.g. "CLIP at <path>", gives ``width``-d ones)."""
    if reads != width:
        raise ArchitectureError(
            f"{stage}: the projector at {projector} reads {reads}-d CLIP image embeddings; {source} gives {width}-d: "
            "use the CLIP the projector was trained with, or another work_dir to train one for this CLIP"
        )


def check_projector_output(stage: str, what: str, width: int, model: ModelRef) -> None:
    """Projected tokens (``what``, ``width``-d) must be as wide as the tokens the UNet cross-attends to."""
    context = cross_attention_dim(model)
    if context is not None and context != width:
        raise ArchitectureError(
            f"{stage}: {what} {width}-d; the UNet at {where(model, 'unet')} cross-attends to {context}-d tokens: "
            "the projector was trained for another model (train one for this model in another work_dir)"
        )
