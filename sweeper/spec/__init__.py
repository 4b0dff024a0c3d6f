"""The sweep spec: W&B's YAML read into frozen dataclasses, its laws and search space, overrides.

Modules: :mod:`~sweeper.spec.model` (the dataclasses), :mod:`~sweeper.spec.laws` (W&B's
distributions), :mod:`~sweeper.spec.space` (Optuna distributions, grid, draws),
:mod:`~sweeper.spec.reader` (``load_spec``; the private ``_checks``, ``_parameters`` and
``_settings`` readers it is made of), :mod:`~sweeper.spec.loader` (the YAML loader) and
:mod:`~sweeper.spec.overrides`.
"""

from sweeper.spec._scheduler import server_keys
from sweeper.spec.laws import Parameter
from sweeper.spec.model import (
    EarlyTerminate,
    Metric,
    Resources,
    Scheduler,
    SweeperSettings,
    SweepSpec,
    TrackerSpec,
    WarmStart,
)
from sweeper.spec.reader import load_spec, load_warm_start
from sweeper.spec.space import SearchSpace

__all__ = [
    "EarlyTerminate",
    "Metric",
    "Parameter",
    "Resources",
    "Scheduler",
    "SearchSpace",
    "SweepSpec",
    "SweeperSettings",
    "TrackerSpec",
    "WarmStart",
    "load_spec",
    "load_warm_start",
    "server_keys",
]
