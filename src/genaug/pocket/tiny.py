"""Tiny randomly initialised pocket models, assembled from configs in seconds (for tests).

They have the shipped models' formats and code paths (same tokenizer, processor, pipeline
folders) but random weights; use them to test plumbing, never quality.
"""

from __future__ import annotations

from pathlib import Path

import torch

from genaug.pocket import models as pm
from genaug.pocket.tokenizer import build_tokenizer

TINY_CLIP = {
    "vision": {"patch_size": 4, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64},
    "text": {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64},
    "projection_dim": 16,
}
TINY_VAE = {"block_out_channels": [8, 16], "layers_per_block": 1, "latent_channels": 4, "norm_num_groups": 4}
TINY_UNET = {"block_out_channels": [16, 32], "attention": [True, True], "layers_per_block": 1, "attention_head_dim": 2, "norm_num_groups": 8}


def make_tiny_pocket(out_dir: str | Path, seed: int = 0) -> dict[str, Path]:
    """Write random tiny ``clip``, ``sd`` and ``ip2p`` folders under ``out_dir``; return their paths."""
    from genaug.pocket.build import export_clip, export_ip2p, export_sd

    out = Path(out_dir)
    torch.manual_seed(seed)
    tokenizer = build_tokenizer(out / "_tokenizer")
    clip = pm.make_clip(TINY_CLIP, tokenizer)
    export_clip(clip, tokenizer, out / "clip")
    vae = pm.make_vae(TINY_VAE)
    unet = pm.make_unet(TINY_UNET, cross_attention_dim=clip.config.text_config.hidden_size)
    from transformers import CLIPTextModel

    text_encoder = CLIPTextModel(clip.config.text_config)
    text_encoder.load_state_dict({k.removeprefix("text_model."): v for k, v in clip.text_model.state_dict().items()}, strict=False)
    export_sd(vae, text_encoder, tokenizer, unet, out / "sd")
    export_ip2p(vae, text_encoder, tokenizer, pm.ip2p_unet_from_sd(unet), out / "ip2p")
    return {"root": out, "clip": out / "clip", "sd": out / "sd", "ip2p": out / "ip2p"}
