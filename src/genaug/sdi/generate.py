"""Step 5 of SDI: images from sampled features, through the generation engine (docs/methods/sdi.md).

:func:`generate_from_samples` reads as the method: read the sampled vectors, plan one work
item per vector (stable id = the sample's id, seed derived from it), and let the engine
render them with :class:`SdiRenderer`: SD text-to-image with DDIM (eta 0, 50 steps),
guidance 2.0, the positive context = the fixed prompt's context with its "class" slot set
to the sampled vector, the negative context = the text-encoder output of SDI's negative
prompt. The class name is never in any prompt. Every record's ``embedding`` points to its
vector (table file, row, sampler).

Incremental passes: every record's ``params.input_key`` covers its vector's content (not
where it is stored), so given the sets of earlier runs of the stage (``reuse_from``), an
image whose key one of them holds is copied (``params.reused_from``) instead of made: the
images of the classes whose vectors were reused (:mod:`genaug.sdi.sample`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from genaug.diffusion.architecture import check_projector_output
from genaug.diffusion.conditioning import NEGATIVE_PROMPT, SDI_PROMPT, SLOT_WORD, class_token_position, slot_context
from genaug.diffusion.models import resolve_model
from genaug.generation.editors.base import Editor
from genaug.generation.engine import JobReport, run_job
from genaug.generation.items import WorkItem
from genaug.generation.presets import sampling_preset
from genaug.sdi.sample import samples_path
from genaug.sdi.tables import FeatureTable, load_table
from genaug.seeds import item_seed

if TYPE_CHECKING:  # pragma: no cover
    from genaug.sdi.config import SdiConfig


@dataclass(frozen=True)
class RenderSettings:
    """What :class:`~genaug.generation.editors.base.Editor` reads from an editor config."""

    model: str
    revision: str | None
    steps: int
    guidance_scale: float
    size: int | None
    negative_prompt: str
    scheduler: str = "ddim"
    preset: str | None = None


class SdiRenderer(Editor):
    """SD text-to-image conditioned on sampled vectors in the prompt's slot.

    Reuses the editors' machinery (pipeline loading from folder / hub id / pocket, per-image
    CPU generators, text embeddings encoded once, uint8 output at the working size) and
    adds the slot conditioning, an optional VAE override and SDI's DDIM settings.
    """

    name = "sdi"
    pipeline_class = "StableDiffusionPipeline"
    default_model = "pocket:sd"
    needs_source = False

    def __init__(
        self,
        settings: RenderSettings,
        vectors: torch.Tensor,
        *,
        eta: float = 0.0,
        vae: str | None = None,
        prompt: str = SDI_PROMPT,
        device: str = "auto",
        dtype: str = "auto",
    ) -> None:
        super().__init__(settings, device=device, dtype=dtype)
        self.vectors = torch.as_tensor(vectors, dtype=torch.float32)
        self.eta = eta
        self.vae = resolve_model(vae, field="generate.vae") if vae else None
        self.prompt = prompt

    def _load_pipeline(self):
        from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline

        extra = {}
        if self.vae is not None:
            extra["vae"] = AutoencoderKL.from_pretrained(self.vae.location, revision=self.vae.revision, dtype=self.dtype,
                                                         use_safetensors=True)
        pipeline = StableDiffusionPipeline.from_pretrained(
            self.model.location, revision=self.model.revision, dtype=self.dtype, safety_checker=None,
            requires_safety_checker=False, use_safetensors=True, **extra,
        )
        # docs/methods/sdi.md: DDIM on the model's betas, with SD's flags set explicitly.
        pipeline.scheduler = DDIMScheduler.from_config(
            pipeline.scheduler.config, clip_sample=False, set_alpha_to_one=False, steps_offset=1
        )
        if self.config.scheduler != "ddim":  # a sampling preset's scheduler, on the same betas
            from genaug.generation.editors.base import SCHEDULERS

            pipeline.scheduler = SCHEDULERS.get(self.config.scheduler)(pipeline.scheduler.config)
        pipeline.set_progress_bar_config(disable=True)
        return pipeline.to(self.device)

    @property
    def stage(self) -> str:
        return "sdi generate"

    @cached_property
    def slot_position(self) -> int:
        """Where "class" sits in the prompt's tokens (looked up in the pipeline's tokenizer)."""
        return class_token_position(self.pipeline.tokenizer, self.prompt, SLOT_WORD)

    def params(self) -> dict[str, Any]:
        return {
            **super().params(),
            "eta": self.eta,
            "conditioning": "slot",
            "slot_position": self.slot_position,
            "vae": (self.vae.identity if self.vae is not None else None),
        }

    def rate_key(self) -> dict[str, Any]:
        return {
            "editor": self.name,
            "model": self.model.identity.get("hash") or self.model.location,
            "vae": self.vae.identity if self.vae is not None else None,
            "steps": self.steps,
            "scheduler": self.config.scheduler,
            "preset": self.config.preset,
            "guidance": self.guidance_scale,
            "size": self.config.size,
            "device": str(self.device),
            "dtype": str(self.dtype),
        }

    def conditioning(self, items: Sequence[WorkItem]) -> tuple[torch.Tensor, torch.Tensor]:
        """Positive contexts (the prompt's with each item's vector in the slot) and negative contexts."""
        base, negative = self.text_embeddings([self.prompt, self.config.negative_prompt]).split(1)
        rows = torch.tensor([item.extra["row"] for item in items], dtype=torch.int64)
        tokens = self.vectors[rows].to(self.device, base.dtype)
        positive = slot_context(base, tokens, self.slot_position)
        negative = negative.expand(len(items), -1, -1)
        return positive, negative

    def render(self, items: Sequence[WorkItem], seeds: Sequence[int]) -> np.ndarray:
        positive, negative = self.conditioning(items)
        return self.sample(seeds, positive, negative, height=self.size, width=self.size, eta=self.eta)


# ---------------------------------------------------------------------------- the stage


def generate_from_samples(
    config: SdiConfig, samples: str | Path | None = None, renderer: SdiRenderer | None = None, reuse_from=()
) -> JobReport:
    """Make (or continue) the synthetic set of ``config.generate.output`` from sampled vectors.

    ``samples``: a samples table (default ``<work_dir>/samples/<sampler>.safetensors``);
    ``reuse_from``: sets of earlier runs of the stage to copy images of equal input key from.
    """
    path = Path(samples) if samples is not None else samples_path(config.work_dir, config.sample.sampler)
    table = load_table(path)
    gen = config.generate
    output = gen.output or Path(config.work_dir) / "generated" / table.info.get("sampler", config.sample.sampler)
    renderer = renderer or build_renderer(config, table)
    check_dimensions(renderer, table, path)
    items = plan_items(table, path, gen.seed, gen.negative_prompt or NEGATIVE_PROMPT, renderer.prompt)
    model = {**renderer.model.identity, "vae": renderer.vae.identity if renderer.vae is not None else None}
    return run_job(items, renderer, output, experiment_seed=gen.seed, engine=gen.engine, model=model,
                   extra_params={"sampler": table.info.get("sampler")}, sources=vector_digests(table), reuse_from=reuse_from)


def vector_digests(table: FeatureTable):
    """An item's source content for its input key: ``sha256`` of its sampled vector's float32 bytes."""
    def digest(item: WorkItem) -> str:
        return hashlib.sha256(table.features[item.extra["row"]].numpy().astype(np.float32).tobytes()).hexdigest()

    return digest


def build_renderer(config: SdiConfig, table: FeatureTable) -> SdiRenderer:
    gen = config.generate
    steps, scheduler = gen.steps, "ddim"
    if gen.preset is not None:  # the preset's scheduler and steps; steps given in the config win
        from genaug.generation.editors.base import scheduler_name

        preset = sampling_preset(f"sdi/{config.model}", gen.preset)
        scheduler = scheduler_name(preset["scheduler"])
        if "steps" not in gen.model_fields_set:
            steps = int(preset["num_inference_steps"])
    settings = RenderSettings(
        model=config.model, revision=config.revision, steps=steps, guidance_scale=gen.guidance_scale,
        size=gen.size, negative_prompt=gen.negative_prompt or NEGATIVE_PROMPT, scheduler=scheduler, preset=gen.preset,
    )
    return SdiRenderer(settings, table.features, eta=gen.eta, vae=gen.vae, device=gen.engine.device, dtype=gen.engine.dtype)


def check_dimensions(renderer: SdiRenderer, table: FeatureTable, path: str | Path = "samples") -> None:
    """The sampled vectors must be tokens of the pipeline's text context (read from the UNet's config)."""
    check_projector_output(renderer.stage, f"the sampled vectors at {path} are", table.dim, renderer.model)


def plan_items(table: FeatureTable, path: Path, seed: int, negative_prompt: str, prompt: str = SDI_PROMPT) -> list[WorkItem]:
    """One work item per sampled vector: id = the sample's id, seed derived from it; ``embedding`` = file, row, sampler."""
    sampler = table.info.get("sampler")
    file = str(Path(path).resolve())
    return [
        WorkItem(
            id=sample_id,
            seed=item_seed(seed, sample_id),
            label=int(label),
            class_name=table.class_names[int(label)],
            prompt=prompt,
            negative_prompt=negative_prompt,
            extra={"row": row, "embedding": {"file": file, "tensor": "features", "row": row, "sampler": sampler}},
        )
        for row, (sample_id, label) in enumerate(zip(table.ids, table.labels.tolist()))
    ]
