"""What to try next: the Optuna sampler for a spec's method.

- ``grid``: every point is enqueued when the sweep is created, so the sampler only sees fixed
  params; W&B's random law is the fallback that never runs in practice.
- ``random``: W&B's sampling law of every distribution, reproducible per (seed, trial number).
- ``custom`` (``scheduler: {engine: optuna}``): the sampler and pruner of the user's study, and
  their define-by-run search space (:mod:`sweeper.search.custom`).
- ``bayes``: ``sampler: auto`` picks Optuna's GP where it is strong (a numeric space of modest
  dimension and budget, few trials at once, torch installed) and multivariate TPE with constant
  liar elsewhere; ``gp`` / ``tpe`` force one. Either way running trials never make it suggest a
  point that is already taken in a discrete space.
"""

from __future__ import annotations

import copy
import importlib.util
from collections.abc import Callable, Container, Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.pruners import BasePruner
from optuna.samplers import BaseSampler, GPSampler, TPESampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from sweeper.search.custom import OptunaScheduler, load_scheduler
from sweeper.search.pruners import make_pruner
from sweeper.search.samplers import WandbRandomSampler, draw_params
from sweeper.spec.model import SweepSpec
from sweeper.spec.space import SearchSpace

# GP is strong on low-dimensional numeric spaces with modest budgets; past these it slows
# (cubic in trials) or loses to TPE.
GP_MAX_DIMENSIONS = 12
GP_MAX_TRIALS = 300
GP_MAX_PARALLELISM = 8
_RESAMPLE_ATTEMPTS = 64


def choose_bayes_sampler(spec: SweepSpec, *, parallelism: int) -> str:
    """``"gp"`` or ``"tpe"``: the spec's explicit choice, or the ``auto`` rule."""
    if spec.sweeper.sampler != "auto":
        return spec.sweeper.sampler
    distributions = spec.space.distributions()
    numeric = not any(isinstance(d, CategoricalDistribution) for d in distributions.values())
    modest = len(distributions) <= GP_MAX_DIMENSIONS and (spec.run_cap or 0) <= GP_MAX_TRIALS
    has_torch = importlib.util.find_spec("torch") is not None
    if numeric and modest and spec.run_cap is not None and parallelism <= GP_MAX_PARALLELISM and has_torch:
        return "gp"
    return "tpe"


def make_sampler(spec: SweepSpec, *, parallelism: int = 1) -> BaseSampler:
    """The Optuna sampler that proposes this sweep's trials."""
    space = spec.space
    seed = spec.sweeper.seed
    random = WandbRandomSampler(space, seed)
    if spec.method != "bayes":
        return random
    inner: BaseSampler
    if choose_bayes_sampler(spec, parallelism=parallelism) == "gp":
        inner = GPSampler(seed=seed, independent_sampler=random)
    else:
        inner = TPESampler(
            seed=seed,
            multivariate=True,
            constant_liar=True,
        )
    return DistinctSampler(inner, space, seed)


class SearchPlan:
    """How an agent searches a sweep: the sampler, the pruner, what to ask and each trial's config.

    For ``method: custom`` the user's scheduler file is run once, here; otherwise this is
    :func:`make_sampler`, :func:`~sweeper.search.pruners.make_pruner` and the spec's search space.
    """

    def __init__(self, spec: SweepSpec, scheduler: OptunaScheduler | None) -> None:
        self._spec = spec
        self.scheduler = scheduler

    def pruner(self, directions: Sequence[str]) -> BasePruner | None:
        """The pruner, or None; a Pareto front has no single curve to compare, so never several objectives."""
        if self.scheduler is not None:
            return self.scheduler.pruner
        return make_pruner(self._spec.early_terminate, list(directions)) if len(directions) == 1 else None

    def sampler(self, *, parallelism: int = 1) -> BaseSampler:
        """The sampler that proposes the trials (GP or TPE for bayes depends on ``parallelism``)."""
        if self.scheduler is not None:
            return self.scheduler.sampler
        return make_sampler(self._spec, parallelism=parallelism)

    @property
    def asks(self) -> dict[str, BaseDistribution] | Callable[[optuna.Trial], None]:
        """What the queue suggests on each asked trial: the static distributions, or the user's
        define-by-run function (see :func:`sweeper.storage.queue.ask_trial`)."""
        if self.scheduler is not None and self.scheduler.space is not None:
            return self.scheduler.space
        return self._spec.space.distributions()

    def config(self, trial: optuna.Trial) -> dict[str, Any]:
        """The trainer's config of an asked trial (what the define-by-run function returned, or the
        spec's params as nested config)."""
        if self.scheduler is not None and self.scheduler.space is not None:
            return self.scheduler.space.config(trial)
        return self._spec.space.to_config(dict(trial.params))


def plan_search(spec: SweepSpec, project_dir: str | Path) -> SearchPlan:
    """The :class:`SearchPlan` of ``spec``, loading its ``scheduler.source`` (once) when it has one.

    Raises:
        SpecError: the scheduler's file or functions are broken (see :func:`load_scheduler`).
    """
    custom = spec.scheduler is not None and spec.scheduler.engine == "optuna"
    return SearchPlan(spec, load_scheduler(spec, Path(project_dir)) if custom else None)


class DistinctSampler(BaseSampler):
    """Wraps a model-based sampler so it never proposes a point another trial already holds.

    In a discrete space TPE and GP happily re-propose a finished or running point (and their random
    start-up phase repeats points too); a repeat costs a whole trial and teaches nothing. Each trial
    is therefore sampled jointly: the model's proposal where it has one, W&B's prior law for the
    rest, and a fresh prior draw whenever the point is taken.
    """

    def __init__(self, inner: BaseSampler, space: SearchSpace, seed: int | None) -> None:
        self._inner = inner
        self._space = space
        self._prior = WandbRandomSampler(space, seed)

    def reseed_rng(self) -> None:
        self._inner.reseed_rng()

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        # The space is static (no conditional parameters), so the whole of it is sampled jointly.
        return self._space.distributions()

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not search_space:
            return {}
        # The model learns from stopped trials too, by the best value they logged, as W&B's does.
        view: Any = StoppedCountAsComplete(study)
        inner_space = self._inner.infer_relative_search_space(view, trial)
        proposal = self._inner.sample_relative(view, trial, inner_space) if inner_space else {}
        prior = draw_params(self._space, self._prior.seed, trial.number)
        params = {name: proposal.get(name, prior[name]) for name in search_space}
        names = sorted(params)
        taken = _taken_points(study, trial, names)
        for attempt in range(_RESAMPLE_ATTEMPTS):
            if _point(params, names) not in taken:
                break
            # A seed per attempt keeps the redraws of one trial reproducible and apart from the prior's.
            redraw = draw_params(self._space, self._prior.seed + 1 + attempt, trial.number)
            params = {name: redraw[name] for name in search_space}
        return params

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        return self._prior.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._inner.before_trial(study, trial)

    def after_trial(
        self, study: Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        self._inner.after_trial(study, trial, state, values)


class StoppedCountAsComplete:
    """A view of a study in which each trial the pruner stopped, with the best value it logged, is a
    complete trial of that value.

    W&B's bayes search learns from stopped runs by their summary metric; Optuna's GP sampler reads
    COMPLETE trials only, and its TPE ranks pruned trials below every complete one. Everything but the
    trial lists is the study's own.
    """

    def __init__(self, study: Study) -> None:
        self._study = study

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _get_trials(
        self,
        deepcopy: bool = True,
        states: Container[TrialState] | None = None,
        use_cache: bool = False,
    ) -> list[FrozenTrial]:
        wanted = None if states is None else frozenset(states)  # type: ignore[call-overload]
        if wanted is not None and TrialState.COMPLETE not in wanted:
            return self._study._get_trials(deepcopy=deepcopy, states=wanted, use_cache=use_cache)
        asked = None if wanted is None else wanted | {TrialState.PRUNED}
        out: list[FrozenTrial] = []
        for trial in self._study._get_trials(deepcopy=deepcopy, states=asked, use_cache=use_cache):
            if trial.state == TrialState.PRUNED and trial.values is not None:
                stopped = copy.copy(trial)
                stopped.state = TrialState.COMPLETE
                out.append(stopped)
            elif trial.state != TrialState.PRUNED or wanted is None or TrialState.PRUNED in wanted:
                out.append(trial)
        return out

    def get_trials(
        self, deepcopy: bool = True, states: Container[TrialState] | None = None
    ) -> list[FrozenTrial]:
        return self._get_trials(deepcopy=deepcopy, states=states, use_cache=False)

    @property
    def trials(self) -> list[FrozenTrial]:
        return self.get_trials()


def _point(params: dict[str, Any], names: list[str]) -> tuple[Any, ...]:
    # Compare as floats where possible so 1 and 1.0 are one point, as in W&B's grid.
    return tuple(float(params[n]) if isinstance(params[n], int | float) else params[n] for n in names)


def _taken_points(study: Study, current: FrozenTrial, names: list[str]) -> set[tuple[Any, ...]]:
    states = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.PRUNED, TrialState.FAIL)
    points: set[tuple[Any, ...]] = set()
    for trial in study._get_trials(deepcopy=False, states=states, use_cache=True):
        if trial.number == current.number:
            continue
        params = trial.params
        if all(n in params for n in names):
            points.add(_point(params, names))
    return points


__all__ = [
    "DistinctSampler",
    "SearchPlan",
    "StoppedCountAsComplete",
    "choose_bayes_sampler",
    "make_sampler",
    "plan_search",
]
