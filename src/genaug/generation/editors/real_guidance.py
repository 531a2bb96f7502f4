"""``real_guidance``: Real-Guidance (He et al., ICLR 2023), img2img of every real image with
the class-name prompt at a low strength, then a CLIP filter.

He et al. start the sampler from the real image's latent with a little noise added, so
the output keeps the real image's layout and content and the class prompt pulls it
towards the class; their filter then drops outputs CLIP does not assign to the class. The
default strength 0.15 is such a small noise level: 15 % of the schedule, i.e. 3 of 20
denoising steps. Give ``editor.strength`` to change it. The filter is the filter stage
(``clip_rank`` or ``clip_posneg``) run on this stage's set.

Options: ``per_image`` (outputs per real image, default 1, each with its own seed) and
``prompts`` are the generate stage's (default ``"a photo of a {class}"``, the class name
cleaned by :func:`genaug.data.names.class_prompt`); the m-th output of an image uses
prompt ``m % len(prompts)``.
"""

from __future__ import annotations

from pydantic import model_validator

from genaug.config import StrictModel
from genaug.data.names import class_prompt
from genaug.generation.editors import register_editor
from genaug.generation.editors.img2img import Img2ImgEditor, plan_from_sources
from genaug.generation.items import WorkItem
from genaug.generation.prompts import CLASS_TEMPLATE, resolve_prompts


class RealGuidanceOptions(StrictModel):
    per_image: int = 1

    @model_validator(mode="after")
    def _check(self) -> "RealGuidanceOptions":
        if self.per_image < 1:
            raise ValueError(f"per_image must be >= 1, got {self.per_image}")
        return self


@register_editor
class RealGuidanceEditor(Img2ImgEditor):
    name = "real_guidance"
    method = "real_guidance"
    default_strength = 0.15
    Options = RealGuidanceOptions

    @classmethod
    def planned_work(cls, config) -> tuple[float, float]:
        strength = config.strength if "strength" in config.model_fields_set else cls.default_strength
        return float(cls.check_options(config.options).per_image), strength

    def plan(self, dataset, config) -> list[WorkItem]:
        self.check_strengths([self.strength])
        templates = resolve_prompts(config.prompts or list(CLASS_TEMPLATE))

        def describe(row: int, label: int, m: int, item_id: str):
            template = templates[m % len(templates)]
            return class_prompt(template, dataset.class_names[label]), {}

        return plan_from_sources(dataset, self.name, config.seed, self.options.per_image, describe,
                                 config.editor.negative_prompt)
