"""Fonts for figures: class names in any script, and never two names drawn alike.

Matplotlib's default font (DejaVu Sans) has no CJK glyphs: Chinese or Japanese class names
come out as boxes, and two such names look the same. :func:`figure_font_families` puts an
installed CJK font (Debian's ``fonts-noto-cjk``, which ``run.sh`` installs when it can)
behind DejaVu Sans, so matplotlib falls back to it glyph by glyph. :func:`figure_labels`
turns class names into labels that the fonts can draw and that stay distinct: a character
no installed font has becomes ``?`` (no "Glyph missing" warnings), and names that end up
alike (shortened, or made of undrawable characters) get their class number.
"""

from __future__ import annotations

from functools import cache

__all__ = ["BASE_FAMILY", "CJK_FAMILIES", "figure_font_families", "drawable", "figure_labels"]

BASE_FAMILY = "DejaVu Sans"
#: CJK-capable families, preferred first (Noto from fonts-noto-cjk, then other common ones).
CJK_FAMILIES = (
    "Noto Sans CJK JP", "Noto Sans CJK SC", "Noto Sans CJK TC", "Noto Sans CJK KR",
    "Source Han Sans", "WenQuanYi Zen Hei", "WenQuanYi Micro Hei", "Droid Sans Fallback",
)  # fmt: skip


#: File-name fragments of CJK fonts (lower case, without '-' and '_').
_CJK_FILE_TAGS = ("notosanscjk", "sourcehansans", "wqy", "droidsansfallback")


@cache
def figure_font_families() -> tuple[str, ...]:
    """``(DejaVu Sans, <the first installed CJK family>)``, or just DejaVu Sans without one."""
    from matplotlib import font_manager

    installed = {font.name for font in font_manager.fontManager.ttflist}
    cjk = next((family for family in CJK_FAMILIES if family in installed), None)
    if cjk is None:  # installed after matplotlib cached its font list: register the files
        for path in font_manager.findSystemFonts():
            if any(tag in path.replace("-", "").replace("_", "").lower() for tag in _CJK_FILE_TAGS):
                try:
                    font_manager.fontManager.addfont(path)
                except (OSError, RuntimeError, ValueError):
                    continue
        installed = {font.name for font in font_manager.fontManager.ttflist}
        cjk = next((family for family in CJK_FAMILIES if family in installed), None)
    return (BASE_FAMILY,) if cjk is None else (BASE_FAMILY, cjk)


@cache
def _charmaps() -> tuple[frozenset[int], ...]:
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    maps = []
    for family in figure_font_families():
        path = font_manager.findfont(font_manager.FontProperties(family=family), fallback_to_default=True)
        maps.append(frozenset(FT2Font(path).get_charmap()))
    return tuple(maps)


def drawable(char: str) -> bool:
    """Whether one of :func:`figure_font_families` has a glyph for ``char`` (whitespace always)."""
    return char.isspace() or any(ord(char) in charmap for charmap in _charmaps())


def figure_labels(names: list[str], limit: int | None = None) -> list[str]:
    """Labels for ``names`` (class names, in label order): undrawable characters as ``?``, cut to
    ``limit`` characters with an ellipsis, and ``"<label> #<number>"`` wherever two would read alike."""
    labels = []
    for name in names:
        text = "".join(char if drawable(char) else "?" for char in str(name))
        if limit is not None and len(text) > limit:
            text = text[: limit - 1] + "…"
        labels.append(text)
    seen: dict[str, int] = {}
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
    return [f"{label} #{number}" if seen[label] > 1 else label for number, label in enumerate(labels)]
