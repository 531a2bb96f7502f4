"""Step 2 of SDI: train the projector against frozen Stable Diffusion (docs/methods/sdi.md).

:func:`train_projector` reads as the method:

1. resolve the preset (``sd15`` reference, ``pocket`` scaled) and the processes;
2. load SD's tokenizer, text encoder, VAE and UNet, all frozen: ``requires_grad = False``
   on every parameter, ``no_grad`` around the VAE and text encoder (they run only to build
   the caches); gradients flow *through* the UNet's activations to the projector, never
   into its weights;
3. load the CLIP embeddings of the training images (``genaug sdi embed``);
4. cache each image's VAE latent distribution and the prompt's text context once
   (:mod:`genaug.diffusion.cache`);
5. a step: rows of the global batch (a seeded permutation per epoch) and their randomness
   drawn from ``(seed, step)``, then split across processes; latents
   ``z0 = s * (mean + std * eps)``, 5 % of image embeddings zeroed, ``t ~ U{0..T-1}``,
   ``z_t = sqrt(abar_t) z0 + sqrt(1 - abar_t) noise`` (the pipeline's DDPM schedule),
   context = the prompt's with the "class" slot set to ``projector(embedding)``, loss
   ``MSE(unet(z_t, t, context), noise)``, AdamW;
6. checkpoint (safetensors weights, optimiser state readable with ``weights_only=True``)
   every ``checkpoint_every`` steps; a rerun resumes from it;
7. write ``projector.safetensors`` and ``train.json``.

Incremental passes: the projector file records what its weights depend on
(:func:`projector_keys`: every training image's id, label and content, the pools, the
resolved recipe, the SD weights, the CLIP). Given the work dirs of earlier runs of the stage
(``reuse_from``), a projector of equal inputs is copied instead of trained (e.g. when only the
sampling or generation settings changed). When the images changed its inputs changed, so it
is trained again, unless ``keep_projector`` (:class:`genaug.config.SdiConfig`) keeps an
earlier one of equal recipe, weights and CLIP: then the new images are projected by a
projector that did not see them, which a full run would not do (recorded as ``kept_from``).

Every step's randomness comes from ``(seed, step)``, so a resumed run continues exactly
as an uninterrupted one would, and 1 or N processes train the same projector (up to the
order of floating-point sums). Several processes (``torchrun --nproc_per_node N``;
on CPU gloo) split each global batch; the projector is wrapped in DDP.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from genaug.checkpoint import find_checkpoint, load_checkpoint, save_checkpoint
from genaug.config import ConfigError
from genaug.data.base import RealDataset
from genaug.diffusion.architecture import check_pipeline, check_projector_input, check_projector_output
from genaug.diffusion.cache import (
    ContextCache,
    LatentCache,
    build_context_cache,
    build_latent_cache,
    load_context_cache,
    load_latent_cache,
    save_context_cache,
    save_latent_cache,
)
from genaug.diffusion.conditioning import slot_context
from genaug.diffusion.frozen import FrozenDiffusion, load_frozen_diffusion
from genaug.diffusion.loss import StepDraws, cached_latents, diffusion_loss, draw_step
from genaug.diffusion.models import ModelRef, resolve_model
from genaug.distributed import Distributed, setup_distributed, shard
from genaug.files import write_json_atomic
from genaug.progress import progress_bar
from genaug.runtime import autocast_context
from genaug.sdi.embed import EMBEDS_DIR, load_embeddings, pool_dataset
from genaug.sdi.presets import resolve_train_config, training_pools  # noqa: F401 (training_pools re-exported)
from genaug.sdi.projector import (  # noqa: F401 (projector_path, load_trained_projector re-exported)
    PROJECTOR_FILE,
    Projector,
    load_trained_projector,
    projector_dir,
    projector_path,
    save_projector,
    trained_projectors,
)
from genaug.sdi.tables import FeatureTable
from genaug.seeds import generator_for
from genaug.files import save_safetensors

if TYPE_CHECKING:  # pragma: no cover
    from genaug.sdi.config import ProjectorTrainConfig, SdiConfig

LOG_FILE = "log.csv"
SUMMARY_FILE = "train.json"
#: Fields that may change between a run and its resumption (they do not change the result).
RESUMABLE_FIELDS = ("max_steps", "checkpoint_every", "log_every", "progress")


@dataclass
class ProjectorRun:
    """What a finished (or stopped at ``max_steps``) projector training did."""

    path: Path
    steps: int
    final_loss: float
    seconds: float
    resumed_from: int
    world_size: int
    reused_from: str | None = None  # the earlier work dir whose projector was copied
    kept: bool = False  # copied although the images changed (keep_projector)

    @property
    def steps_per_second(self) -> float:
        done = self.steps - self.resumed_from
        return done / self.seconds if self.seconds > 0 else 0.0


# ---------------------------------------------------------------------------- the stage


def train_projector(
    config: SdiConfig,
    datasets: dict[str, RealDataset] | None = None,
    *,
    resume: bool = True,
    diffusion: FrozenDiffusion | None = None,
    reuse_from: list[str | Path] | tuple = (),
) -> ProjectorRun:
    """Train (or resume, or return the finished) projector of ``config.work_dir``; see the module doc.

    ``reuse_from``: work dirs of earlier runs of the stage, whose projector is copied when its
    inputs equal this one's (or, with ``config.keep_projector``, its recipe, weights and CLIP).
    """
    train = resolve_train_config(config.model, config.train)
    pools = training_pools(config)
    dist = setup_distributed(config.device)
    if train.batch_size < dist.world_size:
        raise ConfigError(f"train.batch_size {train.batch_size} is global: it must be at least the {dist.world_size} processes")
    out = projector_dir(config.work_dir)
    embeds = load_embeddings(config.work_dir, pools)
    model_ref = diffusion.model if diffusion else resolve_model(config.model, config.revision)
    check_architecture(config, embeds, model_ref)
    total = total_steps(len(embeds), train)
    keys = projector_keys(config, train, pools, embeds, model_ref)
    if resume and keys is not None:
        found, donor = reusable_projector(config, keys, total, reuse_from if find_checkpoint(out) is None else ())
        if found is not None:
            found.world_size = dist.world_size
            return found if donor is None else copy_projector(found, donor, out, keys, dist)
    diffusion = diffusion or load_frozen_diffusion(config.model, config.revision, dist.device)
    latents, context = prepare_caches(config, train, diffusion, pools, datasets, dist)
    check_alignment(embeds, latents)

    projector = build_projector(embeds.dim, train.hidden, diffusion.cross_attention_dim, train.seed).to(dist.device)
    optimizer = torch.optim.AdamW(projector.parameters(), lr=train.lr, weight_decay=train.weight_decay)
    start = restore_checkpoint(out, train, projector, optimizer, resume)
    if start >= total and projector_path(config.work_dir).is_file():
        return finished_run(out, total, dist.world_size)
    model = dist.wrap(projector)
    features = embeds.features.to(dist.device)
    latents = LatentCache(latents.mean.to(dist.device), latents.std.to(dist.device), latents.ids)
    base_context = context.context.to(dist.device)
    latent_shape = tuple(latents.mean.shape[1:])
    num_timesteps = int(diffusion.noise_scheduler.config.num_train_timesteps)

    log = TrainLog(out / LOG_FILE, start, enabled=dist.is_main)
    started, loss_value = time.perf_counter(), math.nan
    shown = train.progress and dist.is_main and total > start
    bar = progress_bar(total, "training projector", enabled=shown, completed=start, detail="loss {task.fields[loss]:.4f}",
                       fields={"loss": math.nan})
    with log, bar as progress:
        for step in range(start, total):
            rows = batch_rows(len(embeds), train.batch_size, train.seed, step)
            draws = draw_step(len(rows), latent_shape, num_timesteps, train.embedding_dropout,
                              generator_for(train.seed, "step", step))
            part = shard(torch.arange(len(rows)), dist.rank, dist.world_size)
            local = rows[part].to(dist.device)
            with autocast_context(train.precision, dist.device, field="train.precision"):
                loss = projector_loss(model, diffusion, latents, base_context, context.position, features[local], local,
                                      draws.rows(part), sample_latents=train.latents == "sample")
            # DDP averages gradients over processes; scaling by this share makes the result
            # the gradient of the global batch mean even when shards differ in size.
            share = len(part) * dist.world_size / len(rows)
            optimizer.zero_grad(set_to_none=True)
            (loss * share).backward()
            optimizer.step()
            loss_value = global_mean(loss.detach() * len(part), len(rows), dist)
            epoch = step // steps_per_epoch(len(embeds), train.batch_size)
            log.write(step, epoch, loss_value, time.perf_counter() - started)
            done = step + 1
            if done % train.log_every == 0 or done == total:
                progress.update(completed=done, loss=loss_value)
            if (step + 1) % train.checkpoint_every == 0 or step + 1 == total:
                write_projector_checkpoint(out, projector, optimizer, train, step + 1, epoch, dist)
    seconds = time.perf_counter() - started

    run = ProjectorRun(projector_path(config.work_dir), total, loss_value, seconds, start, dist.world_size)
    if dist.is_main and start < total:
        metadata = {"train": json.dumps(train.model_dump(mode="json")), "steps": str(total),
                    "model": json.dumps(diffusion.model.identity), **(keys or {})}
        save_projector(run.path, projector, metadata)
        write_json_atomic(out / SUMMARY_FILE, {**asdict(run), "path": str(run.path), "steps_per_second": run.steps_per_second})
    dist.barrier()
    return run


# ---------------------------------------------------------------------------- steps


def build_projector(in_dim: int, hidden: int, out_dim: int, seed: int) -> Projector:
    """A projector with PyTorch's default initialisation drawn from ``(seed, "projector init")``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(generator_for(seed, "projector init").initial_seed())
        return Projector(in_dim, hidden, out_dim)


def steps_per_epoch(n: int, batch_size: int) -> int:
    """One pass over ``n`` rows in global batches (the last one may be short)."""
    return max(1, math.ceil(n / batch_size))


def total_steps(n: int, train: ProjectorTrainConfig) -> int:
    """``epochs * steps_per_epoch``, cut at ``max_steps``."""
    total = train.epochs * steps_per_epoch(n, train.batch_size)
    return min(total, train.max_steps) if train.max_steps is not None else total


def batch_rows(n: int, batch_size: int, seed: int, step: int) -> torch.Tensor:
    """The global batch of ``step``: its slice of the epoch's permutation drawn from ``(seed, "order", epoch)``."""
    per_epoch = steps_per_epoch(n, batch_size)
    epoch, position = divmod(step, per_epoch)
    order = torch.randperm(n, generator=generator_for(seed, "order", epoch))
    return order[position * batch_size : (position + 1) * batch_size]


def projector_loss(
    projector: torch.nn.Module,
    diffusion: FrozenDiffusion,
    latents: LatentCache,
    base_context: torch.Tensor,
    position: int,
    embeds: torch.Tensor,
    rows: torch.Tensor,
    draws: StepDraws,
    sample_latents: bool = True,
) -> torch.Tensor:
    """One batch's loss (module doc, step 5): ``z0 = s (mean + std eps)`` from the cache, the
    embeddings with dropped rows zeroed through the projector into the slot, the UNet's loss."""
    device = embeds.device
    z0 = cached_latents(latents, rows, draws, diffusion.scaling_factor, sample_latents)
    kept = embeds * draws.keep.to(device, embeds.dtype)[:, None]
    context = slot_context(base_context, projector(kept), position)
    return diffusion_loss(diffusion.unet, diffusion.noise_scheduler, z0, context, draws.noise, draws.timesteps)


@torch.no_grad()
def evaluate_diffusion_loss(
    projector: torch.nn.Module,
    diffusion: FrozenDiffusion,
    latents: LatentCache,
    context: ContextCache,
    embeds: torch.Tensor,
    seed: int = 0,
    draws: int = 4,
    batch_size: int = 64,
) -> float:
    """Mean diffusion loss of ``projector`` over ``draws`` seeded (t, noise) draws per image.

    The latent mean is used and no embedding is dropped; for a given ``seed`` every
    projector sees the same timesteps and noise, so two projectors are compared pairwise
    (e.g. trained against untrained on held-out images).
    """
    device = next(projector.parameters()).device
    steps = int(diffusion.noise_scheduler.config.num_train_timesteps)
    total, count = 0.0, 0
    for draw in range(draws):
        for start in range(0, len(embeds), batch_size):
            rows = torch.arange(start, min(start + batch_size, len(embeds)))
            found = draw_step(len(rows), tuple(latents.mean.shape[1:]), steps, 0.0, generator_for(seed, "eval", draw, start))
            loss = projector_loss(projector, diffusion, latents, context.context.to(device), context.position,
                                  embeds[rows].to(device), rows.to(latents.mean.device), found, sample_latents=False)
            total += float(loss) * len(rows)
            count += len(rows)
    return total / max(count, 1)


def global_mean(local_sum: torch.Tensor, global_count: int, dist: Distributed) -> float:
    """The batch-mean loss over every process's rows."""
    return float(dist.all_reduce_sum(local_sum.reshape(1).float().cpu())[0]) / global_count


def check_architecture(config: SdiConfig, embeds: FeatureTable, model: ModelRef) -> None:
    """Before anything loads: SD's UNet takes latents and its text encoder matches its
    cross-attention; a projector already trained (or checkpointed) in the work dir reads these
    embeddings and writes tokens this UNet reads (else resuming would mix two models)."""
    check_pipeline("sdi train", model, "latent")
    source = f"the embedding table in {Path(config.work_dir) / EMBEDS_DIR}"
    for path, (in_dim, out_dim) in trained_projectors(config.work_dir):
        check_projector_input("sdi train", path, in_dim, source, embeds.dim)
        check_projector_output("sdi train", f"the projector at {path} writes", out_dim, model)


def check_alignment(embeds: FeatureTable, latents: LatentCache) -> None:
    if embeds.ids != latents.ids:
        raise ValueError("CLIP embeddings and cached latents describe different images: rerun `genaug sdi embed`")


# ---------------------------------------------------------------------------- incremental passes


def projector_keys(
    config: SdiConfig, train: ProjectorTrainConfig, pools: list[str], embeds: FeatureTable, model: ModelRef
) -> dict[str, str] | None:
    """``inputs``: ``sha256(json({ids, labels, contents, class names, pools, recipe, SD weights,
    CLIP}))``, everything the trained weights depend on (the recipe without the fields a resumed
    run may change); ``recipe``: the same without the images. None when an embedding table
    does not list its images' contents (made before tables did)."""
    from genaug.sdi.embed import embeds_path
    from genaug.sdi.tables import table_info

    infos = [table_info(embeds_path(config.work_dir, pool)) for pool in pools]
    if any("content" not in info for info in infos):
        return None
    recipe = {"recipe": recipe_of(train), "model": model.identity, "clip": infos[0].get("clip")}
    data = {"ids": embeds.ids, "labels": embeds.labels.tolist(), "content": [c for info in infos for c in info["content"]],
            "class_names": embeds.class_names, "pools": pools}  # fmt: skip

    def digest(content: dict) -> str:
        return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:24]

    return {"inputs": digest({**recipe, "data": data}), "recipe_key": digest(recipe)}


def projector_metadata(path: Path) -> dict[str, str]:
    """The header metadata of a projector file ({} when there is none or it is unreadable)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except Exception:  # noqa: BLE001 - an unreadable earlier projector is simply not used
        return {}


def reusable_projector(
    config: SdiConfig, keys: dict[str, str], total: int, reuse_from
) -> tuple[ProjectorRun | None, Path | None]:
    """``(finished run, None)`` when this work dir's projector has these inputs; ``(its run, its
    folder)`` for an earlier work dir's of equal inputs and steps (or of equal recipe, weights
    and CLIP with ``keep_projector``), to copy; ``(None, None)`` when the projector must be trained."""
    here = projector_metadata(projector_path(config.work_dir)) if projector_path(config.work_dir).is_file() else {}
    if here.get("inputs") == keys["inputs"] and (here.get("steps") == str(total) or "kept_from" in here):
        return finished_run(projector_dir(config.work_dir), int(here.get("steps", total)), 1), None
    for kept in (False, True) if config.keep_projector else (False,):
        for folder in map(Path, reuse_from):
            found = projector_metadata(projector_path(folder)) if projector_path(folder).is_file() else {}
            if kept:
                equal = found.get("recipe_key") == keys["recipe_key"]
            else:
                equal = found.get("inputs") == keys["inputs"] and found.get("steps") == str(total)
            if found and equal:
                return finished_run(projector_dir(folder), int(found.get("steps", total)), 1), folder
    return None, None


def copy_projector(run: ProjectorRun, folder: Path, out: Path, keys: dict[str, str], dist: Distributed) -> ProjectorRun:
    """Copy the projector of the earlier work dir ``folder`` (its finished ``run``) into ``out``:
    its summary, then its weights with this run's keys in the header (atomic writes: a killed
    copy is made again on rerun). ``kept``: its inputs were not this run's (keep_projector)."""
    from safetensors import safe_open

    with safe_open(str(projector_path(folder)), framework="pt") as handle:
        metadata = dict(handle.metadata() or {})
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    kept = metadata.get("inputs") != keys["inputs"]
    copied = ProjectorRun(out / PROJECTOR_FILE, run.steps, run.final_loss, 0.0, run.steps, dist.world_size,
                          reused_from=folder.name, kept=kept)  # fmt: skip
    if dist.is_main:
        if kept:
            metadata["kept_from"] = metadata.get("inputs", "")
        metadata.update({**keys, "reused_from": folder.name})
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / SUMMARY_FILE, {**asdict(copied), "path": str(copied.path), "steps_per_second": 0.0})
        save_safetensors(copied.path, tensors, metadata)
    dist.barrier()
    return copied


def projector_digest(path: str | Path) -> str:
    """:func:`weights_digest` of the projector file at ``path``, whatever its header says."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return weights_digest({name: handle.get_tensor(name) for name in handle.keys()})


def weights_digest(state: dict[str, torch.Tensor]) -> str:
    """``sha256`` over the tensors (name, dtype, shape, bytes; sorted by name)."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


# ---------------------------------------------------------------------------- caches


def prepare_caches(
    config: SdiConfig,
    train: ProjectorTrainConfig,
    diffusion: FrozenDiffusion,
    pools: list[str],
    datasets: dict[str, RealDataset] | None,
    dist: Distributed,
) -> tuple[LatentCache, ContextCache]:
    """Load or build the latent cache of every pool and the context cache; rank 0 builds, the others wait."""
    cache_dir = projector_dir(config.work_dir) / "cache"
    weights = diffusion.model.identity.get("hash") or diffusion.model.location
    context_key = {"weights": weights, "part": "text_encoder"}
    latent_key = {"weights": weights, "part": "vae", "resolution": train.resolution}

    def load_all() -> tuple[list[LatentCache | None], ContextCache | None, list[RealDataset]]:
        sets = [pool_dataset(config, pool, datasets) for pool in pools]
        found = [load_latent_cache(cache_dir / f"latents-{pool}.safetensors", latent_key, list(d.ids)) for pool, d in zip(pools, sets)]
        return found, load_context_cache(cache_dir / "context.safetensors", context_key), sets

    if dist.is_main:
        found, context, sets = load_all()
        for pool, dataset, cached in zip(pools, sets, found):
            if cached is None:
                cached = build_latent_cache(diffusion.vae, dataset, train.resolution)
                save_latent_cache(cache_dir / f"latents-{pool}.safetensors", cached, latent_key)
        if context is None:
            context = build_context_cache(diffusion.tokenizer, diffusion.text_encoder)
            save_context_cache(cache_dir / "context.safetensors", context, context_key)
    dist.barrier()
    found, context, _ = load_all()
    if context is None or any(cached is None for cached in found):
        raise RuntimeError(f"the projector caches in {cache_dir} could not be read back")
    latents = LatentCache(torch.cat([c.mean for c in found]), torch.cat([c.std for c in found]), [i for c in found for i in c.ids])
    return latents, context


# ---------------------------------------------------------------------------- checkpoints


def recipe_of(train: ProjectorTrainConfig) -> dict[str, Any]:
    """The resolved config without the fields a resumed run may change."""
    data = train.model_dump(mode="json")
    for name in RESUMABLE_FIELDS:
        data.pop(name)
    return data


def restore_checkpoint(out: Path, train: ProjectorTrainConfig, projector: Projector, optimizer, resume: bool) -> int:
    """Load the latest checkpoint into ``projector`` and ``optimizer``; return the step to continue from."""
    folder = find_checkpoint(out) if resume else None
    if folder is None:
        return 0
    weights, state = load_checkpoint(folder)
    saved = json.loads(state["recipe"])
    if saved != recipe_of(train):
        changed = sorted(key for key in set(saved) | set(recipe_of(train)) if saved.get(key) != recipe_of(train).get(key))
        raise ConfigError(
            f"{out} holds a projector trained with other settings ({', '.join(changed)}); "
            "use another work_dir or start over (resume=False)"
        )
    projector.load_state_dict(weights)
    optimizer.load_state_dict(state["optimizer"])
    return int(state["step"])


def write_projector_checkpoint(out: Path, projector: Projector, optimizer, train: ProjectorTrainConfig, step: int, epoch: int, dist: Distributed) -> None:
    """Rank 0 writes weights (safetensors) and plain training state (``torch.load(weights_only=True)``)."""
    if dist.is_main:
        state = {"epoch": epoch, "step": step, "optimizer": optimizer.state_dict(), "recipe": json.dumps(recipe_of(train))}
        save_checkpoint(out, projector.state_dict(), state)
    dist.barrier()


def finished_run(out: Path, steps: int, world_size: int) -> ProjectorRun:
    """The record of a run that already reached its last step (nothing is trained again)."""
    summary = json.loads((out / SUMMARY_FILE).read_text(encoding="utf-8")) if (out / SUMMARY_FILE).is_file() else {}
    return ProjectorRun(out / PROJECTOR_FILE, steps, float(summary.get("final_loss", math.nan)), 0.0, steps, world_size,
                        reused_from=summary.get("reused_from"), kept=bool(summary.get("kept", False)))


# ---------------------------------------------------------------------------- logging


class TrainLog:
    """``log.csv`` (step, epoch, loss, seconds); on resume rows from ``start`` on are dropped first."""

    def __init__(self, path: Path, start: int, enabled: bool = True) -> None:
        self.path, self.start, self.enabled = path, start, enabled
        self._handle = None

    def __enter__(self) -> "TrainLog":
        if not self.enabled:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        rows = []
        if self.path.is_file() and self.start > 0:
            with self.path.open(newline="") as handle:
                rows = [row for row in csv.DictReader(handle) if int(row["step"]) < self.start]
        self._handle = self.path.open("w", newline="")
        self._writer = csv.DictWriter(self._handle, fieldnames=["step", "epoch", "loss", "seconds"])
        self._writer.writeheader()
        self._writer.writerows(rows)
        return self

    def write(self, step: int, epoch: int, loss: float, seconds: float) -> None:
        if self._handle is not None:
            self._writer.writerow({"step": step, "epoch": epoch, "loss": f"{loss:.6f}", "seconds": f"{seconds:.3f}"})
            self._handle.flush()

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.close()


