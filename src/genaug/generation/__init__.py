"""Generation: the engine (work items, seeds, batches, shards, resume) and the editors.

- :func:`genaug.generation.stage.generate`: the ``generate`` stage of every editor;
- :func:`genaug.generation.engine.run_job`: the engine any generator reuses (SDI too);
- :func:`genaug.seeds.item_seed`: every item's seed (:func:`genaug.seeds.derive_seed`);
- :mod:`genaug.generation.editors`: the editor registry (instruct, img2img, txt2img,
  real_guidance, diffmix, dafusion, ...);
- :func:`genaug.generation.sampling_preset`: measured sampling presets (``reference``, ``fast``);
  :mod:`genaug.generation.frontier` measures them.

Names are imported on first use, so reading a config does not import torch.
"""

from __future__ import annotations

from genaug.lazy import lazy_exports

_LAZY = {
    "is_degenerate": "genaug.degenerate",
    "JobReport": "genaug.generation.engine",
    "plan_batches": "genaug.generation.engine",
    "run_job": "genaug.generation.engine",
    "WorkItem": "genaug.generation.items",
    "sanitize_id": "genaug.generation.items",
    "ModelRef": "genaug.diffusion.models",
    "resolve_model": "genaug.diffusion.models",
    "weights_hash": "genaug.diffusion.models",
    "sampling_preset": "genaug.generation.presets",
    "Shard": "genaug.runtime",
    "parse_shard": "genaug.runtime",
    "resolve_shard": "genaug.runtime",
    "select_device": "genaug.runtime",
    "item_seed": "genaug.seeds",
    "seed_generator": "genaug.seeds",
    "generate": "genaug.generation.stage",
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)

__all__ = sorted(_LAZY)


