"""Rehearsal at real scale: stand-ins with the real models' architectures, the real CLIP tokenizer,
``genaug rehearse`` (every stage of an experiment at real shapes, measured) and cost estimates.

- :func:`clip_tokenizer`: OpenAI CLIP's 49,408-token tokenizer, offline;
- :func:`standin_dir`: a hub model's stand-in folder (its configs, random weights), built once;
- :func:`rehearse`: run an experiment's stages on stand-ins and write ``rehearsal.json``.
"""

from __future__ import annotations

from genaug.lazy import lazy_exports

__all__ = ["STANDINS", "clip_tokenizer", "rehearse", "standin_dir", "meta_model"]

_LAZY = {
    "genaug.rehearsal.tokenizer": ("clip_tokenizer",),
    "genaug.rehearsal.standins": ("STANDINS", "standin_dir", "meta_model"),
    "genaug.rehearsal.run": ("rehearse",),
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)


