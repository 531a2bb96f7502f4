"""Loading the frozen Stable Diffusion parts SDI trains against (CLIP loads through
:meth:`genaug.clip.Clip.from_reference`).

A model reference is what :func:`genaug.diffusion.models.resolve_model` takes: a pipeline
folder, a hub id (offline when cached) or ``pocket:sd``. Everything is loaded from
safetensors through ``from_pretrained``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from genaug.diffusion.models import ModelRef, resolve_model


@dataclass
class FrozenDiffusion:
    """The parts of an SD pipeline projector training needs, all frozen (no parameter takes a gradient)."""

    tokenizer: Any
    text_encoder: torch.nn.Module
    vae: torch.nn.Module
    unet: torch.nn.Module
    noise_scheduler: Any  # DDPMScheduler with the pipeline's training noise schedule
    model: ModelRef

    @property
    def cross_attention_dim(self) -> int:
        return int(self.unet.config.cross_attention_dim)

    @property
    def scaling_factor(self) -> float:
        return float(self.vae.config.scaling_factor)


def freeze(module: torch.nn.Module) -> torch.nn.Module:
    """Evaluation mode and ``requires_grad = False`` on every parameter."""
    module.eval()
    module.requires_grad_(False)
    return module


def load_frozen_diffusion(reference: str, revision: str | None = None, device: str | torch.device = "cpu") -> FrozenDiffusion:
    """Tokenizer, text encoder, VAE, UNet and a DDPM noise scheduler of the pipeline ``reference``.

    The noise scheduler is ``DDPMScheduler.from_config`` of the pipeline's own scheduler
    config, so training noises latents with the schedule (betas, T) the pipeline samples
    with. The pipeline's own VAE encodes the training images (the real-scale generation VAE,
    sd-vae-ft-mse, fine-tuned only SD's decoder).
    """
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    model = resolve_model(reference, revision, field="model")
    location, rev = model.location, model.revision
    tokenizer = CLIPTokenizer.from_pretrained(location, subfolder="tokenizer", revision=rev)
    text_encoder = CLIPTextModel.from_pretrained(location, subfolder="text_encoder", revision=rev, use_safetensors=True)
    vae = AutoencoderKL.from_pretrained(location, subfolder="vae", revision=rev, use_safetensors=True)
    unet = UNet2DConditionModel.from_pretrained(location, subfolder="unet", revision=rev, use_safetensors=True)
    scheduler_config = DDPMScheduler.load_config(location, subfolder="scheduler", revision=rev)
    noise_scheduler = DDPMScheduler.from_config(scheduler_config)
    return FrozenDiffusion(
        tokenizer=tokenizer,
        text_encoder=freeze(text_encoder).to(device),
        vae=freeze(vae).to(device),
        unet=freeze(unet).to(device),
        noise_scheduler=noise_scheduler,
        model=model,
    )

