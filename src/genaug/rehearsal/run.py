"""``genaug rehearse EXPERIMENT.yaml``: every stage of a real experiment, at its real shapes, in minutes.

The rehearsal runs the experiment's own stage graph with three things swapped:

1. every hub model the file names is replaced by its stand-in (:mod:`genaug.rehearsal.standins`:
   the hub's architecture and configs, random weights), loaded by the same code;
2. the real dataset is replaced by a stand-in folder dataset with 2 classes and one image per
   class and split, at the dataset's native image size (:func:`write_standin_dataset`);
3. the counts shrink, the shapes do not: 1 denoising step (``steps``), 1 projector step,
   1 sample per class, ``engine.batch_size`` 2, a prompt list of one prompt where the regime
   makes every prompt, one seed and one epoch of training (1-2 steps) per arm. Resolutions,
   dtypes (the device's: fp32 on the CPU, fp16 on CUDA), guidance and batch composition
   (classifier-free guidance doubles or triples the UNet batch) are the real ones.

Every stage (the SDI stage in its five steps) and every arm's training is measured by a
:class:`~genaug.rehearsal.meter.StageMeter`: wall seconds, peak RSS (and CUDA max allocated),
FLOPs by model (counted), UNet calls and seconds. From these, per stage:

- ``seconds_per_item``: measured;
- ``seconds_per_item_at_real_steps`` (**extrapolated**): the non-UNet part of an item as
  measured plus its UNet calls at the real step count (:func:`real_unet_calls`) at the steady
  call time (the median of the calls after the first);
- ``flops_per_item_at_real_steps``: the same with the counted FLOPs per UNet call.

``rehearsal.json`` holds it all; ``rehearsal.md`` is the table. The stage outputs (real
manifests and images) stay in ``OUT/artifacts``.
"""

from __future__ import annotations

import copy
import gc
import json
import math
import os
import platform
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from genaug.config import dump_config, parse_config
from genaug.data.config import DatasetConfig
from genaug.experiment.config import ExperimentConfig
from genaug.experiment.graph import build_graph
from genaug.experiment.jobs import train_job
from genaug.files import write_json_atomic, write_text_atomic
from genaug.generation.config import EditorConfig
from genaug.generation.editors import EDITORS
from genaug.generation.prompts import resolve_prompts
from genaug.home import cache_dir
from genaug.rehearsal.cost import LATEST_REHEARSAL, editor_steps
from genaug.rehearsal.meter import StageMeter, process_peak_rss_bytes
from genaug.rehearsal.standins import STANDINS, standin_dir

REHEARSAL_JSON = "rehearsal.json"
#: The engine's batch size in a rehearsal (the classifier-free guidance branches come on top).
REHEARSAL_BATCH = 2
REHEARSAL_MD = "rehearsal.md"

#: Native image size (height, width) of the stand-in dataset's images, by dataset name; others 375 x 500.
NATIVE_SIZES = {"cifar10": (32, 32), "cifar100": (32, 32), "pocket_digits": (16, 16), "pathmnist": (28, 28)}
DEFAULT_NATIVE_SIZE = (375, 500)
#: Two real class names per dataset (the stand-in's classes), so class prompts read as in a real run.
CLASS_NAMES = {
    "cub200": ["Black footed Albatross", "Laysan Albatross"],
    "cifar100": ["apple", "aquarium_fish"],
    "cifar10": ["airplane", "automobile"],
    "flowers102": ["pink primrose", "hard-leaved pocket orchid"],
    "pets": ["Abyssinian", "American Bulldog"],
    "cars": ["AM General Hummer SUV 2000", "Acura RL Sedan 2012"],
    "dtd": ["banded", "blotchy"],
}


def rehearse(
    experiment: ExperimentConfig,
    out_dir: str | Path,
    *,
    steps: int = 1,
    count_flops: bool = True,
    seed: int = 0,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Rehearse ``experiment`` into ``out_dir`` (module doc); return what ``rehearsal.json`` holds."""
    from genaug.experiment.runner import plan_jobs

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    standins = {}
    for reference in hub_references(experiment):
        echo(f"stand-in for {reference}: {'building (once) ' if not _built(reference, seed) else ''}...")
        standins[reference] = str(standin_dir(reference, seed))
    data_root = write_standin_dataset(experiment.dataset, out_dir / "data", seed=seed)
    small = rehearsal_experiment(experiment, standins, data_root, steps)
    write_text_atomic(out_dir / "experiment.yaml", _dump(small))
    nodes = build_graph(small, out_dir / "artifacts")
    real_nodes = build_graph(experiment, out_dir / ".real-config", identity={})  # configs only: nothing is written or read

    rows: list[dict[str, Any]] = []
    failed: dict[str, str] = {}  # stage or arm -> what went wrong (a rehearsal reports every failure)
    broken: set[str] = set()  # stages that failed or could not run: what reads them is skipped
    for name, node in nodes.items():
        real_steps = stage_real_steps(real_nodes[name])
        rehearsed = stage_real_steps(node)  # the same rule on the rehearsal's config (img2img: x strength)
        for part, run in stage_parts(node, nodes):
            label = f"{name}{'/' + part if part else ''}"
            blocked = _blocked_by(node, broken) or (name in broken and f"an earlier part of {name} failed")
            if blocked:
                broken.add(name)
                rows.append(skipped_row(name, node.kind, part, blocked))
                echo(f"stage {label}: skipped ({blocked})")
                continue
            echo(f"stage {label} ({node.kind}) ...")
            meter = StageMeter(count_flops=count_flops)
            try:
                with meter.measure():
                    made = run()
            except Exception as error:  # noqa: BLE001 - reported in the rehearsal, the other stages go on
                failed[name] = f"{type(error).__name__}: {error}"
                broken.add(name)
                rows.append(skipped_row(name, node.kind, part, None, error=failed[name]))
                echo(f"  FAILED: {failed[name]}")
                gc.collect()
                continue
            step_part = part or "generate"
            row = rehearsal_row(name, node.kind, part, made, meter, rehearsed.get(step_part), real_steps.get(step_part))
            rows.append(row)
            echo(f"  {_summary(row)}")
            gc.collect()

    jobs = plan_jobs(small, nodes, out_dir, [arm.name for arm in small.arms], list(small.seeds))
    for job in jobs:
        name = f"train:{job.arm}"
        arm = small.arm(job.arm)
        blocked = next((f"stage {ref.split('/')[0]} did not run" for ref in arm.data_refs if ref.split("/")[0] in broken), None)
        if blocked:
            rows.append(skipped_row(name, "train", "", blocked))
            echo(f"train {job.arm}: skipped ({blocked})")
            continue
        echo(f"train {job.arm} ...")
        try:
            meter, note = _train_measured(job, count_flops)
        except Exception as error:  # noqa: BLE001
            failed[name] = f"{type(error).__name__}: {error}"
            rows.append(skipped_row(name, "train", "", None, error=failed[name]))
            echo(f"  FAILED: {failed[name]}")
            continue
        samples = _train_samples(job.run_dir)
        row = rehearsal_row(name, "train", "", samples, meter, None, None)
        if note:
            row["note"] = note
        row["train_samples_seen"] = samples
        rows.append(row)
        echo(f"  {_summary(row)}")
        gc.collect()

    result = {
        "experiment": experiment.name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine_info(),
        "rehearsed_steps": steps,
        "standins": standins,
        "dataset_standin": str(data_root),
        "stages": rows,
        "failed": failed,
        "seconds": time.perf_counter() - started,
        "process_peak_rss_bytes": process_peak_rss_bytes(),
        "note": (
            "seconds_per_item_at_real_steps and flops_per_item_at_real_steps are extrapolated from the "
            "rehearsed steps: the item's UNet calls at the real step count (the scheduler's extra calls "
            "kept) at the steady call time (the median of the calls after the first; with 1 step the one "
            "call, which includes first-call overheads) and the counted FLOPs per call, the rest as measured"
        ),
    }
    write_json_atomic(out_dir / REHEARSAL_JSON, result)

    write_json_atomic(cache_dir("rehearsal") / LATEST_REHEARSAL, result)
    write_text_atomic(out_dir / REHEARSAL_MD, rehearsal_table(result))
    return result


# ---------------------------------------------------------------------------- the swapped experiment


def hub_references(experiment: ExperimentConfig) -> list[str]:
    """Hub ids with a stand-in that the experiment's stages name, in order of first mention."""
    found: list[str] = []

    def visit(value: Any) -> None:
        if isinstance(value, dict):
            for item in value.values():
                visit(item)
        elif isinstance(value, list):
            for item in value:
                visit(item)
        elif isinstance(value, str) and value in STANDINS and value not in found:
            found.append(value)

    for spec in experiment.stages.values():
        visit(spec.params)
    return found


def swap_models(value: Any, standins: dict[str, str]) -> Any:
    """``value`` with every hub id of ``standins`` replaced by its stand-in folder."""
    if isinstance(value, dict):
        return {key: swap_models(item, standins) for key, item in value.items()}
    if isinstance(value, list):
        return [swap_models(item, standins) for item in value]
    if isinstance(value, str) and value in standins:
        return standins[value]
    return value


def rehearsal_experiment(experiment: ExperimentConfig, standins: dict[str, str], data_root: Path, steps: int) -> ExperimentConfig:
    """The experiment with stand-in models and data and the small counts of the module doc."""
    dataset = {"name": "folder", "root": str(data_root), "labels_per_class": "all"}
    if experiment.dataset.image_size is not None:
        dataset["image_size"] = experiment.dataset.image_size
    stages = {}
    for name, spec in experiment.stages.items():
        params = small_stage_params(spec.kind, swap_models(copy.deepcopy(spec.params), standins), steps)
        stages[name] = {"kind": spec.kind, **({"input": spec.input} if spec.input else {}), "params": params}
    train = copy.deepcopy(experiment.train) | {"epochs": 1, "batch_size": 2, "eval_every": 1, "checkpoint_every": 1}
    arms = []
    for arm in experiment.arms:
        data = arm.model_dump(mode="json")
        data["train"] = {**data.get("train", {}), "epochs": 1, "batch_size": 2}
        data["budget"] = "natural"  # a rehearsal's sets hold an item or two: no budget to draw from
        arms.append(data)
    data = {
        "name": f"{experiment.name}-rehearsal",
        "dataset": dataset,
        "seeds": [experiment.seeds[0]],
        "train": train,
        "stages": stages,
        "arms": arms,
        "baseline": experiment.baseline,
        "workers": 1,
    }
    return parse_config(ExperimentConfig, data, f"rehearsal of {experiment.name}")


def small_stage_params(kind: str, params: dict[str, Any], steps: int) -> dict[str, Any]:
    """One stage's fields with the rehearsal's counts (module doc, point 3)."""
    params = copy.deepcopy(params)
    if kind == "generate":
        params["editor"] = {**params.get("editor", {}), "steps": steps}
        params["engine"] = {**params.get("engine", {}), "batch_size": REHEARSAL_BATCH, "progress": False}
        if params.get("regime") == "all":
            editor = EditorConfig(**params["editor"])
            prompts = params.get("prompts") or EDITORS[editor.name].prompts_for(editor)
            params["prompts"] = resolve_prompts(prompts)[:1]
    elif kind == "sdi":
        generate = params.get("generate", {})
        params["generate"] = {**generate, "steps": steps, "engine": {**generate.get("engine", {}), "batch_size": REHEARSAL_BATCH, "progress": False}}
        params["sample"] = {**params.get("sample", {}), "multiplier": 1}
        params["train"] = {**params.get("train", {}), "max_steps": 1, "batch_size": 2, "progress": False, "checkpoint_every": 1}
        params["embed_batch_size"] = 2
    elif kind == "mix":
        params["progress"] = False
        params["batch_size"] = 2
    elif kind == "filter":
        params["progress"] = False
    return params


def write_standin_dataset(dataset: DatasetConfig, root: Path, seed: int = 0) -> Path:
    """A folder dataset: 2 classes x one image in each of train/val/test, at the dataset's native size.

    The images are smooth random colour fields (a coarse grid of random colours, upsampled),
    PNG. Class names are two of the real dataset's (:data:`CLASS_NAMES`) where known.
    """
    from PIL import Image

    names = CLASS_NAMES.get(dataset.name, ["class a", "class b"])
    height, width = NATIVE_SIZES.get(dataset.name, DEFAULT_NATIVE_SIZE)
    rng = np.random.default_rng(seed)
    for split in ("train", "val", "test"):
        for name in names:
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / "0.png"
            if not path.is_file():
                coarse = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
                Image.fromarray(coarse).resize((width, height), Image.BICUBIC).save(path)
    return root


# ---------------------------------------------------------------------------- stages and their parts


def _train_measured(job, count_flops: bool) -> tuple[StageMeter, str | None]:
    """Train one arm, measured. torch's FLOP counter tracks modules with backward hooks, which
    ``torch.autograd.grad`` refuses (PuzzleMix's saliency pass): such an arm is trained again,
    from scratch, without counting."""
    meter = StageMeter(count_flops=count_flops)
    try:
        with meter.measure():
            train_job(job, progress=False)
        return meter, None
    except RuntimeError as error:
        if not count_flops or "_will_engine_execute_node" not in str(error):
            raise
    shutil.rmtree(job.run_dir, ignore_errors=True)
    meter = StageMeter(count_flops=False)
    with meter.measure():
        train_job(job, progress=False)
    return meter, "FLOPs not counted: torch's FLOP counter cannot follow torch.autograd.grad (input saliency)"


def stage_parts(node, nodes) -> list[tuple[str, Callable[[], int]]]:
    """The measured parts of a stage: one (``""``, run) for most kinds, SDI's five steps for ``sdi``.

    Each run returns the number of items it made or processed.
    """
    from genaug.experiment.stages import run_stage

    if node.kind != "sdi":
        def run_whole() -> int:
            record = run_stage(node, nodes)
            return int(record.get("made") or record.get("total") or sum(record["images"].values()))

        return [("", run_whole)]

    from genaug.sdi import build_bank, embed_training_images, generate_from_samples, sample_features, train_projector

    config = node.config
    node.dir.mkdir(parents=True, exist_ok=True)

    def embed() -> int:
        embed_training_images(config)
        return _train_count(config)

    def train() -> int:
        return int(train_projector(config).steps)

    def bank() -> int:
        build_bank(config)
        return _train_count(config)

    def sample() -> int:
        sample_features(config)
        return _train_count(config)

    def generate() -> int:
        return int(generate_from_samples(config).made)

    return [("embed", embed), ("train", train), ("bank", bank), ("sample", sample), ("generate", generate)]


def stage_real_steps(node) -> dict[str, float]:
    """Denoising (or projector) steps per item of the real stage, by part (``generate`` for whole stages)."""
    config = node.config
    if node.kind == "generate":
        return {"generate": editor_steps(config.editor)}
    if node.kind == "sdi":
        return {"generate": float(config.generate.steps)}
    return {}


def _blocked_by(node, broken: set[str]) -> str | None:
    """Why ``node`` cannot run: the stage it reads failed or was skipped."""
    if node.input is None:
        return None
    base = node.input.split("/", 1)[0]
    return f"its input {base} did not run" if base in broken else None


def skipped_row(name: str, kind: str, part: str, reason: str | None, error: str | None = None) -> dict[str, Any]:
    """The row of a stage that failed (``error``) or did not run (``reason``)."""
    return {"stage": name, "kind": kind, "part": part or None, "items": 0, "error": error, "skipped": reason}


def rehearsal_row(name: str, kind: str, part: str, items: int, meter: StageMeter, rehearsed_steps: int | None, real_steps: float | None) -> dict[str, Any]:
    """One row of ``rehearsal.json`` (module doc)."""
    measured = meter.as_dict()
    items_ = max(items, 1)
    row: dict[str, Any] = {
        "stage": name,
        "kind": kind,
        "part": part or None,
        "items": items,
        **measured,
        "seconds_per_item": meter.seconds / items_,
        "flops_per_item": meter.flops / items_,
        "unet_flops_per_item": meter.flops_by_model.get("UNet2DConditionModel", 0) / items_,
        # CLIP models other than SD's text encoder (CLIPModel, CLIPVisionModel...): the ViT's work
        "vit_flops_per_item": sum(v for k, v in meter.flops_by_model.items() if k.startswith("CLIP") and k != "CLIPTextModel") / items_,
        "rehearsed_steps": rehearsed_steps,
        "real_steps": real_steps,
    }
    return extrapolate_row(row)


def extrapolate_row(row: dict[str, Any]) -> dict[str, Any]:
    """Add the ``*_at_real_steps`` fields to a measured row (module doc): at the real step count an
    item makes :func:`real_unet_calls` UNet calls, each at the steady (warm) call time and the
    counted FLOPs per call; everything else (loading, text encoding, VAE, writing) as measured."""
    items_ = max(row["items"], 1)
    unet_flops = row["unet_flops_per_item"]
    calls = row["unet_calls"]
    real_calls = real_unet_calls(calls, row["items"], row["rehearsed_steps"], row["real_steps"])
    row["real_unet_calls_per_item"] = real_calls
    if real_calls is None or not row.get("unet_steady_call_seconds"):
        row.update(seconds_per_item_at_real_steps=row["seconds_per_item"], flops_per_item_at_real_steps=row["flops_per_item"],
                   unet_flops_per_item_at_real_steps=unet_flops, extrapolated=False)
        return row
    per_call_flops = unet_flops * items_ / calls
    unet_seconds = row["unet_seconds"] / items_
    row["seconds_per_item_at_real_steps"] = row["seconds_per_item"] - unet_seconds + row["unet_steady_call_seconds"] * real_calls
    row["unet_flops_per_item_at_real_steps"] = per_call_flops * real_calls
    row["flops_per_item_at_real_steps"] = row["flops_per_item"] - unet_flops + row["unet_flops_per_item_at_real_steps"]
    row["extrapolated"] = True
    return row


def real_unet_calls(calls: int, items: int, rehearsed_steps: float | None, real_steps: float | None) -> float | None:
    """UNet calls per item at ``real_steps``, from ``calls`` made for ``items`` at ``rehearsed_steps``.

    Items go through in batches of :data:`REHEARSAL_BATCH`; a batch makes ``steps + offset``
    calls, where the offset is the scheduler's (PNDM repeats one timestep: +1; DDIM and Euler: 0)
    and is read off the rehearsal: ``calls / batches - rehearsed_steps``.
    """
    if not calls or not items or not rehearsed_steps or not real_steps:
        return None
    batches = math.ceil(items / REHEARSAL_BATCH)
    offset = calls / batches - rehearsed_steps
    return batches * (real_steps + offset) / items


def _train_count(config) -> int:
    from genaug.data import load_splits

    return len(load_splits(config.dataset)["train"])


def _train_samples(run_dir: Path) -> int:
    try:
        metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return 0
    return int(metrics.get("real_samples", 0)) + int(metrics.get("synthetic_samples", 0))


def _built(reference: str, seed: int) -> bool:
    from genaug.rehearsal.standins import COMPLETE, STANDINS as names

    return (cache_dir("rehearsal", "standins") / f"{names[reference]}-seed{seed}" / COMPLETE).is_file()


def _dump(experiment: ExperimentConfig) -> str:
    return dump_config(experiment)


def machine_info() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    return info


# ---------------------------------------------------------------------------- the table


def _summary(row: dict[str, Any]) -> str:
    text = f"{row['items']} item(s) in {row['seconds']:.1f} s, peak RSS {row['peak_rss_bytes'] / 2**30:.2f} GiB, {row['flops'] / 1e12:.3f} TFLOP"
    if row["extrapolated"]:
        text += f"; at {row['real_steps']:g} steps ~{row['seconds_per_item_at_real_steps']:.0f} s/item (extrapolated)"
    return text


def rehearsal_table(result: dict[str, Any]) -> str:
    """``rehearsal.md``: one row per measured stage."""
    machine = result["machine"]
    lines = [
        f"# Rehearsal of {result['experiment']}",
        "",
        f"Stand-in models (real architectures, random weights), {result['rehearsed_steps']} denoising step(s); "
        f"{machine['processor']}, {machine['cpu_count']} CPUs, torch {machine['torch']}, CUDA: {machine['cuda'] or 'none'}, "
        f"load average at the end {machine['load_average']}. Whole rehearsal {result['seconds']:.0f} s, "
        f"process peak RSS {result['process_peak_rss_bytes'] / 2**30:.2f} GiB.",
        "",
        "| stage | items | s | s/item | s/item at real steps (extrapolated) | TFLOP/item at real steps | UNet calls | peak RSS GiB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in result["stages"]:
        name = row["stage"] + (f"/{row['part']}" if row["part"] else "")
        if row.get("error") or row.get("skipped"):
            lines.append(f"| {name} | FAILED: {row['error']} |" if row.get("error") else f"| {name} | skipped: {row['skipped']} |")
            continue
        real = f"{row['seconds_per_item_at_real_steps']:.1f} ({row['real_steps']:g} steps)" if row["extrapolated"] else "-"
        lines.append(
            f"| {name} | {row['items']} | {row['seconds']:.1f} | {row['seconds_per_item']:.2f} | {real} | "
            f"{row['flops_per_item_at_real_steps'] / 1e12:.3f} | {row['unet_calls']} | {row['peak_rss_bytes'] / 2**30:.2f} |"
        )
    lines.append("")
    lines.append(result["note"] + ".")
    if result.get("failed"):
        lines.append("")
        lines.append(f"FAILED: {', '.join(result['failed'])}")
    return "\n".join(lines) + "\n"
