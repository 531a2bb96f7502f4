"""The ``generate`` stage's configs (:class:`GenerateConfig`, :class:`EditorConfig`,
:class:`EngineConfig`) and its registration as a stage kind: edit (or synthesise) images
of a real dataset with any registered editor (:data:`genaug.generation.editors.EDITORS`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from genaug.config import StrictModel
from genaug.data.config import DatasetConfig
from genaug.generation.presets import sampling_preset
from genaug.generation.prompts import PROMPT_PRESETS
from genaug.registry import register_stage
from genaug.stage_dirs import earlier_sets

__all__ = ["EngineConfig", "EditorConfig", "GenerateConfig"]


class EngineConfig(StrictModel):
    """How a generation job runs (``genaug.generation.engine.run_job``).

    ``batch_size`` images go through the pipeline in one call; the batch plan is a fixed
    function of the job and this size, so keep it when resuming (pixels are bit-identical
    for the same plan). ``shard`` is ``"i/n"`` (else ranks come from torchrun / accelerate
    launch). ``max_regenerations``: degenerate outputs are remade with the next derived seed
    at most this many times. ``dry_run`` prints the item count and a time estimate only.
    """

    batch_size: int = 8
    device: str = "auto"
    dtype: Literal["auto", "fp32", "fp16", "bf16"] = "auto"
    shard: str | None = None
    max_regenerations: int = 3
    dry_run: bool = False
    progress: bool = True

    @model_validator(mode="after")
    def _check(self) -> "EngineConfig":
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.max_regenerations < 0:
            raise ValueError(f"max_regenerations must be >= 0, got {self.max_regenerations}")
        if self.shard is not None:
            from genaug.runtime import parse_shard

            parse_shard(self.shard)
        return self


class EditorConfig(StrictModel):
    """Which editor and model make the images, and its sampling parameters.

    ``name``: a registered editor (``genaug.generation.editors.EDITORS.names()``: instruct,
    img2img, txt2img, real_guidance, dafusion, diffmix, ...). ``model``: a hub id, a pipeline folder or ``pocket:<name>``; None =
    the editor's pocket model. ``None`` for ``steps``, ``guidance_scale``,
    ``image_guidance_scale`` and ``scheduler`` means the editor's default (instruct: Euler
    ancestral, guidance 4, image guidance 1.5, the library's step count). ``size``: working
    side length (None = the model's native ``unet.sample_size * vae_scale_factor``; 256 in
    the real-scale DiffuseMix config). ``preset``: a named sampling preset of this editor and
    model (``genaug.generation.sampling_preset``: ``reference``, ``fast``), measured by
    ``genaug bench sampling``; it sets the scheduler, steps and autocast precision, and
    ``steps`` / ``scheduler`` given here still win. ``options``: the editor's own parameters,
    checked by its ``Options`` model (e.g. dafusion's ``strengths``, diffmix's ``gamma``).
    """

    name: str = "instruct"
    model: str | None = None
    revision: str | None = None
    steps: int | None = None
    guidance_scale: float | None = None
    image_guidance_scale: float | None = None
    strength: float = 0.5
    size: int | None = None
    scheduler: str | None = None
    negative_prompt: str | None = None
    preset: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> "EditorConfig":
        from genaug.generation.editors import EDITORS, SCHEDULERS

        editor = EDITORS.get(self.name, key="name")
        editor.check_options(self.options)
        if self.preset is not None:
            sampling_preset(editor.preset_key_for(self.model), self.preset)
        if self.scheduler is not None:
            SCHEDULERS.spec(self.scheduler, key="scheduler")
        if not 0.0 < self.strength <= 1.0:
            raise ValueError(f"strength must be in (0, 1], got {self.strength}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.size is not None and self.size < 8:
            raise ValueError(f"size must be >= 8, got {self.size}")
        return self


class GenerateConfig(StrictModel):
    """The DiffuseMix ``generate`` stage: edit (or synthesise) images of a real dataset.

    ``prompts``: a preset name (``diffusemix``, ``pocket``, ``pocket_captions``,
    ``class_template``; ``genaug.generation.prompts.PROMPT_PRESETS``) or a list; None = the
    editor's default preset. ``{class}`` in a prompt is replaced by the class name.
    ``regime``: ``single`` (prompt ``prompt_index`` for every image), ``random`` (one prompt
    per image drawn from its seed) or ``all`` (every prompt for every image).
    """

    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    output: Path
    seed: int = 0
    editor: EditorConfig = Field(default_factory=EditorConfig)
    prompts: str | list[str] | None = None
    regime: Literal["single", "random", "all"] = "single"
    prompt_index: int = 0
    engine: EngineConfig = Field(default_factory=EngineConfig)

    @model_validator(mode="after")
    def _check(self) -> "GenerateConfig":
        if isinstance(self.prompts, str) and self.prompts not in PROMPT_PRESETS:
            error = PROMPT_PRESETS.unknown(self.prompts, key="prompts")
            raise ValueError(f"{error} (or a list of prompts)")
        if isinstance(self.prompts, list) and not self.prompts:
            raise ValueError("prompts must not be an empty list")
        if self.prompt_index < 0:
            raise ValueError(f"prompt_index must be >= 0, got {self.prompt_index}")
        return self

    def models(self) -> list[tuple[str, str, str | None]]:
        """``(key, reference, revision)`` of every model this stage loads (the pre-run check and
        the pocket-model warnings read them)."""
        from genaug.generation.editors import EDITORS

        return [("editor.model", self.editor.model or EDITORS[self.editor.name].default_model, self.editor.revision)]

    def data_needs(self) -> list:
        """What this stage needs of the real training data: its editor's declaration
        (``Editor.data_needs``), checked before any stage runs."""
        from genaug.generation.editors import EDITORS

        return list(EDITORS[self.editor.name].data_needs(self.editor))




@register_stage("generate", config=GenerateConfig, description="edit or synthesise images with a registered editor")
def run_generate_stage(node, nodes) -> tuple[int, dict]:
    from genaug.generation.stage import generate

    report = generate(node.config, reuse_from=earlier_sets(node))
    return report.made, {"regenerated": report.regenerated, "degenerate": report.degenerate, "reused": report.reused}
