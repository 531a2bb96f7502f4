"""``real_guidance``: Real-Guidance (He et al., ICLR 2023), img2img of the few-shot real
images under the class prompt at a noise level set by the shot count, then a CLIP selection.

He et al. start the sampler from a real image's noised version, so the output keeps the
real image's layout and the class prompt pulls it towards the class. Their few-shot recipe
(CVMI-Lab/SyntheticData, README "Synthetic data generation-RG") runs the last
``refer_img_iters`` of 100 steps, 15, 20, 35, 40 and 50 for 16, 8, 4, 2 and 1 shots, and
makes 800 images per class (``batch_size * batch_size_time * shot = 800``). Here a class of
n real images ("shots") is edited at strength :func:`strength_for_shots` (n) and gets
``per_class`` outputs, spread over its images as evenly as possible
(:func:`outputs_per_image`). The official generator is GLIDE (pixel space, 64 px then
upsampled); genaug uses Stable Diffusion img2img at the same strengths. The official
selection is the filter ``clip_zero_shot`` (softmax over the class prompts, keep
p > 1/K), run as a filter stage on this set.

Options: ``per_class`` (default 800, the official count), ``per_image`` (when given,
replaces ``per_class``: that many outputs per real image), ``noise_by_shots`` (shot count
-> strength, default the official table). ``editor.strength``, when given, is used for
every class. The stage's ``prompts`` (default ``"a photo of a {class}"``) give the
dataset-specific template (the official code writes e.g. ``"a centered satellite photo of
{class}"`` for EuroSAT); the m-th output of an image uses prompt ``m % len(prompts)``.
"""

from __future__ import annotations

from collections import Counter

from pydantic import model_validator

from genaug.config import StrictModel
from genaug.data.names import class_prompt
from genaug.generation.editors import EDITORS
from genaug.generation.editors.img2img import Img2ImgEditor, plan_from_sources
from genaug.generation.items import WorkItem
from genaug.generation.prompts import resolve_prompts

#: The official noise level (``refer_img_iters`` / 100) by shots per class.
OFFICIAL_NOISE_BY_SHOTS = {16: 0.15, 8: 0.20, 4: 0.35, 2: 0.40, 1: 0.50}
#: The official number of synthetic images per class.
OFFICIAL_PER_CLASS = 800
#: The official sampler's step count (GLIDE, ``timestep_respacing='100'``).
OFFICIAL_STEPS = 100


def strength_for_shots(shots: int, table: dict[int, float] = OFFICIAL_NOISE_BY_SHOTS) -> float:
    """The strength for a class of ``shots`` real images: the table's value at the largest
    listed shot count not above ``shots`` (so 3 shots -> the 2-shot 0.40, 10 -> the 8-shot
    0.20, 100 -> the 16-shot 0.15); below the smallest listed count, that count's value."""
    if shots < 1:
        raise ValueError(f"shots must be >= 1, got {shots}")
    listed = sorted(table)
    below = [n for n in listed if n <= shots]
    return float(table[below[-1] if below else listed[0]])


def outputs_per_image(shots: int, per_class: int) -> list[int]:
    """How many outputs each of a class's ``shots`` images gets so the class has ``per_class``:
    ``per_class // shots`` each, one more for the first ``per_class % shots`` images."""
    base, extra = divmod(per_class, shots)
    return [base + (1 if i < extra else 0) for i in range(shots)]


class RealGuidanceOptions(StrictModel):
    per_class: int = OFFICIAL_PER_CLASS
    per_image: int | None = None
    noise_by_shots: dict[int, float] = dict(OFFICIAL_NOISE_BY_SHOTS)

    @model_validator(mode="after")
    def _check(self) -> "RealGuidanceOptions":
        if self.per_class < 1:
            raise ValueError(f"per_class must be >= 1, got {self.per_class}")
        if self.per_image is not None and self.per_image < 1:
            raise ValueError(f"per_image must be >= 1, got {self.per_image}")
        if not self.noise_by_shots:
            raise ValueError("noise_by_shots must hold at least one shot count")
        for shots, strength in self.noise_by_shots.items():
            if shots < 1 or not 0.0 < strength <= 1.0:
                raise ValueError(f"noise_by_shots: {shots} -> {strength}: shots must be >= 1 and strength in (0, 1]")
        return self


@EDITORS.register("real_guidance")
class RealGuidanceEditor(Img2ImgEditor):
    default_strength = OFFICIAL_NOISE_BY_SHOTS[16]
    default_prompts = "class_template"  # the official "a photo of a {class}", pocket models too
    pocket_prompts = "class_template"
    report_label = "Real-Guidance"
    Options = RealGuidanceOptions

    # Without the dataset the shot count is unknown: estimates from a config alone assume 16
    # shots per class (``per_class / 16`` outputs per image at the 16-shot strength).

    @classmethod
    def items_per_image(cls, config) -> float:
        """``per_image`` when given, else ``per_class / 16`` (16 shots assumed)."""
        options = cls.check_options(config.options)
        return float(options.per_image if options.per_image is not None else options.per_class / 16)

    @classmethod
    def step_strengths(cls, config) -> list[float]:
        """``editor.strength`` when given, else the strength for 16 shots of ``noise_by_shots``."""
        if "strength" in config.model_fields_set:
            return [float(config.strength)]
        return [strength_for_shots(16, cls.check_options(config.options).noise_by_shots)]

    def class_strengths(self, dataset) -> dict[int, float]:
        """Each class's strength: ``editor.strength`` when given, else by its shot count."""
        shots = Counter(int(label) for label in dataset.labels)
        if "strength" in self.config.model_fields_set:
            return {label: float(self.config.strength) for label in shots}
        return {label: strength_for_shots(n, self.options.noise_by_shots) for label, n in shots.items()}

    def plan(self, dataset, config) -> list[WorkItem]:
        strengths = self.class_strengths(dataset)
        self.check_strengths(sorted(set(strengths.values())))
        templates = resolve_prompts(config.prompts or self.prompts_for(config.editor))
        counts = self.counts_per_image(dataset)

        def describe(row: int, label: int, m: int, item_id: str):
            template = templates[m % len(templates)]
            return class_prompt(template, dataset.class_names[label]), {"strength": strengths[label]}

        most = max(counts, default=0)
        items = plan_from_sources(dataset, self.name, config.seed, most, describe, config.editor.negative_prompt)
        return [item for item in items if int(item.id.rsplit("-", 1)[1]) < counts[item.source_index]]

    def counts_per_image(self, dataset) -> list[int]:
        """Outputs of each real image: ``per_image``, else the class's ``per_class`` spread over its images."""
        if self.options.per_image is not None:
            return [self.options.per_image] * len(dataset.labels)
        rows_of: dict[int, list[int]] = {}
        for row, label in enumerate(dataset.labels):
            rows_of.setdefault(int(label), []).append(row)
        counts = [0] * len(dataset.labels)
        for rows in rows_of.values():
            for row, count in zip(rows, outputs_per_image(len(rows), self.options.per_class)):
                counts[row] = count
        return counts
