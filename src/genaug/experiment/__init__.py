"""Experiments: arms x seeds over a shared, content-keyed stage graph (``genaug run``).

- :mod:`genaug.experiment.config` - the experiment file (:class:`ExperimentConfig`, :func:`load_experiment`);
- :mod:`genaug.experiment.graph` - stages as content-keyed nodes of a graph;
- :mod:`genaug.experiment.stages` - running one node (generate, mix, sdi, filter);
- :mod:`genaug.experiment.budget` - budget parity: equal synthetic count per real image for the arms asking;
- :mod:`genaug.experiment.set_metrics` - the synthetic-set metrics of every arm (:mod:`genaug.metrics`);
- :mod:`genaug.experiment.runner` - :func:`run_experiment`: stages, training, results.
"""

from genaug.experiment.config import ArmConfig, ExperimentConfig, load_experiment
from genaug.experiment.runner import run_experiment, results_table

__all__ = ["ArmConfig", "ExperimentConfig", "load_experiment", "run_experiment", "results_table"]
