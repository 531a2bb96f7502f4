"""``img2img``: Stable Diffusion image-to-image edits of a real image (docs/methods/diffusemix.md).

The source is noised to ``strength`` (default 0.5) of the schedule and denoised under the
prompt; ``strength * steps`` denoising steps actually run.

The methods built on img2img (Real-Guidance, DA-Fusion, Diff-Mix) subclass
:class:`Img2ImgEditor`: an item may carry its own strength (``item.extra["params"]
["strength"]``), a batch then runs as one pipeline call per distinct strength, and
:func:`plan_from_sources` plans ``per_image`` items per real image.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Sequence

import numpy as np

from genaug.config import ConfigError
from genaug.generation.editors import EDITORS
from genaug.generation.editors.base import Editor
from genaug.generation.items import WorkItem, unique_ids
from genaug.seeds import item_seed

if TYPE_CHECKING:
    import torch


@EDITORS.register("img2img")
class Img2ImgEditor(Editor):
    pipeline_class = "StableDiffusionImg2ImgPipeline"
    default_model = "pocket:sd"
    #: The strength used when ``editor.strength`` is not given.
    default_strength: ClassVar[float] = 0.5

    @classmethod
    def configured_strength(cls, config) -> float:
        """``editor.strength`` when the config sets it, else the editor's default."""
        return float(config.strength) if "strength" in config.model_fields_set else cls.default_strength

    @classmethod
    def step_strengths(cls, config) -> list[float]:
        """The source is noised to ``strength`` of the schedule: an item runs ``steps x strength`` steps."""
        return [cls.configured_strength(config)]

    @property
    def strength(self) -> float:
        """The configured strength, else the editor's default."""
        return self.configured_strength(self.config)

    def sampling_params(self) -> dict[str, Any]:
        return {**super().sampling_params(), "strength": self.strength}

    def item_strength(self, item: WorkItem) -> float:
        return float(item.extra.get("params", {}).get("strength", self.strength))

    def conditioning(self, items: Sequence[WorkItem]) -> tuple[torch.Tensor, torch.Tensor]:
        """Positive and negative text conditioning of a batch (by default its prompts)."""
        return self.prompt_embeddings(items)

    def render(self, items: Sequence[WorkItem], seeds: Sequence[int]) -> np.ndarray:
        import torch

        positive, negative = self.conditioning(items)
        sources = self.source_batch(items)
        strengths = [self.item_strength(item) for item in items]
        images = np.zeros((len(items), self.size, self.size, 3), dtype=np.uint8)
        for strength in sorted(set(strengths)):  # one call per strength, in a fixed order
            rows = [i for i, value in enumerate(strengths) if value == strength]
            index = torch.tensor(rows, device=positive.device)
            images[rows] = self.sample(
                [seeds[i] for i in rows],
                positive.index_select(0, index),
                negative.index_select(0, index),
                image=sources[index.to(sources.device)],
                strength=strength,
            )
        return images

    def check_strengths(self, strengths: Sequence[float]) -> None:
        """Every strength must leave at least one denoising step (``int(steps * strength) >= 1``)."""
        for strength in strengths:
            if int(self.steps * strength) < 1:
                raise ConfigError(
                    f"editor {self.name}: strength {strength} with {self.steps} steps runs no denoising step "
                    "(int(steps * strength) = 0); raise editor.steps or the strength"
                )


class ClassWordEditor(Img2ImgEditor):
    """An img2img editor conditioned on learnt class words (DA-Fusion's textual inversion,
    Diff-Mix's fine-tuning): ``words`` (K, D), the input embedding of each class's word once
    :meth:`prepare` has learnt or read them, and the file they came from (relative to the
    stage's output when inside it) with its SHA-256, which the items record."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.words: torch.Tensor | None = None
        self.words_file: Path | None = None
        self.words_hash: str | None = None

    @property
    def strengths(self) -> list[float]:
        """The strengths items take (:meth:`step_strengths` of this editor's config)."""
        return self.step_strengths(self.config)

    def keep_words(self, words: torch.Tensor, path: Path, output: str | Path) -> None:
        """Use ``words``, learnt or read from ``path``."""
        from genaug.generation.inversion import file_sha256

        self.words = words
        self.words_file = path.relative_to(Path(output)) if path.is_relative_to(output) else path
        self.words_hash = file_sha256(path)

    def word_conditioning(self, items: Sequence[WorkItem], prompt: str, labels: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Positive: ``prompt`` with the word of class ``labels[i]`` in its slot, for item i;
        negative: the item's negative prompt, the config's, or ""."""
        import torch

        from genaug.diffusion.conditioning import SLOT_WORD, class_token_position, encode_with_input_slot

        pipeline = self.pipeline
        rows = torch.tensor(list(labels))
        with torch.inference_mode():
            words = self.words[rows].to(self.device, pipeline.text_encoder.dtype)
            position = class_token_position(pipeline.tokenizer, prompt, SLOT_WORD)
            positive = encode_with_input_slot(pipeline.tokenizer, pipeline.text_encoder, prompt, words, position)
        negative = self.text_embeddings([item.negative_prompt or self.config.negative_prompt or "" for item in items])
        return positive.to(pipeline.text_encoder.dtype), negative


def plan_from_sources(
    dataset,
    editor_name: str,
    experiment_seed: int,
    per_image: int,
    describe: Callable[[int, int, int, str], tuple[str, dict[str, Any]]],
    negative_prompt: str | None = None,
) -> list[WorkItem]:
    """``per_image`` items per real image, id ``<source id>-<editor>-<m>`` (m = 0 .. per_image - 1).

    ``describe(row, label, m, item_id)`` gives the item's prompt and its own record
    parameters (``strength`` among them when the item has its own); the seed is
    ``item_seed(experiment seed, item id)`` as for every item.
    """
    items = []
    safe_ids = unique_ids(dataset.ids)
    for row, source_id in enumerate(dataset.ids):
        label = int(dataset.labels[row])
        for m in range(per_image):
            item_id = f"{safe_ids[row]}-{editor_name}-{m}"
            prompt, params = describe(row, label, m, item_id)
            items.append(
                WorkItem(
                    id=item_id,
                    seed=item_seed(experiment_seed, item_id),
                    label=label,
                    class_name=dataset.class_names[label],
                    prompt=prompt,
                    negative_prompt=negative_prompt,
                    source_id=source_id,
                    source_index=row,
                    extra={"params": params},
                )
            )
    return items


def check_unit_strengths(strengths: Sequence[float]) -> list[float]:
    """A non-empty list of strengths, each in (0, 1] (an Options validator's helper)."""
    if not strengths:
        raise ValueError("strengths must hold at least one value")
    for strength in strengths:
        if not 0.0 < strength <= 1.0:
            raise ValueError(f"strength must be in (0, 1], got {strength}")
    return list(strengths)
