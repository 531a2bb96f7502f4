"""``diffmix``: Diff-Mix (Wang et al., CVPR 2024), inter-class image translation with soft labels.

1. Fine-tuning (:mod:`genaug.generation.lora`): a word per class (textual inversion) and a
   DreamBooth LoRA of rank 10 on the UNet, learnt together on the real training images
   once per dataset (:class:`FineTuneSettings`), saved as
   ``<output>/diffmix_finetune/finetune.safetensors`` and reused by every rerun, resume
   and shard with the same model, data, settings and seed; a kill during training resumes
   from its checkpoint. ``finetune: {enabled: false}`` translates on the model as given,
   under the class names.
2. Translation: ``multiplier`` x N items (N real images; official ``--syn_dataset_mulitiplier
   5``). Item k draws, as the official ``scripts/sample_mp.py``, a source class and a target
   class, each uniform over the classes (the same class allowed), then a source image
   uniform among the source class's images; the image is edited by img2img under
   ``"a photo of a <target class word>"`` at strength s: ``strength_strategy: fixed`` uses
   ``editor.strength`` (default 0.5, the official ``--aug_strength`` default), ``uniform``
   draws s from ``strengths`` (default 0.3, 0.5, 0.7, 0.9). The sampler is DPM-Solver++
   (diffusers' ``DPMSolverMultistepScheduler``), 25 steps, unless the config says otherwise.
3. Label: ``(1 - s^gamma) A + s^gamma B`` (gamma 0.5 by default; docs/methods/diff-mix.md
   gives the sources of each value). Training uses the ``synthetic_replacement`` policy
   (p 0.1), the official ``--syndata_p``.

Every draw comes from a generator seeded by the experiment seed and the item id, so plan,
resume and shards agree. The record keeps ``label`` = A, the source image's class, and adds
to ``params``: ``strength``, ``gamma``, ``target_label`` / ``target_class`` (B),
``soft_label`` ``{"labels": [A, B], "classes": [...], "weights": [1 - s^gamma, s^gamma]}``
and, when fine-tuned, ``finetune`` (the file, relative to the set) and ``finetune_sha256``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Sequence

from pydantic import Field, model_validator

from genaug.config import ConfigError, StrictModel
from genaug.data.names import class_prompt
from genaug.generation.editors import EDITORS
from genaug.generation.editors.img2img import ClassWordEditor, check_unit_strengths
from genaug.generation.items import WorkItem, unique_ids
from genaug.seeds import item_seed, seed_rng

if TYPE_CHECKING:
    import torch

FINETUNE_DIR = "diffmix_finetune"
#: The prompt (official ``--prompt "a photo of a {name}"``), the class word in the slot.
SLOT_PROMPT = "a photo of a class"
#: The official ``uniform`` strength strategy's values.
OFFICIAL_UNIFORM_STRENGTHS = [0.3, 0.5, 0.7, 0.9]
#: The official ``--aug_strength`` default (strategy ``fixed``).
OFFICIAL_STRENGTH = 0.5
#: The official sampler's steps (``DPMSolverMultistepScheduler``, ``num_inference_steps=25``).
OFFICIAL_STEPS = 25


class FineTuneSettings(StrictModel):
    """Diff-Mix's fine-tuning (defaults: the official ``scripts/finetune.sh`` with
    ``train_lora.py``): ``steps`` (35000) AdamW steps of ``batch_size`` (2) images, LoRA of
    ``rank`` 10 at ``lr`` 5e-5, the class words at ``ti_lr`` 5e-5, ``weight_decay`` 1e-2,
    the LoRA gradients clipped to norm ``max_grad_norm`` 1.0, ``flip_p`` 0.5
    (``--random_flip``), words from ``init_word``; a checkpoint every ``checkpoint_every`` steps."""

    enabled: bool = True
    steps: int = 35000
    batch_size: int = 2
    rank: int = 10
    lr: float = 5e-5
    ti_lr: float = 5e-5
    weight_decay: float = 1e-2
    max_grad_norm: float = 1.0
    flip_p: float = 0.5
    init_word: str = "the"
    checkpoint_every: int = 500
    precision: Literal["fp32", "bf16"] = "fp32"

    @model_validator(mode="after")
    def _check(self) -> "FineTuneSettings":
        for key in ("steps", "batch_size", "rank", "checkpoint_every"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        for key in ("lr", "ti_lr", "max_grad_norm"):
            if not getattr(self, key) >= 0:
                raise ValueError(f"{key} must be >= 0, got {getattr(self, key)}")
        if not 0.0 <= self.flip_p <= 1.0:
            raise ValueError(f"flip_p must be in [0, 1], got {self.flip_p}")
        return self


class DiffMixOptions(StrictModel):
    multiplier: float = 5
    strength_strategy: Literal["fixed", "uniform"] = "fixed"
    strengths: list[float] = OFFICIAL_UNIFORM_STRENGTHS
    gamma: float = 0.5
    prompt: str = "a photo of a {class}"
    finetune: FineTuneSettings = Field(default_factory=FineTuneSettings)

    @model_validator(mode="after")
    def _check(self) -> "DiffMixOptions":
        check_unit_strengths(self.strengths)
        if not self.gamma > 0:
            raise ValueError(f"gamma must be > 0, got {self.gamma}")
        if not self.multiplier > 0:
            raise ValueError(f"multiplier must be > 0, got {self.multiplier}")
        if "{class}" not in self.prompt:
            raise ValueError(f"prompt must hold '{{class}}' for the target class, got {self.prompt!r}")
        return self


def soft_label(source: int, target: int, strength: float, gamma: float) -> tuple[float, float]:
    """Diff-Mix's label weights of (source, target): ``(1 - s^gamma, s^gamma)``."""
    weight = float(strength) ** float(gamma)
    return 1.0 - weight, weight


def draw_translation(experiment_seed: int, k: int, rows_of: dict[int, list[int]], num_classes: int,
                     strengths: Sequence[float] | None) -> tuple[int, int, int, float | None]:
    """Item k's (source class, source row, target class, strength or None for fixed): the
    source class uniform over the classes that have images, the target uniform over all
    ``num_classes`` (the same class allowed), the row uniform within the source class, the
    strength uniform over ``strengths``; from ``(experiment seed, "diffmix-<k>/draw")``."""
    rng = seed_rng(item_seed(experiment_seed, f"diffmix-{k}/draw"))
    classes = sorted(rows_of)
    source = classes[int(rng.integers(len(classes)))]
    target = int(rng.integers(num_classes))
    row = rows_of[source][int(rng.integers(len(rows_of[source])))]
    strength = float(strengths[int(rng.integers(len(strengths)))]) if strengths else None
    return source, row, target, strength


@EDITORS.register("diffmix")
class DiffMixEditor(ClassWordEditor):
    default_strength = OFFICIAL_STRENGTH
    default_scheduler = "dpmsolver"
    report_label = "Diff-Mix"
    Options = DiffMixOptions

    @classmethod
    def default_steps(cls) -> int:
        """The official sampler's 25 steps (when neither ``editor.steps`` nor a preset sets them)."""
        return OFFICIAL_STEPS

    @classmethod
    def step_strengths(cls, config) -> list[float]:
        """``[editor.strength or 0.5]`` (fixed) or ``options.strengths`` (uniform: each item draws one)."""
        options = cls.check_options(config.options)
        return list(options.strengths) if options.strength_strategy == "uniform" else [cls.configured_strength(config)]

    @classmethod
    def items_per_image(cls, config) -> float:
        """``multiplier`` translations per real image."""
        return float(cls.check_options(config.options).multiplier)

    def prepare(self, dataset, config) -> None:
        """Fine-tune (or read back the fine-tuned weights); a dry run writes nothing and uses the initial words."""
        settings = self.options.finetune
        if not settings.enabled:
            return
        from genaug.generation.inversion import frozen_parts, word_embedding
        from genaug.generation.lora import learn_or_load_finetune

        diffusion = frozen_parts(self.pipeline, self.model)
        if config.engine.dry_run:
            self.words = word_embedding(diffusion, settings.init_word).repeat(len(dataset.class_names), 1)
            return
        from genaug.runtime import resolve_shard

        folder = Path(config.output) / FINETUNE_DIR
        shard = resolve_shard(config.engine.shard)
        words, path = learn_or_load_finetune(folder, diffusion, dataset, settings, config.seed, SLOT_PROMPT, self.size,
                                             process=f"{shard.rank}-of-{shard.world}")
        self.keep_words(words, path, config.output)

    def plan(self, dataset, config) -> list[WorkItem]:
        names = list(dataset.class_names)
        if len(names) < 2:
            raise ConfigError(f"editor diffmix: the dataset has {len(names)} class(es); inter-class translation needs 2")
        self.check_strengths(self.strengths)
        gamma = self.options.gamma
        uniform = self.options.strength_strategy == "uniform"
        rows_of: dict[int, list[int]] = {}
        for row, label in enumerate(dataset.labels):
            rows_of.setdefault(int(label), []).append(row)
        safe_ids = unique_ids(dataset.ids)
        shared: dict[str, Any] = {}
        if self.words_file is not None:
            shared = {"finetune": str(self.words_file), "finetune_sha256": self.words_hash, "slot_prompt": SLOT_PROMPT}
        items = []
        for k in range(int(round(self.options.multiplier * len(dataset.labels)))):
            source, row, target, drawn = draw_translation(config.seed, k, rows_of, len(names), self.strengths if uniform else None)
            strength = drawn if drawn is not None else float(self.strength)
            item_id = f"{safe_ids[row]}-diffmix-{k}"
            prompt = class_prompt(self.options.prompt, f"<{names[target]}>" if self.words is not None else names[target])
            params = {
                "strength": strength,
                "gamma": gamma,
                "target_label": target,
                "target_class": names[target],
                "soft_label": {"labels": [source, target], "classes": [names[source], names[target]],
                               "weights": list(soft_label(source, target, strength, gamma))},
                **shared,
            }
            items.append(WorkItem(id=item_id, seed=item_seed(config.seed, item_id), label=source, class_name=names[source],
                                  prompt=prompt, negative_prompt=config.editor.negative_prompt, source_id=dataset.ids[row],
                                  source_index=row, extra={"params": params}))
        return items

    def conditioning(self, items: Sequence[WorkItem]) -> tuple[torch.Tensor, torch.Tensor]:
        """Fine-tuned: the slot prompt with each item's target class word; else the items' prompts."""
        if self.words is None:
            return self.prompt_embeddings(items)
        return self.word_conditioning(items, SLOT_PROMPT, [item.extra["params"]["target_label"] for item in items])
