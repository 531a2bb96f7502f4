"""Architectures of the pocket models, built from the build spec's plain dictionaries.

All are the standard classes the real models use (transformers ``CLIPModel``; diffusers
``AutoencoderKL``, ``UNet2DConditionModel``, DDIM/DDPM schedulers), only small.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from genaug.pocket.render import IMAGE_SIZE
from genaug.pocket.tokenizer import MODEL_MAX_LENGTH

#: CLIP's image normalisation (OpenAI's values), used by the pocket image processor too.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def make_clip(arch: dict[str, Any], tokenizer):
    """A randomly initialised ``CLIPModel`` whose text tower matches ``tokenizer``.

    ``initial_logit_scale`` (default CLIP's 1 / 0.07) is the starting inverse temperature.
    """
    from transformers import CLIPConfig, CLIPModel

    text = dict(arch["text"])
    text.update(
        vocab_size=len(tokenizer),
        max_position_embeddings=tokenizer.model_max_length,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        projection_dim=arch["projection_dim"],
    )
    vision = dict(arch["vision"], image_size=IMAGE_SIZE, num_channels=3, projection_dim=arch["projection_dim"])
    config = CLIPConfig(
        text_config=text,
        vision_config=vision,
        projection_dim=arch["projection_dim"],
        logit_scale_init_value=math.log(arch.get("initial_logit_scale", math.exp(2.6592))),
    )
    return CLIPModel(config)


def make_image_processor():
    """A ``CLIPImageProcessor`` for 16x16 inputs: resize to 16 (shortest edge), centre crop 16."""
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(
        do_resize=True,
        size={"shortest_edge": IMAGE_SIZE},
        do_center_crop=True,
        crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=list(CLIP_MEAN),
        image_std=list(CLIP_STD),
        do_convert_rgb=True,
    )


def clip_pixel_values(images_uint8: torch.Tensor) -> torch.Tensor:
    """``(N, H, W, 3)`` uint8 at 16x16 -> CLIP's normalised ``(N, 3, H, W)`` float input.

    Equal to what :func:`make_image_processor` produces for 16x16 images (resize and crop
    are the identity at that size), done in torch for training speed.
    """
    x = images_uint8.permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def make_vae(arch: dict[str, Any]):
    """A tiny ``AutoencoderKL``: 16x16 RGB to (16 / 2^(blocks-1))^2 x latent_channels latents."""
    from diffusers import AutoencoderKL

    channels = tuple(arch["block_out_channels"])
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * len(channels),
        up_block_types=("UpDecoderBlock2D",) * len(channels),
        block_out_channels=channels,
        layers_per_block=arch.get("layers_per_block", 1),
        latent_channels=arch.get("latent_channels", 4),
        norm_num_groups=arch.get("norm_num_groups", 16),
        sample_size=IMAGE_SIZE,
        scaling_factor=1.0,
    )


def make_unet(arch: dict[str, Any], cross_attention_dim: int, in_channels: int = 4):
    """An 8x8 ``UNet2DConditionModel``; cross-attention only at the levels marked ``attention``."""
    from diffusers import UNet2DConditionModel

    channels = tuple(arch["block_out_channels"])
    attention = tuple(arch["attention"])
    down = tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attention)
    up = tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention))
    return UNet2DConditionModel(
        sample_size=arch.get("sample_size", 8),
        in_channels=in_channels,
        out_channels=4,
        down_block_types=down,
        up_block_types=up,
        block_out_channels=channels,
        layers_per_block=arch.get("layers_per_block", 1),
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=arch.get("attention_head_dim", 4),
        norm_num_groups=arch.get("norm_num_groups", 16),
        transformer_layers_per_block=1,
    )


def ip2p_unet_from_sd(sd_unet):
    """InstructPix2Pix's initialisation: SD's UNet with 8 input channels, the new 4 zero.

    Every weight is copied from ``sd_unet``; ``conv_in`` gets 4 extra input channels (for the
    conditioning image's latents) whose weights are zero, so the new UNet starts out
    computing exactly what SD's does.
    """
    from diffusers import UNet2DConditionModel

    config = dict(sd_unet.config)
    config["in_channels"] = sd_unet.config.in_channels + 4
    unet = UNet2DConditionModel.from_config(config)
    state = sd_unet.state_dict()
    old = state["conv_in.weight"]
    new = torch.zeros(old.shape[0], old.shape[1] + 4, *old.shape[2:], dtype=old.dtype)
    new[:, : old.shape[1]] = old
    state["conv_in.weight"] = new
    unet.load_state_dict(state)
    return unet


def sd_noise_schedule_kwargs() -> dict[str, Any]:
    """Stable Diffusion 1.x's training noise schedule (scaled linear betas 0.00085 - 0.012)."""
    return dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")


def make_ddim_scheduler():
    """SD's DDIM sampler config: clip_sample false, set_alpha_to_one false, steps_offset 1."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        **sd_noise_schedule_kwargs(), clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type="epsilon"
    )


def make_ddpm_scheduler():
    """The training-time noise schedule (same betas as the DDIM sampler)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(**sd_noise_schedule_kwargs(), clip_sample=False, prediction_type="epsilon")


def count_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


__all__ = [
    "MODEL_MAX_LENGTH",
    "make_clip",
    "make_image_processor",
    "clip_pixel_values",
    "make_vae",
    "make_unet",
    "ip2p_unet_from_sd",
    "make_ddim_scheduler",
    "make_ddpm_scheduler",
    "count_params",
]
