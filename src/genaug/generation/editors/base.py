"""The shared part of every diffusers editor: load once, encode a batch's prompts in one call, batch.

An editor turns a batch of work items and their seeds into uint8 images (N, H, W, 3) with
one pipeline call: one CPU ``torch.Generator`` per image (so an image's noise depends only
on its own seed), prompt embeddings computed once per distinct text of a batch, source
images handed over as one tensor, the whole batch decoded at once, no progress bar.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from functools import cached_property
from typing import Any, Callable, ClassVar, Sequence

from typing import TYPE_CHECKING

import numpy as np
from PIL import Image
from pydantic import ValidationError

from genaug.diffusion.architecture import UnetInputs, check_pipeline
from genaug.diffusion.models import POCKET_SCHEME, resolve_model
from genaug.generation.presets import sampling_preset
from genaug.registry import Registry
from genaug.seeds import seed_generator

if TYPE_CHECKING:  # the editor modules import without torch (a config naming one is checked without it)
    import torch

    from genaug.generation.items import WorkItem

#: A function giving the source image of a work item, uint8 (H, W, 3) or PIL.
SourceFetcher = Callable[["WorkItem"], "np.ndarray | Image.Image"]

#: Scheduler names accepted in configs -> ``build(scheduler_config)``: the diffusers scheduler
#: made from a pipeline's scheduler config; fact ``diffusers_class``: the class it builds.
SCHEDULERS = Registry("scheduler", key="scheduler")


def _diffusers_scheduler(diffusers_class: str) -> Callable[[Any], Any]:
    """The builder of a registered scheduler: ``config -> diffusers.<diffusers_class>.from_config(config)``."""

    def build(config: Any) -> Any:
        import diffusers

        return getattr(diffusers, diffusers_class).from_config(config)

    return build


#: Config name -> diffusers scheduler class (``dpmsolver``: DPM-Solver++ 2M with the class defaults).
for _name, _class in {
    "euler_ancestral": "EulerAncestralDiscreteScheduler",
    "euler": "EulerDiscreteScheduler",
    "ddim": "DDIMScheduler",
    "ddpm": "DDPMScheduler",
    "pndm": "PNDMScheduler",
    "dpmsolver": "DPMSolverMultistepScheduler",
    "unipc": "UniPCMultistepScheduler",
}.items():
    SCHEDULERS.register(_name, diffusers_class=_class)(_diffusers_scheduler(_class))
del _name, _class


def scheduler_name(class_name: str) -> str:
    """The config name of a diffusers scheduler class (``"DDIMScheduler"`` -> ``"ddim"``)."""
    for name in SCHEDULERS.names():
        if SCHEDULERS.spec(name).diffusers_class == class_name:
            return name
    known = sorted(SCHEDULERS.spec(name).diffusers_class for name in SCHEDULERS.names())
    raise ValueError(f"scheduler class {class_name!r} has no config name; known: {known}")


class _RegisteredName:
    """A class attribute that is the class's registered ``name`` unless the class sets its own."""

    def __get__(self, obj: object, cls: type) -> str:
        return cls.name


class Editor(ABC):
    """One way of making an image from a work item with a diffusers pipeline."""

    # ------------------------------------------------------------------ the editor's facts
    # Everything other modules need to know about an editor is stated here, on its class,
    # and read through the class (cost estimates, the rehearsal, the generate stage, the
    # sampling frontier, the report): no module outside ``generation/editors/`` tests an
    # editor's name. docs/adding-a-method.md lists who reads which fact.

    name: ClassVar[str]  # set by the registration (``@EDITORS.register("name")``)
    method: ClassVar[str] = _RegisteredName()  # the manifest's ``method`` (default: the registered name)
    pipeline_class: ClassVar[str]  # the diffusers pipeline class name
    default_model: ClassVar[str]
    default_scheduler: ClassVar[str | None] = None  # None: the model folder's own scheduler
    default_guidance: ClassVar[float | None] = None  # None: the library's default
    #: Whether it edits a real image (False: made from the prompt alone); a source image is
    #: VAE-encoded once per item when True.
    needs_source: ClassVar[bool] = True
    #: What the UNet takes: ``latent`` (the VAE's latent channels, 4 for SD) or
    #: ``latent+image`` (twice that: InstructPix2Pix's latents + the source image's latents).
    unet_inputs: ClassVar[UnetInputs] = "latent"
    #: UNet batch rows per denoising step and item: None = classifier-free guidance's 2 when
    #: the guidance scale is > 1, else 1; an editor with a fixed count states it
    #: (InstructPix2Pix: 3, text + image, image only, neither).
    guidance_branches: ClassVar[int | None] = None
    #: Prompt presets when the stage gives none (``genaug.generation.prompts.PROMPT_PRESETS``):
    #: ``default_prompts`` for real models, ``pocket_prompts`` for the pocket models.
    default_prompts: ClassVar[str] = "diffusemix"
    pocket_prompts: ClassVar[str] = "pocket_captions"
    #: The column its images get in the report's sample grids (editors sharing a label share a column).
    report_label: ClassVar[str] = "Edited"
    #: The pocket workload the sampling frontier judges it on (``genaug bench sampling``):
    #: ``captions`` (digits drawn from captions), ``recolour`` (real digits re-coloured by an
    #: instruction), or None (the frontier does not drive it).
    frontier_workload: ClassVar[str | None] = None
    #: The editor's own parameters (``editor.options``): a pydantic model checked when the
    #: config loads; None = the editor takes none.
    Options: ClassVar[type | None] = None

    def __init__(self, config, sources: SourceFetcher | None = None, device: str = "auto", dtype: str = "auto") -> None:
        if self.needs_source and sources is None:
            raise ValueError(f"editor {self.name!r} edits real images: give it a source fetcher")
        self.config = config
        self.sources = sources
        from genaug.runtime import select_device

        self.device, self.dtype = select_device(device, dtype)
        self.model = resolve_model(config.model or self.default_model, config.revision, field="editor.model")
        check_pipeline(self.stage, self.model, self.unet_inputs)  # from config files, before anything loads
        self._pipeline = None
        self._params: dict[str, Any] | None = None

    @property
    def stage(self) -> str:
        """How errors name the stage this editor runs in."""
        return f"editor {self.name}"

    # ------------------------------------------------------------------ the editor's own parameters and plan

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> Any:
        """``options`` validated by :attr:`Options` (a ``ValueError`` naming the first bad key)."""
        if cls.Options is None:
            if options:
                raise ValueError(f"options: editor {cls.name!r} takes no options, got {sorted(options)}")
            return None

        try:
            return cls.Options.model_validate(options)
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in ("options", *first["loc"]))
            message = first["msg"].removeprefix("Value error, ")
            if first["type"] == "extra_forbidden":
                message += f"; options of {cls.name!r}: {sorted(cls.Options.model_fields)}"
            raise ValueError(f"{where}: {message}") from None

    @cached_property
    def options(self) -> Any:
        """The validated ``config.options`` (None for an editor without options)."""
        return self.check_options(getattr(self.config, "options", None) or {})

    # ------------------------------------------------------------------ facts that depend on a config
    # Each takes an ``EditorConfig`` alone (no model load, no data): cost estimates and the
    # rehearsal read them before anything runs, and the instance uses the same ones.

    @classmethod
    def items_per_image(cls, config) -> float | None:
        """Items its own plan makes per real training image; None = the generate stage's plan
        (one item per real image and prompt under the regime, or per class image for editors
        that need no source)."""
        return None

    @classmethod
    def step_strengths(cls, config) -> list[float]:
        """The shares of the denoising steps an item runs, each equally likely over the items
        (an editor that starts from a noised source runs ``strength`` of them; DA-Fusion draws
        one of several strengths per item). Every step by default: ``[1.0]``."""
        return [1.0]

    @classmethod
    def configured_steps(cls, config) -> int:
        """``editor.steps``, else the sampling preset's, else :meth:`default_steps`."""
        if config.steps:
            return int(config.steps)
        if getattr(config, "preset", None):
            return int(sampling_preset(cls.preset_key_for(config.model), config.preset)["num_inference_steps"])
        return int(cls.default_steps())

    @classmethod
    def steps_run(cls, config) -> float:
        """Denoising steps an item actually runs, on average: ``configured_steps x mean(step_strengths)``."""
        strengths = cls.step_strengths(config)
        return float(cls.configured_steps(config)) * sum(strengths) / len(strengths)

    @classmethod
    def configured_guidance(cls, config) -> float:
        """``editor.guidance_scale``, else the editor's default, else the pipeline's."""
        if config.guidance_scale is not None:
            return float(config.guidance_scale)
        return float(cls.default_guidance if cls.default_guidance is not None else cls.library_default("guidance_scale"))

    @classmethod
    def branches(cls, config) -> int:
        """UNet batch rows per step and item (:attr:`guidance_branches`, else 2 when guided, else 1)."""
        if cls.guidance_branches is not None:
            return cls.guidance_branches
        return 2 if cls.configured_guidance(config) > 1 else 1

    @classmethod
    def prompts_for(cls, config) -> str:
        """The prompt preset of the stage when it gives none: pocket texts for pocket models."""
        model = config.model or cls.default_model
        return cls.pocket_prompts if model.startswith(POCKET_SCHEME) else cls.default_prompts

    @classmethod
    def preset_key_for(cls, model: str | None) -> str:
        """Where its sampling presets for ``model`` (None: its default model) are stored: ``<editor>/<model>``."""
        return f"{cls.name}/{model or cls.default_model}"

    @classmethod
    def data_needs(cls, config) -> list:
        """What this editor needs of the real training data (:class:`genaug.data.needs.DataNeeds`),
        from an ``EditorConfig`` alone: checked before any stage runs. Nothing by default."""
        return []

    def prepare(self, dataset, config) -> None:
        """Work the editor needs before its items are planned (``dataset``: the real set,
        ``config``: the generate stage's config); nothing by default."""

    def plan(self, dataset, config) -> list[WorkItem] | None:
        """The editor's own work items, or None for the generate stage's plan (one item per
        real image and prompt, or per class image for text-only editors)."""
        return None

    # ------------------------------------------------------------------ loading

    @property
    def pipeline(self):
        """The diffusers pipeline, loaded on first use and kept."""
        if self._pipeline is None:
            self._pipeline = self._load_pipeline()
        return self._pipeline

    @pipeline.setter
    def pipeline(self, pipeline) -> None:
        """Use an already loaded pipeline (a sweep reuses one across settings); its scheduler is kept."""
        self._pipeline = pipeline
        self._params = None

    @property
    def preset_key(self) -> str:
        """Where this editor's sampling presets are stored: ``<editor>/<model reference>``."""
        return self.preset_key_for(self.config.model)

    @cached_property
    def preset(self) -> dict[str, Any] | None:
        """The settings of ``config.preset`` (``genaug.generation.sampling_preset``), or None."""
        name = getattr(self.config, "preset", None)
        if not name:
            return None

        return sampling_preset(self.preset_key, name)

    @property
    def scheduler_name(self) -> str | None:
        """The configured scheduler, else the preset's, else the editor's default (None: the folder's own)."""
        if self.config.scheduler is not None:
            return self.config.scheduler
        if self.preset is not None:
            return scheduler_name(self.preset["scheduler"])
        return self.default_scheduler

    def _load_pipeline(self):
        import diffusers

        pipeline = getattr(diffusers, self.pipeline_class).from_pretrained(
            self.model.location,
            revision=self.model.revision,
            dtype=self.dtype,
            safety_checker=None,
            requires_safety_checker=False,
            use_safetensors=True,
        )
        scheduler = self.scheduler_name
        if scheduler is not None:
            pipeline.scheduler = SCHEDULERS.get(scheduler)(pipeline.scheduler.config)
        pipeline.set_progress_bar_config(disable=True)
        return pipeline.to(self.device)

    # ------------------------------------------------------------------ resolved parameters

    @classmethod
    def library_default(cls, argument: str) -> Any:
        """The default of ``argument`` in the pipeline's ``__call__`` (imports diffusers)."""
        import diffusers

        return inspect.signature(getattr(diffusers, cls.pipeline_class).__call__).parameters[argument].default

    @property
    def steps(self) -> int:
        """``editor.steps``, else the sampling preset's, else :meth:`default_steps`."""
        if self.config.steps:
            return self.config.steps
        if self.preset is not None:
            return int(self.preset["num_inference_steps"])
        return self.default_steps()

    @classmethod
    def default_steps(cls) -> int:
        """Steps when neither the config nor a preset sets them: the pipeline's own default."""
        return cls.library_default("num_inference_steps")

    @property
    def guidance_scale(self) -> float:
        return self.configured_guidance(self.config)

    @property
    def size(self) -> int:
        """Working side length: the configured one, else the model's native resolution."""
        if self.config.size is not None:
            return self.config.size
        pipeline = self.pipeline
        return int(pipeline.unet.config.sample_size * pipeline.vae_scale_factor)

    @property
    def autocast(self) -> str | None:
        """The preset's autocast precision (``bf16``, ``fp16``) when it applies here, else None.

        It applies when the weights are fp32 (the CPU default): a preset measured in bf16
        autocast runs in bf16 autocast. fp16 autocast applies on CUDA only.
        """
        import torch

        precision = self.preset.get("precision", "fp32") if self.preset is not None else "fp32"
        if precision == "fp32" or self.dtype != torch.float32 or (precision == "fp16" and self.device.type != "cuda"):
            return None
        return precision

    def call_pipeline(self, **kwargs):
        """``self.pipeline(**kwargs)``, under the preset's autocast when it has one."""
        from genaug.runtime import autocast_context

        with autocast_context(self.autocast or "fp32", self.device):
            return self.pipeline(**kwargs)

    def sample(self, seeds: Sequence[int], positive: torch.Tensor, negative: torch.Tensor, **inputs: Any) -> np.ndarray:
        """uint8 (N, S, S, 3) from one pipeline call on the text conditioning ``positive`` /
        ``negative``: the editor's steps and guidance scale, one generator per seed, numpy
        output; ``inputs`` are the call's own arguments (the source image, the size, eta, ...)."""
        output = self.call_pipeline(
            prompt_embeds=positive,
            negative_prompt_embeds=negative,
            num_inference_steps=self.steps,
            guidance_scale=self.guidance_scale,
            generator=self.generators(seeds),
            output_type="np",
            **inputs,
        )
        return self.to_uint8(output.images)

    def params(self) -> dict[str, Any]:
        """The sampling parameters recorded in every record this editor makes (computed once)."""
        if self._params is None:
            self._params = self.sampling_params()
        return dict(self._params)

    def sampling_params(self) -> dict[str, Any]:
        """Editor, steps, guidance, working size, scheduler class and dtype (and the preset and
        its autocast when one is used); editors add theirs."""
        params = {
            "editor": self.name,
            "steps": self.steps,
            "guidance": self.guidance_scale,
            "size": self.size,
            "scheduler": type(self.pipeline.scheduler).__name__,
            "dtype": str(self.dtype).replace("torch.", ""),
        }
        if self.preset is not None:
            params["preset"] = self.config.preset
            params["autocast"] = self.autocast
        return params

    def rate_key(self) -> dict[str, Any]:
        """What a stored generation rate depends on (no model load needed)."""
        return {
            "editor": self.name,
            "model": self.model.identity.get("hash") or self.model.location,
            "config": self.config.model_dump(mode="json"),
            "device": str(self.device),
            "dtype": str(self.dtype),
        }

    # ------------------------------------------------------------------ batch helpers

    def text_embeddings(self, texts: Sequence[str]) -> torch.Tensor:
        """(N, L, D) text-encoder states of ``texts``: the distinct texts encoded together in one call.

        The distinct texts go through the encoder as one batch, in sorted order, on every call:
        an embedding then depends only on the texts of this call (one engine batch, fixed by
        the batch plan), never on what earlier batches encoded, so resumed and sharded runs
        stay bit-identical, and a batch of prompts costs one encoder call instead of one per
        text. Tokenisation copied from diffusers' ``StableDiffusionPipeline.encode_prompt``
        (max-length padding, truncation).
        """
        import torch

        pipeline = self.pipeline
        distinct = sorted(set(texts))
        tokens = pipeline.tokenizer(
            distinct, padding="max_length", max_length=pipeline.tokenizer.model_max_length,
            truncation=True, return_tensors="pt",
        )
        use_mask = getattr(pipeline.text_encoder.config, "use_attention_mask", False)
        mask = tokens.attention_mask.to(self.device) if use_mask else None
        with torch.inference_mode():
            states = pipeline.text_encoder(tokens.input_ids.to(self.device), attention_mask=mask)[0]
        states = states.to(dtype=pipeline.text_encoder.dtype)
        rows = torch.tensor([distinct.index(text) for text in texts], device=states.device)
        return states.index_select(0, rows)

    def prompt_embeddings(self, items: Sequence[WorkItem]) -> tuple[torch.Tensor, torch.Tensor]:
        """Positive and negative conditioning of a batch (negative: the item's, the config's, or ""),
        encoded in one text-encoder call."""
        positives = [item.prompt or "" for item in items]
        negatives = [item.negative_prompt or self.config.negative_prompt or "" for item in items]
        states = self.text_embeddings(positives + negatives)
        return states[: len(items)], states[len(items) :]

    def source_batch(self, items: Sequence[WorkItem]) -> torch.Tensor:
        """The items' source images at the working size, float (N, 3, S, S) in [0, 1]."""
        import torch

        size = self.size
        arrays = [_resize_rgb(self.sources(item), size) for item in items]
        batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
        return batch.to(device=self.device, dtype=torch.float32).div_(255.0).to(self.dtype)

    def generators(self, seeds: Sequence[int]) -> list[torch.Generator]:
        return [seed_generator(seed) for seed in seeds]

    def to_uint8(self, images: np.ndarray) -> np.ndarray:
        """Pipeline output (N, h, w, 3) floats in [0, 1] as uint8 at the working size.

        Rounding as diffusers' ``numpy_to_pil`` does; outputs whose size differs from the
        working size (VAE rounding) are resized back to it, as the method asks.
        """
        images = (np.clip(images, 0.0, 1.0) * 255).round().astype(np.uint8)
        size = self.size
        if images.shape[1:3] != (size, size):
            images = np.stack([_resize_rgb(image, size) for image in images])
        return images

    @abstractmethod
    def render(self, items: Sequence[WorkItem], seeds: Sequence[int]) -> np.ndarray:
        """uint8 (N, S, S, 3): the images of ``items``, image i made from ``seeds[i]``."""


def _resize_rgb(image: "np.ndarray | Image.Image", size: int) -> np.ndarray:
    """An RGB uint8 (size, size, 3) array; resized with bicubic filtering when needed."""
    if isinstance(image, np.ndarray):
        if image.shape[:2] == (size, size) and image.dtype == np.uint8 and image.ndim == 3:
            return image
        image = Image.fromarray(image)
    image = image.convert("RGB")
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(image, dtype=np.uint8)
