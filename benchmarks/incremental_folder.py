"""A user's folder grows: what content-drawn splits and incremental generate passes cost and save.

1. Split cost: ``load_splits`` on a folder of N JPEGs (the content hash of every file is part
   of it; ``content_digests`` timed alone too).
2. Incremental pass: a generate stage (pocket InstructPix2Pix, 16 px, 4 steps) on a folder,
   then 10 % more photos: the incremental pass (copies the unchanged items) against a full
   pass on the new data.

    PYTHONPATH=src python benchmarks/incremental_folder.py [--files 2000] [--photos 40]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def photos(root: Path, classes: int, start: int, stop: int, side: int) -> None:
    for c in range(classes):
        (root / f"class {c}").mkdir(parents=True, exist_ok=True)
        for i in range(start, stop):
            pixels = np.random.default_rng([c, i]).integers(0, 256, (side, side, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / f"class {c}" / f"{i:05d}.jpg", quality=90)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--photos", type=int, default=40, help="per class, 2 classes, for the generate pass")
    args = parser.parse_args()
    from genaug.config import GenerateConfig
    from genaug.data import load_dataset, load_splits
    from genaug.data.scan import content_digests, image_files
    from genaug.generation.stage import generate

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["GENAUG_HOME"] = str(tmp / "home")
        photos(tmp / "big", 10, 0, args.files // 10, 128)
        files = image_files(tmp / "big")
        started = time.perf_counter()
        content_digests(files)
        hashing = time.perf_counter() - started
        started = time.perf_counter()
        load_splits({"name": "folder", "root": tmp / "big"})
        loading = time.perf_counter() - started
        print(f"{len(files)} JPEGs of 128 px: load_splits {loading:.2f} s, of which content hashing {hashing:.2f} s")

        root = tmp / "photos"
        photos(root, 2, 0, args.photos, 16)

        def config(out: str) -> GenerateConfig:
            return GenerateConfig.model_validate({
                "dataset": {"name": "folder", "root": str(root), "labels_per_class": "all", "image_size": 16},
                "output": str(tmp / out), "prompts": ["make it red"], "editor": {"name": "instruct", "steps": 4},
                "engine": {"batch_size": 8, "progress": False},
            })  # fmt: skip

        generate(config("warm"))  # loads the pocket model once, so the timings below compare passes
        before = generate(config("before"))
        photos(root, 2, args.photos, args.photos + max(1, args.photos // 10), 16)
        timings = {}
        for name, reuse in (("incremental", [tmp / "before"]), ("full", [])):
            started = time.perf_counter()
            report = generate(config(name), reuse_from=reuse)
            timings[name] = (time.perf_counter() - started, report.made, report.reused)
        print(f"generate on {len(load_dataset(config('x').dataset))} training photos after adding 10 %: "
              f"first pass made {before.made}")
        for name, (seconds, made, reused) in timings.items():
            print(f"  {name:11s} {seconds:6.2f} s, {made} made, {reused} copied")
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
