"""``txt2img``: Stable Diffusion text-to-image from class-name prompts (docs/methods/diffusemix.md).

Prompts are templates such as ``"a photo of a {class}"``; no real image is used, so the
records have no source ids.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from genaug.generation.editors import EDITORS
from genaug.generation.editors.base import Editor

if TYPE_CHECKING:
    from genaug.generation.items import WorkItem


@EDITORS.register("txt2img")
class Txt2ImgEditor(Editor):
    pipeline_class = "StableDiffusionPipeline"
    default_model = "pocket:sd"
    needs_source = False  # made from the prompt alone: no source image, no VAE encode
    default_prompts = "class_template"
    report_label = "Generated"
    frontier_workload = "captions"

    def render(self, items: Sequence[WorkItem], seeds: Sequence[int]) -> np.ndarray:
        return self.sample(seeds, *self.prompt_embeddings(items), height=self.size, width=self.size)
