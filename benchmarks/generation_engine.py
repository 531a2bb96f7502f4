"""Generation engine vs the reference per-image loop, side by side in one run (DESIGN.md 6).

The reference DiffuseMix code calls the InstructPix2Pix pipeline once per (image, prompt)
with a prompt string and a PIL image, and saves each result. The engine plans work items,
runs batches through the same pipeline object in one call each (per-image generators,
cached prompt embeddings, tensor inputs, batch decode) and writes PNGs + fsynced manifest
records. Both make the same images: same model, scheduler (Euler ancestral), steps,
guidance, sources, prompts and per-image seeds.

Printed: images per second of each, their ratio, the share of wall time spent inside
``unet.forward`` (forward pre/post hooks), and how far the two sets of images are apart
(the engine batches, the loop does not: CPU kernels round differently, at most 1 grey level).

Model: the trained pocket InstructPix2Pix when ``genaug.pocket`` has it, else a tiny
randomly initialised pipeline of the same architecture (the output says which).

    .venv/bin/python benchmarks/generation_engine.py [--images 32] [--prompts 2] [--steps 20] [--batch-size 16] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from genaug.config import GenerateConfig
from genaug.data.base import RealDataset
from genaug.generation.stage import dataset_sources, generate, plan_edit_items
from genaug.generation.editors import create_editor
from genaug.generation.frontier import ForwardTimer
from genaug.generation.prompts import POCKET_INSTRUCTIONS
from genaug.manifest import read_manifest, record_file
from genaug.pocket.render import DIGIT_NAMES, styled_digits
from genaug.pocket.tiny import make_tiny_pocket


def pick_model(workdir: Path) -> tuple[str, str]:
    try:
        from genaug.pocket import pocket_model_dir

        return str(pocket_model_dir("ip2p")), "trained pocket InstructPix2Pix"
    except (ImportError, FileNotFoundError, ValueError):
        folder = make_tiny_pocket(workdir, models=["ip2p"], sizes="pocket")["ip2p"]
        return str(folder), "tiny randomly initialised InstructPix2Pix (pocket architecture; pocket weights not built)"


def pocket_images(n: int) -> RealDataset:
    images, labels, _, _ = styled_digits(np.arange(n))
    return RealDataset(name="pocket_digits", split="train", class_names=list(DIGIT_NAMES), labels=labels,
                       ids=[f"pocket/{i:04d}" for i in range(n)], images=images)


def reference_loop(pipeline, items, dataset, config, out_dir: Path) -> dict[str, np.ndarray]:
    """The reference procedure: one pipeline call per (image, prompt), PIL in, PIL out, saved."""
    from PIL import Image

    out_dir.mkdir(parents=True, exist_ok=True)
    results = {}
    for item in items:
        image = Image.fromarray(dataset.images[item.source_index])
        edited = pipeline(
            item.prompt,
            image=image,
            num_inference_steps=config.editor.steps,
            guidance_scale=4.0,
            image_guidance_scale=1.5,
            generator=torch.Generator().manual_seed(item.seed),
        ).images[0]
        edited.save(out_dir / f"{item.id}.png")
        results[item.id] = np.asarray(edited)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=32, help="real images edited")
    parser.add_argument("--prompts", type=int, default=2, help="prompts per image (regime 'all')")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    workdir = Path(tempfile.mkdtemp(prefix="genaug-bench-"))
    os.environ.setdefault("GENAUG_HOME", str(workdir / "home"))
    model, model_note = pick_model(workdir)
    dataset = pocket_images(args.images)
    config = GenerateConfig(
        output=workdir / "engine_set", regime="all", prompts=list(POCKET_INSTRUCTIONS[: args.prompts]),
        editor={"name": "instruct", "model": model, "steps": args.steps},
        engine={"batch_size": args.batch_size, "progress": False, "max_regenerations": 0},
    )
    editor = create_editor(config.editor, sources=dataset_sources(dataset))
    pipeline = editor.pipeline  # loaded once, outside both timings
    timer = ForwardTimer(pipeline.unet)
    items = plan_edit_items(dataset, "instruct", config.prompts, config)

    # warm-up of both paths (first-call allocations, kernel selection), untimed
    reference_loop(pipeline, items[:1], dataset, config, workdir / "warmup")
    editor.render(items[:2], [item.seed for item in items[:2]])

    timer.reset()
    started = time.perf_counter()
    reference = reference_loop(pipeline, items, dataset, config, workdir / "reference_set")
    loop_seconds = time.perf_counter() - started
    loop_unet = timer.seconds

    timer.reset()
    started = time.perf_counter()
    report = generate(config, dataset=dataset, editor=editor)
    engine_seconds = time.perf_counter() - started
    engine_unet = timer.seconds

    from PIL import Image

    engine_images = {r.id: np.asarray(Image.open(record_file(config.output, r))) for r in read_manifest(config.output)}
    differences = [np.abs(engine_images[k].astype(int) - reference[k].astype(int)).max() for k in reference]
    n = len(items)
    loop_rate, engine_rate = n / loop_seconds, n / engine_seconds
    print(f"model: {model_note}")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end (shared machine)")
    print(f"work: {args.images} pocket digits x {args.prompts} prompts = {n} images, 16x16, {args.steps} steps, "
          f"Euler ancestral, guidance 4 / image guidance 1.5, CPU fp32, torch threads {torch.get_num_threads()}")
    print(f"{'':<28}{'seconds':>9}{'images/s':>10}{'UNet share':>12}")
    print(f"{'reference per-image loop':<28}{loop_seconds:>9.2f}{loop_rate:>10.2f}{loop_unet / loop_seconds:>11.1%}")
    print(f"{f'engine (batch {args.batch_size})':<28}{engine_seconds:>9.2f}{engine_rate:>10.2f}{engine_unet / engine_seconds:>11.1%}")
    print(f"speed-up: {engine_rate / loop_rate:.2f}x   (engine wall time includes PNG + fsynced manifest writes; "
          f"made {report.made} images)")
    print(f"same images: {sum(d == 0 for d in differences)}/{n} bit-identical, max difference {max(differences)} grey level(s)")


if __name__ == "__main__":
    main()
