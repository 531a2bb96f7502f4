"""What ``genaug run`` (and its ``--dry-run``) checks before anything is written.

Problems stop the run: a dataset root that does not exist, a model of a stage still to
run that cannot be resolved (not a folder, not a known pocket model, a hub id neither
cached nor reachable), data that a stage still to run or a training run does not get what
it declares it needs (:mod:`genaug.data.needs`: images per class, image size, classes),
a class without a training image (unless ``dataset.allow_empty_classes``). Each names the file or the command line and the key. Warnings
(pocket models or prompts on another dataset, a recipe size that is not the dataset's,
``labels_per_class`` above what a class holds) are shown once and kept for the run's
``warnings.log``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from genaug.checks import dataset_root_problem, pocket_mismatches, recipe_size_mismatch, stage_models
from genaug.config import ConfigError, located
from genaug.data.needs import empty_class_problems, need_problems, stage_needs
from genaug.diffusion.models import resolve_model
from genaug.experiment.config import ExperimentConfig, source_of_key
from genaug.training.recipes import training_needs
from genaug.warn import warn_once

__all__ = ["Preflight", "preflight"]


@dataclass
class Preflight:
    """The outcome of :func:`preflight`: problems (each one line) and the warnings shown."""

    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def raise_problems(self) -> None:
        if len(self.problems) == 1:
            raise ConfigError(self.problems[0])
        if self.problems:
            raise ConfigError("\n  ".join([f"{len(self.problems)} problems:", *self.problems]))


def preflight(experiment: ExperimentConfig, needed, jobs, splits=None) -> Preflight:
    """Check the dataset root, the models of the stages still to run and what they and the
    training runs need of the data; warn about mismatches.

    ``needed``: the stage nodes the run uses; ``jobs``: its training runs (those still to
    train); ``splits``: the dataset's splits when readable. The runner reads the dataset
    itself (once, before this) and adds the warnings that reading showed.
    """
    result = Preflight(warnings=list(experiment._warnings))  # shown when the file was read
    root = dataset_root_problem(experiment.dataset)
    if root:
        result.problems.append(located(root, source_of_key(experiment, "dataset.root")))
    if splits is not None and splits.get("train") is not None:
        result.problems += data_problems(experiment, splits["train"], [n for n in needed if not n.is_done()], jobs)
    models: dict[tuple[str, str | None], list[str]] = {}  # each model is resolved once, for every key naming it
    for node in needed:
        prefix = f"stages.{node.name}."
        result.warnings += pocket_mismatches(node.config, experiment.dataset, prefix)
        if not node.is_done():
            for key, reference, revision in stage_models(node.config):
                models.setdefault((reference, revision), []).append(prefix + key)
    for (reference, revision), keys in models.items():
        try:
            resolve_model(reference, revision, field=keys[0])
        except ConfigError as error:
            also = f" (also set at {', '.join(keys[1:])})" if keys[1:] else ""
            result.problems.append(located(f"{error}{also}", source_of_key(experiment, keys[0])))
    recipe_errors: dict[str, list[str]] = {}  # one problem per distinct error, naming the arms it concerns
    for job in jobs:
        try:
            mismatch = recipe_size_mismatch(experiment.dataset, job.config)
        except ConfigError as error:  # the recipe's values with the file's overrides do not fit
            arms = recipe_errors.setdefault(str(error), [])
            arms += [job.arm] if job.arm not in arms else []
            continue
        if mismatch and mismatch not in result.warnings:
            result.warnings.append(mismatch)
    for error, arms in recipe_errors.items():
        named = ", ".join(f"'{arm}'" for arm in arms)
        result.problems.append(located(f"train (arms {named}): {error}", source_of_key(experiment, "train")))
    for message in result.warnings:
        warn_once(message)  # those shown already are not shown again
    return result


def data_problems(experiment: ExperimentConfig, train, nodes, jobs) -> list[str]:
    """One line per data need (:mod:`genaug.data.needs`) of ``nodes`` (stage nodes) and ``jobs``
    (training runs) that the training split ``train`` does not meet, and one for empty classes."""
    packed = experiment.dataset.image_size
    problems = [located(line, source_of_key(experiment, "dataset")) for line in empty_class_problems(train, experiment.dataset.allow_empty_classes)]
    for node in nodes:
        for needs in stage_needs(node.config, f"stages.{node.name}."):
            problems += [located(line, source_of_key(experiment, f"stages.{node.name}")) for line in need_problems(train, needs, packed)]
    arms: dict[str, list[str]] = {}  # one line per distinct problem, naming the arms it concerns
    for job in jobs:
        try:
            needs = training_needs(job.config, "train")
        except ConfigError:  # a recipe that does not fit its overrides is reported on its own
            continue
        for line in need_problems(train, needs, packed):
            named = arms.setdefault(line, [])
            named += [job.arm] if job.arm not in named else []
    for line, named in arms.items():
        problems.append(located(f"{line} (arms {', '.join(repr(arm) for arm in named)})", source_of_key(experiment, "train")))
    return problems
