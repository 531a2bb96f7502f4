"""The ``mix`` stage's config (:class:`MixConfig`) and its registration as a stage kind.

Mix methods (concat, rect, fractal, shb, ...) are registered in
:data:`genaug.mixing.registry.MIX_METHODS`, each with its params model; ``methods`` names
them and a ``<method>: {...}`` block holds a method's parameters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from genaug.config import ConfigError, Problem, StrictModel
from genaug.data.config import DatasetConfig
from genaug.diffusion.models import clip_reference
from genaug.mixing.params import FractalBankConfig, ShbConfig
from genaug.mixing.registry import MIX_METHODS
from genaug.registry import register_stage
from genaug.stage_dirs import earlier_sets

__all__ = ["FractalBankConfig", "ShbConfig", "MixConfig"]


class MixConfig(StrictModel):
    """The DiffuseMix ``mix`` stage: combine each generated image with its real source.

    Reads the generated set ``generated`` and the real ``dataset`` its records' source ids
    point to; writes one set per method under ``output/<method>``: ``concat`` (feathered
    halves, orientation drawn per item), ``rect`` (random rectangles of the edit on the
    original), ``fractal`` (a fractal blended in with alpha 0.2; ``fractal_on: concat``
    blends the feathered concatenation as DiffuseMix does, ``generated`` the edit alone),
    ``shb`` (CLIP-guided semantic hybrid blending, parameters in ``shb``).

    ``methods`` are names of :data:`genaug.mixing.registry.MIX_METHODS`. A method's
    parameters may be written as its block, checked by its params model: ``concat:
    {band}``, ``rect: {ratio}``, ``fractal: {alpha, on}`` set ``band``, ``rect_ratio``,
    ``fractal_alpha``, ``fractal_on``; ``shb`` is its own field; the block of any other
    registered method is kept in ``method_params`` (read with :meth:`params_of`).
    """

    generated: Path
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    output: Path
    methods: list[str] = ["concat", "fractal"]
    seed: int = 0
    band: int = 20
    rect_ratio: float = 0.5
    fractal_alpha: float = 0.2
    fractal_on: Literal["concat", "generated"] = "concat"
    fractals: FractalBankConfig = Field(default_factory=FractalBankConfig)
    shb: ShbConfig = Field(default_factory=ShbConfig)
    batch_size: int = 64
    progress: bool = True
    #: Validated parameter blocks of registered methods without stage fields of their own.
    method_params: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _method_blocks(cls, data: Any) -> Any:
        """``<method>: {...}`` blocks: checked by the method's params model; a built-in method's
        block sets the stage fields it names (``fractal: {alpha: 0.3}`` is ``fractal_alpha: 0.3``)."""
        if not isinstance(data, dict):
            return data

        data = dict(data)
        for key in [key for key in data if key not in cls.model_fields and key in MIX_METHODS]:
            block = data.pop(key)
            if not isinstance(block, dict):
                message = f"the parameters of mix method '{key}' must be a mapping, got {block!r}"
                raise ConfigError(f"{key}: {message}", [Problem((key,), message)])
            params = MIX_METHODS.validate(key, block, kwargs_key=key)
            fields = MIX_METHODS.spec(key).metadata.get("fields")
            if fields:
                for name in params.model_fields_set:
                    data[fields[name]] = getattr(params, name)
            else:
                data.setdefault("method_params", {})[key] = params.model_dump(mode="json")
        return data

    @model_validator(mode="after")
    def _check(self) -> "MixConfig":
        if not self.methods:
            raise ValueError(f"methods must name at least one of {', '.join(MIX_METHODS.names())}")
        for method in self.methods:
            if method not in MIX_METHODS:
                raise ValueError(str(MIX_METHODS.unknown(method, key="methods")))
        if not 0.0 < self.rect_ratio <= 1.0 or not 0.0 <= self.fractal_alpha <= 1.0:
            raise ValueError("rect_ratio must be in (0, 1] and fractal_alpha in [0, 1]")
        if self.batch_size < 1 or self.band < 0:
            raise ValueError("batch_size must be >= 1 and band >= 0")
        return self

    def models(self) -> list[tuple[str, str, str | None]]:
        """``(key, reference, revision)`` of every model this stage loads (the pre-run check and
        the pocket-model warnings read them)."""
        return [("shb.clip", clip_reference(self.shb.clip), None)] if "shb" in self.methods else []

    def params_of(self, method: str):
        """The params of ``method`` (its registered params model), from its block or the stage fields."""
        entry = MIX_METHODS.spec(method, key="methods")
        if entry.params is None:
            return None
        fields = entry.metadata.get("fields")
        if fields:
            return entry.params.model_validate({name: getattr(self, field) for name, field in fields.items()})
        if method in type(self).model_fields:  # a block that is a field of its own (shb)
            return getattr(self, method)
        return entry.params.model_validate(self.method_params.get(method, {}))




def _mix_sets(params: dict[str, Any]) -> list[str]:
    return list(params.get("methods", MixConfig.model_fields["methods"].default))


def _mix_set_dir(config: MixConfig, folder: Path, method: str | None) -> Path:
    return folder / (method or config.methods[0])


@register_stage(
    "mix",
    config=MixConfig,
    input_field="generated",
    reads="generate",
    sets=_mix_sets,
    set_dir=_mix_set_dir,
    description="combine each generated image with its real source, one set per method",
)
def run_mix_stage(node, nodes) -> tuple[int, dict]:
    from genaug.mixing.stage import mix

    reports = mix(node.config, reuse_from=earlier_sets(node))
    skipped = sorted({item for report in reports.values() for item in report.skipped_without_source})
    reused = sum(report.reused for report in reports.values())
    return sum(report.made for report in reports.values()), {"skipped_without_source": skipped, "reused": reused}
