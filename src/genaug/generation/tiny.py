"""Tiny randomly initialised diffusion pipelines with the pocket models' architecture.

For tests and benchmarks only: they produce noise-like images, but they run every code
path of a real Stable Diffusion / InstructPix2Pix folder (``save_pretrained`` then
``from_pretrained``), in milliseconds on a CPU. The shapes follow DESIGN.md 3: a 2-block
``AutoencoderKL`` (32, 64 channels) mapping 16x16 RGB to 8x8x4 latents, an 8x8
``UNet2DConditionModel`` with (32, 64) blocks, a small CLIP text tower and a character-level
CLIP tokenizer written here (no download).
"""

from __future__ import annotations

from pathlib import Path

import torch

TINY_MAX_LENGTH = 64


def _byte_symbols() -> list[str]:
    """The 256 printable symbols byte-level BPE uses for the bytes 0..255 (GPT-2's table)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    symbols, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            symbols[byte] = chr(byte)
        else:
            symbols[byte] = chr(256 + extra)
            extra += 1
    return list(symbols.values())


def tiny_tokenizer():
    """A character-level CLIP tokenizer: every byte symbol and its end-of-word form, no merges."""
    from transformers import CLIPTokenizer

    symbols = _byte_symbols()
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for symbol in symbols + [s + "</w>" for s in symbols]:
        vocab.setdefault(symbol, len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=TINY_MAX_LENGTH)


def _tiny_components(seed: int, unet_in_channels: int, cross_attention_dim: int = 32) -> dict:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer()
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=cross_attention_dim,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=TINY_MAX_LENGTH,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(32, 64),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=32,
        sample_size=16,
    )
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=unet_in_channels,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(32, 64),
        layers_per_block=1,
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=8,
        norm_num_groups=32,
    )
    return {"tokenizer": tokenizer, "text_encoder": text_encoder, "vae": vae, "unet": unet}


def build_tiny_pipeline(kind: str, folder: str | Path, seed: int = 0) -> Path:
    """Write a random tiny pipeline folder; ``kind`` is ``sd`` (txt2img/img2img) or ``ip2p``.

    Returns the folder, loadable with the matching diffusers pipeline's ``from_pretrained``.
    """
    from diffusers import (
        DDIMScheduler,
        EulerAncestralDiscreteScheduler,
        StableDiffusionInstructPix2PixPipeline,
        StableDiffusionPipeline,
    )

    if kind not in ("sd", "ip2p"):
        raise ValueError(f"kind must be 'sd' or 'ip2p', got {kind!r}")
    folder = Path(folder)
    components = _tiny_components(seed, unet_in_channels=8 if kind == "ip2p" else 4)
    if kind == "sd":
        scheduler = DDIMScheduler(
            beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
            clip_sample=False, set_alpha_to_one=False, steps_offset=1,
        )
        pipeline_class = StableDiffusionPipeline
    else:
        scheduler = EulerAncestralDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
        pipeline_class = StableDiffusionInstructPix2PixPipeline
    pipeline = pipeline_class(
        **components, scheduler=scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )
    pipeline.save_pretrained(folder)
    return folder
