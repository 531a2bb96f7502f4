"""``diffmix``: Diff-Mix (Wang et al., CVPR 2024), inter-class image translation with soft labels.

An image of class A is edited by img2img under the prompt of another class B at strength
s: the lower the strength, the more of A survives. The image is labelled softly,
``(1 - s^gamma) A + s^gamma B`` (gamma 0.5 by default, the paper's), so at s = 0.5 about
71 % of the label is B's. B is drawn uniformly from the other classes and s from
``strengths`` (default 0.5, 0.7, 0.9, one per item) by a seed derived from the experiment
seed and the item id, so plan, resume and shards agree.

The record keeps ``label`` = A, the class of the source image (what policies pairing an
image with its sources and per-class filters see), and adds to ``params``: ``strength``,
``gamma``, ``target_label`` / ``target_class`` (B) and ``soft_label``::

    {"labels": [A, B], "classes": ["<A>", "<B>"], "weights": [1 - s**gamma, s**gamma]}

Training reads ``soft_label`` (:func:`genaug.data.synthetic.load_synthetic_set`) and uses
the weights as the image's target distribution, by class name. The paper first
personalises SD to the dataset (textual inversion + DreamBooth); here the prompt is
``"a photo of a {class}"`` with B's cleaned class name on the model given.

Options: ``strengths``, ``gamma`` (> 0), ``per_image`` (default 1), ``prompt``.
"""

from __future__ import annotations

from pydantic import model_validator

from genaug.config import ConfigError, StrictModel
from genaug.data.names import class_prompt
from genaug.generation.editors import register_editor
from genaug.generation.editors.img2img import Img2ImgEditor, check_unit_strengths, plan_from_sources
from genaug.generation.items import WorkItem
from genaug.generation.seeds import item_seed, seed_rng


class DiffMixOptions(StrictModel):
    strengths: list[float] = [0.5, 0.7, 0.9]
    gamma: float = 0.5
    per_image: int = 1
    prompt: str = "a photo of a {class}"

    @model_validator(mode="after")
    def _check(self) -> "DiffMixOptions":
        check_unit_strengths(self.strengths)
        if not self.gamma > 0:
            raise ValueError(f"gamma must be > 0, got {self.gamma}")
        if self.per_image < 1:
            raise ValueError(f"per_image must be >= 1, got {self.per_image}")
        if "{class}" not in self.prompt:
            raise ValueError(f"prompt must hold '{{class}}' for the target class, got {self.prompt!r}")
        return self


def soft_label(source: int, target: int, strength: float, gamma: float) -> tuple[float, float]:
    """Diff-Mix's label weights of (source, target): ``(1 - s^gamma, s^gamma)``."""
    weight = float(strength) ** float(gamma)
    return 1.0 - weight, weight


@register_editor
class DiffMixEditor(Img2ImgEditor):
    name = "diffmix"
    method = "diffmix"
    Options = DiffMixOptions

    @property
    def strengths(self) -> list[float]:
        """``editor.strength`` when given (one strength), else ``options.strengths``."""
        return [self.config.strength] if "strength" in self.config.model_fields_set else list(self.options.strengths)

    @classmethod
    def planned_work(cls, config) -> tuple[float, float]:
        options = cls.check_options(config.options)
        strengths = [config.strength] if "strength" in config.model_fields_set else options.strengths
        return float(options.per_image), sum(strengths) / len(strengths)

    def plan(self, dataset, config) -> list[WorkItem]:
        names = list(dataset.class_names)
        if len(names) < 2:
            raise ConfigError(f"editor diffmix: the dataset has {len(names)} class(es); inter-class translation needs 2")
        strengths = self.strengths
        self.check_strengths(strengths)
        gamma = self.options.gamma

        def describe(row: int, label: int, m: int, item_id: str):
            rng = seed_rng(item_seed(config.seed, f"{item_id}/target"))
            target = int(rng.integers(len(names) - 1))
            target += target >= label  # uniform over the other classes
            strength = float(strengths[int(rng.integers(len(strengths)))])
            weights = soft_label(label, target, strength, gamma)
            params = {
                "strength": strength,
                "gamma": gamma,
                "target_label": target,
                "target_class": names[target],
                "soft_label": {"labels": [label, target], "classes": [names[label], names[target]],
                               "weights": list(weights)},
            }
            return class_prompt(self.options.prompt, names[target]), params

        return plan_from_sources(dataset, self.name, config.seed, self.options.per_image, describe,
                                 config.editor.negative_prompt)
