"""Checks before work starts: the models a config names, and mismatches worth a warning.

- :func:`stage_models` lists the model references of a stage config (with the key each
  came from); :func:`check_models` resolves them all, so that a model that is neither
  cached, reachable nor a folder is one :class:`~genaug.diffusion.models.ModelError`
  before any output exists.
- :func:`pocket_mismatches` finds pocket models and pocket prompts used on a dataset
  that is not the pocket digits (they were trained on 16 px digits; on photos they make
  pocket digits).
- :func:`recipe_size_mismatch` finds a training recipe whose image size is not the
  dataset's (the pocket recipe would train 64 px photos at 16 px).
- :func:`check_stage_data` and :func:`check_train_data`: what a standalone ``genaug
  generate`` or ``genaug train`` needs of the training split (:mod:`genaug.data.needs`)
  and its empty classes, the same lines ``genaug run`` stops on, before any work.

Warnings are returned as messages; callers show them with :func:`genaug.warn.warn_once`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genaug.config import ConfigError, located, source_of
from genaug.data.config import DatasetConfig
from genaug.data.needs import empty_class_problems, need_problems
from genaug.diffusion.models import POCKET_SCHEME, ModelRef, resolve_model
from genaug.generation.config import GenerateConfig
from genaug.training import resolve_recipe
from genaug.training.config import TrainConfig
from genaug.training.recipes import training_needs
from genaug.warn import warn_once

__all__ = [
    "POCKET_DATASET",
    "check_models",
    "check_stage_data",
    "check_train_data",
    "dataset_root_problem",
    "pocket_mismatches",
    "preflight_stage",
    "preflight_train",
    "recipe_size_mismatch",
    "stage_models",
]

#: The dataset the pocket models and prompts were made for.
POCKET_DATASET = "pocket_digits"


def stage_models(config: Any) -> list[tuple[str, str, str | None]]:
    """``(key, reference, revision)`` of every model ``config`` will load (pocket CLIP as
    ``pocket:clip``): what its ``models()`` lists, so a new stage kind declares its own."""
    models = getattr(config, "models", None)
    return list(models()) if callable(models) else []


def check_models(config: Any, prefix: str = "") -> list[ModelRef]:
    """Resolve every model of ``config``; the first that cannot be used raises ModelError naming ``prefix + key``."""
    return [resolve_model(reference, revision, field=prefix + key) for key, reference, revision in stage_models(config)]


def pocket_mismatches(config: Any, dataset: DatasetConfig, prefix: str = "") -> list[str]:
    """Warnings for pocket models or pocket prompts in ``config`` when ``dataset`` is not the pocket digits."""
    if dataset.name == POCKET_DATASET:
        return []
    messages = []
    for key, reference, _ in stage_models(config):
        if reference.startswith(POCKET_SCHEME):
            effect = "its scores mean little on other images" if reference == f"{POCKET_SCHEME}clip" else "expect digit-like images"
            messages.append(
                f"{prefix}{key} is {reference}, a pocket model trained on 16 px digits, but the dataset is "
                f"'{dataset.name}': {effect}; set {prefix}{key} to a hub id or a local model folder"
            )
    if isinstance(config, GenerateConfig):
        prompts = config.prompts  # the default follows the model: pocket prompts only for pocket models
        if isinstance(prompts, str) and prompts.startswith("pocket"):
            messages.append(
                f"{prefix}prompts is the '{prompts}' preset, written for the pocket digits, but the dataset is "
                f"'{dataset.name}'; set {prefix}prompts to 'diffusemix', 'class_template' or a list of your own"
            )
    return messages


def recipe_size_mismatch(dataset: DatasetConfig, train: TrainConfig, where: str = "train") -> str | None:
    """A warning when the dataset's ``image_size`` is not the size the recipe trains at."""
    size = resolve_recipe(train).augmentation.image_size
    if dataset.image_size is None or size is None or dataset.image_size == size:
        return None
    return (
        f"dataset.image_size is {dataset.image_size} but the '{train.recipe}' recipe trains at {size} px "
        f"(images are resized to {size} x {size}); set {where}.augmentation.image_size={dataset.image_size} "
        f"and {where}.augmentation.crop={dataset.image_size} to train at the dataset's size"
    )


def dataset_root_problem(dataset: DatasetConfig) -> str | None:
    """``dataset.root: ... does not exist`` when the dataset has a root that is not there."""
    if dataset.root is not None and not Path(dataset.root).expanduser().exists():
        return f"dataset.root: {dataset.root} does not exist"
    return None


def preflight_stage(config: Any, path: str | Path | None = None, overrides: list[str] | None = None) -> list[str]:
    """Before a stage command writes anything: warn about pocket mismatches, resolve its models.

    ``path`` / ``overrides``: where the config came from, so that an unusable model is
    named with the file or the command line that set it. Returns the warnings shown.
    """
    dataset = getattr(config, "dataset", None)
    _check_root(dataset, path, overrides)
    warnings = pocket_mismatches(config, dataset) if isinstance(dataset, DatasetConfig) else []
    for message in warnings:
        warn_once(message)
    try:
        check_models(config)
    except ConfigError as error:  # "<key>: ..." names the key
        key = str(error).split(":", 1)[0]
        raise type(error)(located(error, source_of(key, path, overrides))) from None
    return warnings


def preflight_train(run: Any, path: str | Path | None = None, overrides: list[str] | None = None) -> list[str]:
    """Before ``genaug train`` writes anything: the recipe must fit its overrides; warn when its
    image size is not the dataset's. Returns the warnings shown."""
    _check_root(run.dataset, path, overrides)
    try:
        mismatch = recipe_size_mismatch(run.dataset, run.train)
    except ConfigError as error:
        raise ConfigError(located(error, source_of("train", path, overrides))) from None
    for message in [mismatch] if mismatch else []:
        warn_once(message)
    return [mismatch] if mismatch else []


def _check_root(dataset: DatasetConfig | None, path: str | Path | None, overrides: list[str] | None) -> None:
    problem = dataset_root_problem(dataset) if isinstance(dataset, DatasetConfig) else None
    if problem:
        raise ConfigError(located(problem, source_of("dataset.root", path, overrides)))


def check_stage_data(config: Any, train, path: str | Path | None = None, overrides: list[str] | None = None) -> None:
    """Before a standalone stage command works: the training split ``train`` has no empty class
    (unless ``dataset.allow_empty_classes``) and meets every need the stage declares
    (``data_needs()``, e.g. its editor's); one :class:`~genaug.config.ConfigError` line per
    problem, located like ``genaug run``'s."""
    from genaug.data.needs import stage_needs

    _raise_data_problems(config.dataset, train, list(stage_needs(config, "")), "editor", path, overrides)


def check_train_data(run: Any, train, path: str | Path | None = None, overrides: list[str] | None = None) -> None:
    """Before ``genaug train`` trains: no empty class (unless allowed), and what the recipe needs
    of the data (its image size, two classes), as ``genaug run`` checks its training runs."""
    _raise_data_problems(run.dataset, train, [training_needs(run.train, "train")], "train", path, overrides)


def _raise_data_problems(dataset: DatasetConfig, train, needs: list, key: str, path, overrides) -> None:
    problems = [located(line, source_of("dataset", path, overrides)) for line in empty_class_problems(train, dataset.allow_empty_classes)]
    for declared in needs:
        problems += [located(line, source_of(key, path, overrides)) for line in need_problems(train, declared, dataset.image_size)]
    if len(problems) == 1:
        raise ConfigError(problems[0])
    if problems:
        raise ConfigError("\n  ".join([f"{len(problems)} problems:", *problems]))
