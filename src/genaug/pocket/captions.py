"""Texts of the pocket world: caption forms of a styled digit and re-colouring instructions.

A caption states some of a styled digit's three attributes (digit, foreground colour,
background colour); :func:`caption_truth` says which captions are true of which images, so
pocket CLIP's contrastive loss can count every true caption in a batch as a positive.
"""

from __future__ import annotations

import numpy as np

from genaug.pocket.render import COLOR_NAMES, DIGIT_NAMES, caption

#: Caption forms: (template, which attributes it states). ``-1`` in an attribute array = unstated.
CAPTION_FORMS: tuple[tuple[str, tuple[bool, bool, bool]], ...] = (
    ("a photo of the digit {digit}, {fg} on {bg}", (True, True, True)),  # render.CAPTION_TEMPLATE
    ("a photo of the digit {digit}", (True, False, False)),
    ("a photo of a {digit}", (True, False, False)),
    ("a photo of a digit, {fg} on {bg}", (False, True, True)),
    ("a {fg} digit", (False, True, False)),
    ("a digit on {bg}", (False, False, True)),
)
#: Instruction forms for pocket InstructPix2Pix: which of (fg, bg) the edit changes.
INSTRUCTION_FORMS: tuple[tuple[str, tuple[bool, bool]], ...] = (
    ("make it {fg} on {bg}", (True, True)),
    ("make the digit {fg}", (True, False)),
    ("make the background {bg}", (False, True)),
)


def format_caption(form: int, digit: int, fg: int, bg: int) -> str:
    """The caption of ``form`` (an index into :data:`CAPTION_FORMS`) for one styled digit."""
    template = CAPTION_FORMS[form][0]
    if form == 0:
        return caption(digit, fg, bg)
    return template.format(digit=DIGIT_NAMES[digit], fg=COLOR_NAMES[fg], bg=COLOR_NAMES[bg])


def sample_captions(
    digits: np.ndarray, fg: np.ndarray, bg: np.ndarray, form_probs: list[float], rng: np.random.Generator
) -> tuple[list[str], np.ndarray]:
    """One caption per image, its form drawn from ``form_probs``.

    Returns the texts and an ``(N, 3)`` int array of the attributes each caption states
    (digit, fg, bg; ``-1`` where unstated).
    """
    probs = np.asarray(form_probs, dtype=np.float64)
    forms = rng.choice(len(CAPTION_FORMS), size=len(digits), p=probs / probs.sum())
    texts, attrs = [], np.full((len(digits), 3), -1, dtype=np.int64)
    for i, form in enumerate(forms):
        d, f, b = int(digits[i]), int(fg[i]), int(bg[i])
        texts.append(format_caption(int(form), d, f, b))
        stated = CAPTION_FORMS[form][1]
        attrs[i] = [d if stated[0] else -1, f if stated[1] else -1, b if stated[2] else -1]
    return texts, attrs


def caption_truth(image_attrs: np.ndarray, caption_attrs: np.ndarray) -> np.ndarray:
    """``truth[i, j]``: caption ``j`` is true of image ``i`` (every stated attribute matches).

    ``image_attrs`` is ``(N, 3)`` (digit, fg, bg); ``caption_attrs`` is ``(M, 3)`` with ``-1``
    for unstated attributes.
    """
    img = image_attrs[:, None, :]
    cap = caption_attrs[None, :, :]
    return np.all((cap < 0) | (cap == img), axis=-1)


def sample_edits(
    fg: np.ndarray, bg: np.ndarray, rng: np.random.Generator
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """One re-colouring instruction per input style ``(fg, bg)``.

    Returns ``(instructions, new_fg, new_bg)``; every changed colour differs from the old
    one and the result never has ``new_fg == new_bg``.
    """
    k = len(COLOR_NAMES)
    forms = rng.integers(0, len(INSTRUCTION_FORMS), size=len(fg))
    texts, new_fg, new_bg = [], np.array(fg, dtype=np.int64), np.array(bg, dtype=np.int64)
    for i, form in enumerate(forms):
        change_fg, change_bg = INSTRUCTION_FORMS[form][1]
        f, b = int(fg[i]), int(bg[i])
        if change_fg and change_bg:
            while True:
                nf, nb = int(rng.integers(k)), int(rng.integers(k))
                if nf != nb and (nf, nb) != (f, b):
                    break
        elif change_fg:
            nf, nb = int(rng.choice([c for c in range(k) if c not in (f, b)])), b
        else:
            nf, nb = f, int(rng.choice([c for c in range(k) if c not in (f, b)]))
        new_fg[i], new_bg[i] = nf, nb
        texts.append(INSTRUCTION_FORMS[form][0].format(fg=COLOR_NAMES[nf], bg=COLOR_NAMES[nb]))
    return texts, new_fg, new_bg


def attribute_prompts() -> tuple[list[str], np.ndarray]:
    """The single-attribute prompts (forms 1, 4, 5: digit, foreground, background) and their attributes."""
    texts, attrs = [], []
    for d in range(len(DIGIT_NAMES)):
        texts.append(format_caption(1, d, 0, 0))
        attrs.append([d, -1, -1])
    for c in range(len(COLOR_NAMES)):
        texts += [format_caption(4, 0, c, 0), format_caption(5, 0, 0, c)]
        attrs += [[-1, c, -1], [-1, -1, c]]
    return texts, np.array(attrs, dtype=np.int64)


def all_caption_texts() -> list[str]:
    """Every caption and instruction text the pocket world can produce."""
    texts = set()
    k = len(COLOR_NAMES)
    for d in range(len(DIGIT_NAMES)):
        for f in range(k):
            for b in range(k):
                if f != b:
                    texts.update(format_caption(form, d, f, b) for form in range(len(CAPTION_FORMS)))
    for f in range(k):
        for b in range(k):
            if f != b:
                texts.update(t.format(fg=COLOR_NAMES[f], bg=COLOR_NAMES[b]) for t, _ in INSTRUCTION_FORMS)
    return sorted(texts)
