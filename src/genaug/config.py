"""Configuration: pydantic models for every stage, loaded from YAML with dotlist overrides.

Every stage function takes one typed config object. Configs come from YAML files, from
Python, or from ``key.sub=value`` overrides on the command line; an invalid value is a
:class:`ConfigError` naming the field, the value and what is allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

__all__ = [
    "ConfigError",
    "StrictModel",
    "DatasetConfig",
    "apply_overrides",
    "load_config",
    "parse_config",
]


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the field and the fix."""


class StrictModel(BaseModel):
    """Base of every config: unknown fields are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


DatasetName = Literal[
    "pocket_digits",
    "folder",
    "cifar10",
    "cifar100",
    "cub200",
    "flowers102",
    "pets",
    "cars",
    "dtd",
    "npz",
]


class DatasetConfig(StrictModel):
    """Which real dataset, which split, and how it is subset.

    ``split`` is one of ``train`` (after the validation hold-out and the
    ``labels_per_class`` subset), ``val`` (held out of the training data, seeded),
    ``test`` (the dataset's own test split) or ``pretrain`` (pocket digits only: the pool
    reserved for training the pocket models).
    """

    name: DatasetName = "pocket_digits"
    root: Path | None = None
    split: Literal["train", "val", "test", "pretrain"] = "train"
    labels_per_class: int | None = None
    val_fraction: float = 0.1
    seed: int = 0
    image_size: int | None = None
    strict: bool = False

    @model_validator(mode="after")
    def _check(self) -> "DatasetConfig":
        if self.name != "pocket_digits" and self.root is None:
            raise ValueError(f"dataset '{self.name}' needs a 'root' folder")
        if self.labels_per_class is not None and self.labels_per_class < 1:
            raise ValueError("labels_per_class must be >= 1")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError("val_fraction must be in [0, 1)")
        return self


M = TypeVar("M", bound=BaseModel)


def _format_validation_error(error: ValidationError, source: str) -> str:
    lines = [f"invalid configuration in {source}:"]
    for item in error.errors():
        loc = ".".join(str(part) for part in item["loc"]) or "(top level)"
        got = item.get("input")
        shown = "" if isinstance(got, dict) else f" (got {got!r})"
        lines.append(f"  {loc}: {item['msg']}{shown}")
    return "\n".join(lines)


def apply_overrides(data: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides to a nested dict (values parsed as YAML scalars)."""
    result = dict(data)
    for override in overrides or []:
        if "=" not in override:
            raise ConfigError(f"override '{override}' is not of the form key.sub=value")
        key, raw = override.split("=", 1)
        parts = [part for part in key.strip().split(".") if part]
        if not parts:
            raise ConfigError(f"override '{override}' has an empty key")
        value = yaml.safe_load(raw) if raw.strip() else ""
        node = result
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"override '{override}': '{'.'.join(parts[: i + 1])}' is not a section")
            node[part] = child = dict(child)
            node = child
        node[parts[-1]] = value
    return result


def parse_config(model: type[M], data: dict[str, Any] | None, source: str = "config") -> M:
    """Validate a dict into ``model``; errors become a :class:`ConfigError` naming each field."""
    try:
        return model.model_validate(data or {})
    except ValidationError as error:
        raise ConfigError(_format_validation_error(error, source)) from None


def load_config(model: type[M], path: str | Path | None = None, overrides: list[str] | None = None) -> M:
    """Load ``model`` from a YAML file (optional) plus ``key=value`` overrides."""
    data: dict[str, Any] = {}
    source = "overrides"
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as error:
            raise ConfigError(f"{path} is not valid YAML: {error}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path} must hold a mapping at the top level, not {type(loaded).__name__}")
        data = loaded
    return parse_config(model, apply_overrides(data, overrides), source)


def dump_config(config: BaseModel) -> str:
    """The resolved config as YAML (written beside every artifact)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
