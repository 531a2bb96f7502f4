"""Work items: one image to make, with a stable id and its derived seed."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from genaug.generation.seeds import derive_seed
from genaug.manifest import check_id

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def sanitize_id(text: str) -> str:
    """A string made safe as (part of) a record id: unsafe runs become '_', no leading dot.

    Different inputs can collide after sanitising (``a/b`` and ``a_b``); callers building
    ids from real ids check uniqueness (:func:`check_unique_ids`).
    """
    cleaned = _UNSAFE.sub("_", str(text)).strip("_")
    cleaned = cleaned.lstrip("._-") or "x"
    return cleaned[:150]


@dataclass(frozen=True)
class WorkItem:
    """One image to generate.

    ``seed`` is :func:`derive_seed` of the experiment seed and ``id``; ``source_index`` is the
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
        return self.seed if attempt == 0 else derive_seed(experiment_seed, self.id, attempt)


def check_unique_ids(items: list[WorkItem]) -> None:
    """Two items with one id would overwrite each other's image: refuse the job."""
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise ValueError(f"two work items share the id {item.id!r} (source ids that sanitise alike?)")
        seen.add(item.id)
