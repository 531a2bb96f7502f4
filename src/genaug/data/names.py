"""Class names as prompt text: the one place a class name becomes words in a prompt."""

from __future__ import annotations

import re

_NUMERIC_PREFIX = re.compile(r"^\d+[._\-\s]+")

#: What stands for the class name in a prompt template. ``{}`` (the ``str.format`` spelling
#: SHB's ``prompt`` uses) is read the same way.
CLASS_PLACEHOLDERS = ("{class}", "{}")


def clean_class_name(name: str) -> str:
    """``"001.Black_footed_Albatross"`` -> ``"Black footed Albatross"``.

    Strips a numeric prefix (``001.``, ``12_``, ``3 -``), turns underscores into spaces and
    collapses runs of spaces. Names without those (``"aquarium fish"``) come back unchanged.
    """
    text = _NUMERIC_PREFIX.sub("", name.strip())
    return " ".join(text.replace("_", " ").split()) or name.strip()


def class_prompt(template: str, name: str) -> str:
    """``template`` with the cleaned class name (:func:`clean_class_name`) at ``{class}`` (or ``{}``).

    ``class_prompt("a photo of a {class}", "001.Black_footed_Albatross")`` is
    ``"a photo of a Black footed Albatross"``. Plain replacement: other braces stay as
    they are, and a template without a placeholder comes back unchanged.
    """
    text = clean_class_name(name)
    for placeholder in CLASS_PLACEHOLDERS:
        template = template.replace(placeholder, text)
    return template
