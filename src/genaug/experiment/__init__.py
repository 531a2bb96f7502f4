"""Experiments: arms x seeds over a shared, content-keyed stage graph (``genaug run``).

- :mod:`genaug.experiment.config` - the experiment file (:class:`ExperimentConfig`, :func:`load_experiment`);
- :mod:`genaug.experiment.graph` - stages as content-keyed nodes of a graph;
- :mod:`genaug.experiment.stages` - running one node (generate, mix, sdi, filter);
- :mod:`genaug.experiment.budget` - budget parity: equal synthetic count per real image for the arms asking;
- :mod:`genaug.experiment.set_metrics` - the synthetic-set metrics of every arm (:mod:`genaug.metrics`);
- :mod:`genaug.experiment.runner` - :func:`run_experiment`: stages, training, results.
"""

from __future__ import annotations

from genaug.lazy import exported, lazy_exports

_LAZY = {
    "genaug.experiment.config": ("ArmConfig", "ExperimentConfig", "load_experiment"),
    "genaug.experiment.runner": ("run_experiment", "results_table"),
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)

__all__ = exported(_LAZY)


