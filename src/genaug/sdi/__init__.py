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

from genaug.lazy import exported, lazy_exports

from genaug.sdi.samplers import SAMPLERS, Sampler, fit_sampler

_LAZY = {
    "genaug.sdi.embed": ("embed_training_images",),
    "genaug.sdi.train": ("train_projector", "evaluate_diffusion_loss", "ProjectorRun"),
    "genaug.sdi.sample": ("build_bank", "sample_features", "sample_bank"),
    "genaug.sdi.generate": ("generate_from_samples", "SdiRenderer"),
    "genaug.sdi.projector": ("Projector", "projector_param_count", "load_projector"),
    "genaug.diffusion.conditioning": ("class_token_position", "slot_context", "SDI_PROMPT", "NEGATIVE_PROMPT"),
    "genaug.sdi.tables": ("FeatureTable", "load_table", "save_table"),
    "genaug.sdi.presets": ("REFERENCE_MULTIPLIERS", "SDI_PRESETS"),
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)

__all__ = ["SAMPLERS", "Sampler", "fit_sampler", *exported(_LAZY)]


