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

from genaug.checks import check_models, dataset_root_problem, pocket_mismatches, recipe_size_mismatch
from genaug.config import ConfigError, located
from genaug.experiment.config import ExperimentConfig, source_of_key
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


def preflight(experiment: ExperimentConfig, needed, jobs, load_data: bool = False) -> Preflight:
    """Check the dataset root and the models of the stages still to run; warn about mismatches.

    ``needed``: the stage nodes the run uses; ``jobs``: its training runs. ``load_data``
    also reads the dataset once (a real run), so that its warnings (``labels_per_class``)
    are shown here once and not by every training process.
    """
    result = Preflight()
    root = dataset_root_problem(experiment.dataset)
    if root:
        result.problems.append(located(root, source_of_key(experiment, "dataset.root")))
    for node in needed:
        prefix = f"stages.{node.name}."
        result.warnings += pocket_mismatches(node.config, experiment.dataset, prefix)
        if node.is_done():
            continue
        try:
            check_models(node.config, prefix)
        except ConfigError as error:  # the key is at the start of the message
            key = str(error).split(":", 1)[0]
            result.problems.append(located(error, source_of_key(experiment, key)))
    for job in jobs:
        mismatch = recipe_size_mismatch(experiment.dataset, job.config)
        if mismatch and mismatch not in result.warnings:
            result.warnings.append(mismatch)
    for message in result.warnings:
        warn_once(message)
    if load_data and not result.problems:
        from genaug.data import load_splits
        from genaug.warn import shown_warnings

        before = len(shown_warnings())
        load_splits(experiment.dataset)
        result.warnings += shown_warnings()[before:]
    return result
