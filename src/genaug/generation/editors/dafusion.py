"""``dafusion``: DA-Fusion (Trabucco et al., ICLR 2024), img2img of real images under a learnt class word.

1. Textual inversion (:mod:`genaug.generation.inversion`): one word embedding per class,
   learnt on the frozen SD from that class's real training images, one class at a time
   with the official optimiser, templates and flips (:class:`InversionSettings`). The
   table is saved as ``<output>/textual_inversion/tokens.safetensors`` and reused by every
   rerun, resume and shard made with the same model, data, settings and seed (its key is
   in the file). A class of one image is learnt from that image (the paper's 1-shot runs).
2. SDEdit: every real image gets ``per_image`` (M, default 10, the launch scripts'
   ``--num-synthetic 10``) edits under ``"a photo of a <class word>"``; each edit's
   strength t0 is drawn uniformly from ``strengths`` (default 0.25, 0.5, 0.75, 1.0: the
   scripts' four augmentations composed in parallel with probability 0.25 each) by a
   generator seeded from the experiment seed and the item id, so plan, resume and shards agree.
3. Training replaces each real sample by one of its outputs with probability 0.5: the
   ``synthetic_probability`` data policy (``p: 0.5``), which pairs an output with its
   source image through the record's ``source_ids``.

Records: ``prompt`` is ``"a photo of a <class>"`` (the class word shown by its class's
name); ``params`` hold ``strength``, ``tokens`` (the table's file, relative to the set),
``tokens_sha256`` and ``slot_prompt`` (the prompt encoded, its word ``class`` replaced);
``model`` is the SD weights' identity as for every editor.

Options: ``strengths``, ``per_image``, ``inversion`` (:class:`InversionSettings`).
``editor.strength``, when given, replaces ``strengths`` by that one value.
docs/methods/dafusion.md tabulates each default against the paper and the official code.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Sequence

from pydantic import Field, model_validator

from genaug.config import StrictModel
from genaug.data.needs import DataNeeds
from genaug.generation.editors import EDITORS
from genaug.generation.editors.img2img import ClassWordEditor, check_unit_strengths, plan_from_sources
from genaug.generation.items import WorkItem
from genaug.seeds import item_seed, seed_rng

if TYPE_CHECKING:
    import torch

#: Where the class words live inside the stage's output folder.
INVERSION_DIR = "textual_inversion"
#: DA-Fusion's prompt; ``{token}`` is the class word.
PROMPT = "a photo of a {token}"


#: The strengths t0 of the paper and of the launch scripts.
OFFICIAL_STRENGTHS = [0.25, 0.5, 0.75, 1.0]
#: Edits per real image (M): the launch scripts' ``--num-synthetic 10``.
OFFICIAL_PER_IMAGE = 10


class InversionSettings(StrictModel):
    """How each class's word is learnt (defaults: DA-Fusion's ``scripts/fine_tuning`` on top of
    ``fine_tune.py``): ``steps`` AdamW steps per class (1000) of ``batch_size`` images (4) at
    ``lr`` (5e-4), times ``batch_size`` when ``scale_lr`` (the scripts' ``--scale_lr``: 2e-3),
    ``weight_decay`` 1e-2, each image mirrored with probability ``flip_p`` (0.5), captioned
    by the 27 ``templates: small`` (or ``single``: the editor's prompt), from ``init_word``
    ("the"), in ``precision`` (bf16 autocast on CPU)."""

    steps: int = 1000
    batch_size: int = 4
    lr: float = 5e-4
    scale_lr: bool = True
    weight_decay: float = 1e-2
    flip_p: float = 0.5
    templates: Literal["small", "single"] = "small"
    init_word: str = "the"
    precision: Literal["fp32", "bf16"] = "fp32"

    @model_validator(mode="after")
    def _check(self) -> "InversionSettings":
        for key in ("steps", "batch_size"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not 0.0 <= self.flip_p <= 1.0:
            raise ValueError(f"flip_p must be in [0, 1], got {self.flip_p}")
        return self


def draw_strength(experiment_seed: int, item_id: str, strengths) -> float:
    """The item's t0: uniform over ``strengths``, drawn from ``(experiment seed, "<item id>/strength")``."""
    return float(strengths[int(seed_rng(item_seed(experiment_seed, f"{item_id}/strength")).integers(len(strengths)))])


class DAFusionOptions(StrictModel):
    strengths: list[float] = OFFICIAL_STRENGTHS
    per_image: int = OFFICIAL_PER_IMAGE
    inversion: InversionSettings = Field(default_factory=InversionSettings)

    @model_validator(mode="after")
    def _check(self) -> "DAFusionOptions":
        check_unit_strengths(self.strengths)
        if self.per_image < 1:
            raise ValueError(f"per_image must be >= 1, got {self.per_image}")
        return self


@EDITORS.register("dafusion")
class DAFusionEditor(ClassWordEditor):
    report_label = "DA-Fusion"
    Options = DAFusionOptions

    @classmethod
    def step_strengths(cls, config) -> list[float]:
        """``editor.strength`` when given (one strength), else ``options.strengths`` (each item draws one uniformly)."""
        if "strength" in config.model_fields_set:
            return [float(config.strength)]
        return list(cls.check_options(config.options).strengths)

    @classmethod
    def items_per_image(cls, config) -> float:
        """``per_image`` edits per real image (textual inversion, a one-off cost, is not an item)."""
        return float(cls.check_options(config.options).per_image)

    @property
    def slot_prompt(self) -> str:
        from genaug.diffusion.conditioning import SLOT_WORD

        return PROMPT.replace("{token}", SLOT_WORD)

    @classmethod
    def data_needs(cls, config) -> list:
        """Textual inversion learns each class word from that class's images: one is enough (the paper runs 1-shot)."""
        return [DataNeeds(who="editor dafusion", per_class=1, why="textual inversion learns a class word from them")]

    def prepare(self, dataset, config) -> None:
        """Check the classes, then learn the class words or read them back (a dry run reads
        them when present and otherwise times the initial word; it writes nothing)."""
        from genaug.generation.inversion import TOKENS_FILE, frozen_parts, learn_or_load_words, load_words, word_embedding

        self.check_strengths(self.strengths)
        folder = Path(config.output) / INVERSION_DIR
        diffusion = frozen_parts(self.pipeline, self.model)
        if config.engine.dry_run:
            found = load_words(folder / TOKENS_FILE)
            initial = word_embedding(diffusion, self.options.inversion.init_word)
            self.words = found if found is not None else initial.repeat(len(dataset.class_names), 1)
            return
        words, path = learn_or_load_words(
            folder, diffusion, dataset, self.options.inversion, config.seed, self.slot_prompt, self.size
        )
        self.keep_words(words, path, config.output)

    def plan(self, dataset, config) -> list[WorkItem]:
        strengths = self.strengths
        per_image = self.options.per_image
        shared: dict[str, Any] = {"slot_prompt": self.slot_prompt}
        if self.words_file is not None:
            shared.update(tokens=str(self.words_file), tokens_sha256=self.words_hash)

        def describe(row: int, label: int, m: int, item_id: str):
            prompt = PROMPT.replace("{token}", f"<{dataset.class_names[label]}>")
            return prompt, {"strength": draw_strength(config.seed, item_id, strengths), **shared}

        return plan_from_sources(dataset, self.name, config.seed, per_image, describe, config.editor.negative_prompt)

    def conditioning(self, items: Sequence[WorkItem]) -> tuple[torch.Tensor, torch.Tensor]:
        """Positive: the slot prompt with each item's class word; negative: its negative prompt or ""."""
        if self.words is None:
            raise RuntimeError("editor dafusion renders after prepare() has learnt or loaded the class words")
        return self.word_conditioning(items, self.slot_prompt, [item.label for item in items])
