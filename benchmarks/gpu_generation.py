"""Generation on a GPU at the real architectures: per-image pipeline loop vs the engine, and the
fraction of the GPU's peak fp16 FLOP/s achieved (DESIGN.md 6).

Three workloads, on the stand-ins of ``genaug.rehearsal`` (the hub models' architectures,
random weights: speed and memory are the real models', the pixels are noise):

1. SD 1.5 text-to-image at 512 px, fp16: the reference procedure (one pipeline call per
   image, prompt string in, PIL out) vs the generation engine (``--batch`` images per call,
   cached prompt embeddings, PNG + manifest writes);
2. InstructPix2Pix at 256 px, fp16 (3 guidance branches per step), loop vs engine;
3. SHB with CLIP ViT-B/32 at 256 px: pairs per second of ``semantic_hybrid_blend``.

Printed per workload: images (pairs) per second of each path, the engine's speed-up, the
share of wall time inside the UNet, and the fraction of peak achieved = UNet (ViT) FLOPs,
counted with ``torch.utils.flop_counter`` on the meta device, over the seconds spent in it,
over the GPU's dense fp16 tensor peak (``genaug.rehearsal.cost.GPU_PEAKS``, matched by the
device's name, or ``--peak-tflops``). That fraction replaces the assumed ``GPU_EFFICIENCY``
of ``genaug run --dry-run`` once measured.

Needs CUDA: without a CUDA device it prints one line, ``no CUDA device: skipped``, and exits
0. ``--device cpu`` runs the same code on the CPU in fp32 with tiny counts as a smoke test
(its "fraction of peak" is then against ``--peak-tflops``). About 2-4 minutes on one GPU,
plus building the stand-ins once (about a minute, cached in GENAUG_HOME).

    .venv/bin/python benchmarks/gpu_generation.py [--images 8] [--batch 8] [--steps 20] [--pairs 32]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8, help="images per path and workload")
    parser.add_argument("--batch", type=int, default=8, help="the engine's batch size")
    parser.add_argument("--steps", type=int, default=20, help="denoising steps per image")
    parser.add_argument("--pairs", type=int, default=32, help="SHB pairs")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="cpu: a smoke test of this script")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the device's dense fp16 peak (default: from its name)")
    args = parser.parse_args()

    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: skipped")
        return 0
    workdir = Path(tempfile.mkdtemp(prefix="genaug-gpu-bench-"))
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import diffusers

    diffusers.utils.logging.disable_progress_bar()
    device_name = torch.cuda.get_device_name(0) if args.device == "cuda" else "CPU"
    peak = args.peak_tflops or peak_of(device_name)
    dtype = "fp16" if args.device == "cuda" else "fp32"
    print(f"device: {device_name}, {dtype}; peak dense fp16 {peak or '?'} TFLOP/s"
          f"{' (from genaug.rehearsal.cost.GPU_PEAKS)' if peak and not args.peak_tflops else ''}")
    print(f"{'workload':<34}{'path':<22}{'items/s':>9}{'UNet/ViT share':>16}{'of peak':>9}")
    generation("SD 1.5 txt2img 512 px", "txt2img", "runwayml/stable-diffusion-v1-5", 512, args, dtype, peak, workdir)
    generation("InstructPix2Pix 256 px", "instruct", "timbrooks/instruct-pix2pix", 256, args, dtype, peak, workdir)
    shb("SHB ViT-B/32 256 px", args, peak)
    if args.device == "cuda":
        print(f"peak memory allocated: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
    return 0


def peak_of(device_name: str) -> float | None:
    from genaug.rehearsal.cost import GPU_PEAKS

    for name, tflops in sorted(GPU_PEAKS.items(), key=lambda item: -len(item[0])):
        if name.lower() in device_name.lower():
            return tflops
    return None


def standin_images(n: int, size: int):
    import numpy as np

    from genaug.data.base import RealDataset

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)
    return RealDataset(name="bench", split="train", class_names=["bird", "car"], labels=np.arange(n) % 2,
                       ids=[f"bench/{i:04d}" for i in range(n)], images=images)


def generation(label: str, editor_name: str, hub_id: str, size: int, args, dtype: str, peak, workdir: Path) -> None:
    import torch

    from genaug.config import GenerateConfig
    from genaug.generation.stage import dataset_sources, generate, plan_edit_items, plan_text_items
    from genaug.generation.editors import create_editor
    from genaug.generation.frontier import ForwardTimer
    from genaug.rehearsal.cost import unet_flops
    from genaug.rehearsal.standins import standin_dir

    folder = standin_dir(hub_id)
    dataset = standin_images(args.images, size)
    config = GenerateConfig(
        output=workdir / f"{editor_name}_engine", regime="single", prompts=["a photo of a {class}"] if editor_name == "txt2img" else ["make it snowy"],
        editor={"name": editor_name, "model": str(folder), "steps": args.steps, "size": size},
        engine={"batch_size": args.batch, "progress": False, "max_regenerations": 0, "device": args.device, "dtype": dtype},
    )
    editor = create_editor(config.editor, sources=dataset_sources(dataset), device=args.device, dtype=dtype)
    pipeline = editor.pipeline
    cuda = args.device == "cuda"
    timer = ForwardTimer(pipeline.unet, cuda)
    planner = plan_edit_items if editor.needs_source else plan_text_items
    prompts = list(config.prompts)
    items = planner(dataset, editor_name, prompts, config)

    def loop(chosen) -> None:
        from PIL import Image

        for item in chosen:
            kwargs = {"num_inference_steps": args.steps, "generator": torch.Generator(args.device).manual_seed(item.seed)}
            if editor.needs_source:
                kwargs |= {"image": Image.fromarray(dataset.images[item.source_index]).resize((size, size)),
                           "guidance_scale": editor.guidance_scale, "image_guidance_scale": editor.image_guidance_scale}
            else:
                kwargs |= {"height": size, "width": size, "guidance_scale": editor.guidance_scale}
            pipeline(item.prompt, **kwargs).images[0].save(workdir / f"{editor_name}_{item.id.replace('/', '_')}.png")

    loop(items[:1])  # warm-up: kernel selection, allocator
    timer.reset()
    started = time.perf_counter()
    loop(items)
    loop_seconds, loop_unet, loop_calls = time.perf_counter() - started, timer.seconds, timer.calls
    timer.reset()
    started = time.perf_counter()
    generate(config, dataset=dataset, editor=editor)
    engine_seconds, engine_unet, engine_calls = time.perf_counter() - started, timer.seconds, timer.calls

    branches = 3 if editor_name == "instruct" else 2
    flops_loop = loop_calls * unet_flops(hub_id, size // 8, branches)
    # The scheduler decides the calls per image (PNDM makes steps + 1): FLOPs follow the calls counted.
    batches = _batches(len(items), args.batch)
    flops_engine = engine_calls / len(batches) * sum(unet_flops(hub_id, size // 8, branches * len(b)) for b in batches)
    n = len(items)
    row(label, "per-image loop", n / loop_seconds, loop_unet / loop_seconds, flops_loop / loop_unet / 1e12, peak)
    row("", f"engine (batch {args.batch})", n / engine_seconds, engine_unet / engine_seconds, flops_engine / engine_unet / 1e12, peak)
    print(f"{'':<34}speed-up {loop_seconds / engine_seconds:.2f}x; {args.steps} steps, {n} images, UNet calls {loop_calls} / {engine_calls}")
    del pipeline, editor
    if cuda:
        torch.cuda.empty_cache()


def _batches(n: int, batch: int) -> list[range]:
    return [range(i, min(i + batch, n)) for i in range(0, n, batch)]


def shb(label: str, args, peak) -> None:
    import torch

    from genaug.clip import Clip
    from genaug.generation.frontier import ForwardTimer
    from genaug.mixing import semantic_hybrid_blend
    from genaug.rehearsal.cost import vit_flops
    from genaug.rehearsal.standins import standin_dir

    hub_id = "openai/clip-vit-base-patch32"
    clip = Clip.from_pretrained(str(standin_dir(hub_id)), device=args.device,
                                dtype=torch.float16 if args.device == "cuda" else torch.float32)
    vision = clip.model.vision_model
    timer = ForwardTimer(vision, args.device == "cuda")
    generator = torch.Generator().manual_seed(0)
    originals = torch.randint(0, 256, (args.pairs, 3, 256, 256), dtype=torch.uint8, generator=generator)
    generated = torch.randint(0, 256, (args.pairs, 3, 256, 256), dtype=torch.uint8, generator=generator)
    names = ["bird", "car"] * (args.pairs // 2) + ["bird"] * (args.pairs % 2)
    semantic_hybrid_blend(originals[:2], generated[:2], names[:2], clip)  # warm-up
    timer.reset()
    started = time.perf_counter()
    semantic_hybrid_blend(originals, generated, names, clip)
    seconds = time.perf_counter() - started
    from genaug.mixing.shb import grid_shape, scale_patch

    patch, stride = scale_patch(256)
    rows, cols = grid_shape(256, 256, patch, stride)
    patches = args.pairs * rows * cols
    flops = patches * (vit_flops(hub_id) - _projection_flops(clip))
    row(label, "batched (genaug)", args.pairs / seconds, timer.seconds / seconds, flops / timer.seconds / 1e12, peak)


def _projection_flops(clip) -> int:
    """The visual projection's FLOPs per image (vit_flops counts it; the vision tower timer does not)."""
    config = clip.model.config
    return 2 * config.vision_config.hidden_size * config.projection_dim


def row(label: str, path: str, rate: float, share: float, tflops: float, peak) -> None:
    fraction = f"{tflops / peak:.1%}" if peak else f"{tflops:.1f} TF/s"
    print(f"{label:<34}{path:<22}{rate:>9.2f}{share:>15.1%}{fraction:>9}")


if __name__ == "__main__":
    sys.exit(main())
