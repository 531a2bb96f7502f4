"""Configuration base: strict pydantic models loaded from YAML with dotlist overrides.

Every stage function takes one typed config object. Configs come from YAML files, from
Python, or from ``key.sub=value`` overrides on the command line; an invalid value is a
:class:`ConfigError` naming the field, the value and what is allowed.

This module is the base only (:class:`StrictModel`, :class:`ConfigError`, loading, YAML,
overrides, messages) and imports no other part of genaug. Each config class lives beside
what it configures (``genaug.data.config.DatasetConfig``, ``genaug.training.config``,
``genaug.generation.config``, ``genaug.mixing.config``, ``genaug.sdi.config``,
``genaug.filtering.config``) and is re-exported here on first use, so
``from genaug.config import GenerateConfig`` works.
"""

from __future__ import annotations

from genaug.lazy import exported, lazy_exports

import difflib
import re
import reprlib
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

__all__ = [
    "ConfigError",
    "Problem",
    "COMMAND_LINE",
    "StrictModel",
    "apply_overrides",
    "close_match",
    "did_you_mean",
    "dump_config",
    "load_config",
    "parse_config",
]


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the field and the fix.

    ``problems`` lists what is wrong as :class:`Problem` items when the error comes from
    validating a config (empty for errors raised with a message alone).
    """

    def __init__(self, message: str, problems: "list[Problem] | None" = None) -> None:
        super().__init__(message)
        self.problems: list[Problem] = list(problems or [])


@dataclass(frozen=True)
class Problem:
    """One wrong key: its path as the user wrote it, what is wrong, and where it was written.

    ``source`` is a file or ``the command line``; None while a nested validation has not
    been told yet (the outer :func:`parse_config` fills it in).
    """

    loc: tuple[str | int, ...]
    message: str
    source: str | None = None

    @property
    def path(self) -> str:
        """``arms[0].train.epochs``: dotted keys, list positions in brackets."""
        text = ""
        for part in self.loc:
            text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
        return text

    def line(self, with_source: bool = True) -> str:
        parts = [_where(self.source)] if with_source and self.source else []
        return ": ".join([*parts, *([self.path] if self.loc else []), self.message])


def close_match(word: object, choices) -> str | None:
    """The allowed value closest to ``word`` (difflib), or None when none is close."""
    matches = difflib.get_close_matches(str(word), [str(choice) for choice in choices], n=1, cutoff=0.6)
    return matches[0] if matches else None


def did_you_mean(word: object, choices) -> str:
    """``"; did you mean 'seeds'?"`` when a choice is close to ``word``, else ``""``."""
    match = close_match(word, choices)
    return f"; did you mean '{match}'?" if match else ""


class StrictModel(BaseModel):
    """Base of every config: unknown fields are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


M = TypeVar("M", bound=BaseModel)


#: How errors name key=value overrides given to a command.
COMMAND_LINE = "the command line"


def validation_problems(error: ValidationError, model: type[BaseModel]) -> list[Problem]:
    """Each pydantic error as a :class:`Problem` at the key path the user wrote.

    A nested config validated inside a validator (an experiment's ``train`` block, its
    stages) raises a :class:`ConfigError` whose problems are located below the outer
    error's path; they are spliced in, so the message names the full path.
    """
    problems: list[Problem] = []
    for item in error.errors():
        loc = tuple(item["loc"])
        nested = (item.get("ctx") or {}).get("error")
        if isinstance(nested, ConfigError) and nested.problems:
            problems += [Problem(loc + p.loc, p.message, p.source) for p in nested.problems]
        else:
            message = _problem_message(item, model)
            # "name: unknown dataset ..." or "steps must be >= 1" from a model validator: the
            # field it names joins the path ("name: " is then dropped from the message)
            found = re.match(r"(\w+)(: | )", message)
            if found and item["type"] == "value_error" and found.group(1) in (_model_at(model, loc) or []):
                loc = (*loc, found.group(1))
                message = message[found.end():] if found.group(2) == ": " else message
            problems.append(Problem(loc, message))
    return problems


def _problem_message(item: dict[str, Any], model: type[BaseModel]) -> str:
    kind, loc, got = item["type"], tuple(item["loc"]), item.get("input")
    if kind == "extra_forbidden":
        fields = sorted(_model_at(model, loc[:-1]) or [])
        allowed = f" (allowed: {', '.join(fields)})" if fields else ""
        return f"unknown key '{loc[-1]}'{did_you_mean(loc[-1], fields)}{allowed}"
    message = item["msg"]
    for noise in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(noise)
    if kind == "literal_error" and isinstance(got, str):
        message += did_you_mean(got, re.findall(r"'([^']*)'", str((item.get("ctx") or {}).get("expected", ""))))
    if kind != "value_error" and not isinstance(got, dict):
        message += f" (got {reprlib.repr(got)})"
    return message


def _model_at(model: type[BaseModel], path: tuple) -> list[str] | None:
    """The field names of the config class found at ``path`` below ``model`` (None: not a config)."""
    current: type[BaseModel] | None = model
    skip = False  # the next part is a list position or a mapping key, not a field
    for part in path:
        if skip:
            skip = False
            continue
        field = current.model_fields.get(str(part)) if current is not None else None
        if field is None:
            return None
        current, skip = _config_class(field.annotation)
    return list(current.model_fields) if current is not None else None


def _config_class(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The config class inside an annotation, and whether it sits in a list or mapping."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    container = typing.get_origin(annotation) in (list, dict, tuple)
    for arg in typing.get_args(annotation):
        found, inner = _config_class(arg)
        if found is not None:
            return found, container or inner
    return None, False


def _where(source: str | None) -> str:
    return f"on {source}" if source == COMMAND_LINE else f"in {source}"


def format_problems(problems: list[Problem]) -> str:
    """One line for one problem; else a heading and one indented line per problem."""
    sources = {problem.source for problem in problems}
    if len(problems) == 1:
        problem = problems[0]
        return f"invalid configuration {_where(problem.source)}: {problem.line(with_source=False)}"
    if len(sources) == 1:
        return "\n".join([f"invalid configuration {_where(problems[0].source)}:", *(f"  {p.line(False)}" for p in problems)])
    return "\n".join(["invalid configuration:", *(f"  {p.line()}" for p in problems)])


def apply_overrides(data: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides to a nested dict (values parsed as YAML scalars)."""
    result = dict(data)
    for override in overrides or []:
        if "=" not in override:
            raise ConfigError(f"on {COMMAND_LINE}: override '{override}' is not of the form key.sub=value")
        key, raw = override.split("=", 1)
        parts = [part for part in key.strip().split(".") if part]
        if not parts:
            raise ConfigError(f"on {COMMAND_LINE}: override '{override}' has an empty key")
        value = yaml.safe_load(raw) if raw.strip() else ""
        node = result
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"on {COMMAND_LINE}: override '{override}': '{'.'.join(parts[: i + 1])}' is not a section")
            node[part] = child = dict(child)
            node = child
        node[parts[-1]] = value
    return result


def parse_config(model: type[M], data: dict[str, Any] | None, source: str | None = "config", prefix: tuple = ()) -> M:
    """Validate a dict into ``model``; errors become a :class:`ConfigError` naming each field.

    ``prefix`` is the key path of ``data`` inside what the user wrote (a nested block);
    ``source`` the file or :data:`COMMAND_LINE` (None inside an outer validation, which
    names it).
    """
    try:
        return model.model_validate(data or {})
    except ValidationError as error:
        problems = [
            Problem(prefix + p.loc, p.message, p.source or source) for p in validation_problems(error, model)
        ]
        raise ConfigError(format_problems(problems) if source else problems[0].line(), problems) from None


def parse_with_overrides(model: type[M], data: dict[str, Any], overrides: list[str] | None, source: str) -> M:
    """Validate ``data`` (read from ``source``) with ``overrides`` applied.

    Each problem names where it was written: a problem that ``data`` alone also has is
    the file's, any other one comes from the command line.
    """
    try:
        return parse_config(model, apply_overrides(data, overrides), source)
    except ConfigError as error:
        if not overrides or not error.problems:
            raise
        try:
            parse_config(model, data, source)
            in_file: set = set()
        except ConfigError as file_error:
            in_file = {(p.loc, p.message) for p in file_error.problems}
        problems = [
            Problem(p.loc, p.message, p.source if (p.loc, p.message) in in_file else COMMAND_LINE) for p in error.problems
        ]
        raise ConfigError(format_problems(problems), problems) from None


def source_of(key: str, path: str | Path | None, overrides: list[str] | None) -> str:
    """Where the value at dotted ``key`` was written: :data:`COMMAND_LINE` when an override set
    it (or a section holding it), else the file (the command line when there is none)."""
    for override in overrides or []:
        written = override.split("=", 1)[0].strip()
        if written and (key == written or key.startswith(written + ".") or written.startswith(key + ".")):
            return COMMAND_LINE
    return str(path) if path is not None else COMMAND_LINE


def located(error: Exception, source: str) -> str:
    """``in mine.yaml: <error>`` / ``on the command line: <error>``."""
    return f"{_where(source)}: {error}"


def load_config(model: type[M], path: str | Path | None = None, overrides: list[str] | None = None) -> M:
    """Load ``model`` from a YAML file (optional) plus ``key=value`` overrides."""
    if path is None:
        return parse_config(model, apply_overrides({}, overrides), COMMAND_LINE)
    return parse_with_overrides(model, read_yaml_mapping(path), overrides, str(path))


def read_yaml_mapping(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """A YAML file holding a mapping (empty file: ``{}``); errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} not found: {path}")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path} must hold a mapping at the top level, not {type(loaded).__name__}")
    return loaded


def dump_config(config: BaseModel) -> str:
    """The resolved config as YAML (written beside every artifact)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


# --------------------------------------------------------------------------------------
# The config classes, re-exported from where they live (imported on first use, so that
# this module imports no other part of genaug).
# --------------------------------------------------------------------------------------

_CONFIGS = {
    "genaug.data.config": ("DatasetConfig",),
    "genaug.training.config": ("AugmentationConfig", "TrainLoggingConfig", "TrainConfig", "TrainRunConfig"),
    "genaug.generation.config": ("EngineConfig", "EditorConfig", "GenerateConfig"),
    "genaug.mixing.config": ("FractalBankConfig", "ShbConfig", "MixConfig"),
    "genaug.sdi.config": ("ProjectorTrainConfig", "SdiSampleConfig", "SdiGenerateConfig", "SdiConfig"),
    "genaug.filtering.config": ("FilterConfig",),
}

__getattr__, __dir__ = lazy_exports(__name__, _CONFIGS)

__all__ += exported(_CONFIGS)


