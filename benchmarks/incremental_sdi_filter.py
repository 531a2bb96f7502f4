"""Incremental SDI and filter passes on the pocket world: what reusing saves when images are added.

An SDI stage (pocket CLIP, pocket SD, the pocket preset's projector cut at ``--steps``
optimiser steps, Gaussian sampling at ``--multiplier`` x N_c, ``--gen-steps`` DDIM steps) on
``--per-class`` pocket training digits of each of the 10 classes, then ``--added`` more digits
of one class:

1. the first pass (every step);
2. the incremental pass with ``keep_projector`` (projector copied, 9 classes' vectors and
   images copied, one class sampled and made);
3. the same pass without it (the projector trained again: every class made again);
4. a filter stage (frames, clip_rank with pocket CLIP) on the first set, then on the
   incremental set with the first one's score cache, against a full filter of that set.

    PYTHONPATH=src python benchmarks/incremental_sdi_filter.py [--per-class 10] [--added 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path



def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--per-class", type=int, default=10)
    parser.add_argument("--added", type=int, default=5)
    parser.add_argument("--steps", type=int, default=100, help="projector optimiser steps")
    parser.add_argument("--multiplier", type=int, default=4)
    parser.add_argument("--gen-steps", type=int, default=10)
    args = parser.parse_args()
    from genaug.config import FilterConfig, SdiConfig
    from genaug.data.pocket_digits import first_train_digits
    from genaug.filtering import filter_set
    from genaug.sdi import build_bank, generate_from_samples, sample_features, train_projector
    from genaug.sdi.embed import embed_training_images

    def config(work: Path, keep: bool) -> SdiConfig:
        return SdiConfig(work_dir=work, dataset={"name": "pocket_digits"}, device="cpu", keep_projector=keep,
                         train={"max_steps": args.steps, "progress": False, "pools": ["train"]},
                         sample={"multiplier": args.multiplier},
                         generate={"steps": args.gen_steps, "engine": {"batch_size": 32, "progress": False}})  # fmt: skip

    def sdi(work: Path, data, keep: bool, earlier=()) -> tuple[float, object, object]:
        cfg = config(work, keep)
        started = time.perf_counter()
        embed_training_images(cfg, datasets={"train": data})
        run = train_projector(cfg, datasets={"train": data}, reuse_from=list(earlier))
        build_bank(cfg)
        sample_features(cfg, reuse_from=list(earlier))
        report = generate_from_samples(cfg, reuse_from=[Path(e) / "generated" / "gaussian" for e in earlier])
        return time.perf_counter() - started, run, report

    def filtered(set_dir: Path, reuse=()) -> tuple[float, object]:
        started = time.perf_counter()
        report = filter_set(FilterConfig(set_dir=set_dir, filters=[{"name": "frames"}, {"name": "clip_rank"}], progress=False),
                            reuse_from=list(reuse))  # fmt: skip
        return time.perf_counter() - started, report

    before = {c: args.per_class for c in range(10)}
    after = {**before, 3: args.per_class + args.added}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["GENAUG_HOME"] = str(tmp / "home")
        print(f"load average before: {os.getloadavg()[0]:.2f}")
        first, run, report = sdi(tmp / "first", first_train_digits(before), keep=True)
        print(f"SDI first pass: {first:.1f} s ({run.steps} projector steps, {report.made} images made)")
        kept, run, report = sdi(tmp / "kept", first_train_digits(after), keep=True, earlier=[tmp / "first"])
        print(f"SDI incremental, keep_projector: {kept:.1f} s (projector from {run.reused_from}, {report.made} made, {report.reused} copied)")
        again, run, report = sdi(tmp / "retrained", first_train_digits(after), keep=False, earlier=[tmp / "first"])
        print(f"SDI incremental, projector retrained: {again:.1f} s ({run.steps} steps, {report.made} made, {report.reused} copied)")

        one, report = filtered(tmp / "first" / "generated" / "gaussian")
        print(f"filter first set: {one:.2f} s ({report.total} records)")
        shutil.copytree(tmp / "kept" / "generated" / "gaussian", tmp / "full-filter")
        incremental, report = filtered(tmp / "kept" / "generated" / "gaussian", [tmp / "first" / "generated" / "gaussian"])
        print(f"filter incremental: {incremental:.2f} s (scores made {report.scores_made}, reused {report.scores_reused})")
        full, report = filtered(tmp / "full-filter")
        print(f"filter full: {full:.2f} s ({report.total} records)")
        print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
