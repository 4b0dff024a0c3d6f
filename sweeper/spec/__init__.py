"""The sweep spec: W&B's YAML read into frozen dataclasses, its laws and search space, overrides.

Modules: :mod:`~sweeper.spec.model` (the dataclasses), :mod:`~sweeper.spec.laws` (W&B's
distributions), :mod:`~sweeper.spec.space` (Optuna distributions, grid, draws),
:mod:`~sweeper.spec.reader` (``load_spec``; the private ``_checks``, ``_parameters`` and
``_settings`` readers it is made of), :mod:`~sweeper.spec.loader` (the YAML loader) and
:mod:`~sweeper.spec.overrides`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sweeper import lazy

if TYPE_CHECKING:
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

# name -> module; imported on first access, so that a module of this package (model, which a
# trial's process needs) can be imported without the reader and the search space (Optuna, NumPy).
_LAZY: dict[str, str] = {
    "server_keys": "sweeper.spec._scheduler",
    "Parameter": "sweeper.spec.laws",
    **dict.fromkeys(
        (
            "EarlyTerminate",
            "Metric",
            "Resources",
            "Scheduler",
            "SweeperSettings",
            "SweepSpec",
            "TrackerSpec",
            "WarmStart",
        ),
        "sweeper.spec.model",
    ),
    "load_spec": "sweeper.spec.reader",
    "load_warm_start": "sweeper.spec.reader",
    "SearchSpace": "sweeper.spec.space",
}


def __getattr__(name: str) -> Any:
    return lazy.attribute(__name__, _LAZY, name)


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
