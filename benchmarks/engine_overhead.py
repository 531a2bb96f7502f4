"""Where the generation engine's wall time goes at few sampling steps (the fast preset).

With 50-100 steps the UNet takes 93-99 % of the time; with 8-12 steps prompt encoding, the
VAE, PNG writing and the manifest's fsyncs become a larger share. This runs the engine
(``run_job``: batches, per-image seeds, PNG + manifest writes) on pocket items and splits
its wall time, from forward hooks and timers, into:

- UNet (``unet.forward``), text encoder, VAE (encoder for InstructPix2Pix's image latents,
  decoder for every output), writes (``SetWriter.add``: PNG, rename, record, fsyncs),
- the rest (scheduler steps, latent preparation, guidance arithmetic, uint8 conversion).

    .venv/bin/python benchmarks/engine_overhead.py [--model pocket:sd|pocket:ip2p] [--preset fast]
        [--scheduler dpmsolver --steps 8 --precision bf16] [--images 200] [--batch-size 50]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from genaug.config import EditorConfig, EngineConfig
from genaug.generation.editors import create_editor
from genaug.generation.engine import run_job
from genaug.generation.frontier import UNetTimer, infer_generator, pocket_workload
from genaug.generation.runtime import autocast_context
from genaug.manifest import SetWriter


def module_timer(module: torch.nn.Module) -> UNetTimer:
    """Forward-hook timer of any module (the same hooks as the UNet's)."""
    return UNetTimer(module)


class WriteTimer:
    """Time spent in ``SetWriter.add`` (PNG + rename + record + fsyncs)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._add = SetWriter.add
        timer = self

        def add(writer, record, image):
            started = time.perf_counter()
            try:
                return timer._add(writer, record, image)
            finally:
                timer.seconds += time.perf_counter() - started

        SetWriter.add = add

    def remove(self) -> None:
        SetWriter.add = self._add


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="pocket:sd")
    parser.add_argument("--preset", default=None, help="a sampling preset (genaug.generation.sampling_preset)")
    parser.add_argument("--scheduler", default="dpmsolver")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--precision", default="bf16", choices=["fp32", "bf16"])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=2, help="timed runs (fresh sets); the best is printed")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="genaug-overhead-"))
    generator = infer_generator(args.model)
    workload = pocket_workload(generator, args.model, args.images, judged=False)
    if args.preset:
        config = EditorConfig(name=generator, model=args.model, preset=args.preset)
        context = nullcontext()
    else:
        config = EditorConfig(name=generator, model=args.model, scheduler=args.scheduler, steps=args.steps)
        context = None
    editor = create_editor(config, sources=workload.sources, device="cpu", dtype="fp32")
    pipeline = editor.pipeline
    context = context or autocast_context(args.precision, editor.device)
    timers = {"UNet": UNetTimer(pipeline.unet), "text encoder": module_timer(pipeline.text_encoder),
              "VAE decoder": module_timer(pipeline.vae.decoder), "VAE encoder": module_timer(pipeline.vae.encoder)}
    engine = EngineConfig(batch_size=args.batch_size, progress=False, max_regenerations=0)
    with context:
        editor.render(workload.items[:2], [item.seed for item in workload.items[:2]])  # warm-up
    best = None
    for repeat in range(args.repeats):
        for timer in timers.values():
            timer.reset()
        writes = WriteTimer()
        started = time.perf_counter()
        with context:
            report = run_job(workload.items, editor, workdir / f"set{repeat}", experiment_seed=0, engine=engine,
                             model=editor.model.identity)
        seconds = time.perf_counter() - started
        writes.remove()
        shares = {name: timer.seconds for name, timer in timers.items()} | {"writes (PNG, record, fsync)": writes.seconds}
        if best is None or seconds < best[0]:
            best = (seconds, shares, report.made)
    seconds, shares, made = best
    params = editor.params()
    print(f"model: {args.model} ({generator}); {made} images, batch {args.batch_size}; {params['scheduler']} "
          f"{params['steps']} steps, autocast {params.get('autocast') or (args.precision if not args.preset else 'none')}, "
          f"torch threads {torch.get_num_threads()}")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end (shared machine)")
    print(f"engine wall time {seconds:.2f} s, {made / seconds:.2f} images/s (best of {args.repeats})")
    rest = seconds - sum(shares.values())
    for name, value in [*shares.items(), ("rest (scheduler, latents, guidance, uint8)", rest)]:
        print(f"  {name:<44}{value:>8.3f} s {value / seconds:>7.1%}")
    print(f"outside the UNet: {1 - shares['UNet'] / seconds:.1%}")


if __name__ == "__main__":
    main()
