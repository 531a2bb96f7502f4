"""Generation: the engine (work items, seeds, batches, shards, resume) and the editors.

- :func:`genaug.generation.diffusemix.generate`: the DiffuseMix ``generate`` stage;
- :func:`genaug.generation.engine.run_job`: the engine any generator reuses (SDI too);
- :func:`genaug.generation.seeds.item_seed`: every item's seed (:func:`genaug.seeds.derive_seed`);
- :mod:`genaug.generation.editors`: the editor registry (instruct, img2img, txt2img);
- :func:`genaug.generation.sampling_preset`: measured sampling presets (``reference``, ``fast``);
  :mod:`genaug.generation.frontier` measures them.
"""

from genaug.generation.degenerate import is_degenerate
from genaug.generation.engine import JobReport, plan_batches, run_job
from genaug.generation.items import WorkItem, sanitize_id
from genaug.generation.models import ModelRef, resolve_model, weights_hash
from genaug.generation.presets import sampling_preset
from genaug.generation.runtime import Shard, parse_shard, resolve_shard, select_device
from genaug.generation.seeds import item_seed, seed_generator

__all__ = [
    "JobReport",
    "ModelRef",
    "Shard",
    "WorkItem",
    "generate",
    "is_degenerate",
    "item_seed",
    "parse_shard",
    "plan_batches",
    "resolve_model",
    "resolve_shard",
    "run_job",
    "sampling_preset",
    "sanitize_id",
    "seed_generator",
    "select_device",
    "weights_hash",
]


def __getattr__(name: str):
    # generate pulls in the config and data layers; import it on first use.
    if name == "generate":
        from genaug.generation.diffusemix import generate

        return generate
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
