"""``instruct``: InstructPix2Pix edits of a real image (the DiffuseMix editor, docs/methods/diffusemix.md).

Defaults follow the method: Euler-ancestral scheduler, guidance scale 4, image guidance at
the library default (1.5), the library's step count, input at the working size and the
output resized back to it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from genaug.generation.editors import EDITORS
from genaug.generation.editors.base import Editor

if TYPE_CHECKING:
    from genaug.generation.items import WorkItem


@EDITORS.register("instruct")
class InstructEditor(Editor):
    pipeline_class = "StableDiffusionInstructPix2PixPipeline"
    default_model = "pocket:ip2p"
    default_scheduler = "euler_ancestral"
    default_guidance = 4.0
    unet_inputs = "latent+image"  # 8 channels: 4 latent + 4 of the source image's latents
    guidance_branches = 3  # text + image, image only, neither (the pipeline's three-way guidance)
    pocket_prompts = "pocket"  # re-colouring instructions
    frontier_workload = "recolour"

    @property
    def image_guidance_scale(self) -> float:
        if self.config.image_guidance_scale is not None:
            return self.config.image_guidance_scale
        return self.library_default("image_guidance_scale")

    def sampling_params(self) -> dict[str, Any]:
        return {**super().sampling_params(), "image_guidance": self.image_guidance_scale}

    def render(self, items: Sequence[WorkItem], seeds: Sequence[int]) -> np.ndarray:
        return self.sample(
            seeds,
            *self.prompt_embeddings(items),
            image=self.source_batch(items),
            image_guidance_scale=self.image_guidance_scale,
        )
