"""The experiment file (``genaug run CONFIG.yaml``): a dataset, a recipe, seeds, stages and arms.

```yaml
name: demo
dataset: {name: pocket_digits, labels_per_class: 10}
seeds: [0, 1]
train: {recipe: pocket}            # TrainConfig fields shared by every arm
stages:                            # named stages; arms and other stages refer to them by name
  edits:   {kind: generate, regime: random, prompts: pocket}
  mixed:   {kind: mix, input: edits, methods: [concat, fractal]}
  sdi:     {kind: sdi, sample: {multiplier: 4}}
  sdi_top: {kind: filter, input: sdi, filters: [{name: frames}, {name: clip_rank}]}
arms:
  - {name: baseline, description: real images only}
  - {name: diffusemix, data: mixed/fractal, policy: concat}
  - {name: diffusemix@parity, data: mixed/fractal, budget: parity}   # the budget below, subsampled
  - {name: sdi, data: sdi_top, policy: concat}
budget: {synthetic_per_real: 1, seed: 0}   # genaug.experiment.budget (optional)
metrics: {clip: null, k: 5}                # genaug.experiment.set_metrics (the defaults)
compute: {matched_steps: 780}              # a second view: every arm 780 optimizer steps (genaug.experiment.compute)
compare: [[diffusemix@parity, diffusemix]] # comparisons named beside "every arm vs the baseline"
stats: {test: t, level: 0.95, alpha: 0.05} # genaug.experiment.verdicts (the defaults)
quick:                             # merged over this file by `--quick`; `arms` keeps only those named
  seeds: [0]
  train: {epochs: 10}
  arms: [baseline, diffusemix]
```

``seeds`` is a list, or a rule that adds seeds until every interval is narrow enough:
``seeds: {min: 3, max: 20, halfwidth: 2.0, step: 2}`` (:mod:`genaug.experiment.seeds`).

``kind`` is a registered stage kind (:data:`genaug.registry.STAGES`: generate, mix, sdi,
filter, ...; each subsystem registers its own with :func:`genaug.registry.register_stage`).
A stage's keys other than ``kind`` and ``input`` are the fields of that kind's config class
(e.g. :class:`~genaug.config.GenerateConfig`, :class:`~genaug.config.MixConfig`) without the
ones the runner fills in (the dataset, where to read and where to write). ``input`` names
the stage whose set this one reads, as the kind says (``reads``): a ``generate`` stage for
``mix``; any set for ``filter``, written ``stage`` or ``stage/method`` for one set of a
stage that makes several (a ``mix`` stage, one per method). An arm's ``data`` names one
set (or a list, trained on together) the same way; no ``data`` means real images only.

Reading a file checks every name against the registry that owns it (stage kinds, mix
methods, editors, mixers, policies, ...) and imports no torch.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PrivateAttr, model_validator

from genaug.config import (
    ConfigError,
    Problem,
    StrictModel,
    did_you_mean,
    parse_config,
    parse_with_overrides,
    read_yaml_mapping,
    source_of,
)
from genaug.data.config import DatasetConfig
from genaug.registry import stage_kind
from genaug.training.config import TrainConfig
from genaug.experiment.budget import BudgetConfig
from genaug.experiment.compute import ComputeConfig
from genaug.experiment.seeds import SeedRule
from genaug.experiment.set_metrics import MetricsConfig
from genaug.experiment.launcher import LauncherConfig
from genaug.experiment.verdicts import StatsConfig
from genaug.warn import warn_once

__all__ = [
    "ArmConfig",
    "ExperimentConfig",
    "StageSpec",
    "load_experiment",
    "stage_config",
]

#: Placeholder paths used only to validate a stage's fields when the file is read.
_PLACEHOLDER = Path("/nonexistent/genaug-placeholder")


class StageSpec(StrictModel):
    """One named stage: its kind, the stage it reads (``input``), and its own fields."""

    kind: str
    input: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> "StageSpec":
        stage_kind(self.kind)  # a registered kind (the error names 'kind' and the allowed ones)
        return self


class ArmConfig(StrictModel):
    """One arm: the synthetic data it trains on, how (data policy), and the online mixer.

    ``train`` holds TrainConfig fields that differ from the experiment's for this arm only.
    ``policy`` defaults to ``concat`` when the arm has ``data`` and ``real_only`` otherwise.
    """

    name: str
    description: str = ""
    data: str | list[str] | None = None
    policy: str = "real_only"
    policy_kwargs: dict[str, Any] = Field(default_factory=dict)
    mixer: str = "none"
    mixer_kwargs: dict[str, Any] = Field(default_factory=dict)
    train: dict[str, Any] = Field(default_factory=dict)
    #: ``parity``: train on the experiment's ``budget`` of synthetic images per real image
    #: (a fixed-seed subsample, :mod:`genaug.experiment.budget`); ``natural``: on every kept image.
    budget: Literal["natural", "parity"] = "natural"

    @model_validator(mode="before")
    @classmethod
    def _default_policy(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("policy") is None:
            data = {**data, "policy": "real_only" if data.get("data") is None else "concat"}
        return data

    @model_validator(mode="after")
    def _check(self) -> "ArmConfig":
        if not self.name or any(c in self.name for c in '/\\:*?"<>|\0') or self.name in (".", ".."):
            raise ValueError(f"arm name {self.name!r} must be a plain folder name (no / \\ : * ? \" < > |)")
        if self.policy != "real_only" and self.data is None:
            raise ValueError(f"arm '{self.name}': policy '{self.policy}' needs synthetic data: set 'data'")
        if self.budget == "parity" and self.data is None:
            raise ValueError(f"arm '{self.name}': budget 'parity' subsamples synthetic data: set 'data'")
        return self

    @property
    def data_refs(self) -> list[str]:
        if self.data is None:
            return []
        return [self.data] if isinstance(self.data, str) else list(self.data)


class ExperimentConfig(StrictModel):
    """A whole study (module doc). ``baseline`` (default: the first arm) is what deltas are against.

    ``workers``: training runs in parallel processes (each with ``train.cpu_threads``
    threads); 2 suits a 2-core machine with the 1-thread pocket recipe.
    """

    name: str
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    seeds: list[int] = Field(default_factory=lambda: [0, 1])
    train: dict[str, Any] = Field(default_factory=lambda: {"recipe": "pocket"})
    stages: dict[str, StageSpec] = Field(default_factory=dict)
    arms: list[ArmConfig]
    baseline: str | None = None
    workers: int = 1
    #: The parity budget of arms with ``budget: parity`` (:mod:`genaug.experiment.budget`).
    budget: BudgetConfig | None = None
    #: The synthetic-set metrics of every arm's set (:mod:`genaug.experiment.set_metrics`).
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    #: Seeds added in rounds until every interval is narrow enough (``seeds: {min, max, ...}``
    #: in the file; ``seeds`` then holds the first round's).
    seed_rule: SeedRule | None = None
    #: The matched-compute view (:mod:`genaug.experiment.compute`).
    compute: ComputeConfig = Field(default_factory=ComputeConfig)
    #: Comparisons named beside every arm against the baseline: ``[arm, against]`` pairs.
    compare: list[tuple[str, str]] = Field(default_factory=list)
    #: How differences are tested (:mod:`genaug.experiment.verdicts`).
    stats: StatsConfig = Field(default_factory=StatsConfig)
    #: Where the work runs: this machine (``local``) or Slurm jobs (:mod:`genaug.experiment.slurm`).
    launcher: LauncherConfig = Field(default_factory=LauncherConfig)
    #: Where the experiment was read from (file, overrides), to name the source of later errors.
    _source: str | None = PrivateAttr(default=None)
    _overrides: list[str] = PrivateAttr(default_factory=list)
    _warnings: list[str] = PrivateAttr(default_factory=list)  # shown while reading it (for the run's warnings.log)

    @model_validator(mode="before")
    @classmethod
    def _split_stage_fields(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("seeds"), dict):
            if data.get("seed_rule") is not None:
                raise ValueError("seeds: give either a rule here or seed_rule, not both")
            rule = SeedRule.model_validate(data["seeds"])
            data = {**data, "seeds": rule.first(), "seed_rule": rule}
        if isinstance(data, dict) and data.get("baseline") is None and data.get("arms"):
            first = data["arms"][0]
            data = {**data, "baseline": first.get("name") if isinstance(first, dict) else None}
        # In the file a stage's own fields sit beside kind/input; keep them under params.
        if isinstance(data, dict) and isinstance(data.get("stages"), dict):
            stages = {}
            for name, spec in data["stages"].items():
                if isinstance(spec, dict) and "params" not in spec:
                    spec = dict(spec)
                    own = {key: spec.pop(key) for key in list(spec) if key not in ("kind", "input")}
                    spec["params"] = own
                stages[name] = spec
            data = {**data, "stages": stages}
        return data

    @model_validator(mode="after")
    def _check(self) -> "ExperimentConfig":
        if not self.arms:
            raise ValueError("arms: an experiment needs at least one arm")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be a non-empty list without repeats, got {self.seeds}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        names = [arm.name for arm in self.arms]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"arms: names must be unique; repeated: {', '.join(repeated)}")
        if self.baseline not in names:
            raise ValueError(f"baseline '{self.baseline}' is not an arm; arms: {', '.join(names)}")
        for name, stage in self.stages.items():
            if "/" in name or not name:
                raise ValueError(f"stages: stage name {name!r} may not be empty or contain '/'")
            _check_stage(name, stage, self.stages)
            stage_config(stage, self.dataset, _PLACEHOLDER, _PLACEHOLDER, name=name)
        # The shared block first, so that its mistakes are named there and not in every arm.
        parse_config(TrainConfig, copy.deepcopy(self.train), source=None, prefix=("train",))
        for index, (arm, against) in enumerate(self.compare):
            for name in (arm, against):
                if name not in names:
                    raise ValueError(f"compare[{index}]: no arm named '{name}'{did_you_mean(name, names)}")
            if arm == against:
                raise ValueError(f"compare[{index}]: an arm compared with itself ('{arm}')")
        for name in self.compute.arms or []:
            if name not in names:
                raise ValueError(f"compute.arms: no arm named '{name}'{did_you_mean(name, names)}")
        parity = [arm.name for arm in self.arms if arm.budget == "parity"]
        if parity and self.budget is None:
            raise ValueError(f"arms {', '.join(parity)} ask for budget parity: set budget: {{synthetic_per_real: ..., seed: 0}}")
        for index, arm in enumerate(self.arms):
            for ref in arm.data_refs:
                check_set_ref(ref, self.stages, f"arms[{index}].data")
            train_config(self, arm, self.seeds[0], index=index)
        return self

    def arm(self, name: str) -> ArmConfig:
        for arm in self.arms:
            if arm.name == name:
                return arm
        names = [a.name for a in self.arms]
        raise ConfigError(f"no arm named '{name}'{did_you_mean(name, names)} (arms: {', '.join(names)})")


def _check_stage(name: str, stage: StageSpec, stages: dict[str, StageSpec]) -> None:
    kind = stage_kind(stage.kind)
    for field in kind.runner_fields:
        if field in stage.params:
            raise ValueError(f"stages.{name}.{field} is set by the runner; remove it")
    if kind.reads is not None:
        if stage.input is None:
            raise ValueError(f"stages.{name}: a {stage.kind} stage needs 'input' (the stage whose set it reads)")
        base = check_set_ref(stage.input, stages, f"stages.{name}.input")
        if kind.reads != "*" and stages[base].kind != kind.reads:
            raise ValueError(
                f"stages.{name}.input: a {stage.kind} stage reads a {kind.reads} stage, '{base}' is {stages[base].kind}"
            )
    elif stage.input is not None:
        raise ValueError(f"stages.{name}: a {stage.kind} stage reads the real dataset; remove 'input'")
    seen = {name}
    current = stage
    while current.input is not None:  # no cycles
        base = current.input.split("/", 1)[0]
        if base in seen:
            raise ValueError(f"stages.{name}: inputs form a cycle through '{base}'")
        seen.add(base)
        current = stages[base]


def check_set_ref(ref: str, stages: dict[str, StageSpec], where: str) -> str:
    """Validate ``stage`` or ``stage/method``; return the stage name."""
    base, _, method = ref.partition("/")
    if base not in stages:
        raise ValueError(
            f"{where}: no stage named '{base}'{did_you_mean(base, stages)} (stages: {', '.join(stages) or 'none'})"
        )
    stage = stages[base]
    kind = stage_kind(stage.kind)
    if kind.sets is not None:
        methods = kind.sets(stage.params)
        if not method and len(methods) != 1:
            raise ValueError(f"{where}: '{base}' makes several sets ({', '.join(methods)}); write '{base}/<method>'")
        if method and method not in methods:
            raise ValueError(f"{where}: '{base}' makes no '{method}' set; it makes: {', '.join(methods)}")
    elif method:
        raise ValueError(f"{where}: '{base}' is a {stage.kind} stage with one set; write '{base}'")
    return base


def stage_config(stage: StageSpec, dataset: DatasetConfig, output: Path, input_dir: Path | None, name: str):
    """The stage's typed config with the runner's fields filled in (errors name ``stages.<name>.<key>``)."""
    kind = stage_kind(stage.kind)
    train_split = dataset.model_dump(mode="json") | {"split": "train"}
    data = kind.fill(copy.deepcopy(stage.params), train_split, output, input_dir)
    return parse_config(kind.config, data, source=None, prefix=("stages", name))


#: TrainConfig fields that an arm sets under its own key.
ARM_KEYS = {"data_policy": "policy", "data_policy_kwargs": "policy_kwargs", "mixer": "mixer", "mixer_kwargs": "mixer_kwargs"}


def train_config(experiment: ExperimentConfig, arm: ArmConfig, seed: int, index: int | None = None) -> TrainConfig:
    """The arm's TrainConfig: experiment defaults, the arm's own fields, its policy, mixer and seed.

    Errors name the arm's key (``arms[<index>].train.<field>``, ``arms[<index>].policy``). A finished
    run keeps only its selected weights unless the file sets ``keep_checkpoint``.
    """
    data = {"keep_checkpoint": False} | copy.deepcopy(experiment.train) | copy.deepcopy(arm.train)
    data |= {
        "seed": seed,
        "data_policy": arm.policy,
        "data_policy_kwargs": arm.policy_kwargs,
        "mixer": arm.mixer,
        "mixer_kwargs": arm.mixer_kwargs,
    }
    if index is None:
        index = next((i for i, other in enumerate(experiment.arms) if other.name == arm.name), 0)
    try:
        return parse_config(TrainConfig, data, source=None)
    except ConfigError as error:
        problems = [Problem(("arms", index, *_arm_key(problem.loc)), problem.message) for problem in error.problems]
        raise ConfigError(problems[0].line(), problems) from None


def _arm_key(loc: tuple) -> tuple:
    """Where an arm wrote a TrainConfig field: ``policy`` for ``data_policy``, ``train.<field>`` for the rest."""
    if loc and loc[0] in ARM_KEYS:
        return (ARM_KEYS[loc[0]], *loc[1:])
    return ("train", *loc)


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def apply_quick(data: dict[str, Any]) -> dict[str, Any]:
    """Merge the file's ``quick:`` section over it; its ``arms`` list keeps only the arms named."""
    quick = dict(data.get("quick") or {})
    keep = quick.pop("arms", None)
    merged = _deep_merge(data, quick)
    if keep is not None:
        known = [arm.get("name") for arm in data.get("arms", []) if isinstance(arm, dict)]
        unknown = [name for name in keep if name not in known]
        if unknown:
            raise ConfigError(f"quick.arms names unknown arms: {', '.join(unknown)}")
        merged["arms"] = [arm for arm in data["arms"] if arm.get("name") in keep]
    return merged


def resolve_extends(data: dict[str, Any], path: Path, seen: tuple[Path, ...]) -> dict[str, Any]:
    """``extends: base.yaml`` (relative to the file): the file is merged over its base, key by key.

    Mappings merge recursively; lists (``arms``, ``seeds``) and scalars replace the base's.
    """
    base_name = data.pop("extends", None)
    if base_name is None:
        return data
    base_path = (path.parent / str(base_name)).resolve()
    if base_path in seen:
        raise ConfigError(f"{path}: 'extends' forms a cycle through {base_path}")
    base = read_yaml_mapping(base_path, what=f"{path}: the file it extends")
    return _deep_merge(resolve_extends(base, base_path, (*seen, base_path)), data)


def load_experiment(path: str | Path, overrides: list[str] | None = None, quick: bool = False) -> ExperimentConfig:
    """Read an experiment file, optionally in its ``--quick`` form, with ``key=value`` overrides."""
    path = Path(path)
    data = read_yaml_mapping(path, what="experiment file")
    data = resolve_extends(data, path, seen=(path.resolve(),))
    warnings = []
    if quick:
        if not data.get("quick"):
            warnings.append(f"{path} has no quick: section; --quick runs the file as it is")
            warn_once(warnings[-1])
        # the file as written must be valid too: a quick: section must not hide an error in it
        parse_with_overrides(ExperimentConfig, {k: v for k, v in data.items() if k != "quick"}, overrides, str(path))
        try:
            data = apply_quick(data)
        except ConfigError as error:
            raise ConfigError(f"in {path}: {error}") from None
    data.pop("quick", None)
    experiment = parse_with_overrides(ExperimentConfig, data, overrides, str(path))
    experiment._source, experiment._overrides, experiment._warnings = str(path), list(overrides or []), warnings
    return experiment


def source_of_key(experiment: ExperimentConfig, key: str) -> str:
    """The file or the command line that set ``key`` of ``experiment`` (``config`` when built in Python)."""
    if experiment._source is None:
        return "config"
    return source_of(key, experiment._source, experiment._overrides)
