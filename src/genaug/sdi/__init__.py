"""SDI, semantic distribution infilling (docs/methods/sdi.md).

The stages, each reading one :class:`genaug.config.SdiConfig` (``genaug sdi <stage>``):

1. :func:`embed_training_images` - CLIP ``image_embeds`` of every training image;
2. :func:`train_projector` - the projector against frozen SD (cached latents and context);
3. :func:`build_bank` - ``projector(image_embeds)`` of the training images, by class;
4. :func:`sample_features` - per-class distributions (:func:`fit_sampler`) and new vectors;
5. :func:`generate_from_samples` - images from the vectors through the generation engine.

Filtering the result is :func:`genaug.filtering.filter_set`. The math (samplers, slot
conditioning, projector) imports without torch-heavy dependencies where it can; the
stages are imported on first use.
"""

from __future__ import annotations

from genaug.lazy import lazy_exports

from genaug.sdi.samplers import SAMPLERS, Sampler, fit_sampler

_LAZY = {
    "embed_training_images": "genaug.sdi.embed",
    "train_projector": "genaug.sdi.train",
    "evaluate_diffusion_loss": "genaug.sdi.train",
    "ProjectorRun": "genaug.sdi.train",
    "build_bank": "genaug.sdi.sample",
    "sample_features": "genaug.sdi.sample",
    "sample_bank": "genaug.sdi.sample",
    "generate_from_samples": "genaug.sdi.generate",
    "SdiRenderer": "genaug.sdi.generate",
    "Projector": "genaug.sdi.projector",
    "projector_param_count": "genaug.sdi.projector",
    "load_projector": "genaug.sdi.projector",
    "class_token_position": "genaug.diffusion.conditioning",
    "slot_context": "genaug.diffusion.conditioning",
    "SDI_PROMPT": "genaug.diffusion.conditioning",
    "NEGATIVE_PROMPT": "genaug.diffusion.conditioning",
    "FeatureTable": "genaug.sdi.tables",
    "load_table": "genaug.sdi.tables",
    "save_table": "genaug.sdi.tables",
    "REFERENCE_MULTIPLIERS": "genaug.sdi.presets",
    "SDI_PRESETS": "genaug.sdi.presets",
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)

__all__ = ["SAMPLERS", "Sampler", "fit_sampler", *_LAZY]


