"""Configuration: pydantic models for every stage, loaded from YAML with dotlist overrides.

Every stage function takes one typed config object. Configs come from YAML files, from
Python, or from ``key.sub=value`` overrides on the command line; an invalid value is a
:class:`ConfigError` naming the field, the value and what is allowed.
"""

from __future__ import annotations

import re
import reprlib
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

__all__ = [
    "ConfigError",
    "Problem",
    "COMMAND_LINE",
    "StrictModel",
    "DatasetConfig",
    "apply_overrides",
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
    import difflib

    matches = difflib.get_close_matches(str(word), [str(choice) for choice in choices], n=1, cutoff=0.6)
    return matches[0] if matches else None


def did_you_mean(word: object, choices) -> str:
    """``"; did you mean 'seeds'?"`` when a choice is close to ``word``, else ``""``."""
    match = close_match(word, choices)
    return f"; did you mean '{match}'?" if match else ""


class StrictModel(BaseModel):
    """Base of every config: unknown fields are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


class DatasetConfig(StrictModel):
    """Which real dataset, which split, and how it is subset (``genaug.data.load_dataset``).

    ``name`` is a registered dataset (``genaug.data.dataset_names()``: pocket_digits,
    folder, cifar10, cifar100, cub200, flowers102, pets, cars, dtd, npz). ``split`` is one
    of ``train`` (after the validation hold-out and the ``labels_per_class`` subset),
    ``val`` (the dataset's own validation split if it has one, else held out of the
    training data, stratified per class and seeded), ``test`` (the dataset's own test
    split) or ``pretrain`` (pocket digits only: the pool reserved for training the pocket
    models).

    ``None`` means "the dataset's default" for ``labels_per_class`` (10 for pocket digits,
    every image otherwise; ``"all"`` asks for every image explicitly) and for
    ``val_fraction`` (0.4 of the train pool for pocket digits, whose pool is small; 0.1
    otherwise). ``test_fraction`` is read only by ``folder`` trees without a ``test/``
    folder (None = 0.2) and ``classes`` only by ``npz`` (class names, in label order).
    ``image_size`` is the side length images are packed at (``pack_images``); it is
    required for datasets of image files. ``strict`` turns any unusable image or empty
    class folder into an error instead of a listed skip.
    """

    name: str = "pocket_digits"
    root: Path | None = None
    split: Literal["train", "val", "test", "pretrain"] = "train"
    labels_per_class: int | Literal["all"] | None = None
    val_fraction: float | None = None
    test_fraction: float | None = None
    classes: list[str] | None = None
    seed: int = 0
    image_size: int | None = None
    strict: bool = False

    @model_validator(mode="after")
    def _check(self) -> "DatasetConfig":
        # The registry is the one list of datasets. Importing it imports the genaug.data
        # package, whose loader modules register themselves (none imports this module at
        # import time, so this works while this module is still being imported).
        from genaug.data.registry import dataset_names, dataset_spec

        def readers(option: str) -> str:
            return ", ".join(name for name in dataset_names() if option in dataset_spec(name).options)

        if self.name not in dataset_names():
            raise ValueError(
                f"name: unknown dataset '{self.name}'{did_you_mean(self.name, dataset_names())} "
                f"(allowed: {', '.join(dataset_names())})"
            )
        spec = dataset_spec(self.name)
        if spec.needs_root and self.root is None:
            raise ValueError(f"dataset '{self.name}' needs a 'root' ({spec.root_hint})")
        if self.split not in spec.splits:
            raise ValueError(f"split '{self.split}' is not available for '{self.name}'; allowed: {', '.join(spec.splits)}")
        if isinstance(self.labels_per_class, int) and self.labels_per_class < 1:
            raise ValueError(f"labels_per_class must be >= 1 or 'all', got {self.labels_per_class}")
        if self.val_fraction is not None and not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.test_fraction is not None:
            if "test_fraction" not in spec.options:
                raise ValueError(f"test_fraction is only used by: {readers('test_fraction')}")
            if not 0.0 < self.test_fraction < 1.0:
                raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        if self.classes is not None and "classes" not in spec.options:
            raise ValueError(f"classes is only used by: {readers('classes')}")
        if self.image_size is not None and self.image_size < 1:
            raise ValueError(f"image_size must be >= 1, got {self.image_size}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        return self


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
# Training (genaug.training). Every recipe field defaults to None = "take the value of the
# preset named by `recipe`"; `genaug.training.resolve_recipe` fills them in, and the fully
# resolved config is what a run writes beside itself (config.yaml).
# --------------------------------------------------------------------------------------

RecipeName = Literal["cifar", "finegrained", "pocket"]
LossName = Literal["ce", "bce_softmax"]
LrScheduleName = Literal["step", "cosine"]
DataPolicyName = Literal["real_only", "concat", "subset", "curriculum", "synthetic_probability", "multiples"]
Triple = tuple[float, float, float]


class AugmentationConfig(StrictModel):
    """The train-time input pipeline (METHODS.md 1.1 / 1.2), applied batched on tensors.

    Images are packed once at ``image_size`` x ``image_size`` (resized if they differ);
    training takes a random ``crop`` after ``padding`` on every side (``padding_mode`` as
    torchvision's: ``constant`` zeros, ``edge`` or ``reflect``), a random
    ``rotation`` in [-rotation, rotation] degrees before cropping and a random horizontal
    ``flip``; evaluation takes the centre ``crop``. Then ``(x / 255 - mean) / std``.
    """

    image_size: int | None = None
    crop: int | None = None
    padding: int | None = None
    padding_mode: Literal["constant", "edge", "reflect"] | None = None
    flip: bool | None = None
    rotation: float | None = None
    mean: Triple | None = None
    std: Triple | None = None

    @model_validator(mode="after")
    def _check(self) -> "AugmentationConfig":
        for name in ("image_size", "crop"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if self.padding is not None and self.padding < 0:
            raise ValueError(f"padding must be >= 0, got {self.padding}")
        if self.rotation is not None and not 0.0 <= self.rotation <= 180.0:
            raise ValueError(f"rotation must be in [0, 180] degrees, got {self.rotation}")
        if self.std is not None and min(self.std) <= 0:
            raise ValueError(f"std must be positive, got {self.std}")
        if self.image_size is not None and self.crop is not None and self.padding is not None:
            if self.crop > self.image_size + 2 * self.padding:
                raise ValueError(
                    f"crop {self.crop} does not fit in image_size {self.image_size} + 2 * padding {self.padding}"
                )
        return self


class TrainLoggingConfig(StrictModel):
    """Where per-epoch metrics go: metrics.csv always, TensorBoard (``tb/``) and wandb optional."""

    tensorboard: bool = True
    wandb: Literal["off", "online", "offline"] = "off"
    wandb_project: str = "genaug"
    progress: bool = True


class TrainConfig(StrictModel):
    """One classifier training run (``genaug.training.train``): a recipe preset plus overrides.

    ``recipe`` names a preset (``cifar``: METHODS.md 1.1; ``finegrained``: 1.2; ``pocket``:
    the 16x16 pocket digits); every field from ``model`` to ``augmentation`` left at None
    takes the preset's value, any value given wins, field by field.
    ``lr_schedule``: ``step`` (linear warm-up over ``warmup_epochs`` from ``warmup_factor``,
    then x ``lr_decay`` at each of ``milestones``) or ``cosine`` (to 0 over ``epochs``);
    stepped once per epoch. ``loss``: ``ce`` or ``bce_softmax`` (the reference's).

    ``batch_size`` is the GLOBAL batch: with several processes each one takes
    ``batch_size / world_size`` samples of every batch, so a recipe means the same thing
    on 1 or 8 devices (the CIFAR recipe's 128 is one GPU's batch; the SDI recipe's "128
    per device" is reproduced by setting ``batch_size = 128 * devices``).

    Run settings (not in presets, except ``cpu_threads`` = 1 for ``pocket``): validation
    every ``eval_every`` epochs; ``report_reference`` also tests every epoch for the
    reference-style best / median-of-last-10 test top-1; ``precision`` fp32, bf16
    (autocast, CPU or CUDA) or fp16 (CUDA, with gradient scaling); ``channels_last``;
    ``device``; ``cpu_threads`` (None = torch's default); ``seed`` (every epoch's
    randomness derives from it and the epoch); ``mixer`` + ``mixer_kwargs``
    (``genaug.mixing.online``, ``none`` = plain forward; the trainer supplies what YAML
    cannot hold: ``puzzlemix`` and ``fractal`` get ``augmentation.mean``/``std``, and
    ``fractal`` its bank from ``mixer_kwargs.bank``, the fields of
    :class:`FractalBankConfig`: ``count``, ``size``, ``seed`` or ``folder``);
    ``data_policy`` + ``data_policy_kwargs`` (``genaug.training.policies``, METHODS.md 1.3):

    - ``real_only``, ``concat``: no kwargs;
    - ``subset``: ``labels_per_class`` (None = each class's real count), ``seed`` (0);
    - ``curriculum``: ``schedule`` (linear, step, warmup, cosine, constant) and that
      schedule's parameters (``milestones``/``values``, ``warmup_epochs``, ``p``);
    - ``synthetic_probability``: ``p`` (0.5);
    - ``multiples``: ``multiples`` (1.0), ``seed`` (0).

    ``logging``; ``checkpoint_every`` epochs (and always after the last). ``keep_checkpoint``:
    keep the last checkpoint (weights, optimiser state) of a finished run; ``false`` keeps only
    the selected weights (``best.safetensors``) once ``metrics.json`` is written (the default
    in experiments, where it does not enter the run's key).
    """

    recipe: RecipeName = "cifar"
    model: str | None = None
    width: float | None = None
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    momentum: float | None = None
    nesterov: bool | None = None
    weight_decay: float | None = None
    lr_schedule: LrScheduleName | None = None
    warmup_epochs: int | None = None
    warmup_factor: float | None = None
    milestones: list[int] | None = None
    lr_decay: float | None = None
    loss: LossName | None = None
    augmentation: AugmentationConfig = AugmentationConfig()

    eval_every: int = 1
    report_reference: bool = False
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    channels_last: bool = False
    device: Literal["auto", "cpu", "cuda"] = "auto"
    cpu_threads: int | None = None
    seed: int = 0
    mixer: str = "none"
    mixer_kwargs: dict[str, Any] = {}
    data_policy: DataPolicyName = "real_only"
    data_policy_kwargs: dict[str, Any] = {}
    logging: TrainLoggingConfig = TrainLoggingConfig()
    checkpoint_every: int = 1
    keep_checkpoint: bool = True

    @model_validator(mode="after")
    def _check(self) -> "TrainConfig":
        positive = ("epochs", "batch_size", "eval_every", "checkpoint_every", "cpu_threads")
        for name in positive:
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if self.width is not None and self.width <= 0:
            raise ValueError(f"width must be > 0, got {self.width}")
        if self.lr is not None and self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        for name in ("momentum", "weight_decay", "warmup_epochs"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if self.warmup_factor is not None and not 0.0 < self.warmup_factor <= 1.0:
            raise ValueError(f"warmup_factor must be in (0, 1], got {self.warmup_factor}")
        if self.milestones is not None and sorted(self.milestones) != list(self.milestones):
            raise ValueError(f"milestones must be increasing, got {self.milestones}")
        return self


__all__ += ["AugmentationConfig", "TrainLoggingConfig", "TrainConfig"]


# ---------------------------------------------------------------------------- generation and mixing
# (genaug.generation, genaug.mixing.stage; METHODS.md 2.1-2.3)

from pydantic import Field  # noqa: E402  (kept with the classes that use it)


class EngineConfig(StrictModel):
    """How a generation job runs (``genaug.generation.engine.run_job``).

    ``batch_size`` images go through the pipeline in one call; the batch plan is a fixed
    function of the job and this size, so keep it when resuming (pixels are bit-identical
    for the same plan). ``shard`` is ``"i/n"`` (else ranks come from torchrun / accelerate
    launch). ``max_regenerations``: degenerate outputs are remade with the next derived seed
    at most this many times. ``dry_run`` prints the item count and a time estimate only.
    """

    batch_size: int = 8
    device: str = "auto"
    dtype: Literal["auto", "fp32", "fp16", "bf16"] = "auto"
    shard: str | None = None
    max_regenerations: int = 3
    dry_run: bool = False
    progress: bool = True

    @model_validator(mode="after")
    def _check(self) -> "EngineConfig":
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.max_regenerations < 0:
            raise ValueError(f"max_regenerations must be >= 0, got {self.max_regenerations}")
        if self.shard is not None:
            from genaug.generation.runtime import parse_shard

            parse_shard(self.shard)
        return self


class EditorConfig(StrictModel):
    """Which editor and model make the images, and its sampling parameters.

    ``name``: a registered editor (``genaug.generation.editors.editor_names()``: instruct,
    img2img, txt2img, real_guidance, dafusion, diffmix). ``model``: a hub id, a pipeline folder or ``pocket:<name>``; None =
    the editor's pocket model. ``None`` for ``steps``, ``guidance_scale``,
    ``image_guidance_scale`` and ``scheduler`` means the editor's default (instruct: Euler
    ancestral, guidance 4, image guidance 1.5, the library's step count). ``size``: working
    side length (None = the model's native ``unet.sample_size * vae_scale_factor``; 256 in
    the real-scale DiffuseMix config). ``preset``: a named sampling preset of this editor and
    model (``genaug.generation.sampling_preset``: ``reference``, ``fast``), measured by
    ``genaug bench sampling``; it sets the scheduler, steps and autocast precision, and
    ``steps`` / ``scheduler`` given here still win. ``options``: the editor's own parameters,
    checked by its ``Options`` model (e.g. dafusion's ``strengths``, diffmix's ``gamma``).
    """

    name: str = "instruct"
    model: str | None = None
    revision: str | None = None
    steps: int | None = None
    guidance_scale: float | None = None
    image_guidance_scale: float | None = None
    strength: float = 0.5
    size: int | None = None
    scheduler: str | None = None
    negative_prompt: str | None = None
    preset: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> "EditorConfig":
        from genaug.generation.editors import EDITORS, SCHEDULERS, editor_names

        if self.name not in editor_names():
            raise ValueError(f"editor must be one of {editor_names()}, got {self.name!r}")
        EDITORS[self.name].check_options(self.options)
        if self.preset is not None:
            from genaug.generation.presets import sampling_preset

            sampling_preset(f"{self.name}/{self.model or EDITORS[self.name].default_model}", self.preset)
        if self.scheduler is not None and self.scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler must be one of {sorted(SCHEDULERS)}, got {self.scheduler!r}")
        if not 0.0 < self.strength <= 1.0:
            raise ValueError(f"strength must be in (0, 1], got {self.strength}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.size is not None and self.size < 8:
            raise ValueError(f"size must be >= 8, got {self.size}")
        return self


class GenerateConfig(StrictModel):
    """The DiffuseMix ``generate`` stage: edit (or synthesise) images of a real dataset.

    ``prompts``: a preset name (``diffusemix``, ``pocket``, ``pocket_captions``,
    ``class_template``; ``genaug.generation.prompts.PROMPT_PRESETS``) or a list; None = the
    editor's default preset. ``{class}`` in a prompt is replaced by the class name.
    ``regime``: ``single`` (prompt ``prompt_index`` for every image), ``random`` (one prompt
    per image drawn from its seed) or ``all`` (every prompt for every image).
    """

    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    output: Path
    seed: int = 0
    editor: EditorConfig = Field(default_factory=EditorConfig)
    prompts: str | list[str] | None = None
    regime: Literal["single", "random", "all"] = "single"
    prompt_index: int = 0
    engine: EngineConfig = Field(default_factory=EngineConfig)

    @model_validator(mode="after")
    def _check(self) -> "GenerateConfig":
        from genaug.generation.prompts import PROMPT_PRESETS

        if isinstance(self.prompts, str) and self.prompts not in PROMPT_PRESETS:
            raise ValueError(f"prompts must be a list or one of the presets {sorted(PROMPT_PRESETS)}, got {self.prompts!r}")
        if isinstance(self.prompts, list) and not self.prompts:
            raise ValueError("prompts must not be an empty list")
        if self.prompt_index < 0:
            raise ValueError(f"prompt_index must be >= 0, got {self.prompt_index}")
        return self


class FractalBankConfig(StrictModel):
    """A fractal bank (METHODS.md 2.3): ``count`` seeded IFS fractals of side ``size``, or a folder of images."""

    count: int = 256
    size: int = 64
    seed: int = 0
    folder: Path | None = None

    @model_validator(mode="after")
    def _check(self) -> "FractalBankConfig":
        if self.count < 1 or self.size < 8:
            raise ValueError(f"need count >= 1 and size >= 8, got count={self.count}, size={self.size}")
        return self


class ShbConfig(StrictModel):
    """Semantic hybrid blending in the ``mix`` stage (METHODS.md 3; ``genaug.mixing.semantic_hybrid_blend``).

    ``patch`` / ``stride`` in pixels of the original image; None scales them with the image
    (``genaug.mixing.scale_patch``: 32 / 16 from 64 px up, half the image below; a
    ``patch`` without ``stride`` gets overlap 0.5). ``percentile`` of the least class-like
    pixels come back from the original, after Gaussian smoothing with ``sigma``; ``mode``
    ``binary`` thresholds the smoothed mask at 0.5, ``soft`` blends with it. ``clip``:
    ``pocket``, a hub id (``openai/clip-vit-base-patch32``, the reference) or a folder;
    ``prompt`` takes the class name at ``{}``. ``clip_batch_size`` patches go through CLIP
    at once (None: about 20 MB of preprocessed pixels, 34 patches at 224 px).
    ``heatmaps`` also saves each pair's similarity map as ``heatmaps/<id>.png`` in the set
    (grey levels = normalised similarity), referenced from the record. ``size`` runs SHB at
    that side length instead of the original's (METHODS.md 3: at the generation resolution,
    e.g. 256 for CIFAR edits made at 256 px, where a 32 px patch grid is more than 1x1): the
    original is upsampled and the edit resized from its own file to ``size`` x ``size``, and
    the output set holds images of that size (training resizes them to its recipe's size).
    """

    patch: int | None = None
    size: int | None = None
    stride: int | None = None
    percentile: float = 30.0
    sigma: float = 5 / 3
    mode: Literal["binary", "soft"] = "binary"
    clip: str = "pocket"
    prompt: str = "a photo of a {}"
    clip_batch_size: int | None = None
    heatmaps: bool = False
    device: Literal["auto", "cpu", "cuda"] = "auto"

    @model_validator(mode="after")
    def _check(self) -> "ShbConfig":
        for name in ("patch", "stride", "size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 (or null to scale with the image), got {value}")
        if not 0.0 <= self.percentile <= 100.0:
            raise ValueError(f"percentile must be in [0, 100], got {self.percentile}")
        if self.sigma < 0 or (self.clip_batch_size is not None and self.clip_batch_size < 1):
            raise ValueError("sigma must be >= 0 and clip_batch_size >= 1 (or null)")
        if self.prompt.count("{}") != 1:
            raise ValueError(f"prompt must hold exactly one '{{}}' for the class name, got {self.prompt!r}")
        return self


class MixConfig(StrictModel):
    """The DiffuseMix ``mix`` stage: combine each generated image with its real source.

    Reads the generated set ``generated`` and the real ``dataset`` its records' source ids
    point to; writes one set per method under ``output/<method>``: ``concat`` (feathered
    halves, orientation drawn per item), ``rect`` (random rectangles of the edit on the
    original), ``fractal`` (a fractal blended in with alpha 0.2; ``fractal_on: concat``
    blends the feathered concatenation as DiffuseMix does, ``generated`` the edit alone),
    ``shb`` (CLIP-guided semantic hybrid blending, parameters in ``shb``).
    """

    generated: Path
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    output: Path
    methods: list[Literal["concat", "rect", "fractal", "shb"]] = ["concat", "fractal"]
    seed: int = 0
    band: int = 20
    rect_ratio: float = 0.5
    fractal_alpha: float = 0.2
    fractal_on: Literal["concat", "generated"] = "concat"
    fractals: FractalBankConfig = Field(default_factory=FractalBankConfig)
    shb: ShbConfig = Field(default_factory=ShbConfig)
    batch_size: int = 64
    progress: bool = True

    @model_validator(mode="after")
    def _check(self) -> "MixConfig":
        if not self.methods:
            raise ValueError("methods must name at least one of concat, rect, fractal, shb")
        if not 0.0 < self.rect_ratio <= 1.0 or not 0.0 <= self.fractal_alpha <= 1.0:
            raise ValueError("rect_ratio must be in (0, 1] and fractal_alpha in [0, 1]")
        if self.batch_size < 1 or self.band < 0:
            raise ValueError("batch_size must be >= 1 and band >= 0")
        return self


__all__ += ["EngineConfig", "EditorConfig", "GenerateConfig", "FractalBankConfig", "ShbConfig", "MixConfig"]


# ---------------------------------------------------------------------------- SDI and filtering
# (genaug.sdi, genaug.filtering; METHODS.md 5)

SdiPresetName = Literal["sd15", "pocket"]
SdiPool = Literal["train", "pretrain"]


class ProjectorTrainConfig(StrictModel):
    """Projector training (METHODS.md 5.1); ``genaug.sdi.train.train_projector``.

    Fields left at None take the preset's value (``genaug.sdi.presets.SDI_PRESETS``):
    ``sd15`` is the reference (hidden 1024, global batch 64, 100 epochs, 512 px, AdamW
    5e-4 / weight decay 0.01, 5 % embedding dropout, the dataset's training images);
    ``pocket`` scales it to the pocket world (16 px, hidden 256, and the unlabeled
    pretraining pool besides the few-shot train set). ``preset`` None: ``pocket`` for
    ``pocket:`` models, else ``sd15``. ``batch_size`` is global (split across processes).
    ``max_steps`` stops early (smoke runs). ``latents``: ``sample`` draws a fresh sample
    of each image's cached latent distribution every step, as the reference does by
    encoding every step; ``mean`` uses the distribution's mean. ``checkpoint_every`` counts
    optimiser steps.
    """

    preset: SdiPresetName | None = None
    hidden: int | None = None
    epochs: int | None = None
    max_steps: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    weight_decay: float | None = None
    embedding_dropout: float | None = None
    resolution: int | None = None
    pools: list[SdiPool] | None = None
    latents: Literal["sample", "mean"] = "sample"
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    seed: int = 0
    checkpoint_every: int = 200
    log_every: int = 10
    progress: bool = True

    @model_validator(mode="after")
    def _check(self) -> "ProjectorTrainConfig":
        for name in ("hidden", "epochs", "max_steps", "batch_size", "resolution"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if self.checkpoint_every < 1 or self.log_every < 1:
            raise ValueError("checkpoint_every and log_every must be >= 1")
        if self.lr is not None and self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.weight_decay is not None and self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.embedding_dropout is not None and not 0.0 <= self.embedding_dropout < 1.0:
            raise ValueError(f"embedding_dropout must be in [0, 1), got {self.embedding_dropout}")
        if self.pools is not None and (not self.pools or "train" not in self.pools):
            raise ValueError(f"pools must include 'train' (allowed: train, pretrain), got {self.pools}")
        return self


class SdiSampleConfig(StrictModel):
    """Sampling new features per class (METHODS.md 5.3); ``genaug.sdi.sample.sample_features``.

    ``sampler``: a registered sampler (``genaug.sdi.sampler_names()``: gaussian, gmm-2,
    gmm-3, gmm-5, shrinkage) with ``sampler_kwargs``. ``multiplier``: samples per class =
    multiplier x N_c; None = the reference multiplier of the dataset's name (cub200, cars,
    dtd, flowers102: 40; pets: 60; imagenet subsets: 10; pathmnist: 5; pocket_digits: 10).
    Every class gets its own seed derived from ``seed`` and the class (the reference seeds
    every class alike).
    """

    sampler: str = "gaussian"
    sampler_kwargs: dict[str, Any] = {}
    multiplier: int | None = None
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> "SdiSampleConfig":
        from genaug.sdi.samplers import sampler_names

        if self.sampler not in sampler_names():
            raise ValueError(f"sampler must be one of {sampler_names()}, got {self.sampler!r}")
        if self.multiplier is not None and self.multiplier < 1:
            raise ValueError(f"multiplier must be >= 1, got {self.multiplier}")
        return self


class SdiGenerateConfig(StrictModel):
    """Images from sampled features (METHODS.md 5.4); ``genaug.sdi.generate.generate_from_samples``.

    DDIM (clip_sample false, set_alpha_to_one false, steps_offset 1), ``steps`` 50, ``eta``
    0, ``guidance_scale`` 2.0; ``size`` None = the model's native resolution (512 for SD
    1.5). ``vae``: a VAE folder or hub id replacing the pipeline's
    (``stabilityai/sd-vae-ft-mse`` in real-scale configs). ``negative_prompt`` None = SDI's.
    ``output`` None = ``<work_dir>/generated/<sampler>``. ``preset``: a named sampling preset
    of SDI on this model (``genaug.generation.sampling_preset("sdi/<model>", name)``), measured
    by ``genaug bench sampling``; it sets the scheduler, steps and autocast precision unless
    ``steps`` is given.
    """

    output: Path | None = None
    preset: str | None = None
    steps: int = 50
    guidance_scale: float = 2.0
    eta: float = 0.0
    size: int | None = None
    vae: str | None = None
    negative_prompt: str | None = None
    seed: int = 0
    engine: EngineConfig = Field(default_factory=EngineConfig)

    @model_validator(mode="after")
    def _check(self) -> "SdiGenerateConfig":
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.guidance_scale < 0 or not 0.0 <= self.eta <= 1.0:
            raise ValueError("guidance_scale must be >= 0 and eta in [0, 1]")
        if self.size is not None and self.size < 8:
            raise ValueError(f"size must be >= 8, got {self.size}")
        return self


class SdiConfig(StrictModel):
    """One SDI arm: every ``genaug sdi`` stage reads this config (METHODS.md 5).

    ``work_dir`` holds what the stages write: ``embeds/<pool>.safetensors`` (CLIP
    image_embeds), ``projector/`` (weights, checkpoint, caches, log), ``bank.safetensors``
    and ``samples/<sampler>.safetensors``. ``clip``: ``pocket``, a hub id
    (``openai/clip-vit-large-patch14`` at real scale) or a folder; ``model``: ``pocket:sd``,
    an SD hub id or pipeline folder. ``device`` runs embedding, training and the bank;
    generation runs where ``generate.engine.device`` says.
    """

    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    work_dir: Path
    clip: str = "pocket"
    model: str = "pocket:sd"
    revision: str | None = None
    embed_batch_size: int = 64
    device: Literal["auto", "cpu", "cuda"] = "auto"
    train: ProjectorTrainConfig = Field(default_factory=ProjectorTrainConfig)
    sample: SdiSampleConfig = Field(default_factory=SdiSampleConfig)
    generate: SdiGenerateConfig = Field(default_factory=SdiGenerateConfig)

    @model_validator(mode="after")
    def _check(self) -> "SdiConfig":
        if self.embed_batch_size < 1:
            raise ValueError(f"embed_batch_size must be >= 1, got {self.embed_batch_size}")
        if self.generate.preset is not None:
            from genaug.generation.presets import sampling_preset

            sampling_preset(f"sdi/{self.model}", self.generate.preset)
        return self


class FilterConfig(StrictModel):
    """The ``filter`` stage (METHODS.md 5.5); ``genaug.filtering.filter_set``.

    ``filters`` are applied in order, each to the records the previous ones kept: a list of
    ``{"name": <filter>, <parameter>: <value>, ...}`` with names from
    ``genaug.filtering.filter_names()`` (frames, clip_rank, clip_posneg, classifier,
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
        from genaug.filtering.registry import validate_filter_specs

        validate_filter_specs(self.filters)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.dataset is None and any(spec.get("name") == "dedupe" for spec in self.filters):
            raise ValueError("the dedupe filter compares against a real dataset: set 'dataset'")
        return self


__all__ += ["ProjectorTrainConfig", "SdiSampleConfig", "SdiGenerateConfig", "SdiConfig", "FilterConfig"]


# ---------------------------------------------------------------------------- one training run
# (genaug train)


class TrainRunConfig(StrictModel):
    """``genaug train CONFIG``: one classifier run on a real dataset, optionally with synthetic sets.

    ``synthetic``: set folders (manifest.jsonl + images) whose kept records join the
    training pool, used as ``train.data_policy`` says.
    """

    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    synthetic: list[Path] = Field(default_factory=list)
    output: Path


__all__ += ["TrainRunConfig"]
