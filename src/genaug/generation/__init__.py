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

from genaug.lazy import exported, lazy_exports

_LAZY = {
    "genaug.degenerate": ("is_degenerate",),
    "genaug.generation.engine": ("JobReport", "plan_batches", "run_job"),
    "genaug.generation.items": ("WorkItem", "sanitize_id"),
    "genaug.diffusion.models": ("ModelRef", "resolve_model", "weights_hash"),
    "genaug.generation.presets": ("sampling_preset",),
    "genaug.runtime": ("Shard", "parse_shard", "resolve_shard", "select_device"),
    "genaug.seeds": ("item_seed", "seed_generator"),
    "genaug.generation.stage": ("generate",),
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)

__all__ = sorted(exported(_LAZY))


