"""Prompt lists and the prompt regimes of the DiffuseMix study (docs/methods/diffusemix.md).

The study's question is prompt diversity: one fixed prompt for every image (``single``),
one random prompt per image (``random``), or every prompt for every image (``all``, the
set grows by the number of prompts). ``{class}`` in a prompt stands for the class name
(:func:`genaug.data.names.class_prompt`).
"""

from __future__ import annotations

from genaug.pocket.render import COLOR_NAMES
from genaug.registry import Registry
from genaug.seeds import item_seed, seed_rng

DIFFUSEMIX_PROMPTS: tuple[str, ...] = (
    "Autumn",
    "snowy",
    "watercolor art",
    "sunset",
    "rainbow",
    "aurora",
    "mosaic",
    "ukiyo-e",
    "a sketch with crayon",
)

# Pocket styles: each palette colour once as the ink and once as the background (the next
# colour in the palette), so the list covers the palette evenly.
_POCKET_PAIRS = tuple((COLOR_NAMES[i], COLOR_NAMES[(i + 1) % len(COLOR_NAMES)]) for i in range(len(COLOR_NAMES)))
POCKET_INSTRUCTIONS: tuple[str, ...] = tuple(f"make it {fg} on {bg}" for fg, bg in _POCKET_PAIRS)
POCKET_ALL_INSTRUCTIONS: tuple[str, ...] = (
    tuple(f"make it {fg} on {bg}" for fg in COLOR_NAMES for bg in COLOR_NAMES if fg != bg)
    + tuple(f"make the digit {color}" for color in COLOR_NAMES)
    + tuple(f"make the background {color}" for color in COLOR_NAMES)
)
POCKET_CAPTIONS: tuple[str, ...] = tuple(f"a photo of the digit {{class}}, {fg} on {bg}" for fg, bg in _POCKET_PAIRS)
CLASS_TEMPLATE: tuple[str, ...] = ("a photo of a {class}",)

#: Prompt preset name -> ``fn() -> templates`` (``prompts: <name>`` in a generate stage).
PROMPT_PRESETS = Registry("prompt preset", key="prompts")


def _templates(templates: tuple[str, ...]):
    """The preset function of a fixed list."""
    return lambda: templates


for _name, _list in {
    "diffusemix": DIFFUSEMIX_PROMPTS,  # DiffuseMix's nine style prompts
    "pocket": POCKET_INSTRUCTIONS,  # pocket styles: each palette colour once as the ink, once as the background
    "pocket_all": POCKET_ALL_INSTRUCTIONS,  # every ink-on-background pair, and the digit or background alone in each colour
    "pocket_captions": POCKET_CAPTIONS,  # text-to-image captions of the pocket styles
    "class_template": CLASS_TEMPLATE,  # the class name alone: "a photo of a {class}"
}.items():
    PROMPT_PRESETS.register(_name)(_templates(_list))
del _name, _list


def resolve_prompts(prompts: str | list[str] | tuple[str, ...]) -> list[str]:
    """A preset name or an explicit list, as a list of prompt templates."""
    if isinstance(prompts, str):
        return list(PROMPT_PRESETS.get(prompts)())
    if not prompts:
        raise ValueError("the prompt list is empty")
    return list(prompts)


def prompt_indices(regime: str, n_prompts: int, experiment_seed: int, base_id: str, prompt_index: int = 0) -> list[int]:
    """Which prompts one source image gets under ``regime``.

    ``random`` draws from a seed derived from ``(experiment seed, base id + "/prompt")``:
    the choice cannot come from the item's own seed because the item id contains it.
    """
    if regime == "single":
        if not 0 <= prompt_index < n_prompts:
            raise ValueError(f"prompt_index {prompt_index} is outside the {n_prompts} prompts")
        return [prompt_index]
    if regime == "random":
        return [int(seed_rng(item_seed(experiment_seed, f"{base_id}/prompt")).integers(n_prompts))]
    if regime == "all":
        return list(range(n_prompts))
    raise ValueError(f"regime must be single, random or all, got {regime!r}")
