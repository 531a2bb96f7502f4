"""Random tiny CLIP and SD folders for SDI, as :mod:`genaug.pocket.tiny` builds them with
Stable Diffusion's 77-token prompts and every word of SDI's prompts one token, as in real CLIP."""

from __future__ import annotations

from pathlib import Path

from genaug.diffusion.conditioning import NEGATIVE_PROMPT, SDI_PROMPT
from genaug.pocket.tiny import SD_MAX_LENGTH, write_tiny_models

SDI_TOKENIZER = {"extra_texts": (SDI_PROMPT, NEGATIVE_PROMPT), "model_max_length": SD_MAX_LENGTH}


def build_tiny_clip(folder: str | Path, seed: int = 0) -> Path:
    """Write a random tiny pocket ``CLIPModel`` folder (with processor and tokenizer) to ``folder``."""
    return write_tiny_models({"clip": folder}, seed, **SDI_TOKENIZER)["clip"]


def build_tiny_sd(folder: str | Path, seed: int = 0) -> Path:
    """Write a random tiny pocket ``StableDiffusionPipeline`` folder to ``folder``."""
    return write_tiny_models({"sd": folder}, seed, **SDI_TOKENIZER)["sd"]
