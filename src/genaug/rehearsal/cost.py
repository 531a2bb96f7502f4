"""What a whole experiment costs, before it runs: items, FLOPs and hours per stage.

FLOPs per item are **counted**, not guessed: each model of a stage is built on the meta
device from its config (no weights, no memory) and run once under
``torch.utils.flop_counter.FlopCounterMode`` at the stage's real shapes; the item's FLOPs
are then the stage's recipe of calls (docs/methods/):

- ``generate``: ``steps`` UNet calls on ``cfg`` latents (instruct 3: text, image and no
  guidance; txt2img / img2img 2 with guidance > 1), one VAE encode of the source (editors
  of real images) and one VAE decode, at the editor's working size (img2img: ``steps x strength``);
- ``sdi``: embed (one CLIP image forward per training image), latent cache (one VAE
  encode per image at the projector's resolution), projector training (``epochs x
  ceil(N / batch)`` steps of ``batch`` UNet forward + backward, counted), generation
  (``multiplier x N`` images of ``steps`` UNet calls on 2 latents + a VAE decode);
- ``filter``: one CLIP image forward per image of its input set (CLIP filters); the arms
  reading it train on the share its rank filters keep (``keep_ratio``);
- ``mix``: SHB scores every patch of the generated image's patch grid with CLIP, plus each
  class prompt once (negligible); concat / rect / fractal use no model;
- ``train``: per arm and seed, ``epochs x samples`` of forward + backward of the classifier
  at its training crop (counted); an epoch holds real + synthetic under ``concat``, real +
  ``multiples x`` real under ``multiples``, the real set's length under the other policies.

Hours: FLOPs / (peak FLOP/s x efficiency). For this machine the throughput is measured
(the latest ``rehearsal.json``'s UNet FLOPs per UNet second, else :data:`CPU_MEASURED`);
for GPUs the table :data:`GPU_PEAKS` (vendor dense fp16/bf16 tensor figures) times
:data:`GPU_EFFICIENCY`, an **assumption** until ``benchmarks/gpu_generation.py`` has
measured the fraction on that GPU.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from genaug.diffusion.models import POCKET_SCHEME, clip_reference
from genaug.experiment.config import train_config
from genaug.experiment.graph import build_graph, upstream
from genaug.generation.prompts import resolve_prompts
from genaug.home import cache_dir
from genaug.pocket.store import MODEL_NAMES, pocket_model_dir
from genaug.rehearsal.standins import STANDINS
from genaug.training import resolve_recipe

#: Dense fp16/bf16 tensor-core peak TFLOP/s (vendor datasheets, without structured sparsity).
GPU_PEAKS: dict[str, float] = {"T4": 65.0, "V100": 125.0, "A10": 125.0, "L4": 121.0, "A100": 312.0, "H100": 989.0}
#: Fraction of peak a diffusion UNet reaches in fp16 inference: an assumption (typical of
#: convolution + attention workloads at batch 8-32) until benchmarks/gpu_generation.py measures it.
GPU_EFFICIENCY = 0.35
#: This machine's fp32 FLOP/s on the SD 1.5 UNet (a warm call on 4 latents of 64x64), measured
#: here by ``genaug rehearse configs/cub_sdi.yaml --steps 2`` on the 2 cores at load average
#: 1.7 (benchmarks/RESULTS.md): used when no rehearsal.json is at hand.
CPU_MEASURED = {
    "flops_per_second": 1.85e11,
    "source": "SD 1.5 UNet stand-in, fp32, 2 cores at load average 1.7, genaug rehearse configs/cub_sdi.yaml --steps 2",
}
#: The last rehearsal.json written on this machine (a copy in GENAUG_HOME/rehearsal/).
LATEST_REHEARSAL = "latest-rehearsal.json"

#: Published train-split sizes and class counts, for estimates when the data is not on disk.
KNOWN_DATASETS: dict[str, dict[str, int]] = {
    "cifar100": {"train": 50000, "classes": 100},
    "cifar10": {"train": 50000, "classes": 10},
    "cub200": {"train": 5994, "classes": 200},
    "flowers102": {"train": 1020, "classes": 102},
    "pets": {"train": 3680, "classes": 37},
    "cars": {"train": 8144, "classes": 196},
    "dtd": {"train": 1880, "classes": 47},
}


# ---------------------------------------------------------------------------- counted FLOPs


def count_flops(fn) -> int:
    """FLOPs of ``fn()`` as ``FlopCounterMode`` counts them (2 per multiply-add)."""
    from genaug.rehearsal.meter import flop_counter

    with flop_counter() as counter:
        fn()
    return int(counter.get_total_flops())


def model_folder(reference: str) -> Path:
    """The folder whose config files give ``reference``'s architecture: the shipped hub configs
    of a stand-in hub id, the pocket store's folder of ``pocket:<name>`` (``"pocket"`` for
    CLIP), or a local diffusers / CLIP folder. Only config files are read, never weights."""
    from genaug.rehearsal.standins import hub_config_dir

    if reference in STANDINS:
        return hub_config_dir(reference)
    reference = clip_reference(reference)
    if reference.startswith(POCKET_SCHEME):
        name = reference[len(POCKET_SCHEME):]
        if name in MODEL_NAMES:
            try:
                return pocket_model_dir(name)
            except FileNotFoundError as error:
                raise ValueError(str(error)) from None
    folder = Path(reference).expanduser()
    if folder.is_dir():
        return folder
    raise ValueError(
        f"no architecture known for {reference!r}: cost estimates read a model's own config files, from a local "
        f"diffusers folder, a pocket model (pocket:sd, pocket:ip2p, pocket:clip) or a hub model with a stand-in "
        f"({', '.join(sorted(STANDINS))})"
    )


def has_architecture(reference: str) -> bool:
    """Whether :func:`model_folder` finds ``reference``'s config files."""
    try:
        model_folder(reference)
    except ValueError:
        return False
    return True


@lru_cache(maxsize=None)
def _meta(reference: str, component: str | None = None):
    from genaug.rehearsal.standins import meta_model_at

    return meta_model_at(model_folder(reference), component)


def _config(reference: str, component: str | None = None) -> dict[str, Any]:
    folder = model_folder(reference)
    path = (folder / component if component else folder) / "config.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: cannot read the model's config ({error})") from None


def vae_scale(model: str, component: str | None = "vae") -> int:
    """Pixels per latent side: ``2 ** (len(block_out_channels) - 1)`` of the VAE's config (8 for SD)."""
    return 2 ** (len(_config(model, component).get("block_out_channels", [0] * 4)) - 1)


def native_size(model: str) -> int:
    """A pipeline's working side when the config gives none: ``unet.sample_size x`` the VAE's scale."""
    return int(_config(model, "unet")["sample_size"]) * vae_scale(model)


def _text_tokens(model: str) -> int:
    """Tokens of the pipeline's text context: the text encoder's positions (77 for SD's CLIP)."""
    try:
        return int(_config(model, "text_encoder").get("max_position_embeddings", 77))
    except ValueError:
        return 77


@lru_cache(maxsize=None)
def unet_flops(model: str, latent: int, batch: int, train: bool = False) -> int:
    """One UNet call on ``batch`` latents of side ``latent`` (forward; forward + backward to the input when ``train``)."""
    unet = _meta(model, "unet")
    cfg = unet.config
    sample = torch.zeros(batch, cfg.in_channels, latent, latent, device="meta", requires_grad=train)
    context = torch.zeros(batch, _text_tokens(model), cfg.cross_attention_dim, device="meta", requires_grad=train)
    steps = torch.zeros(batch, device="meta")

    def call():
        out = unet(sample, steps, encoder_hidden_states=context).sample
        if train:
            out.sum().backward()

    return count_flops(call)


@lru_cache(maxsize=None)
def vae_flops(model: str, size: int, encode: bool, component: str | None = "vae") -> int:
    vae = _meta(model, component)
    if encode:
        return count_flops(lambda: vae.encode(torch.zeros(1, 3, size, size, device="meta")))
    latent = size // vae_scale(model, component)
    return count_flops(lambda: vae.decode(torch.zeros(1, vae.config.latent_channels, latent, latent, device="meta")))


@lru_cache(maxsize=None)
def vit_flops(model: str) -> int:
    """One image through a CLIP model's vision tower and projection, at its input size."""
    clip = _meta(model, None)
    size = clip.config.vision_config.image_size
    return count_flops(lambda: clip.get_image_features(pixel_values=torch.zeros(1, 3, size, size, device="meta")))


@lru_cache(maxsize=None)
def classifier_train_flops(name: str, width: float, num_classes: int, size: int) -> int:
    """One sample's forward + backward through a genaug classifier at ``size`` px."""
    from genaug.models import create_model

    with torch.device("meta"):
        model = create_model(name, num_classes=num_classes, width=width)
    images = torch.zeros(2, 3, size, size, device="meta")
    return count_flops(lambda: model(images).sum().backward()) // 2


# ---------------------------------------------------------------------------- items per stage


def train_size(dataset) -> tuple[int, int, str]:
    """(train images, classes, source) of the experiment's dataset: read when present, else published."""
    from genaug.data import load_splits

    try:
        train = load_splits(dataset)["train"]
        return len(train), train.num_classes, "dataset on disk"
    except Exception:  # noqa: BLE001 - any failure to read: fall back to the published sizes
        pass
    known = KNOWN_DATASETS.get(dataset.name)
    if known is None:
        raise ValueError(f"dataset {dataset.name!r} is not on disk and its size is not known; known: {', '.join(KNOWN_DATASETS)}")
    count = known["train"]
    if isinstance(dataset.labels_per_class, int):
        count = min(count, dataset.labels_per_class * known["classes"])
    val = 0.1 if dataset.val_fraction is None else dataset.val_fraction
    return int(round(count * (1 - val))), known["classes"], "published size (train minus the held-out validation share)"


def estimate_experiment(experiment, seeds: list[int] | None = None, arms: list[str] | None = None) -> dict[str, Any]:
    """Items and FLOPs per stage and per training arm of ``experiment`` at its real sizes."""
    seeds = list(seeds or experiment.seeds)
    chosen = [experiment.arm(name) for name in arms] if arms else list(experiment.arms)
    n_train, n_classes, source = train_size(experiment.dataset)
    nodes = build_graph(experiment, Path("/nonexistent/genaug-estimate"), identity={})  # keys are not needed here
    needed = upstream(nodes, [ref for arm in chosen for ref in arm.data_refs])
    sizes: dict[str, int] = {}  # images in each stage's set(s), by ref
    rows = []
    for node in needed:
        for row in stage_estimate(node, n_train, sizes):
            rows.append(row)
    for arm in chosen:
        rows.append(train_estimate(experiment, arm, seeds, n_train, n_classes, sizes))
    return {
        "experiment": experiment.name,
        "dataset": {"name": experiment.dataset.name, "train": n_train, "classes": n_classes, "source": source},
        "seeds": seeds,
        "rows": rows,
        "flops": sum(row["flops"] for row in rows),
    }


def editor_steps(editor) -> float:
    """Denoising steps per item of an editor config, as the editor states them
    (``Editor.steps_run``: its configured steps x the mean share of them an item runs)."""
    from genaug.generation.editors import EDITORS

    return EDITORS[editor.name].steps_run(editor)


def stage_estimate(node, n_train: int, sizes: dict[str, int]) -> list[dict[str, Any]]:
    config = node.config
    row = {"stage": node.name, "kind": node.kind}
    if node.kind == "generate":
        from genaug.generation.editors import EDITORS

        editor = config.editor
        cls = EDITORS[editor.name]  # every figure below is a fact the editor states (Editor)
        model = editor.model or cls.default_model
        per_image = cls.items_per_image(editor)
        if per_image is not None:
            items = int(round(n_train * per_image))
        else:
            prompts = resolve_prompts(config.prompts or cls.prompts_for(editor))
            items = n_train * (len(prompts) if config.regime == "all" else 1)
        sizes[node.name] = items
        size = editor.size or native_size(model)
        steps = cls.steps_run(editor)
        cfg = cls.branches(editor)
        latent = size // vae_scale(model)
        per_item = steps * unet_flops(model, latent, cfg) + vae_flops(model, size, False)
        if cls.needs_source:  # the source image is VAE-encoded once
            per_item += vae_flops(model, size, True)
        return [{**row, "part": None, "items": items, "flops_per_item": per_item, "flops": items * per_item,
                 "what": f"{steps:g} steps x UNet on {cfg} latents {latent}x{latent} + VAE"}]
    if node.kind == "sdi":
        from genaug.sdi.presets import reference_multiplier, resolve_train_config

        train = resolve_train_config(config.model, config.train)
        multiplier = reference_multiplier(node.config.dataset.name, config.sample.multiplier)
        resolution = train.resolution
        steps_train = train.max_steps or train.epochs * math.ceil(n_train / train.batch_size)
        vae_model, vae_part = (config.generate.vae, None) if config.generate.vae else (config.model, "vae")
        size = config.generate.size or native_size(config.model)
        scale = vae_scale(config.model)
        generated = multiplier * n_train
        sizes[node.name] = generated
        parts = [
            ("embed", n_train, vit_flops(config.clip), "CLIP image forward"),
            ("latents", n_train, vae_flops(config.model, resolution, True), f"VAE encode at {resolution} px"),
            ("train", steps_train, train.batch_size * unet_flops(config.model, resolution // scale, 1, True),
             f"batch {train.batch_size} x UNet forward + backward"),
            ("generate", generated, config.generate.steps * unet_flops(config.model, size // scale, 2) + vae_flops(vae_model, size, False, vae_part),
             f"{config.generate.steps} steps x UNet on 2 latents + VAE decode"),
        ]
        return [{**row, "part": part, "items": items, "flops_per_item": flops, "flops": items * flops, "what": what}
                for part, items, flops, what in parts]
    if node.kind == "filter":
        base = node.input.split("/", 1)[0]
        items = sizes.get(base, n_train)
        kept = items
        for spec in config.filters:  # rank filters keep a share; the others keep (almost) everything
            if "keep_ratio" in spec:
                kept = int(round(kept * float(spec["keep_ratio"])))
        sizes[node.name] = kept
        uses_clip = any(str(f.get("name", "")).startswith("clip") for f in config.filters)
        per_item = vit_flops(config.clip) if uses_clip and has_architecture(config.clip) else 0
        return [{**row, "part": None, "items": items, "flops_per_item": per_item, "flops": items * per_item, "what": "CLIP image forward"}]
    if node.kind == "mix":
        base = node.input.split("/", 1)[0]
        items = sizes.get(base, n_train)
        for method in config.methods:
            sizes[f"{node.name}/{method}"] = items
        sizes[node.name] = items
        per_item = 0
        what = "no model"
        if "shb" in config.methods and has_architecture(config.shb.clip):
            from genaug.mixing.shb import grid_shape, scale_patch

            side = config.shb.size or 256
            patch, stride = (config.shb.patch, config.shb.stride) if config.shb.patch else scale_patch(side)
            rows, cols = grid_shape(side, side, patch, stride or max(1, patch // 2))
            per_item = rows * cols * vit_flops(config.shb.clip)
            what = f"SHB: {rows}x{cols} patches of the generated image x CLIP image forward"
        return [{**row, "part": None, "items": items, "flops_per_item": per_item, "flops": items * per_item, "what": what}]
    return [{**row, "part": None, "items": 0, "flops_per_item": 0, "flops": 0, "what": "unknown stage kind"}]


def train_estimate(experiment, arm, seeds: list[int], n_train: int, n_classes: int, sizes: dict[str, int]) -> dict[str, Any]:
    config = resolve_recipe(train_config(experiment, arm, seeds[0]))
    synthetic = sum(sizes.get(ref, sizes.get(ref.split("/", 1)[0], 0)) for ref in arm.data_refs)
    # concat: every epoch is real + synthetic; multiples: real + k x real of synthetic; the
    # other policies keep the real set's epoch length (they replace, not add).
    if arm.policy == "concat":
        samples = n_train + synthetic
    elif arm.policy == "multiples":
        samples = n_train + min(synthetic, round(float(arm.policy_kwargs.get("multiples", 1.0)) * n_train))
    else:
        samples = n_train
    size = config.augmentation.crop or config.augmentation.image_size or 224
    per_sample = classifier_train_flops(config.model, config.width or 1.0, n_classes, size)
    steps = config.epochs * samples * len(seeds)
    return {"stage": f"train:{arm.name}", "kind": "train", "part": None, "items": steps, "flops_per_item": per_sample,
            "flops": steps * per_sample, "samples_per_epoch": samples, "size": size,
            "what": f"{config.epochs} epochs x {samples} samples x {len(seeds)} seed(s), {config.model} fwd+bwd at {size} px"}


# ---------------------------------------------------------------------------- hours


def cpu_throughput(rehearsal: str | Path | None = None) -> dict[str, Any]:
    """This machine's FLOP/s: the UNet's in the generation stages of a rehearsal.json (FLOPs per
    call over the steady call time, median over stages), else :data:`CPU_MEASURED`."""
    path = Path(rehearsal) if rehearsal else None
    if path is not None and path.is_file():
        result = json.loads(path.read_text(encoding="utf-8"))
        rates = sorted(
            row["flops_by_model"]["UNet2DConditionModel"] / row["unet_calls"] / row["unet_steady_call_seconds"]
            for row in result["stages"]
            if row.get("real_steps") and row.get("unet_calls") and row.get("unet_steady_call_seconds")
            and row.get("flops_by_model", {}).get("UNet2DConditionModel")
        )
        if rates:
            load = result.get("machine", {}).get("load_average")
            return {"flops_per_second": rates[len(rates) // 2],
                    "source": f"UNet in the rehearsal {path} ({result.get('created')}, load average {load})"}
    return dict(CPU_MEASURED)


def cost_table(estimate: dict[str, Any], cpu: dict[str, Any], gpus: dict[str, float] | None = None, efficiency: float = GPU_EFFICIENCY) -> str:
    """The estimate as a text table: items, TFLOP and hours on this machine and on each GPU."""
    gpus = GPU_PEAKS if gpus is None else gpus
    header = ["stage", "items", "TFLOP/item", "PFLOP", "h here"] + [f"h {name}" for name in gpus]
    lines = [f"cost estimate of '{estimate['experiment']}': {estimate['dataset']['name']} train {estimate['dataset']['train']} "
             f"images, {estimate['dataset']['classes']} classes ({estimate['dataset']['source']}), seeds {estimate['seeds']}"]
    table = [header]

    def hours(flops: float, rate: float) -> str:
        return f"{flops / rate / 3600:.2f}"

    for row in estimate["rows"] + [{"stage": "total", "part": None, "items": None, "flops_per_item": None, "flops": estimate["flops"]}]:
        name = row["stage"] + (f"/{row['part']}" if row.get("part") else "")
        items = "" if row["items"] is None else f"{row['items']:,}"
        per = "" if row["flops_per_item"] is None else f"{row['flops_per_item'] / 1e12:.4f}"
        cells = [name, items, per, f"{row['flops'] / 1e15:.3f}", hours(row["flops"], cpu["flops_per_second"])]
        cells += [hours(row["flops"], peak * 1e12 * efficiency) for peak in gpus.values()]
        table.append(cells)
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for r in table:
        lines.append("  " + "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(r, widths))))
    lines.append(f"here: {cpu['flops_per_second'] / 1e9:.0f} GFLOP/s ({cpu['source']})")
    lines.append(
        "GPUs: dense fp16/bf16 peak TFLOP/s " + ", ".join(f"{k} {v:g}" for k, v in gpus.items())
        + f" x efficiency {efficiency:.2f} (an assumption until benchmarks/gpu_generation.py measures it on that GPU)"
    )
    lines.append("FLOPs are counted with torch.utils.flop_counter on the models' architectures (meta device); "
                 "loading, data and I/O time are not in the hours")
    return "\n".join(lines)


def plan_cost_text(experiment, arms: list[str] | None = None, seeds: list[int] | None = None,
                   jobs: list | None = None, stages: list[str] | None = None) -> str:
    """The cost table ``genaug run --dry-run`` prints, or one line saying why there is none
    (a model whose architecture cannot be read). With ``jobs`` (the training runs to make)
    and ``stages`` (the names of the stages to run), a time estimate follows the table
    (:func:`time_estimate`)."""
    try:
        estimate = estimate_experiment(experiment, seeds=seeds, arms=arms)
    except ValueError as error:
        return f"cost estimate: none ({error})"
    cpu = cpu_throughput(cache_dir("rehearsal") / LATEST_REHEARSAL)
    text = cost_table(estimate, cpu)
    if jobs is not None:
        text += "\n" + time_estimate_text(time_estimate(estimate, jobs, stages or [], experiment.workers, cpu))
    return text


# ---------------------------------------------------------------------------- time before any run


#: Counted FLOPs a timed training step may cost: larger batches are timed at fewer images and
#: scaled linearly (a ResNet-50 step at batch 128 and 224 px would take the dry run minutes).
TIMED_STEP_FLOPS = 2e10


def train_step_seconds(config, num_classes: int, size: int, repeats: int = 3) -> float:
    """Seconds of one optimizer step of a resolved ``TrainConfig``'s model on this machine, timed
    now: forward, cross-entropy, backward and the recipe's SGD step on a random batch of ``b``
    images at ``size`` px (``b = batch_size`` when it costs at most :data:`TIMED_STEP_FLOPS`
    counted FLOPs, else as many as fit, at least 1), on the recipe's CPU threads, after one
    warm-up step; the median of ``repeats`` steps, times ``batch_size / b``. Data loading,
    augmentation and evaluation are not in it."""
    from genaug.training.trainer import build_model, build_optimizer, cpu_threads

    per_sample = classifier_train_flops(config.model, config.width or 1.0, num_classes, size)
    batch = max(1, min(config.batch_size, int(TIMED_STEP_FLOPS // max(per_sample, 1))))
    with cpu_threads(config.cpu_threads), torch.random.fork_rng(devices=[]):
        model = build_model(config, num_classes, torch.device("cpu"), None)
        optimizer = build_optimizer(model, config)
        images = torch.randn(batch, 3, size, size)
        targets = torch.randint(num_classes, (batch,))
        seconds = []
        for _ in range(repeats + 1):
            started = time.perf_counter()
            loss = torch.nn.functional.cross_entropy(model(images), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seconds.append(time.perf_counter() - started)
    return statistics.median(seconds[1:]) * config.batch_size / batch


def time_estimate(estimate: dict[str, Any], jobs: list, stages: list[str], workers: int, cpu: dict[str, Any],
                  step_seconds=train_step_seconds) -> dict[str, Any]:
    """Wall seconds of what is left to run, before any run has finished, from the cost model.

    Training: each run ``job`` (an arm x seed with its resolved ``config``) makes
    ``config.steps`` optimizer steps, else ``epochs x ceil(samples per epoch / batch_size)``
    with the arm's samples per epoch from ``estimate`` (a matched-view run whose steps equal
    its arm's natural ones is not made: the natural runs are reused); a step costs :func:`train_step_seconds`
    of its model (timed once per model, width, size and batch); ``workers`` runs go at once:
    training wall = sum / min(workers, runs). Stages: the ``stages`` rows' counted FLOPs at
    this machine's FLOP/s (``cpu``)."""
    from genaug.training import resolve_recipe

    rows = {row["stage"]: row for row in estimate["rows"] if row["kind"] == "train"}
    classes = estimate["dataset"]["classes"]
    timed: dict[tuple, float] = {}
    train_seconds, steps_total, runs = 0.0, 0, 0
    for job in jobs:
        row = rows.get(f"train:{job.arm}")
        if row is None:
            continue
        config = resolve_recipe(job.config)
        natural = config.epochs * math.ceil(row["samples_per_epoch"] / config.batch_size)
        steps = config.steps or natural
        if getattr(job, "view", "natural") == "matched" and steps == natural:
            continue  # the arm's natural runs already make the matched steps: they are reused
        key = (config.model, config.width, config.batch_size, config.cpu_threads, row["size"])
        if key not in timed:
            timed[key] = step_seconds(config, classes, row["size"])
        train_seconds += steps * timed[key]
        steps_total += steps
        runs += 1
    parallel = max(1, min(workers, runs))
    stage_flops = sum(row["flops"] for row in estimate["rows"] if row["kind"] != "train" and row["stage"] in stages)
    return {
        "runs": runs, "steps": steps_total, "workers": parallel, "train_seconds": train_seconds / parallel,
        "step_seconds": {f"{key[0]} batch {key[2]} at {key[4]} px": value for key, value in timed.items()},
        "stages": [name for name in stages], "stage_seconds": stage_flops / cpu["flops_per_second"],
        "flops_per_second": cpu["flops_per_second"],
    }


def duration_text(seconds: float) -> str:
    """``12.5 min`` below two hours, ``7.3 h`` below two days, else ``3.1 days``."""
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def time_estimate_text(estimate: dict[str, Any]) -> str:
    """One line: the estimate and what it was made from."""
    total = estimate["train_seconds"] + estimate["stage_seconds"]
    steps = ", ".join(f"{seconds * 1000:.1f} ms per step of {what}" for what, seconds in estimate["step_seconds"].items())
    training = (f"training {estimate['runs']} run(s), {estimate['steps']:,} optimizer steps at {steps} (timed now), "
                f"{estimate['workers']} at a time: {duration_text(estimate['train_seconds'])}") if estimate["runs"] else "no training"
    stages = (f"{len(estimate['stages'])} stage(s) from their counted FLOPs at {estimate['flops_per_second'] / 1e9:.0f} GFLOP/s: "
              f"{duration_text(estimate['stage_seconds'])}") if estimate["stages"] else "no stage"
    return (f"time estimate (cost model, before any run has finished): about {duration_text(total)} = {training}; {stages}; "
            "loading, data, evaluation and I/O are not counted, so the run takes longer")
