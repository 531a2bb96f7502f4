"""The ``filter`` stage's config (:class:`FilterConfig`; docs/methods/filters.md) and its registration
as a stage kind: a list of registered filters (:data:`genaug.filtering.registry.FILTERS`)
applied in order to a copy of any synthetic set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from genaug.config import StrictModel
from genaug.data.config import DatasetConfig
from genaug.diffusion.models import clip_reference
from genaug.filtering.registry import FILTERS, validate_filter_specs
from genaug.registry import register_stage
from genaug.stage_dirs import earlier_sets, resolve_ref

__all__ = ["FilterConfig"]


class FilterConfig(StrictModel):
    """The ``filter`` stage (docs/methods/filters.md); ``genaug.filtering.filter_set``.

    ``filters`` are applied in order, each to the records the previous ones kept: a list of
    ``{"name": <filter>, <parameter>: <value>, ...}`` with names from
    ``genaug.filtering.FILTERS.names()`` (frames, clip_rank, clip_posneg, classifier,
    dedupe). ``clip`` serves every CLIP filter; ``dataset`` is the real dataset the
    ``dedupe`` filter compares against (its train and test splits). Images are read and
    scored in chunks of ``batch_size``.
    """

    set_dir: Path
    filters: list[dict[str, Any]] = Field(default_factory=lambda: [{"name": "frames"}, {"name": "clip_rank"}])
    clip: str = "pocket"
    dataset: DatasetConfig | None = None
    batch_size: int = 256
    device: Literal["auto", "cpu", "cuda"] = "auto"
    progress: bool = True

    @model_validator(mode="after")
    def _check(self) -> "FilterConfig":
        validate_filter_specs(self.filters)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.dataset is None and any(spec.get("name") == "dedupe" for spec in self.filters):
            raise ValueError("the dedupe filter compares against a real dataset: set 'dataset'")
        return self

    def models(self) -> list[tuple[str, str, str | None]]:
        """``(key, reference, revision)`` of every model this stage loads (the pre-run check and
        the pocket-model warnings read them)."""
        uses_clip = any(FILTERS.get(spec["name"]).uses_clip for spec in self.filters)
        return [("clip", clip_reference(self.clip), None)] if uses_clip else []




def _filter_splits(params: dict[str, Any]) -> set[str]:
    """The ``splits`` of a ``dedupe`` filter (train and test by default: it checks for leakage
    into the test set); the default filters (frames, clip_rank) read train only."""
    from genaug.filtering.filters import DedupeParams

    reads: set[str] = set()
    for spec in params.get("filters", []):
        if isinstance(spec, dict) and spec.get("name") == "dedupe":
            reads.update(spec.get("splits", DedupeParams.model_fields["splits"].default))
    return reads


@register_stage(
    "filter",
    config=FilterConfig,
    output_field="set_dir",
    reads="*",
    splits=_filter_splits,
    description="score and mark the records of a set with registered filters",
)
def run_filter_stage(node, nodes) -> tuple[int, dict]:
    """Filter a copy of the input set: its manifest is copied, its images linked, never touched.

    Two arms may read one set unfiltered and filtered (or filtered two ways): scores and
    verdicts go into this node's own manifest only.
    """
    from genaug.filtering import filter_set
    from genaug.manifest import link_set

    _, source = resolve_ref(nodes, node.input)
    link_set(source, node.dir)
    report = filter_set(node.config, reuse_from=earlier_sets(node))
    reused = {label: sum(counts.values()) for label, counts in report.scores_reused.items()}
    return 0, {"total": report.total, "kept": report.kept, "filter_seconds": report.seconds,
               "scores_reused": reused, "scores_made": report.scores_made}  # fmt: skip
