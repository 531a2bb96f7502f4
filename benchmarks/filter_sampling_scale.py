"""Filtering and sampling at 10k and 100k records: seconds, and how they grow (DESIGN.md 6).

For each size N (default 10,000 and 100,000) one run measures:

- sampling: ``sample_bank`` drawing N vectors of 768 dimensions (SD's width) for 100
  classes of 25 bank features each (multiplier N / 2500: 4 and 40, CUB's reference value),
  with the ``gaussian`` and ``shrinkage`` samplers (fit + draw, every class);
- filter math on N records: ``clip_rank_filter`` (per-class top half), the frames check on N
  16x16 images (in chunks of 1024, as the stage runs it), near-duplicate search of N 768-d features against a fixed bank of 10,000
  real features (chunked matrix products);
- the whole ``filter`` stage on a synthetic set of N 16x16 PNGs (read the manifest, decode
  every image, score frames + dedupe against the pocket digits (pixels) + clip_rank with
  pocket CLIP, rewrite the manifest, write the report). ``--no-clip`` leaves CLIP out.

Printed: seconds per measurement and size, and the growth factor from the smallest to the
largest size (linear growth = the size ratio, 10x by default).

    .venv/bin/python benchmarks/filter_sampling_scale.py [--sizes 10000 100000] [--no-clip] [--threads N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from genaug.config import FilterConfig
from genaug.filtering import clip_rank_filter, filter_set, max_cosine
from genaug.filtering.filters import FramesFilter, FramesParams
from genaug.filtering.stage import ImageChunk
from genaug.manifest import SampleRecord, write_manifest
from genaug.sdi.sample import sample_bank
from genaug.sdi.tables import FeatureTable

CLASSES, PER_CLASS, DIM = 100, 25, 768


def timed(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def feature_bank(seed: int = 0) -> FeatureTable:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(CLASSES, DIM))
    labels = np.repeat(np.arange(CLASSES), PER_CLASS)
    features = centres[labels] + 0.3 * rng.normal(size=(len(labels), DIM))
    return FeatureTable(features, labels, [f"real{i}" for i in range(len(labels))], [f"class{c}" for c in range(CLASSES)])


def records(n: int) -> list[SampleRecord]:
    labels = np.arange(n) % 10
    return [SampleRecord(id=f"s{i:07d}", path=f"images/c{labels[i]}/s{i:07d}.png", label=int(labels[i]),
                         class_name=["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"][labels[i]],
                         method="sdi", created="2026-01-01T00:00:00+00:00") for i in range(n)]


def synthetic_images(n: int) -> np.ndarray:
    """Styled pocket digits, repeated with small noise (16x16 RGB uint8)."""
    from genaug.data import load_dataset

    pool = load_dataset("pocket_digits", split="pretrain").images
    rng = np.random.default_rng(1)
    picks = pool[np.arange(n) % len(pool)].astype(np.int16)
    return np.clip(picks + rng.integers(-20, 21, size=picks.shape), 0, 255).astype(np.uint8)


def write_set(folder: Path, n: int) -> None:
    """A synthetic set written directly (one manifest write; the benchmark measures filtering, not writing)."""
    images = synthetic_images(n)
    found = records(n)
    for record, image in zip(found, images):
        path = folder / record.path
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(path, format="PNG")
    write_manifest(folder, found)


def measure(n: int, use_clip: bool, clip, workdir: Path) -> dict[str, float]:
    bank = feature_bank()
    multiplier = n // (CLASSES * PER_CLASS)
    rng = np.random.default_rng(2)
    out = {
        "sample gaussian": timed(lambda: sample_bank(bank, "gaussian", multiplier, seed=0)),
        "sample shrinkage": timed(lambda: sample_bank(bank, "shrinkage", multiplier, seed=0)),
    }
    found, scores = records(n), rng.normal(size=n)
    out["clip_rank_filter"] = timed(lambda: clip_rank_filter(found, scores, 0.5))
    images = synthetic_images(n)
    frames = FramesFilter(FramesParams())

    def frames_check():  # in chunks of 1024 images, as the stage scores them
        for start in range(0, n, 1024):
            rows = np.arange(start, min(start + 1024, n))
            frames.decide(frames.score(ImageChunk(0, rows, list(images[rows]), np.ones(len(rows), bool)), None), None, None)

    out["frames check"] = timed(frames_check)
    queries, real = rng.normal(size=(n, DIM)).astype(np.float32), rng.normal(size=(10000, DIM)).astype(np.float32)
    out["dedupe 768-d vs 10k"] = timed(lambda: max_cosine(queries, real))

    set_dir = workdir / f"set{n}"
    write_set(set_dir, n)
    filters = [{"name": "frames"}, {"name": "dedupe"}] + ([{"name": "clip_rank", "keep_ratio": 0.5}] if use_clip else [])
    config = FilterConfig(set_dir=set_dir, filters=filters, dataset={"name": "pocket_digits"}, progress=False, batch_size=1024)
    report = None

    def stage():
        nonlocal report
        report = filter_set(config, clip=clip)

    out["filter stage" + (" (+ CLIP)" if use_clip else "")] = timed(stage)
    assert report.total == n
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10000, 100000])
    parser.add_argument("--no-clip", action="store_true")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    clip = None
    if not args.no_clip:
        from genaug.clip import Clip
        from genaug.pocket import pocket_model_dir

        clip = Clip.from_pretrained(pocket_model_dir("clip"))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in sorted(args.sizes):
            results[n] = measure(n, not args.no_clip, clip, Path(tmp))
            print(f"N = {n}: " + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in results[n].items()), flush=True)
    small, large = min(results), max(results)
    print(f"growth from N = {small} to N = {large} ({large / small:.0f}x more records):")
    for name in results[small]:
        print(f"  {name}: {results[small][name]:.2f} s -> {results[large][name]:.2f} s "
              f"({results[large][name] / results[small][name]:.1f}x)")


if __name__ == "__main__":
    main()
