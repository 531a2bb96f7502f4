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
    "clip_tokenizer": "genaug.rehearsal.tokenizer",
    "STANDINS": "genaug.rehearsal.standins",
    "standin_dir": "genaug.rehearsal.standins",
    "meta_model": "genaug.rehearsal.standins",
    "rehearse": "genaug.rehearsal.run",
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)


