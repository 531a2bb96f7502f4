"""The SDI stage's configs (:class:`SdiConfig` and its ``train``, ``sample``, ``generate``
blocks; docs/methods/sdi.md) and its registration as a stage kind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from genaug.config import StrictModel, did_you_mean
from genaug.data.config import DatasetConfig
from genaug.diffusion.models import clip_reference
from genaug.generation.config import EngineConfig
from genaug.generation.presets import sampling_preset
from genaug.registry import register_stage
from genaug.sdi.samplers import SAMPLERS
from genaug.stage_dirs import earlier_runs, earlier_sets

__all__ = ["ProjectorTrainConfig", "SdiSampleConfig", "SdiGenerateConfig", "SdiConfig"]

SdiPool = Literal["train", "pretrain"]


class ProjectorTrainConfig(StrictModel):
    """Projector training (docs/methods/sdi.md); ``genaug.sdi.train.train_projector``.

    Fields left at None take the preset's value (``genaug.sdi.presets.SDI_PRESETS``):
    ``sd15`` is the reference (hidden 1024, global batch 64, 100 epochs, 512 px, AdamW
    5e-4 / weight decay 0.01, 5 % embedding dropout, the dataset's training images);
    ``pocket`` scales it to the pocket world (16 px, hidden 256, and the unlabeled
    pretraining pool besides the few-shot train set). ``preset`` None: ``pocket`` for
    ``pocket:`` models, else ``sd15``. ``batch_size`` is global (split across processes).
    ``max_steps`` stops early (smoke runs). ``latents``: ``sample`` draws a fresh sample
    of each image's cached latent distribution every step, as the reference does by
    encoding every step; ``mean`` uses the distribution's mean. ``checkpoint_every`` counts
    optimiser steps.
    """

    preset: str | None = None
    hidden: int | None = None
    epochs: int | None = None
    max_steps: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    weight_decay: float | None = None
    embedding_dropout: float | None = None
    resolution: int | None = None
    pools: list[SdiPool] | None = None
    latents: Literal["sample", "mean"] = "sample"
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    seed: int = 0
    checkpoint_every: int = 200
    log_every: int = 10
    progress: bool = True

    @model_validator(mode="after")
    def _check(self) -> "ProjectorTrainConfig":
        if self.preset is not None:
            from genaug.sdi.presets import SDI_PRESETS

            if self.preset not in SDI_PRESETS:
                raise ValueError(
                    f"preset: unknown SDI preset '{self.preset}'{did_you_mean(self.preset, SDI_PRESETS)} "
                    f"(allowed: {', '.join(SDI_PRESETS)})"
                )
        for name in ("hidden", "epochs", "max_steps", "batch_size", "resolution"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if self.checkpoint_every < 1 or self.log_every < 1:
            raise ValueError("checkpoint_every and log_every must be >= 1")
        if self.lr is not None and self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.weight_decay is not None and self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.embedding_dropout is not None and not 0.0 <= self.embedding_dropout < 1.0:
            raise ValueError(f"embedding_dropout must be in [0, 1), got {self.embedding_dropout}")
        if self.pools is not None and (not self.pools or "train" not in self.pools):
            raise ValueError(f"pools must include 'train' (allowed: train, pretrain), got {self.pools}")
        return self


class SdiSampleConfig(StrictModel):
    """Sampling new features per class (docs/methods/sdi.md); ``genaug.sdi.sample.sample_features``.

    ``sampler``: a registered sampler (``genaug.sdi.SAMPLERS.names()``: gaussian, gmm-2,
    gmm-3, gmm-5, shrinkage) with ``sampler_kwargs``. ``multiplier``: samples per class =
    multiplier x N_c; None = the reference multiplier of the dataset's name (cub200, cars,
    dtd, flowers102: 40; pets: 60; imagenet subsets: 10; pathmnist: 5; pocket_digits: 10).
    Every class gets its own seed derived from ``seed`` and the class (the reference seeds
    every class alike).
    """

    sampler: str = "gaussian"
    sampler_kwargs: dict[str, Any] = {}
    multiplier: int | None = None
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> "SdiSampleConfig":
        SAMPLERS.validate(self.sampler, self.sampler_kwargs, key="sampler", kwargs_key="sampler_kwargs")
        if self.multiplier is not None and self.multiplier < 1:
            raise ValueError(f"multiplier must be >= 1, got {self.multiplier}")
        return self


class SdiGenerateConfig(StrictModel):
    """Images from sampled features (docs/methods/sdi.md); ``genaug.sdi.generate.generate_from_samples``.

    DDIM (clip_sample false, set_alpha_to_one false, steps_offset 1), ``steps`` 50, ``eta``
    0, ``guidance_scale`` 2.0; ``size`` None = the model's native resolution (512 for SD
    1.5). ``vae``: a VAE folder or hub id replacing the pipeline's
    (``stabilityai/sd-vae-ft-mse`` in real-scale configs). ``negative_prompt`` None = SDI's.
    ``output`` None = ``<work_dir>/generated/<sampler>``. ``preset``: a named sampling preset
    of SDI on this model (``genaug.generation.sampling_preset("sdi/<model>", name)``), measured
    by ``genaug bench sampling``; it sets the scheduler, steps and autocast precision unless
    ``steps`` is given.
    """

    output: Path | None = None
    preset: str | None = None
    steps: int = 50
    guidance_scale: float = 2.0
    eta: float = 0.0
    size: int | None = None
    vae: str | None = None
    negative_prompt: str | None = None
    seed: int = 0
    engine: EngineConfig = Field(default_factory=EngineConfig)

    @model_validator(mode="after")
    def _check(self) -> "SdiGenerateConfig":
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.guidance_scale < 0 or not 0.0 <= self.eta <= 1.0:
            raise ValueError("guidance_scale must be >= 0 and eta in [0, 1]")
        if self.size is not None and self.size < 8:
            raise ValueError(f"size must be >= 8, got {self.size}")
        return self


class SdiConfig(StrictModel):
    """One SDI arm: every ``genaug sdi`` stage reads this config (docs/methods/sdi.md).

    ``work_dir`` holds what the stages write: ``embeds/<pool>.safetensors`` (CLIP
    image_embeds), ``projector/`` (weights, checkpoint, caches, log), ``bank.safetensors``
    and ``samples/<sampler>.safetensors``. ``clip``: ``pocket``, a hub id
    (``openai/clip-vit-large-patch14`` at real scale) or a folder; ``model``: ``pocket:sd``,
    an SD hub id or pipeline folder. ``device`` runs embedding, training and the bank;
    generation runs where ``generate.engine.device`` says.

    Incremental passes (``genaug run`` after the data changed): the projector is trained on
    every training image, so any change retrains it and every class is sampled and made
    again. ``keep_projector``: keep the projector an earlier run of the stage trained with
    the same recipe, weights and CLIP, so that only the classes whose images changed are
    sampled and made again (the new images are projected by a projector that did not see
    them: not what a full run on the new data makes; recorded in ``projector/train.json``).
    """

    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    work_dir: Path
    clip: str = "pocket"
    model: str = "pocket:sd"
    revision: str | None = None
    embed_batch_size: int = 64
    device: Literal["auto", "cpu", "cuda"] = "auto"
    keep_projector: bool = False
    train: ProjectorTrainConfig = Field(default_factory=ProjectorTrainConfig)
    sample: SdiSampleConfig = Field(default_factory=SdiSampleConfig)
    generate: SdiGenerateConfig = Field(default_factory=SdiGenerateConfig)

    @model_validator(mode="after")
    def _check(self) -> "SdiConfig":
        if self.embed_batch_size < 1:
            raise ValueError(f"embed_batch_size must be >= 1, got {self.embed_batch_size}")
        if self.generate.preset is not None:
            sampling_preset(f"sdi/{self.model}", self.generate.preset)
        return self

    def models(self) -> list[tuple[str, str, str | None]]:
        """``(key, reference, revision)`` of every model this stage loads (the pre-run check and
        the pocket-model warnings read them)."""
        models = [("clip", clip_reference(self.clip), None), ("model", self.model, self.revision)]
        return models + ([("generate.vae", self.generate.vae, None)] if self.generate.vae else [])



def _sdi_set_dir(config: SdiConfig, folder: Path, method: str | None) -> Path:
    generate = config.generate
    return Path(generate.output) if generate.output else folder / "generated" / config.sample.sampler


@register_stage(
    "sdi",
    config=SdiConfig,
    output_field="work_dir",
    set_dir=_sdi_set_dir,
    description="SDI: projector, feature bank, per-class sampling, images from the samples",
)
def run_sdi_stage(node, nodes) -> tuple[int, dict]:
    """Every SDI step; on changed data or config, each step takes from the earlier runs of the
    stage what they made from the same inputs (the projector, a class's vectors, an image)."""
    from genaug.sdi import build_bank, embed_training_images, generate_from_samples, sample_features, train_projector
    from genaug.sdi.tables import table_info

    config = node.config
    work_dirs = [folder for folder, _ in earlier_runs(node)]
    embed_training_images(config)
    run = train_projector(config, reuse_from=work_dirs)
    build_bank(config)
    samples = sample_features(config, reuse_from=work_dirs)
    report = generate_from_samples(config, reuse_from=earlier_sets(node))
    reused_classes = table_info(samples).get("reused_classes", {})
    return report.made, {
        "projector_steps": run.steps, "projector_loss": run.final_loss, "degenerate": report.degenerate,
        "projector_reused_from": run.reused_from, "projector_kept": run.kept,
        "classes_reused": sorted(reused_classes), "reused": report.reused,
    }  # fmt: skip
