"""What ``genaug run`` (and its ``--dry-run``) checks before anything is written.

Problems stop the run: a dataset root that does not exist, a model of a stage still to
run that cannot be resolved (not a folder, not a known pocket model, a hub id neither
cached nor reachable). Each names the file or the command line and the key. Warnings
(pocket models or prompts on another dataset, a recipe size that is not the dataset's,
``labels_per_class`` above what a class holds) are shown once and kept for the run's
``warnings.log``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from genaug.checks import dataset_root_problem, pocket_mismatches, recipe_size_mismatch, stage_models
from genaug.config import ConfigError, located
from genaug.experiment.config import ExperimentConfig, source_of_key
from genaug.generation.models import resolve_model
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


def preflight(experiment: ExperimentConfig, needed, jobs) -> Preflight:
    """Check the dataset root and the models of the stages still to run; warn about mismatches.

    ``needed``: the stage nodes the run uses; ``jobs``: its training runs. The runner reads
    the dataset itself (once, before this) and adds the warnings that reading showed.
    """
    result = Preflight(warnings=list(experiment._warnings))  # shown when the file was read
    root = dataset_root_problem(experiment.dataset)
    if root:
        result.problems.append(located(root, source_of_key(experiment, "dataset.root")))
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
