"""SHB batched vs the reference one-pair-at-a-time procedure, side by side in one run (DESIGN.md 6).

The reference SHB code handles one (original, generated) pair at a time: it encodes the
class prompt, resizes the generated image, and for every patch of the grid crops it from
the PIL image, runs CLIP's processor on that one crop and the vision tower on that one
crop, then builds the mask. genaug's ``semantic_hybrid_blend`` encodes each class prompt
once, cuts every patch of many pairs with one gather, and preprocesses and encodes them
``--clip-batch`` patches per call (default: ``Clip.patch_batch_size``). Both use the same
CLIP object, the same patch grid and the same mask code (``shb_mask``) on the same
inputs; the script asserts that every mask is identical and prints pairs per second of
each and their ratio.

Models (``--models``):

- ``pocket``: the shipped pocket CLIP (16 px input, ViT patch 4); pairs are 16 px pocket
  digits, SHB patch 8 / stride 4 (3 x 3 = 9 patches per pair);
- ``tiny-vit-b32``: a randomly initialised CLIP with ViT-B/32's geometry and processor
  (224 px input, 32 px ViT patches, bicubic resize + centre crop of CLIP's processor)
  and a tiny width (64, 2 layers); pairs are pocket digits at 224 px, SHB patch 32 /
  stride 16 (13 x 13 = 169 patches per pair, each resized to 224 px): the realistic
  workload at a cost this machine can run;
- ``vit-b32``: ViT-B/32's full architecture (width 768, 12 layers), random weights:
  compute-bound on a CPU; use few pairs (``--pairs-vit-b32``).

Timing: the two procedures alternate for ``--rounds`` rounds and the median of each is
reported, so the machine's load touches both alike. Run with one thread for comparable
figures on a shared machine:

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/shb.py [--models pocket tiny-vit-b32] [--pairs 64] [--pairs-224 16] [--rounds 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch
from PIL import Image

from genaug.clip import Clip
from genaug.mixing import semantic_hybrid_blend
from genaug.mixing.fractals import resize_images
from genaug.mixing.shb import SHB_PROMPT, hybrid_blend, patch_grid, scale_patch, shb_mask
from genaug.pocket.render import DIGIT_NAMES, styled_digits

# ---------------------------------------------------------------------------- the reference procedure


@torch.no_grad()
def reference_shb(original: torch.Tensor, generated: torch.Tensor, class_name: str, clip: Clip, patch: int, stride: int):
    """One pair, one crop at a time: ``(mask (H, W), blended (3, H, W), grid (gh, gw))``."""
    text = clip.text_embeds([SHB_PROMPT.format(class_name)])[0]
    h, w = original.shape[-2:]
    generated = resize_images(generated[None], (h, w))[0]
    picture = Image.fromarray(generated.permute(1, 2, 0).numpy())
    corners = patch_grid(h, w, patch, stride)
    scores = []
    for y, x in corners:
        crop = picture.crop((x, y, min(x + patch, w), min(y + patch, h)))
        pixels = clip.pixel_values([crop])
        feature = clip.image_embeds_from_pixels(pixels)[0]
        scores.append(float(feature @ text))
    n_cols = len({x for _, x in corners})
    grid = torch.tensor(scores).view(-1, n_cols)
    mask = shb_mask(grid, (h, w))
    return mask, hybrid_blend(original, generated, mask), grid


def run_reference(originals, generated, names, clip, patch, stride):
    return [reference_shb(o, g, n, clip, patch, stride) for o, g, n in zip(originals, generated, names)]


def run_batched(originals, generated, names, clip, patch, stride, pair_batch, clip_batch):
    results = []
    for start in range(0, len(originals), pair_batch):
        part = slice(start, start + pair_batch)
        results.append(
            semantic_hybrid_blend(originals[part], generated[part], names[part], clip, patch=patch, stride=stride, batch_size=clip_batch)
        )
    return results


# ---------------------------------------------------------------------------- models and inputs


def tiny_vit_b32(full: bool = False) -> Clip:
    """Random CLIP with ViT-B/32's input geometry and processor; ``full``: its whole architecture."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    from genaug.pocket.tokenizer import cached_tokenizer

    tokenizer = cached_tokenizer()  # the pocket vocabulary: text is encoded once per pair or class
    torch.manual_seed(0)
    special = dict(
        vocab_size=len(tokenizer), max_position_embeddings=tokenizer.model_max_length, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    if full:  # openai/clip-vit-base-patch32
        text = dict(special, hidden_size=512, num_hidden_layers=12, num_attention_heads=8, intermediate_size=2048)
        vision = dict(image_size=224, patch_size=32, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)
        projection = 512
    else:
        text = dict(special, hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=256)
        vision = dict(image_size=224, patch_size=32, hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=256)
        projection = 64
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=projection))
    processor = CLIPProcessor(image_processor=CLIPImageProcessor(), tokenizer=tokenizer)  # ViT-B/32's preprocessing
    return Clip(model, processor, name="vit-b32" if full else "tiny-vit-b32")


def digit_pairs(n: int, size: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """``n`` (original, generated) pairs of styled pocket digits at ``size`` px, uint8 (N, 3, H, W)."""
    images, labels, _, _ = styled_digits(np.arange(n))
    edits = styled_digits(np.arange(1000, 1000 + n))[0]
    to_tensor = lambda a: resize_images(torch.from_numpy(a).permute(0, 3, 1, 2).contiguous(), (size, size))
    return to_tensor(images), to_tensor(edits), [DIGIT_NAMES[label] for label in labels]


# ---------------------------------------------------------------------------- measurement


def measure(label: str, clip: Clip, n_pairs: int, size: int, rounds: int, pair_batch: int, clip_batch: int) -> None:
    originals, generated, names = digit_pairs(n_pairs, size)
    patch, stride = scale_patch(size)
    n_patches = len(patch_grid(size, size, patch, stride))
    print(f"\n{label}: {n_pairs} pairs at {size} px, SHB patch {patch} / stride {stride} ({n_patches} patches per pair), "
          f"CLIP input {clip.input_size[0]} px, {torch.get_num_threads()} thread(s)")
    run_batched(originals[:2], generated[:2], names[:2], clip, patch, stride, pair_batch, clip_batch)  # warm-up
    reference_shb(originals[0], generated[0], names[0], clip, patch, stride)
    times = {"reference": [], "batched": []}
    for _ in range(rounds):
        start = time.perf_counter()
        reference = run_reference(originals, generated, names, clip, patch, stride)
        times["reference"].append(time.perf_counter() - start)
        start = time.perf_counter()
        batched = run_batched(originals, generated, names, clip, patch, stride, pair_batch, clip_batch)
        times["batched"].append(time.perf_counter() - start)

    masks = torch.cat([result.masks for result in batched])
    images = torch.cat([result.images for result in batched])
    same_masks = sum(torch.equal(masks[i], ref[0]) for i, ref in enumerate(reference))
    same_images = sum(torch.equal(images[i], ref[1]) for i, ref in enumerate(reference))
    seconds = {name: statistics.median(values) for name, values in times.items()}
    rate = {name: n_pairs / value for name, value in seconds.items()}
    print(f"  {'':42s} seconds    pairs/s")
    print(f"  {'reference (one pair, one crop at a time)':42s} {seconds['reference']:7.2f} {rate['reference']:10.4g}")
    per_call = clip_batch or clip.patch_batch_size()
    print(f"  {f'batched (pairs x{pair_batch}, patches x{per_call} per call)':42s} {seconds['batched']:7.2f} {rate['batched']:10.4g}")
    print(f"  speed-up: {rate['batched'] / rate['reference']:.2f}x (median of {rounds} interleaved rounds)")
    print(f"  identical masks: {same_masks}/{n_pairs}; identical blended images: {same_images}/{n_pairs}; "
          f"mean replaced fraction {float(masks.mean()):.3f}")
    assert same_masks == n_pairs, "batched and reference masks differ"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["pocket", "tiny-vit-b32"], choices=["pocket", "tiny-vit-b32", "vit-b32"])
    parser.add_argument("--pairs", type=int, default=64, help="pairs for the pocket CLIP")
    parser.add_argument("--pairs-224", type=int, default=16, help="pairs for the tiny ViT-B/32-shaped CLIP")
    parser.add_argument("--pairs-vit-b32", type=int, default=2, help="pairs for the full ViT-B/32")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pair-batch", type=int, default=64, help="pairs per semantic_hybrid_blend call (the mix stage's batch)")
    parser.add_argument("--clip-batch", type=int, default=None, help="patches per CLIP call (default: Clip.patch_batch_size)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch threads {torch.get_num_threads()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, "
          f"load average {os.getloadavg()[0]:.1f}")
    for name in args.models:
        if name == "pocket":
            measure("pocket CLIP (shipped)", Clip.from_pretrained("pocket"), args.pairs, 16, args.rounds, args.pair_batch, args.clip_batch)
        elif name == "tiny-vit-b32":
            measure("tiny ViT-B/32-shaped CLIP (random, width 64)", tiny_vit_b32(), args.pairs_224, 224, args.rounds, args.pair_batch, args.clip_batch)
        else:
            measure("ViT-B/32 architecture (random)", tiny_vit_b32(full=True), args.pairs_vit_b32, 224, args.rounds, args.pair_batch, args.clip_batch)
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
