"""The sampling frontier: images per second against judged quality, over sampling settings.

:func:`sweep_sampling` reads as the measurement:

1. build the workload: the generator's work items (prompts, source images, per-image
   seeds; for SDI the sampled vectors of an SDI config) and, on the pocket world, what
   each image must show (digit, colours) and the ideal real image of each item (for the
   Frechet distance);
2. load the pipeline once;
3. for every point (scheduler, steps, precision, batch size): swap in the scheduler (a
   diffusers class, built from the folder's own scheduler config), render one small batch
   untimed (warm-up), then time the rendering of every item through the same editor the
   engine uses, and judge the images;
4. mark the Pareto frontier (images/s vs class fidelity) and pick the presets:
   ``reference`` = the method's own settings, ``fast`` = the fastest point within
   ``fidelity_tolerance`` of the reference's class fidelity and ``colour_tolerance`` of its
   colour realisation.

Every point renders the same items with the same seeds, so quality differences are the
settings', not the noise's. Quality is judged independently of the generator: the digit by
:class:`genaug.pocket.quality.DigitJudge` (a CNN trained on real rendered digits only), the
colours by :func:`genaug.pocket.quality.estimate_colors` (a fit of the renderer's model),
and the distribution by the Frechet distance of pocket CLIP image embeddings of generated
vs ideal real images (:func:`genaug.metrics.frechet_distance`). With ``quality=False``
(any pipeline folder or hub id, e.g. SD 1.5-shaped stand-ins) only speed is measured.

Precision: ``fp32``; ``bf16`` = ``torch.autocast`` in bfloat16 around the pipeline call
(weights stay fp32; fast on CPUs with bf16 units, and on GPUs); ``fp16`` = CUDA autocast
in float16 (refused on the CPU).
"""

from __future__ import annotations

import datetime
import itertools
import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from genaug.generation.config import EditorConfig
from genaug.generation.editors.base import SCHEDULERS, scheduler_name
from genaug.generation.items import WorkItem
from genaug.metrics import frechet_distance
from genaug.pocket.captions import sample_edits
from genaug.pocket.render import DIGIT_NAMES, caption, load_digits, pocket_pools, render, sample_styles, styled_digits
from genaug.runtime import autocast_context
from genaug.seeds import item_seed

PRECISIONS = ("fp32", "bf16", "fp16")
DEFAULT_SCHEDULERS = ("ddim", "dpmsolver", "unipc", "euler_ancestral")
DEFAULT_STEPS = (4, 6, 8, 12, 20)


def sweep_editors() -> dict[str, type]:
    """The editors the sweep can drive, by name: those stating a ``frontier_workload``
    (``Editor.frontier_workload``: the pocket workload they are judged on)."""
    from genaug.generation.editors import EDITORS

    return {name: EDITORS[name] for name in EDITORS.names() if EDITORS[name].frontier_workload}


def pocket_generators() -> dict[str, str]:
    """Pocket model -> the sweepable editor whose default model it is (``pocket:sd`` -> txt2img)."""
    return {cls.default_model: name for name, cls in sweep_editors().items()}


@dataclass(frozen=True)
class SweepPoint:
    """One setting: ``scheduler`` is a config name of ``SCHEDULERS`` (``ddim``, ``dpmsolver``, ...)."""

    scheduler: str
    steps: int
    precision: str = "fp32"
    batch_size: int = 50

    def __post_init__(self) -> None:
        SCHEDULERS.spec(self.scheduler)
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {self.precision!r}")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"steps and batch_size must be >= 1, got {self.steps}, {self.batch_size}")


@dataclass
class Workload:
    """The items every point renders and, for judged sweeps, what each image must show."""

    generator: str
    model: str
    items: list[WorkItem]
    sources: Callable[[WorkItem], np.ndarray] | None = None
    digits: np.ndarray | None = None  # the digit each image must show
    fg: np.ndarray | None = None  # the colours it must have (palette indices)
    bg: np.ndarray | None = None
    ideal: np.ndarray | None = None  # uint8 (N, 16, 16, 3): the real image each item asks for
    sdi: tuple[Any, Any] | None = None  # SDI: (SdiConfig, sampled FeatureTable)

    @property
    def judged(self) -> bool:
        return self.digits is not None


@dataclass
class SweepResult:
    rows: list[dict[str, Any]]
    meta: dict[str, Any]
    reference: dict[str, Any]
    fast: dict[str, Any] | None = None
    images: dict[int, np.ndarray] = field(default_factory=dict, repr=False)  # row index -> images


# ---------------------------------------------------------------------------- workloads


def infer_generator(model: str) -> str:
    """The sweepable editor of a pocket model, or of a folder's pipeline (its ``model_index.json``
    class is the editor's ``pipeline_class``)."""
    pockets = pocket_generators()
    if model in pockets:
        return pockets[model]
    editors = sweep_editors()
    index = Path(model).expanduser() / "model_index.json"
    if index.is_file():
        pipeline = json.loads(index.read_text(encoding="utf-8")).get("_class_name")
        for name, cls in editors.items():
            if pipeline == cls.pipeline_class:
                return name
        raise ValueError(f"{index}: pipeline {pipeline!r} is not one of {sorted(cls.pipeline_class for cls in editors.values())}; give --generator")
    raise ValueError(f"cannot tell the generator of {model!r}: give --generator ({sorted(editors)})")


def pocket_workload(generator: str, model: str, n: int, seed: int = 0, judged: bool = True) -> Workload:
    """``n`` pocket items: captions for txt2img (as the SD quality gate draws them), re-colouring
    instructions on real test digits for instruct (as the InstructPix2Pix gate does)."""
    editors = sweep_editors()
    if generator not in editors:
        raise ValueError(f"generator must be one of {sorted(editors)}, got {generator!r}")
    workload = editors[generator].frontier_workload
    test = pocket_pools(seed)["test"]
    source = load_digits()
    if workload == "captions":
        digits = np.arange(n) % 10
        fg, bg = sample_styles(n, np.random.default_rng([seed, 200]))
        prompts = [caption(d, f, b) for d, f, b in zip(digits, fg, bg)]
        by_class = {d: test[source.labels[test] == d] for d in range(10)}
        chosen = np.array([by_class[d][i // 10 % len(by_class[d])] for i, d in enumerate(digits)])
        ideal = render(source.images[chosen], fg, bg)
        items = [_item(f"frontier-{i:05d}", seed, int(d), DIGIT_NAMES[d], prompts[i]) for i, d in enumerate(digits)]
        sources = None
    elif workload == "recolour":
        if n > len(test):
            raise ValueError(f"images: at most {len(test)} for instruct (the pocket test split), got {n}")
        images, labels, old_fg, old_bg = styled_digits(test[:n], seed)
        texts, fg, bg = sample_edits(old_fg, old_bg, np.random.default_rng([seed, 300]))
        digits = labels
        ideal = render(source.images[test[:n]], fg, bg)
        items = [
            _item(f"frontier-{i:05d}", seed, int(d), DIGIT_NAMES[d], texts[i], source_index=i) for i, d in enumerate(digits)
        ]

        def sources(item: WorkItem) -> np.ndarray:
            return images[item.source_index]
    else:
        raise ValueError(f"editor {generator!r}: unknown frontier workload {workload!r} (captions, recolour)")
    if not judged:
        return Workload(generator, model, items, sources)
    return Workload(generator, model, items, sources, np.asarray(digits), np.asarray(fg), np.asarray(bg), ideal)


def _item(item_id: str, seed: int, label: int, class_name: str, prompt: str, source_index: int | None = None) -> WorkItem:
    return WorkItem(id=item_id, seed=item_seed(seed, item_id), label=label, class_name=class_name, prompt=prompt,
                    source_id=None if source_index is None else f"pocket/test/{source_index}", source_index=source_index)


def sdi_workload(config, n: int, seed: int = 0, judged: bool = True) -> Workload:
    """``n`` of SDI's sampled vectors (spread evenly over the samples table, so over the
    classes), as ``genaug sdi generate`` plans them. Judged: the digit is the sample's class;
    colours are not prompted, so not judged; the ideal images are real downstream test
    digits of the class in their own styles."""
    from genaug.diffusion.conditioning import NEGATIVE_PROMPT
    from genaug.sdi.generate import plan_items
    from genaug.sdi.sample import samples_path
    from genaug.sdi.tables import load_table

    path = samples_path(config.work_dir, config.sample.sampler)
    table = load_table(path)
    planned = plan_items(table, path, config.generate.seed, config.generate.negative_prompt or NEGATIVE_PROMPT)
    if n > len(planned):
        raise ValueError(f"images: at most {len(planned)} (the sampled vectors in {path}), got {n}")
    items = [planned[int(i)] for i in np.unique(np.linspace(0, len(planned) - 1, n).round().astype(int))]
    workload = Workload("sdi", config.model, items, sdi=(config, table))
    if judged:
        digits = np.array([item.label for item in items])
        test = pocket_pools(seed)["test"]
        labels = load_digits().labels
        chosen = np.array([test[labels[test] == d][i // 10 % int((labels[test] == d).sum())] for i, d in enumerate(digits)])
        workload.digits, workload.ideal = digits, styled_digits(chosen, seed)[0]
    return workload


# ---------------------------------------------------------------------------- rendering


class ForwardTimer:
    """Wall time spent inside a module's ``forward`` (the UNet's here), from forward pre- and post-hooks.

    ``cuda``: synchronise the device at both hooks, so that asynchronous kernels count
    where they run (the GPU benchmark); on the CPU the calls are synchronous already.
    """

    def __init__(self, module: torch.nn.Module, cuda: bool = False) -> None:
        self.seconds, self.calls, self._start = 0.0, 0, 0.0
        self._sync = torch.cuda.synchronize if cuda else (lambda: None)
        self._handles = [module.register_forward_pre_hook(self._before), module.register_forward_hook(self._after)]

    def _before(self, *args) -> None:
        self._sync()
        self._start = time.perf_counter()

    def _after(self, *args) -> None:
        self._sync()
        self.seconds += time.perf_counter() - self._start
        self.calls += 1

    def reset(self) -> None:
        self.seconds, self.calls = 0.0, 0

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def make_editor(workload: Workload, point: SweepPoint | None, device: str = "auto", size: int | None = None,
                guidance_scale: float | None = None):
    """The engine's editor for ``workload`` at ``point`` (None: the editor's defaults, i.e. the reference)."""
    from genaug.generation.editors import create_editor

    fields: dict[str, Any] = {"name": workload.generator, "model": workload.model, "size": size, "guidance_scale": guidance_scale}
    if point is not None:
        fields.update(steps=point.steps, scheduler=point.scheduler)
    # fp32 weights at every point: bf16 / fp16 are autocast around the call (autocast_context).
    return create_editor(EditorConfig(**fields), sources=workload.sources, device=device, dtype="fp32")


def make_renderer(workload: Workload, point: SweepPoint | None, device: str = "auto", size: int | None = None):
    """An editor (:func:`make_editor`), or for SDI an :class:`~genaug.sdi.generate.SdiRenderer`
    with the config's settings and ``point``'s scheduler and steps."""
    if workload.generator != "sdi":
        return make_editor(workload, point, device, size)
    from genaug.diffusion.conditioning import NEGATIVE_PROMPT
    from genaug.sdi.generate import RenderSettings, SdiRenderer

    config, table = workload.sdi
    gen = config.generate
    settings = RenderSettings(
        model=config.model, revision=config.revision, steps=point.steps if point else gen.steps,
        guidance_scale=gen.guidance_scale, size=size or gen.size, negative_prompt=gen.negative_prompt or NEGATIVE_PROMPT,
        scheduler=point.scheduler if point else "ddim",
    )
    return SdiRenderer(settings, table.features, eta=gen.eta, vae=gen.vae, device=device, dtype="fp32")


def reference_point(workload: Workload, device: str = "auto", batch_size: int = 50) -> tuple[SweepPoint, Any]:
    """The method's own settings: the editor's defaults (instruct: Euler ancestral, the pipeline's
    100 steps; txt2img: the folder's scheduler, 50 steps; SDI: DDIM, the config's 50 steps);
    returns the point and the loaded editor."""
    editor = make_renderer(workload, None, device=device)
    scheduler = editor.scheduler_name or scheduler_name(type(editor.pipeline.scheduler).__name__)
    return SweepPoint(scheduler, int(editor.steps), "fp32", batch_size), editor


@dataclass
class TimedSetting:
    """One point's editor (sharing the loaded pipeline), its scheduler, and what it has made so far."""

    point: SweepPoint
    editor: Any
    scheduler: Any
    outputs: list[np.ndarray] = field(default_factory=list)
    seconds: float = 0.0
    unet_seconds: float = 0.0
    done: int = 0

    def render(self, items: Sequence[WorkItem]) -> np.ndarray:
        self.editor.pipeline.scheduler = self.scheduler
        with autocast_context(self.point.precision, self.editor.device):
            return self.editor.render(items, [item.seed for item in items])


def settings_for(points: Sequence[SweepPoint], workload: Workload, pipeline, device: str, size: int | None) -> list[TimedSetting]:
    """An editor per point, all on ``pipeline``; each point's scheduler built from the folder's scheduler config."""
    base = dict(pipeline.scheduler.config)
    settings = []
    for point in points:
        editor = make_renderer(workload, point, device, size)
        editor.pipeline = pipeline
        settings.append(TimedSetting(point, editor, SCHEDULERS.get(point.scheduler)(base)))
    return settings


def render_round_robin(settings: Sequence[TimedSetting], items: Sequence[WorkItem], timer: ForwardTimer,
                       log: Callable[[str], None] | None = None) -> None:
    """Render every item at every setting, timing each batch, interleaved.

    Each setting first renders two items untimed (warm-up). Then rounds: every setting with
    items left renders its next ``batch_size`` items. Interleaving spreads the load of a
    shared machine evenly over the settings, so their ratios stay fair when the load changes
    during the sweep.
    """
    for setting in settings:
        setting.render(items[:2])
    while any(setting.done < len(items) for setting in settings):
        for setting in settings:
            if setting.done >= len(items):
                continue
            batch = items[setting.done : setting.done + setting.point.batch_size]
            timer.reset()
            started = time.perf_counter()
            setting.outputs.append(setting.render(batch))
            setting.seconds += time.perf_counter() - started
            setting.unet_seconds += timer.seconds
            setting.done += len(batch)
        if log:
            log(f"  {min(s.done for s in settings)}/{len(items)} items at every setting")


# ---------------------------------------------------------------------------- judging


@dataclass
class Judges:
    """The independent judges of the pocket world, and the ideal images' CLIP features."""

    judge: Any
    judge_accuracy: float
    clip: Any
    ideal_features: np.ndarray

    @classmethod
    def for_workload(cls, workload: Workload, seed: int = 0) -> "Judges":
        from genaug.clip import Clip
        from genaug.pocket.quality import cached_judge

        judge, accuracy = cached_judge(seed)
        clip = Clip.from_reference("pocket", stage="judges")
        return cls(judge, accuracy, clip, clip.image_embeds(workload.ideal).numpy())

    def measure(self, images: np.ndarray, workload: Workload) -> dict[str, float]:
        """Class fidelity, colours realised (both, and each) and FD in CLIP space."""
        from genaug.pocket.quality import estimate_colors

        predicted = self.judge.predict(images)
        measured = {"digit_fidelity": float((predicted == workload.digits).mean())}
        if workload.fg is not None:  # colours asked for (not by SDI)
            fg, bg = estimate_colors(images)
            measured.update({
                "colour_realised": float(((fg == workload.fg) & (bg == workload.bg)).mean()),
                "fg_realised": float((fg == workload.fg).mean()),
                "bg_realised": float((bg == workload.bg).mean()),
            })
        measured["fd_clip"] = frechet_distance(self.ideal_features, self.clip.image_embeds(images).numpy())
        return measured


# ---------------------------------------------------------------------------- the sweep


def sweep_grid(schedulers: Sequence[str] = DEFAULT_SCHEDULERS, steps: Sequence[int] = DEFAULT_STEPS,
               precisions: Sequence[str] = ("fp32",), batch_sizes: Sequence[int] = (50,)) -> list[SweepPoint]:
    """Every combination, cheapest first within each scheduler."""
    return [SweepPoint(s, n, p, b) for s, p, b, n in itertools.product(schedulers, precisions, batch_sizes, sorted(steps))]


def check_sweep(model: str, generator: str | None, quality: bool, sdi=None) -> str:
    """The generator to sweep (given or inferred); judged sweeps need a pocket model; SDI
    needs its config (``sdi``: an ``SdiConfig`` whose samples are drawn) for ``model``."""
    generator = generator or infer_generator(model)
    editors = sweep_editors()
    if generator not in (*editors, "sdi"):
        raise ValueError(f"generator must be one of {sorted([*editors, 'sdi'])}, got {generator!r}")
    if generator == "sdi":
        if sdi is None:
            raise ValueError("generator sdi needs the SDI config whose sampled vectors it renders (--sdi-config)")
        if sdi.model != model:
            raise ValueError(f"the SDI config's model is {sdi.model!r}, not {model!r}")
    pockets = pocket_generators()
    if quality and model not in pockets:
        raise ValueError(f"quality is judged on pocket models only ({sorted(pockets)}); for {model!r} use quality=False (--speed-only)")
    return generator


def parse_point(text: str, batch_size: int = 50) -> SweepPoint:
    """``"scheduler:steps:precision[:batch]"`` (e.g. ``dpmsolver:8:bf16``) as a :class:`SweepPoint`."""
    parts = text.split(":")
    if len(parts) not in (3, 4) or not all(parts):
        raise ValueError(f"a point must look like scheduler:steps:precision[:batch], got {text!r}")
    try:
        return SweepPoint(parts[0], int(parts[1]), parts[2], int(parts[3]) if len(parts) == 4 else batch_size)
    except ValueError as error:
        raise ValueError(f"point {text!r}: {error}") from None


def sweep_sampling(
    model: str,
    points: Sequence[SweepPoint] | None = None,
    *,
    generator: str | None = None,
    images: int = 200,
    quality: bool = True,
    seed: int = 0,
    device: str = "auto",
    size: int | None = None,
    reference_batch_size: int = 50,
    fidelity_tolerance: float = 0.01,
    colour_tolerance: float = 0.02,
    keep_images: bool = False,
    sdi=None,
    log: Callable[[str], None] | None = None,
) -> SweepResult:
    """Measure images/s (and, with ``quality``, judged quality) at the reference and every point.

    ``model``: ``pocket:sd``, ``pocket:ip2p``, a diffusers pipeline folder or a hub id.
    Judged sweeps need a pocket model (the judges know pocket digits only). ``sdi``: for
    ``generator="sdi"``, the ``SdiConfig`` whose sampled vectors are rendered.
    """
    log = log or (lambda message: None)
    generator = check_sweep(model, generator, quality, sdi)
    points = list(points) if points is not None else sweep_grid()
    load_before = os.getloadavg()
    if generator == "sdi":
        workload = sdi_workload(sdi, images, seed, judged=quality)
    else:
        workload = pocket_workload(generator, model, images, seed, judged=quality)
    judges = Judges.for_workload(workload, seed) if quality else None

    reference, editor = reference_point(workload, device, reference_batch_size)
    timer = ForwardTimer(editor.pipeline.unet)
    settings = settings_for([reference, *[p for p in points if p != reference]], workload, editor.pipeline, device, size)
    render_round_robin(settings, workload.items, timer, log)
    timer.remove()
    rows: list[dict[str, Any]] = []
    kept: dict[int, np.ndarray] = {}
    for index, setting in enumerate(settings):
        rendered = np.concatenate(setting.outputs)
        row = point_row(setting, len(rendered), is_reference=index == 0)
        if judges is not None:
            row.update(judges.measure(rendered, workload))
        rows.append(row)
        if keep_images:
            kept[index] = rendered
        log(format_row(row))
    editor = settings[0].editor

    mark_frontier(rows)
    fast = choose_fast(rows, fidelity_tolerance, colour_tolerance) if quality else None
    meta = machine_meta(load_before) | {
        "model": model, "generator": generator, "images": len(workload.items), "seed": seed, "quality": quality,
        "judge_test_accuracy": judges.judge_accuracy if judges else None,
        "guidance_scale": float(editor.guidance_scale), "size": int(editor.size),
        "fidelity_tolerance": fidelity_tolerance, "colour_tolerance": colour_tolerance,
    }
    return SweepResult(rows, meta, rows[0], fast, kept)


def point_row(setting: TimedSetting, count: int, is_reference: bool) -> dict[str, Any]:
    point, seconds = setting.point, setting.seconds
    return {
        "scheduler": type(setting.scheduler).__name__,
        "scheduler_name": point.scheduler,
        "num_inference_steps": point.steps,
        "precision": point.precision,
        "batch_size": point.batch_size,
        "images": count,
        "seconds": seconds,
        "images_per_second": count / seconds,
        "unet_share": setting.unet_seconds / seconds,
        "reference": is_reference,
    }


def pareto_front(speed: Sequence[float], quality: Sequence[float]) -> list[bool]:
    """Which points no other point beats on both axes (at least as good on both, better on one)."""
    s, q = np.asarray(speed, dtype=float), np.asarray(quality, dtype=float)
    dominated = ((s[None, :] >= s[:, None]) & (q[None, :] >= q[:, None]) & ((s[None, :] > s[:, None]) | (q[None, :] > q[:, None]))).any(axis=1)
    return [not d for d in dominated]


def mark_frontier(rows: list[dict[str, Any]]) -> None:
    if rows and "digit_fidelity" in rows[0]:
        for row, front in zip(rows, pareto_front([r["images_per_second"] for r in rows], [r["digit_fidelity"] for r in rows])):
            row["frontier"] = front


def choose_fast(rows: list[dict[str, Any]], fidelity_tolerance: float = 0.01, colour_tolerance: float = 0.02) -> dict[str, Any]:
    """The fastest row whose fidelity is within ``fidelity_tolerance`` of the reference row's
    and whose colour realisation is within ``colour_tolerance`` (the reference itself qualifies)."""
    reference = next(row for row in rows if row["reference"])
    eligible = [
        row for row in rows
        if row["digit_fidelity"] >= reference["digit_fidelity"] - fidelity_tolerance - 1e-12
        and ("colour_realised" not in reference or row["colour_realised"] >= reference["colour_realised"] - colour_tolerance - 1e-12)
    ]
    return max(eligible, key=lambda row: row["images_per_second"])


def machine_meta(load_before: tuple[float, float, float]) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        flags = Path("/proc/cpuinfo").read_text()
        model_line = next((line for line in flags.splitlines() if line.startswith("model name")), "")
        cpu = model_line.split(":", 1)[1].strip() or cpu
        bf16 = "avx512_bf16" in flags or "amx_bf16" in flags
    except (OSError, IndexError):
        bf16 = None
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{cpu}, {os.cpu_count()} cores" + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""),
        "cpu_bf16_units": bf16,
        "torch_threads": torch.get_num_threads(),
        "load_average_before": round(load_before[0], 2),
        "load_average_after": round(os.getloadavg()[0], 2),
        "torch": torch.__version__,
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }


# ---------------------------------------------------------------------------- presets and output


def preset_entries(result: SweepResult) -> dict[str, dict[str, Any]]:
    """``reference`` and ``fast`` as stored in the presets file, each with its figures."""
    entries = {"reference": preset_settings(result.reference, result.meta)}
    if result.fast is not None:
        entries["fast"] = preset_settings(result.fast, result.meta)
        entries["fast"]["figures"]["speedup_vs_reference"] = round(result.fast["images_per_second"] / result.reference["images_per_second"], 2)
    return entries


def preset_settings(row: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    figures = {k: (round(row[k], 4) if isinstance(row[k], float) else row[k])
               for k in ("images_per_second", "digit_fidelity", "colour_realised", "fd_clip", "unet_share", "images") if k in row}
    figures.update({k: meta[k] for k in ("machine", "load_average_before", "load_average_after", "date")})
    return {
        "scheduler": row["scheduler"],
        "num_inference_steps": row["num_inference_steps"],
        "precision": row["precision"],
        "batch_size": row["batch_size"],
        "guidance_scale": meta["guidance_scale"],
        "figures": figures,
    }


def preset_key(result: SweepResult) -> str:
    """Where the sweep's presets are stored: the editor's preset key for the model (SDI: ``sdi/<model>``)."""
    editors = sweep_editors()
    generator, model = result.meta["generator"], result.meta["model"]
    return editors[generator].preset_key_for(model) if generator in editors else f"{generator}/{model}"


COLUMNS = [
    ("scheduler", "scheduler", "{}"), ("num_inference_steps", "steps", "{}"), ("precision", "precision", "{}"),
    ("batch_size", "batch", "{}"), ("images_per_second", "images/s", "{:.2f}"), ("unet_share", "UNet share", "{:.1%}"),
    ("digit_fidelity", "class fidelity", "{:.3f}"), ("colour_realised", "colour realised", "{:.3f}"), ("fd_clip", "FD (CLIP)", "{:.4f}"),
]


def format_row(row: dict[str, Any]) -> str:
    return "  ".join(f"{label} {fmt.format(row[key])}" for key, label, fmt in COLUMNS if key in row)


def markdown_table(result: SweepResult) -> str:
    columns = [c for c in COLUMNS if c[0] in result.rows[0]]
    lines = ["| " + " | ".join(label for _, label, _ in columns) + " | x reference | |", "|" + "---|" * (len(columns) + 2)]
    base = result.reference["images_per_second"]
    for row in sorted(result.rows, key=lambda r: -r["images_per_second"]):
        notes = [n for n, on in (("reference", row["reference"]), ("**fast**", row is result.fast), ("frontier", row.get("frontier"))) if on]
        cells = [fmt.format(row[key]) for key, _, fmt in columns]
        lines.append("| " + " | ".join(cells) + f" | {row['images_per_second'] / base:.2f} | {', '.join(notes)} |")
    return "\n".join(lines)


def write_sweep(result: SweepResult, out_dir: str | Path) -> dict[str, Path]:
    """``sweep.json`` (rows + meta), ``sweep.md`` (the table) and, when judged, ``pareto.png``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "sweep.json", "table": out / "sweep.md"}
    fast_index = next((i for i, row in enumerate(result.rows) if row is result.fast), None)
    paths["json"].write_text(json.dumps({"meta": result.meta, "rows": result.rows, "fast_row": fast_index}, indent=2) + "\n")
    meta = result.meta
    header = (f"{meta['generator']} on {meta['model']}: {meta['images']} images per point, {meta['size']} px, guidance {meta['guidance_scale']}; "
              f"{meta['machine']}, torch threads {meta['torch_threads']}, load average {meta['load_average_before']} -> "
              f"{meta['load_average_after']}, {meta['date']}\n\n")
    paths["table"].write_text(header + markdown_table(result) + "\n")
    if "digit_fidelity" in result.rows[0]:
        from genaug.report.figures import sampling_frontier_figure

        title = f"{meta['generator']} on {meta['model']} ({meta['images']} images per point)"
        paths["figure"] = sampling_frontier_figure(result.rows, result.fast, out / "pareto.png", title)
    return paths
