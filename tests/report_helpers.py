"""A small but real experiment run folder, built without running the pipeline.

Real pocket digits; synthetic sets written through the manifest writer (re-coloured
"instruct" edits of real images, concat and fractal mixes of them, SHB with heatmaps, SDI
samples scored by a filter); an SDI work folder with feature tables; trainer metrics for
two arms x two seeds; ``results.json`` and ``experiment.yaml`` as the runner writes them.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import torch
import yaml

from genaug.data import load_splits
from genaug.manifest import SampleRecord, SetWriter
from genaug.sdi.sample import bank_path, samples_path
from genaug.sdi.tables import FeatureTable, save_table

#: A class name (label 3) and an arm description that must appear as text, never as markup.
SCRIPT_CLASS = "<script>alert(1)</script>"
MARKUP_DESCRIPTION = "DiffuseMix edits, concat & fractal, SHB, SDI + filter, <em>warm-up</em> curriculum"
ARMS = ["baseline", "diffusemix-curriculum"]
SEEDS = [0, 1]
EPOCHS = 6
PER_CLASS = 2  # real images per class that get synthetic versions

DATASET = {"name": "pocket_digits"}
GENERATE = "artifacts/generate-1a2b"
MIX = "artifacts/mix-3c4d"
SHB = "artifacts/shb-5e6f"
SDI = "artifacts/sdi-7a8b"
SDI_SET = f"{SDI}/set"


def build_run_folder(root: Path) -> Path:
    """Write the run folder under ``root`` and return it."""
    root.mkdir(parents=True, exist_ok=True)
    train = load_splits(DATASET)["train"]
    class_names = list(train.class_names)
    class_names[3] = SCRIPT_CLASS
    sources = _sources(train)

    write_generated_set(root / GENERATE, train, sources, class_names)
    write_mixed_sets(root / MIX, train, sources, class_names)
    write_shb_set(root / SHB, train, sources, class_names)
    write_sdi_work_dir(root / SDI, class_names)
    write_scored_sdi_set(root / SDI_SET, class_names)
    for arm in ARMS:
        for seed in SEEDS:
            write_trainer_run(root / "arms" / arm / f"seed-{seed}", arm, seed)
    (root / "experiment.yaml").write_text(yaml.safe_dump({"name": "report-test", "dataset": DATASET}), encoding="utf-8")
    (root / "results.json").write_text(json.dumps(results(train, class_names), indent=1), encoding="utf-8")
    return root


def _sources(train) -> list[int]:
    """Rows of the first ``PER_CLASS`` real images of every class."""
    return [int(row) for label in range(train.num_classes) for row in np.flatnonzero(train.labels == label)[:PER_CLASS]]


def _record_id(real_id: str, method: str) -> str:
    return f"{real_id.replace('/', '_')}-{method}"


def _edited(image: np.ndarray) -> np.ndarray:
    """A re-coloured version of a real image (channels rotated)."""
    return np.roll(image, 1, axis=-1)


def write_generated_set(set_dir: Path, train, sources: list[int], class_names: list[str]) -> None:
    with SetWriter(set_dir) as writer:
        for row in sources:
            label = int(train.labels[row])
            item_id = _record_id(train.ids[row], "instruct")
            writer.add(SampleRecord(
                id=item_id, path=writer.image_path(item_id, class_names[label]), label=label,
                class_name=class_names[label], method="instruct", source_ids=[train.ids[row]],
                prompt="make it <b>red</b> on blue", seed=row,
            ), _edited(train.images[row]))


def write_mixed_sets(mix_dir: Path, train, sources: list[int], class_names: list[str]) -> None:
    """``concat`` (left half real, right half edited) and ``fractal`` (a noise blend) sets, one
    folder per method as the mix stage writes them."""
    rng = np.random.default_rng(0)
    for method in ("concat", "fractal"):
        with SetWriter(mix_dir / method) as writer:
            for row in sources:
                label, real = int(train.labels[row]), train.images[row]
                edited = _edited(real)
                if method == "concat":
                    image = np.concatenate([real[:, :8], edited[:, 8:]], axis=1)
                else:
                    image = (0.8 * edited + 0.2 * rng.integers(0, 256, edited.shape)).astype(np.uint8)
                generated_id = _record_id(train.ids[row], "instruct")
                item_id = f"{generated_id}-{method}"
                writer.add(SampleRecord(
                    id=item_id, path=writer.image_path(item_id, class_names[label]), label=label,
                    class_name=class_names[label], method=method, source_ids=[train.ids[row], generated_id],
                ), image)


def write_shb_set(set_dir: Path, train, sources: list[int], class_names: list[str]) -> None:
    """SHB images with a grayscale heatmap PNG each (params["heatmap"], relative to the set)."""
    from PIL import Image

    (set_dir / "heatmaps").mkdir(parents=True, exist_ok=True)
    ramp = np.tile(np.linspace(0, 255, 16, dtype=np.uint8), (16, 1))
    with SetWriter(set_dir) as writer:
        for row in sources:
            label, real = int(train.labels[row]), train.images[row]
            mask = ramp > 127
            image = np.where(mask[..., None], _edited(real), real)
            item_id = _record_id(train.ids[row], "shb")
            heatmap = f"heatmaps/{item_id}.png"
            Image.fromarray(ramp, mode="L").save(set_dir / heatmap)
            writer.add(SampleRecord(
                id=item_id, path=writer.image_path(item_id, class_names[label]), label=label,
                class_name=class_names[label], method="shb",
                source_ids=[train.ids[row], _record_id(train.ids[row], "instruct")],
                params={"heatmap": heatmap, "replaced_fraction": float(mask.mean())},
            ), image)


def write_sdi_work_dir(work_dir: Path, class_names: list[str]) -> None:
    """A projected feature bank (3 per class) and Gaussian samples around it (6 per class)."""
    generator = torch.Generator().manual_seed(0)
    centres = 3 * torch.randn(len(class_names), 8, generator=generator)
    for path, per_class, spread in ((bank_path(work_dir), 3, 0.4), (samples_path(work_dir, "gaussian"), 6, 0.7)):
        labels = torch.arange(len(class_names)).repeat_interleave(per_class)
        features = centres[labels] + spread * torch.randn(len(labels), 8, generator=generator)
        ids = [f"{path.stem}-{i}" for i in range(len(labels))]
        save_table(path, FeatureTable(features, labels, ids, class_names, info={"test": True}))


def write_scored_sdi_set(set_dir: Path, class_names: list[str]) -> None:
    """SDI images with filter scores: ``clip_score`` decides (kept at >= 0.5), ``dedupe_max_cosine``
    is a second score that does not separate kept from dropped."""
    rng = np.random.default_rng(1)
    with SetWriter(set_dir) as writer:
        for label, name in enumerate(class_names):
            for row in range(2):
                item_id = f"sdi-{label}-{row}"
                score = float(rng.uniform())
                writer.add(SampleRecord(
                    id=item_id, path=writer.image_path(item_id, name), label=label, class_name=name,
                    method="sdi", embedding={"file": "samples/gaussian.safetensors", "row": 6 * label + row, "sampler": "gaussian"},
                    scores={"clip_score": score, "dedupe_max_cosine": float(rng.uniform(0.2, 0.9))}, kept=score >= 0.5,
                ), rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))


def write_trainer_run(run_dir: Path, arm: str, seed: int) -> None:
    """metrics.csv and metrics.json as the trainer writes them."""
    run_dir.mkdir(parents=True, exist_ok=True)
    gain = 4.0 if arm != "baseline" else 0.0
    columns = ["epoch", "lr", "train_loss", "train_top1", "val_loss", "val_top1", "val_balanced_accuracy",
               "real_samples", "synthetic_samples", "epoch_seconds", "samples_per_second"]
    with (run_dir / "metrics.csv").open("w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(columns)
        for epoch in range(EPOCHS):
            val = 20 + 10 * epoch + gain + 3 * seed
            out.writerow([epoch + 1, 0.1, 2.0 / (epoch + 1), val + 5, 1.5 / (epoch + 1), val, val - 1, 100, 40 if gain else 0, 0.5, 200.0])
    result = {"model": "preactresnet18", "test": {"top1": 60 + gain + seed, "balanced_accuracy": 59 + gain + seed},
              "best_epoch": EPOCHS, "selection": "val", "epochs": EPOCHS}
    (run_dir / "metrics.json").write_text(json.dumps(result), encoding="utf-8")


def _arm(name: str, description: str, top1: float, delta: float, stages: list[dict], policy: dict) -> dict:
    runs = [{"seed": seed, "dir": f"arms/{name}/seed-{seed}", "top1": top1 + seed, "balanced_accuracy": top1 - 1 + seed,
             "real_samples": 600, "synthetic_samples": 240 if stages else 0, "train_seconds": 3.0} for seed in SEEDS]
    generation = sum(stage["seconds"] for stage in stages)
    return {
        "name": name, "description": description, "policy": policy, "mixer": {"name": "none", "kwargs": {}},
        "stages": stages, "synthetic_set": stages[-1]["dir"] if stages else None, "runs": runs,
        "top1_mean": top1 + 0.5, "top1_std": 0.71, "balanced_accuracy_mean": top1 - 0.5, "balanced_accuracy_std": 0.71,
        "delta_top1": delta, "delta_balanced_accuracy": delta, "real_samples": 600, "synthetic_samples": 240 if stages else 0,
        "generation_seconds": generation, "train_seconds": 6.0,
        "images_per_second": (sum(stage["images"] for stage in stages) / generation) if stages else None,
    }


def _stage(kind: str, method: str, directory: str, images: int) -> dict:
    return {"kind": kind, "method": method, "dir": directory, "cached": False, "seconds": 2.0, "images": images,
            "images_per_second": images / 2.0}


def results(train, class_names: list[str]) -> dict:
    n = len(class_names) * PER_CLASS
    stages = [_stage("generate", "instruct", GENERATE, n), _stage("mix", "concat", MIX, 2 * n), _stage("mix", "shb", SHB, n),
              _stage("sdi", "gaussian", SDI, 2 * len(class_names)), _stage("filter", "clip_rank", SDI_SET, 2 * len(class_names))]
    curriculum = {"name": "curriculum", "kwargs": {"schedule": "warmup", "warmup_epochs": 2, "pair_with_source": True}}
    return {
        "experiment": "report-test", "created": "2026-11-22T08:00:00+00:00", "seeds": SEEDS, "baseline": "baseline",
        "dataset": {"name": "pocket_digits", "num_classes": len(class_names), "class_names": class_names,
                    "train": len(train), "val": 179, "test": 451},
        "epochs": EPOCHS,
        "arms": [
            _arm("baseline", "real images only", 60.0, 0.0, [], {"name": "real_only", "kwargs": {}}),
            _arm("diffusemix-curriculum", MARKUP_DESCRIPTION, 64.0, 4.0, stages, curriculum),
        ],
    }
