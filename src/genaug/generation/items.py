"""Work items: one image to make, with a stable id and its derived seed."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from genaug.manifest import check_id
from genaug.seeds import item_seed

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_PRINTABLE_ASCII = re.compile(r"[ -~]*")
_MAX_LENGTH = 150


def sanitize_id(text: str) -> str:
    """A string made safe as (part of) a record id: unsafe runs become '_', no leading dot.

    Printable ASCII keeps its sanitised form (``train/cat/001.png`` -> ``train_cat_001.png``),
    so existing ids and the seeds derived from them do not move. Anything else loses
    characters when sanitised (``cat/猫3.jpg`` and ``cat/狗3.jpg`` would both be
    ``cat_3.jpg``), so it gets a suffix of 8 hex digits of the original's SHA-256:
    ``cat_3.jpg-<8 hex>``. Names that are printable ASCII can still meet after sanitising
    (``a/b`` and ``a_b``): :func:`unique_ids` separates those.
    """
    text = str(text)
    cleaned = _UNSAFE.sub("_", text).strip("_").lstrip("._-")
    if _PRINTABLE_ASCII.fullmatch(text):
        return (cleaned or "x")[:_MAX_LENGTH]
    return _with_digest(cleaned, text)


def _with_digest(cleaned: str, text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{cleaned[: _MAX_LENGTH - 9]}-{digest}" if cleaned else digest


def unique_ids(texts: Sequence[str]) -> list[str]:
    """:func:`sanitize_id` of each text; texts whose sanitised forms meet all get the digest suffix.

    A distinct text never shares its result with another (the suffix hashes the original).
    """
    cleaned = [sanitize_id(text) for text in texts]
    owners: dict[str, set[str]] = {}
    for text, result in zip(texts, cleaned):
        owners.setdefault(result, set()).add(str(text))
    return [
        _with_digest(result, str(text)) if len(owners[result]) > 1 else result for text, result in zip(texts, cleaned)
    ]


@dataclass(frozen=True)
class WorkItem:
    """One image to generate.

    ``seed`` is :func:`item_seed` of the experiment seed and ``id``; ``source_index`` is the
    row of the source image in the real dataset (editors), ``extra`` carries what a
    particular generator needs beyond a prompt (e.g. an SDI embedding reference).
    """

    id: str
    seed: int
    label: int
    class_name: str
    prompt: str | None = None
    prompt_index: int | None = None
    negative_prompt: str | None = None
    source_id: str | None = None
    source_index: int | None = None
    extra: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def __post_init__(self) -> None:
        check_id(self.id)

    def attempt_seed(self, experiment_seed: int, attempt: int) -> int:
        """The seed of regeneration ``attempt`` (0 = :attr:`seed`)."""
        return self.seed if attempt == 0 else item_seed(experiment_seed, self.id, attempt)


def check_unique_ids(items: list[WorkItem]) -> None:
    """Two items with one id would overwrite each other's image: refuse the job."""
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise ValueError(f"two work items share the id {item.id!r} (source ids that sanitise alike?)")
        seen.add(item.id)
