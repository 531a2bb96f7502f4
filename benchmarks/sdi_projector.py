"""Projector training with cached latents and context vs recomputing them every step (DESIGN.md 6).

Both loops train the same projector on the same images with the same global batch, the
same per-step randomness and the same UNet loss; they differ only in where the UNet's
inputs come from:

- cached (genaug): each image's VAE latent distribution and the prompt's text context are
  computed once (:mod:`genaug.diffusion.cache`); a step draws ``z0 = s * (mean + std * eps)``
  and slices the context, so it costs the projector, the UNet forward and its backward;
- recompute latents + context: every step encodes the batch's images with the VAE
  (``latent_dist.sample()``) and runs the text encoder on the batch's tokenized prompts,
  both under ``no_grad``, before the same UNet loss;
- the reference step: as the reference's training script does, every step also runs CLIP
  (its image processor and vision tower) on the batch's images for ``image_embeds``, and
  prepares the VAE input (resize, centre crop, normalise) from the images. Images are
  decoded uint8 arrays in memory (the reference also decodes files each step; that cost is
  left out here).

Printed: steps per second of each, the speed-ups, and the share of a step spent outside
the projector and UNet.

``--sd15-shapes`` adds what caching saves at real scale: randomly initialised modules with
Stable Diffusion 1.5's architecture (UNet 320-640-1280-1280, cross-attention 768; VAE
128-256-512-512; CLIP ViT-L/14 text and vision towers; nothing is downloaded) timed per
sample at 512 px (median of 3 interleaved rounds): UNet forward + backward (input gradients only, as in projector training),
VAE encode, text encoder, CLIP vision; and the speed-ups those costs imply. About 3 minutes
on 2 CPU cores, 6 GB of memory. Model: the trained pocket SD when ``genaug.pocket`` has it, else a
tiny randomly initialised SD of the pocket architecture (the output says which).

    .venv/bin/python benchmarks/sdi_projector.py [--steps 30] [--batch-size 64] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from genaug.diffusion.cache import build_context_cache, build_latent_cache, resize_center_crop, vae_pixels
from genaug.diffusion.conditioning import SDI_PROMPT, slot_context
from genaug.diffusion.frozen import load_frozen_diffusion
from genaug.sdi.train import batch_rows, build_projector, diffusion_loss, draw_step, projector_loss
from genaug.seeds import generator_for


def pick_model(workdir: Path) -> tuple[str, str]:
    try:
        from genaug.pocket import pocket_model_dir

        folder = pocket_model_dir("sd")
        if (folder / "model_index.json").is_file():  # a complete pipeline folder, not a build in progress
            return str(folder), "trained pocket SD"
    except (ImportError, FileNotFoundError, ValueError):
        pass
    from genaug.pocket.tiny import make_tiny_pocket

    return str(make_tiny_pocket(workdir, models=["sd"], sizes="pocket")["sd"]), "tiny randomly initialised SD (pocket shapes; pocket weights not built)"


def load_clip(workdir: Path):
    """Pocket CLIP when built, else a tiny random CLIP of the same input size."""
    from genaug.clip import Clip

    try:
        from genaug.pocket import pocket_model_dir

        return Clip.from_pretrained(pocket_model_dir("clip"))
    except (ImportError, FileNotFoundError, ValueError, OSError):
        from genaug.pocket.tiny import make_tiny_pocket

        return Clip.from_pretrained(make_tiny_pocket(workdir, models=["clip"], sizes="pocket")["clip"])


def pocket_images(n: int):
    from genaug.data import load_dataset

    return load_dataset("pocket_digits", split="pretrain").subset(list(range(n)))


def recompute_step(projector, diffusion, images, token_ids, embeds, position, draws, clip=None):
    """VAE encode + sample and the text encoder every step (and, for the reference step, CLIP
    image embeddings and the VAE input preparation), then the same UNet loss.

    Returns the loss and the seconds spent before the projector and UNet."""
    started = time.perf_counter()
    with torch.no_grad():
        if clip is not None:
            embeds = clip.image_embeds(list(images), normalize=False)
        pixels = vae_pixels([resize_center_crop(image, 16) for image in images])
        latents = diffusion.vae.encode(pixels).latent_dist.sample() * diffusion.scaling_factor
        context = diffusion.text_encoder(token_ids)[0]
    overhead = time.perf_counter() - started
    kept = embeds * draws.keep[:, None].float()
    ctx = slot_context(context, projector(kept), position)
    return diffusion_loss(diffusion.unet, diffusion.noise_scheduler, latents, ctx, draws.noise, draws.timesteps), overhead


MODES = ("cached", "recompute", "reference")


def run(steps: int, batch_size: int, diffusion, dataset, embeds, latent_cache, context, clip) -> dict[str, tuple[float, float]]:
    """Steps of the three modes interleaved (cached, recompute, reference, cached, ...), so that
    the machine's load changes touch all three alike; per mode the median step time gives
    steps/s, and the median share of a step spent before the projector and UNet."""
    token_ids = diffusion.tokenizer([SDI_PROMPT] * batch_size, padding="max_length", truncation=True,
                                    max_length=diffusion.tokenizer.model_max_length, return_tensors="pt").input_ids
    shape = tuple(latent_cache.mean.shape[1:])
    state = {}
    for mode in MODES:
        projector = build_projector(embeds.shape[1], 256, diffusion.cross_attention_dim, seed=0)
        state[mode] = (projector, torch.optim.AdamW(projector.parameters(), lr=1e-3, weight_decay=0.01))
    seconds = {mode: [] for mode in MODES}
    shares = {mode: [] for mode in MODES}
    for step in range(steps + 1):  # step 0 of each mode is a warm-up
        rows = batch_rows(len(embeds), batch_size, 0, step)
        draws = draw_step(len(rows), shape, 1000, 0.05, generator_for(0, "step", step))
        for mode in MODES:
            projector, optimizer = state[mode]
            started = time.perf_counter()
            if mode == "cached":
                loss, overhead = projector_loss(projector, diffusion, latent_cache, context.context, context.position,
                                                embeds[rows], rows, draws), 0.0
            else:
                loss, overhead = recompute_step(projector, diffusion, dataset.images[rows.numpy()], token_ids[: len(rows)],
                                                embeds[rows], context.position, draws, clip if mode == "reference" else None)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            elapsed = time.perf_counter() - started
            if step > 0:
                seconds[mode].append(elapsed)
                shares[mode].append(overhead / elapsed)
    return {mode: (1.0 / statistics.median(seconds[mode]), statistics.median(shares[mode])) for mode in MODES}


def sd15_component_seconds(repeats: int = 3) -> dict[str, float]:
    """Seconds per sample of each part of a projector-training step with SD 1.5's shapes (random weights)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=64, cross_attention_dim=768, block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
        attention_head_dim=8, down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    ).requires_grad_(False)
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, latent_channels=4,
                        sample_size=512).requires_grad_(False)
    text = CLIPTextModel(CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                        num_attention_heads=12, max_position_embeddings=77)).requires_grad_(False)
    vision = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16, patch_size=14,
        image_size=224, projection_dim=768)).requires_grad_(False)
    context = torch.randn(1, 77, 768, requires_grad=True)

    def unet_step():
        out = unet(torch.randn(1, 4, 64, 64), torch.tensor([500]), encoder_hidden_states=context).sample
        out.pow(2).mean().backward()

    parts = {"unet forward + backward": unet_step}
    parts["vae encode 512 px"] = lambda: vae.encode(torch.randn(1, 3, 512, 512)).latent_dist.sample()
    parts["text encoder"] = lambda: text(torch.randint(0, 49408, (1, 77)))[0]
    parts["clip vision 224 px"] = lambda: vision(pixel_values=torch.randn(1, 3, 224, 224)).image_embeds
    timings = {name: [] for name in parts}
    for round_ in range(repeats + 1):  # interleaved rounds; round 0 warms up
        for name, function in parts.items():
            started = time.perf_counter()
            if name == "unet forward + backward":
                function()
            else:
                with torch.no_grad():
                    function()
            if round_ > 0:
                timings[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in timings.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--sd15-shapes", action="store_true", help="also time SD 1.5-shaped parts (about 3 minutes)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        model, description = pick_model(Path(tmp))
        diffusion = load_frozen_diffusion(model)
        clip = load_clip(Path(tmp))
        dataset = pocket_images(args.images)
        started = time.perf_counter()
        embeds = clip.image_embeds(list(dataset.images), normalize=False)  # genaug sdi embed
        latent_cache = build_latent_cache(diffusion.vae, dataset, 16)
        context = build_context_cache(diffusion.tokenizer, diffusion.text_encoder)
        cache_seconds = time.perf_counter() - started
        print(f"model: {description}; {len(dataset)} images, global batch {args.batch_size}, "
              f"{args.steps} timed steps, {torch.get_num_threads()} threads")
        print(f"CLIP embeddings + latent and context caches, built once: {cache_seconds:.2f} s")
        measured = run(args.steps, args.batch_size, diffusion, dataset, embeds, latent_cache, context, clip)
        cached = measured["cached"][0]
        print(f"reference step (CLIP + VAE + text encoder every step): {measured['reference'][0]:.3f} steps/s "
              f"({100 * measured['reference'][1]:.0f} % of it outside the projector and UNet)")
        print(f"recompute VAE latents + text context every step:       {measured['recompute'][0]:.3f} steps/s "
              f"({100 * measured['recompute'][1]:.0f} % of it in the VAE and text encoder)")
        print(f"cached latents + context (genaug):                     {cached:.3f} steps/s")
        print(f"speed-up vs the reference step: {cached / measured['reference'][0]:.2f}x; "
              f"vs recomputing latents + context only: {cached / measured['recompute'][0]:.2f}x")
    if args.sd15_shapes:
        parts = sd15_component_seconds()
        print("SD 1.5 shapes, seconds per sample: " + ", ".join(f"{name} {value:.2f}" for name, value in parts.items()))
        unet = parts["unet forward + backward"]
        latents_context = unet + parts["vae encode 512 px"] + parts["text encoder"]
        print(f"implied speed-up at SD 1.5 scale: vs recomputing latents + context {latents_context / unet:.2f}x; "
              f"vs the reference step {(latents_context + parts['clip vision 224 px']) / unet:.2f}x")


if __name__ == "__main__":
    main()
