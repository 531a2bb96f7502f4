"""Named sampling presets: settings measured on the sampling frontier, stored with their figures.

``presets.json`` beside this module is written by ``genaug bench sampling --write-presets``
(:func:`genaug.generation.frontier.sweep_sampling` + :func:`store_presets`) and committed.
It maps a model key, ``<generator>/<model reference>`` (``txt2img/pocket:sd``,
``instruct/pocket:ip2p``, ``sdi/pocket:sd``), to named presets:

- ``reference``: the method's own settings (SDI: DDIM 50; DiffuseMix's InstructPix2Pix:
  Euler ancestral, guidance 4, the pipeline's 100 steps; txt2img: the folder's scheduler
  and the pipeline's 50 steps);
- ``fast``: the cheapest measured point within 1 point of ``reference``'s class fidelity
  (and 2 points of its colour realisation), with its figures.

Each preset holds at least ``scheduler`` (a diffusers scheduler class name) and
``num_inference_steps``; also ``precision``, ``batch_size``, ``guidance_scale`` and the
measured ``figures`` (images/s, fidelity, colour, FD, machine, load, date).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from genaug.files import write_json_atomic

PRESETS_FILE = Path(__file__).with_name("presets.json")


def load_presets(path: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """``{model key: {"presets": {name: settings}, "measured": {...}}}`` from the presets file."""
    path = Path(path) if path is not None else PRESETS_FILE
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def preset_models(path: str | Path | None = None) -> list[str]:
    return sorted(load_presets(path))


def preset_names(model: str, path: str | Path | None = None) -> list[str]:
    presets = load_presets(path)
    if model not in presets:
        raise ValueError(f"no sampling presets for model {model!r}; models with presets: {sorted(presets)}")
    return sorted(presets[model]["presets"])


def sampling_preset(model: str, name: str, path: str | Path | None = None) -> dict[str, Any]:
    """The settings of preset ``name`` for ``model`` (a key such as ``"instruct/pocket:ip2p"``).

    A dict with ``scheduler`` (a diffusers scheduler class name), ``num_inference_steps``,
    ``precision``, ``batch_size``, ``guidance_scale`` and the ``figures`` it was measured at.
    """
    names = preset_names(model, path)
    if name not in names:
        raise ValueError(f"unknown sampling preset {name!r} for {model}; allowed: {names}")
    return dict(load_presets(path)[model]["presets"][name])


def store_presets(model: str, presets: dict[str, dict[str, Any]], measured: dict[str, Any], path: str | Path | None = None) -> Path:
    """Replace ``model``'s entry of the presets file (atomically; other models' entries are kept)."""
    path = Path(path) if path is not None else PRESETS_FILE
    data = load_presets(path)
    data[model] = {"presets": presets, "measured": measured}
    return write_json_atomic(path, data, sort_keys=True)
