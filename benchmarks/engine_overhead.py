"""Where the generation engine's wall time goes at few sampling steps (the fast preset).

With 50-100 steps the UNet takes 93-99 % of the time; with 8-12 steps prompt encoding, the
VAE, PNG writing and the manifest's fsyncs become a larger share. This runs the engine
(``run_job``: batches, per-image seeds, PNG + manifest writes) on pocket items and splits
its wall time, from forward hooks and timers, into:

- UNet (``unet.forward``), text encoder, VAE (encoder for InstructPix2Pix's image latents,
  decoder for every output), writes (``SetWriter.add``: PNG, rename, record, fsyncs),
- the rest (scheduler steps, latent preparation, guidance arithmetic, uint8 conversion).

Two variants run alternately in one process, on the same items: ``before`` restores the
earlier engine's per-image costs (each new prompt encoded alone, cached across batches;
each image and each record fsynced on its own: ``SetWriter.add``), ``after`` is the engine
as it is (a batch's distinct prompts in one encoder call; one file-system sync for a batch's
images, then one manifest fsync: ``SetWriter.add_batch``).

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
from genaug.generation.frontier import ForwardTimer, infer_generator, pocket_workload
from genaug.runtime import autocast_context
from genaug.manifest import SetWriter


class EarlierEngine:
    """The earlier per-image costs, patched in for the ``before`` variant (see the module doc)."""

    def __init__(self, editor) -> None:
        self.editor, self.cache = editor, {}

    def text_embeddings(self, texts):
        pipeline = self.editor.pipeline
        for text in dict.fromkeys(texts):
            if text not in self.cache:
                tokens = pipeline.tokenizer([text], padding="max_length", max_length=pipeline.tokenizer.model_max_length,
                                            truncation=True, return_tensors="pt")
                with torch.inference_mode():
                    self.cache[text] = pipeline.text_encoder(tokens.input_ids)[0]
        return torch.cat([self.cache[text] for text in texts])

    def __enter__(self):
        self.cache.clear()
        self.editor.text_embeddings = self.text_embeddings
        self._add_batch = SetWriter.add_batch
        SetWriter.add_batch = lambda writer, entries: [writer.add(record, image) for record, image in entries]
        return self

    def __exit__(self, *exc):
        del self.editor.text_embeddings
        SetWriter.add_batch = self._add_batch


class WriteTimer:
    """Time spent in ``SetWriter.add_batch`` (the engine's only write call): PNGs, renames, records, syncs."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._add_batch = SetWriter.add_batch
        timer = self

        def add_batch(writer, entries):
            started = time.perf_counter()
            try:
                return timer._add_batch(writer, entries)
            finally:
                timer.seconds += time.perf_counter() - started

        SetWriter.add_batch = add_batch

    def remove(self) -> None:
        SetWriter.add_batch = self._add_batch


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
    timers = {"UNet": ForwardTimer(pipeline.unet), "text encoder": ForwardTimer(pipeline.text_encoder),
              "VAE decoder": ForwardTimer(pipeline.vae.decoder), "VAE encoder": ForwardTimer(pipeline.vae.encoder)}
    engine = EngineConfig(batch_size=args.batch_size, progress=False, max_regenerations=0)
    with context:
        editor.render(workload.items[:2], [item.seed for item in workload.items[:2]])  # warm-up
    best: dict[str, tuple] = {}
    for repeat in range(args.repeats):
        for variant in ("before", "after"):
            for timer in timers.values():
                timer.reset()
            patch = EarlierEngine(editor) if variant == "before" else nullcontext()
            with patch:
                writes = WriteTimer()  # wraps whatever add / add_batch the variant uses
                started = time.perf_counter()
                with context:
                    report = run_job(workload.items, editor, workdir / f"{variant}{repeat}", experiment_seed=0, engine=engine,
                                     model=editor.model.identity)
                seconds = time.perf_counter() - started
                writes.remove()
            shares = {name: timer.seconds for name, timer in timers.items()} | {"writes (PNG, record, syncs)": writes.seconds}
            if variant not in best or seconds < best[variant][0]:
                best[variant] = (seconds, shares, report.made)
    params = editor.params()
    print(f"model: {args.model} ({generator}); {args.images} images, batch {args.batch_size}; {params['scheduler']} "
          f"{params['steps']} steps, autocast {params.get('autocast') or (args.precision if not args.preset else 'none')}, "
          f"torch threads {torch.get_num_threads()}")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end (shared machine); "
          f"best of {args.repeats} runs of each variant, alternated")
    print(f"{'':<46}" + "".join(f"{v:>18}" for v in best))
    seconds = {v: best[v][0] for v in best}
    print(f"{'engine wall time (s), images/s':<46}" + "".join(f"{seconds[v]:>9.2f}{best[v][2] / seconds[v]:>9.2f}" for v in best))
    names = [*best["after"][1], "rest (scheduler, latents, guidance, uint8)"]
    for name in names:
        cells = []
        for v in best:
            value = best[v][1].get(name, seconds[v] - sum(best[v][1].values()))
            cells.append(f"{value:>9.3f}{value / seconds[v]:>9.1%}")
        print(f"  {name:<44}" + "".join(cells))
    print(f"{'outside the UNet':<46}" + "".join(f"{1 - best[v][1]['UNet'] / seconds[v]:>18.1%}" for v in best))


if __name__ == "__main__":
    main()
