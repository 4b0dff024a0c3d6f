"""The validated sweep spec as frozen dataclasses: the contract every other package builds on."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

from sweeper.spec.laws import Parameter

if TYPE_CHECKING:
    from sweeper.spec.space import SearchSpace

Method = Literal["grid", "random", "bayes", "custom"]
# A finite space without run_cap is exhausted after this many configs at most; past it (a space
# no sweep will exhaust), the sweep stays unbounded, its configs still distinct.
MAX_DISTINCT_TOKENS = 100_000
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
class Scheduler:
    """W&B's ``scheduler:`` block (2026): which engine proposes the trials, and the user's code for it.

    ``engine: optuna`` (with ``method: custom``) builds the Optuna study from ``optimizer`` (a
    zero-argument function in ``source`` returning a study: its sampler, pruner and directions) and
    asks each trial's config from ``search_space`` (a function of an ``optuna.Trial``, define-by-run);
    either may be left out (Optuna's default study; the spec's ``parameters``). ``engine: wandb``
    is W&B's own engine: grid, random or bayes over ``parameters``, as without a scheduler.
    """

    engine: Literal["optuna", "wandb"]
    source: str | None = None  # a Python file, as written in the spec
    optimizer: str | None = None  # function name in source
    search_space: str | None = None  # function name in source


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


WarmStartKind = Literal["sweep", "export", "mlflow", "wandb"]


@dataclass(frozen=True)
class WarmStart:
    """One source of priors (``sweeper.warm_start``): earlier results the new sweep's sampler learns from.

    ``target`` is a sweep's id or name (``sweep``), a file written by ``sweeper export``
    (``export``), an MLflow experiment's name or id (``mlflow``), or W&B runs (``wandb``: a
    ``wandb`` folder of run folders, one run folder, or a runs table exported as CSV or JSON).
    A relative path is looked for next to the spec file, then in the directory the sweep is
    submitted in.
    """

    kind: WarmStartKind
    target: str
    storage: str | None = None  # sweep: the storage holding it (default: the new sweep's)
    tracking_uri: str | None = None  # mlflow: the tracking server or store (default: MLflow's own)


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
    # Where each trial's working directory goes: <outputs>/<sweep id>/trials/<n> (default: the
    # project's .sweeper/sweeps); relative to the agent's project directory.
    outputs: str | None = None
    # A finite space's random/bayes sweep runs each config at most once (False: W&B's with-replacement draws).
    distinct: bool = True
    # Earlier results the sampler learns from (priors), loaded when the sweep is created.
    warm_start: tuple[WarmStart, ...] = ()


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
    scheduler: Scheduler | None = None
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
    def defines_space_by_run(self) -> bool:
        """Whether the user's ``scheduler.search_space`` function, not ``parameters``, gives the configs."""
        return self.scheduler is not None and self.scheduler.search_space is not None

    @property
    def is_budgeted(self) -> bool:
        """Whether the sweep's trials are enqueued at creation (grid points or budget tokens).

        A budgeted sweep never creates a trial beyond what is enqueued, so its size is exact however
        many agents race; retries add trials with fixed params on top.
        """
        return self.budget is not None

    @property
    def distinct(self) -> bool:
        """Whether this random or bayes sweep runs each config at most once: its space is finite
        (every parameter discrete) and ``sweeper.distinct`` is on (the default)."""
        return (
            self.method in ("random", "bayes")
            and self.sweeper.distinct
            and self.space.finite_size() is not None
        )

    @property
    def budget(self) -> int | None:
        """How many trials the sweep runs at most (retries aside): the grid's size capped by
        ``run_cap``; for a distinct sweep, the number of distinct configs capped by ``run_cap``
        (unbounded past :data:`MAX_DISTINCT_TOKENS` configs without a ``run_cap``); else
        ``run_cap``, else None (unbounded)."""
        if self.method == "grid":
            size = self.space.grid_size()
            return size if self.run_cap is None else min(size, self.run_cap)
        finite = self.space.finite_size() if self.distinct else None
        if finite is not None:
            if self.run_cap is not None:
                return min(finite, self.run_cap)
            return finite if finite <= MAX_DISTINCT_TOKENS else None
        return self.run_cap

    @cached_property
    def space(self) -> SearchSpace:
        """The search space of this spec's parameters (built once per spec)."""
        from sweeper.spec.space import SearchSpace

        return SearchSpace(self.parameters, method=self.method)
