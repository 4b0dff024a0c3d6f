"""sweeper: self-hosted hyperparameter sweeps from W&B sweep specs, on Optuna and Ray.

The public API is re-exported here; heavy modules (Ray, Optuna, trackers) load only when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sweeper import lazy
from sweeper.errors import (
    SpecError,
    SpecIssue,
    StorageError,
    SweeperError,
    SweepNotFoundError,
    TrackerError,
    TrackerNotInstalledError,
    TrainerError,
    TrialPruned,
    UsageError,
)

if TYPE_CHECKING:  # imported on first access (they import Optuna): a trial's process may not need them
    from sweeper.spec.model import SweepSpec
    from sweeper.spec.reader import load_spec

__version__ = "0.1.0"

# name -> module that defines it; imported on first access so `import sweeper` stays cheap.
_LAZY: dict[str, str] = {
    "SweepSpec": "sweeper.spec.model",
    "load_spec": "sweeper.spec.reader",
    "init": "sweeper.worker.program_child",
    "sweep": "sweeper.api",
    "agent": "sweeper.api",
    "extend": "sweeper.api",
    "Trial": "sweeper.worker.trial",
    "load": "sweeper.analysis.results",
    "SweepResults": "sweeper.analysis.results",
    "TrialRecord": "sweeper.analysis.records",
    "AgentRecord": "sweeper.analysis.records",
    "LeasePolicy": "sweeper.engine.leases",
    "FlapPolicy": "sweeper.engine.flapping",
}


def __getattr__(name: str) -> Any:
    return lazy.attribute(__name__, _LAZY, name)


__all__ = [
    "AgentRecord",
    "FlapPolicy",
    "LeasePolicy",
    "SpecError",
    "SpecIssue",
    "StorageError",
    "SweepNotFoundError",
    "SweepResults",
    "SweepSpec",
    "SweeperError",
    "TrackerError",
    "TrackerNotInstalledError",
    "TrainerError",
    "Trial",
    "TrialPruned",
    "TrialRecord",
    "UsageError",
    "__version__",
    "agent",
    "extend",
    "init",
    "load",
    "load_spec",
    "sweep",
]
