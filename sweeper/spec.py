"""The sweep spec: a W&B sweep config plus our ``sweeper:`` block, parsed once into frozen dataclasses.

Owner: spec issue (#2). The dataclasses below are the contract the engine, trackers and inspect
code build on; parsing (``load_spec``) collects every error with its dotted path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from sweeper.space import SearchSpace

Method = Literal["grid", "random", "bayes", "custom"]
Goal = Literal["minimize", "maximize"]


@dataclass(frozen=True)
class Metric:
    """An objective: the metric's name, its goal and an optional target that ends the sweep."""

    name: str
    goal: Goal = "minimize"
    target: float | None = None
    impute: Literal["latest", "best", "worst"] = "worst"
    impute_while_running: Literal["latest", "best", "worst", "false"] | None = None


@dataclass(frozen=True)
class Parameter:
    """One leaf of the parameter tree, after W&B's inference rules.

    ``path`` is the chain of names from the top (nested ``parameters`` blocks); ``name`` joins it
    with dots, which is how Optuna sees the parameter.
    """

    path: tuple[str, ...]
    distribution: str
    value: Any = None
    values: tuple[Any, ...] = ()
    probabilities: tuple[float, ...] | None = None
    min: float | None = None
    max: float | None = None
    q: float | None = None
    mu: float | None = None
    sigma: float | None = None
    a: float | None = None
    b: float | None = None

    @property
    def name(self) -> str:
        return ".".join(self.path)


@dataclass(frozen=True)
class EarlyTerminate:
    """``early_terminate``: W&B's hyperband stopping rule, or our ``asha`` / ``median`` extensions."""

    type: Literal["hyperband", "asha", "median"]
    min_iter: int | None = None
    max_iter: int | None = None
    s: int | None = None
    eta: float = 3.0
    strict: bool = True
    # Keyword arguments for Optuna's SuccessiveHalvingPruner (asha) or MedianPruner (median).
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Resources:
    """What one trial asks of the cluster; ``gpus`` may be fractional (two 0.5 trials share a GPU)."""

    gpus: float = 0.0
    cpus: float = 1.0
    memory: int | None = None  # bytes
    custom: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class TrackerSpec:
    """One tracker the trials report to: its registered name and its options."""

    type: str
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SweeperSettings:
    """Our own settings, from the spec's top-level ``sweeper:`` block."""

    trainer: str | None = None  # "module:function"
    resources: Resources = field(default_factory=Resources)
    max_concurrent: int | None = None
    trackers: tuple[TrackerSpec, ...] = ()
    seed: int | None = None
    retries: int = 0
    timeout: float | None = None  # seconds per trial
    sampler: Literal["auto", "tpe", "gp"] = "auto"
    storage: str | None = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep spec. Build it with :func:`load_spec`."""

    method: Method
    parameters: tuple[Parameter, ...]
    metric: Metric | None = None
    metrics: tuple[Metric, ...] = ()
    early_terminate: EarlyTerminate | None = None
    program: str | None = None
    command: tuple[str, ...] | None = None
    name: str | None = None
    description: str | None = None
    project: str | None = None
    entity: str | None = None
    run_cap: int | None = None
    sweeper: SweeperSettings = field(default_factory=SweeperSettings)
    # The mapping as the user wrote it (numbers already numbers): what a study records.
    raw: Mapping[str, Any] = field(default_factory=dict)
    # Where the spec came from, for messages: a file path or "<mapping>".
    source: str = "<mapping>"
    # W&B keys we accept but do not act on (controller, job, image_uri, ...), as dotted paths.
    ignored_keys: tuple[str, ...] = ()

    @property
    def objectives(self) -> tuple[Metric, ...]:
        """The objectives in order: the ``metrics`` list, else the single ``metric``, else none."""
        if self.metrics:
            return self.metrics
        return (self.metric,) if self.metric is not None else ()

    @property
    def space(self) -> SearchSpace:
        """The search space of this spec's parameters."""
        from sweeper.space import SearchSpace

        return SearchSpace(self.parameters)


def load_spec(source: str | Path | Mapping[str, Any]) -> SweepSpec:
    """Read and validate a sweep spec from a YAML file path or a mapping.

    Raises:
        SpecError: with every problem found, each located by a dotted path.
    """
    raise NotImplementedError("spec parsing lands with issue #2")
