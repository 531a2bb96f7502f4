"""The mixing registries: online mixers (training loop) and offline mix methods (``mix`` stage).

Their entries are registered beside their code and params models, by the registry's
decorator: the mixers in :mod:`genaug.mixing.mixers`, the mix methods in
:mod:`genaug.mixing.methods`. Both modules import without torch (the registered functions
import it when called), so a config naming an entry (``mixer: cutmix``, ``methods:
[fractal]``) and its parameters (``mixer_kwargs``, a ``fractal: {...}`` block) are checked
when it is loaded.
"""

from __future__ import annotations

from genaug.registry import Registry

__all__ = ["MIXERS", "MIX_METHODS"]

#: Online mixer name -> ``build(**kwargs) -> OnlineMixer``; ``params``: its YAML keyword arguments;
#: facts: what the trainer hands it besides them (``needs_normalisation``, ``needs_fractal_bank``),
#: ``plain`` for the mixer that is a plain forward pass.
MIXERS = Registry("mixer", key="mixer", discover=("genaug.mixing.mixers",))

#: Offline mix method name -> ``mixer(batch, config, resources) -> Mixed``; ``params``: its block;
#: facts: ``fields`` (the MixConfig fields the block sets), ``resources`` (what the stage loads for it).
MIX_METHODS = Registry("mix method", key="methods", discover=("genaug.mixing.methods",))
