"""Class names as prompt text."""

from __future__ import annotations

import re

_NUMERIC_PREFIX = re.compile(r"^\d+[._\-\s]+")


def clean_class_name(name: str) -> str:
    """``"001.Black_footed_Albatross"`` -> ``"Black footed Albatross"``.

    Strips a numeric prefix (``001.``, ``12_``, ``3 -``), turns underscores into spaces and
    collapses runs of spaces. Names without those (``"aquarium fish"``) come back unchanged.
    """
    text = _NUMERIC_PREFIX.sub("", name.strip())
    return " ".join(text.replace("_", " ").split()) or name.strip()
