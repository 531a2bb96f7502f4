"""Tiny randomly initialised CLIP and Stable Diffusion folders with real CLIP tokenizers.

For tests and benchmarks only: the weights are random, but every file is what a real
model folder holds (``save_pretrained``; a CLIP byte-level BPE ``vocab.json`` +
``merges.txt`` in OpenAI's format, in which every word of the SDI prompts is one token, as
in the real CLIP vocabulary), so SDI's code runs its real loading paths in seconds on a CPU.
"""

from __future__ import annotations

from pathlib import Path

import torch

from genaug.pocket.render import DIGIT_NAMES
from genaug.sdi.conditioning import NEGATIVE_PROMPT, SDI_PROMPT

#: Texts whose words become single tokens of the tiny vocabulary.
TINY_TEXTS = [SDI_PROMPT, NEGATIVE_PROMPT, "a photo of a", "a photo with a on it", "a photo without a on it", *DIGIT_NAMES]
TINY_MAX_LENGTH = 77
TINY_DIM = 32


def write_clip_tokenizer(folder: str | Path, texts: list[str] | None = None, model_max_length: int = TINY_MAX_LENGTH):
    """Write ``vocab.json`` + ``merges.txt`` (OpenAI CLIP's format) learnt from ``texts`` and load them
    with ``CLIPTokenizer.from_pretrained`` (start/end tokens, padding with the end token, as SD's)."""
    from transformers import CLIPTokenizer

    from genaug.pocket.tokenizer import EOS, write_tokenizer_files

    write_tokenizer_files(folder, TINY_TEXTS if texts is None else texts)
    return CLIPTokenizer.from_pretrained(str(folder), model_max_length=model_max_length, pad_token=EOS)


def tiny_tokenizer():
    """:func:`write_clip_tokenizer` of the tiny texts, written to a temporary folder."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="genaug-tiny-tok-") as folder:
        return write_clip_tokenizer(folder)


def build_tiny_clip(folder: str | Path, seed: int = 0, image_size: int = 16, dim: int = TINY_DIM) -> Path:
    """A random ``CLIPModel`` (ViT on ``image_size`` px, patch 4) + processor + tokenizer, saved to ``folder``."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    folder = Path(folder)
    tokenizer = tiny_tokenizer()
    torch.manual_seed(seed)
    text = dict(vocab_size=len(tokenizer), hidden_size=dim, intermediate_size=2 * dim, num_hidden_layers=2,
                num_attention_heads=2, max_position_embeddings=tokenizer.model_max_length,
                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    vision = dict(image_size=image_size, patch_size=4, hidden_size=dim, intermediate_size=2 * dim, num_hidden_layers=2,
                  num_attention_heads=2, num_channels=3)
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=dim))
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}),
        tokenizer=tokenizer,
    )
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def build_tiny_sd(folder: str | Path, seed: int = 0, dim: int = TINY_DIM) -> Path:
    """A random ``StableDiffusionPipeline`` folder: 16 px images, 8x8x4 latents, ``dim``-d text context.

    2-block ``AutoencoderKL`` (32, 64), ``UNet2DConditionModel`` (sample_size 8, blocks 32 and
    64 with cross-attention), a 2-layer CLIP text encoder, and SD's DDIM scheduler
    (scaled linear betas 0.00085-0.012, clip_sample false, set_alpha_to_one false, steps_offset 1).
    """
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    folder = Path(folder)
    tokenizer = tiny_tokenizer()
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=dim, intermediate_size=2 * dim, num_hidden_layers=2, num_attention_heads=2,
        max_position_embeddings=tokenizer.model_max_length, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    ))
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(32, 64), layers_per_block=1, latent_channels=4, norm_num_groups=16, sample_size=16,
    )
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), block_out_channels=(32, 64), layers_per_block=1,
        cross_attention_dim=dim, attention_head_dim=8, norm_num_groups=16,
    )
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    pipeline = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                                       safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipeline.save_pretrained(folder)
    return folder
