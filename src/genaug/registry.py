"""One registry idiom for every family of named things: models, datasets, editors, schedulers,
filters, mixers, mix methods, losses, LR schedules, data policies, blend schedules, samplers,
prompt presets, stages.

A :class:`Registry` maps a name to an entry: the registered object (a class or a function),
an optional typed ``params`` model (a pydantic model of the keyword arguments it takes) and
facts the callers read (``needs_normalisation`` of a mixer, ``fields`` of a mix method, ...).
There is one way to fill it: the registry's decorator on the function or class, in the module
that holds its code, its params model beside it::

    MIXERS = Registry("mixer", discover=("genaug.mixing.mixers",))

    class CutMixParams(StrictModel):
        alpha: float = 1.0

    @MIXERS.register("cutmix", params=CutMixParams)
    def cutmix(**params):
        from genaug.mixing.online import CutMix  # torch: imported when the mixer is built

        return CutMix(**params)

    MIXERS.names("*mix*")                   # fnmatch pattern, sorted
    MIXERS.validate("cutmx", {}, key="mixer")
    # ConfigError: mixer: unknown mixer 'cutmx'; did you mean 'cutmix'? (allowed: ...)
    MIXERS.create("cutmix", alpha=0.4)

``discover`` names the modules whose decorators fill a registry; they are imported on its
first lookup. They import no torch, diffusers or transformers at module level (those go
inside the registered function), so that a config naming an entry, and its parameters,
are checked without them. A registered class learns its name (``cls.name``), and an
entry's facts are its keyword facts or, failing those, attributes of the registered object
(an editor class states ``default_model`` on itself).

Every lookup of a name that is not registered raises the same error, from the registry
itself: a :class:`genaug.config.ConfigError` of one line naming the config key, the close
match and the allowed names. This module imports nothing of genaug but the config base.

The stage registry (:data:`STAGES`, :func:`register_stage`) lives here too: each subsystem
registers its stage kind (generate, mix, sdi, filter) with its config class, the fields the
experiment runner fills in, what it reads and the sets it writes, beside the stage itself.
"""

from __future__ import annotations

import fnmatch
import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from genaug.config import ConfigError, Problem, did_you_mean, validation_problems

__all__ = ["Entry", "Registry", "STAGES", "StageKind", "register_stage", "stage_kind"]


@dataclass
class Entry:
    """One registered name: the object, its params model, its facts.

    ``entry.<fact>`` reads ``metadata`` (the decorator's keyword facts), else the registered
    object's attribute of that name.
    """

    name: str
    target: Any
    params: type[BaseModel] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        metadata = self.__dict__.get("metadata", {})
        if name in metadata:
            return metadata[name]
        if not name.startswith("_") and "target" in self.__dict__ and hasattr(self.__dict__["target"], name):
            return getattr(self.__dict__["target"], name)
        raise AttributeError(name)


class Registry:
    """Name -> :class:`Entry` (see the module doc).

    ``kind`` names the family in errors (``unknown mixer 'x'``); ``key`` is the config key
    errors name by default; ``discover``: modules imported before the first lookup.
    """

    def __init__(self, kind: str, key: str | None = None, discover: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.key = key or kind
        self._discover = tuple(discover)
        self._discovered = not discover
        self._entries: dict[str, Entry] = {}

    # ------------------------------------------------------------------ registering

    def register(self, name: str, *, params: type[BaseModel] | None = None, **metadata: Any) -> Callable[[Any], Any]:
        """Decorator: ``@REG.register("name", params=Params, **facts)`` on a function or class
        registers it under ``name`` (a class also gets ``cls.name = name``)."""

        def decorate(obj: Any) -> Any:
            if isinstance(obj, type):
                obj.name = name
            self._add(Entry(name, obj, params, metadata))
            return obj

        return decorate

    def _add(self, entry: Entry) -> None:
        if entry.name in self._entries:
            raise ValueError(f"{self.kind} '{entry.name}' is already registered")
        self._entries[entry.name] = entry

    def unregister(self, name: str) -> None:
        """Remove ``name`` (tests registering a temporary entry)."""
        self._entries.pop(name, None)

    # ------------------------------------------------------------------ lookup

    def _ensure(self) -> None:
        if not self._discovered:
            self._discovered = True
            for module in self._discover:
                importlib.import_module(module)

    def names(self, pattern: str | None = None) -> list[str]:
        """Registered names matching the shell-style ``pattern`` (all when None), sorted."""
        self._ensure()
        return sorted(fnmatch.filter(self._entries, pattern) if pattern else self._entries)

    def __contains__(self, name: object) -> bool:
        self._ensure()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def unknown(self, name: object, key: str | None = None) -> ConfigError:
        """The one-line error for a name that is not registered (``key``: dotted, list positions
        as numbers, ``filters.0.name``)."""
        names = self.names()
        message = f"unknown {self.kind} '{name}'{did_you_mean(name, names)} (allowed: {', '.join(names)})"
        loc = tuple(int(part) if part.isdigit() else part for part in (key or self.key).split("."))
        problem = Problem(loc, message)
        return ConfigError(f"{problem.path}: {message}", [problem])

    def spec(self, name: str, key: str | None = None) -> Entry:
        """The entry of ``name``; a :class:`ConfigError` naming ``key`` when there is none."""
        self._ensure()
        if not isinstance(name, str) or name not in self._entries:
            raise self.unknown(name, key)
        return self._entries[name]

    def get(self, name: str, key: str | None = None) -> Any:
        """The registered object of ``name``."""
        return self.spec(name, key).target

    def __getitem__(self, name: str) -> Any:
        return self.get(name)

    # ------------------------------------------------------------------ checking and building

    def validate(self, name: str, kwargs: dict[str, Any] | None = None, key: str | None = None, kwargs_key: str | None = None):
        """Check ``name`` and its ``kwargs`` against the entry's params model.

        Returns the validated params (a model instance), or ``kwargs`` when the entry has
        no params model. Errors are one :class:`ConfigError` line naming ``key`` (for the
        name) or ``kwargs_key.<field>`` (for a parameter) and what is allowed.
        """
        entry = self.spec(name, key)
        kwargs = dict(kwargs or {})
        if entry.params is None:
            return kwargs
        try:
            return entry.params.model_validate(kwargs)
        except ValidationError as error:
            where = tuple((kwargs_key or f"{key or self.key}_kwargs").split("."))
            problems = [Problem(where + p.loc, p.message) for p in validation_problems(error, entry.params)]
            raise ConfigError(f"{self.kind} '{name}': {problems[0].line()}", problems) from None

    def create(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """``object(*args, **params)`` of ``name``; ``kwargs`` validated by its params model first."""
        entry = self.spec(name)
        if entry.params is not None:
            params = self.validate(name, kwargs)
            kwargs = {key: getattr(params, key) for key in params.model_fields_set | set(kwargs)}
        return entry.target(*args, **kwargs)


# ------------------------------------------------------------------------------------- stages


@dataclass
class StageKind:
    """What the experiment runner knows about one kind of stage (registered by its subsystem).

    ``config``: the stage's config class; ``run(node, nodes) -> (made, extra record fields)``.
    The runner fills in ``dataset_field`` (the train split), ``output_field`` (the stage's
    folder) and ``input_field`` (the folder of the set it reads), so a stage in a file may
    not set them. ``reads``: None (the real dataset only), ``"*"`` (any set) or a stage kind
    whose set it reads. ``sets(params)``: the names of the sets it makes when it makes
    several (a mix stage: one per method), else None. ``set_dir(config, folder, method)``:
    the folder of one of its sets (default: the stage folder). ``splits(params)``: real
    splits it reads besides ``train``.
    """

    name: str
    config: type[BaseModel]
    run: Callable[..., tuple[int, dict[str, Any]]]
    output_field: str = "output"
    input_field: str | None = None
    dataset_field: str | None = "dataset"
    reads: str | None = None
    sets: Callable[[dict[str, Any]], list[str]] | None = None
    set_dir: Callable[[Any, Path, str | None], Path] | None = None
    splits: Callable[[dict[str, Any]], set[str]] | None = None
    description: str = ""

    @property
    def runner_fields(self) -> tuple[str, ...]:
        """Fields of the stage's config that the runner sets."""
        return tuple(f for f in (self.dataset_field, self.output_field, self.input_field) if f)

    def fill(self, params: dict[str, Any], dataset: dict[str, Any], output: Path, input_dir: Path | None) -> dict[str, Any]:
        """``params`` with the runner's fields filled in."""
        data = dict(params)
        if self.dataset_field:
            data[self.dataset_field] = dataset
        data[self.output_field] = str(output)
        if self.input_field:
            data[self.input_field] = str(input_dir)
        return data

    def folder_of(self, config: Any, folder: Path, method: str | None = None) -> Path:
        return self.set_dir(config, folder, method) if self.set_dir else folder


def _config_modules() -> tuple[str, ...]:
    """``genaug.<package>.config`` for every subpackage holding a ``config.py`` (found on disk,
    nothing imported): where subsystems register their stage kinds."""
    root = Path(__file__).resolve().parent
    return tuple(f"genaug.{path.parent.name}.config" for path in sorted(root.glob("*/config.py")))


#: Stage kinds; each subsystem's ``config`` module registers its own (found without a list).
STAGES = Registry("stage kind", key="kind", discover=_config_modules())


def register_stage(name: str, *, config: type[BaseModel], **facts: Any) -> Callable[[Callable], Callable]:
    """Decorator on a stage's runner ``run(node, nodes) -> (made, extra)``: register stage kind
    ``name`` with its ``config`` class and the :class:`StageKind` ``facts``."""

    def decorate(run: Callable) -> Callable:
        STAGES.register(name)(StageKind(name=name, config=config, run=run, **facts))
        return run

    return decorate


def stage_kind(name: str, key: str = "kind") -> StageKind:
    """The registered :class:`StageKind` ``name`` (a :class:`ConfigError` naming ``key`` if unknown)."""
    return STAGES.get(name, key)
