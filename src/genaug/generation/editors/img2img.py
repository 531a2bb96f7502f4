"""``img2img``: Stable Diffusion image-to-image edits of a real image (METHODS.md 2.1).

The source is noised to ``strength`` (default 0.5) of the schedule and denoised under the
prompt; ``strength * steps`` denoising steps actually run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from genaug.generation.editors import register_editor
from genaug.generation.editors.base import Editor

if TYPE_CHECKING:
    from genaug.generation.items import WorkItem


@register_editor
class Img2ImgEditor(Editor):
    name = "img2img"
    method = "img2img"
    pipeline_class = "StableDiffusionImg2ImgPipeline"
    default_model = "pocket:sd"

    def sampling_params(self) -> dict[str, Any]:
        return {**super().sampling_params(), "strength": self.config.strength}

    def render(self, items: Sequence[WorkItem], seeds: Sequence[int]) -> np.ndarray:
        positive, negative = self.prompt_embeddings(items)
        output = self.call_pipeline(
            image=self.source_batch(items),
            strength=self.config.strength,
            prompt_embeds=positive,
            negative_prompt_embeds=negative,
            num_inference_steps=self.steps,
            guidance_scale=self.guidance_scale,
            generator=self.generators(seeds),
            output_type="np",
        )
        return self.to_uint8(output.images)
