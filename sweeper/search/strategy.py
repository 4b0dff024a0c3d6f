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
- conditional parameters (``sweeper_if``): always TPE, multivariate and *grouped*: Optuna splits
  the parameters into groups that always occur together and models each group on the trials that
  have it, so a parameter is learned only from trials where it was active. A trial is suggested
  define-by-run (:meth:`SearchSpace.define_by_run`), so it holds only its active parameters.
- a finite space (every parameter discrete): random and bayes claim each config before a trial
  gets it (``claim``, atomic in the storage), so no config runs twice however many agents race;
  ``sweeper.distinct: false`` turns this off (W&B's random draws with replacement).
"""

from __future__ import annotations

import copy
import importlib.util
import logging
import random as _random
import warnings
from collections.abc import Callable, Container, Iterator, Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.exceptions import ExperimentalWarning
from optuna.pruners import BasePruner
from optuna.samplers import BaseSampler, GPSampler, TPESampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from sweeper.search.custom import OptunaScheduler, load_scheduler
from sweeper.search.pruners import make_pruner
from sweeper.search.samplers import WandbRandomSampler, draw_all
from sweeper.spec.model import SweepSpec
from sweeper.spec.space import SearchSpace

# GP is strong on low-dimensional numeric spaces with modest budgets; past these it slows
# (cubic in trials) or loses to TPE.
GP_MAX_DIMENSIONS = 12
GP_MAX_TRIALS = 300
GP_MAX_PARALLELISM = 8
_RESAMPLE_ATTEMPTS = 64
# Past the random redraws, a finite space up to this many configs is searched in full for a free one.
_ENUMERATE_LIMIT = 200_000

# claim(study, config key, trial number) -> whether the trial now holds the config (see
# sweeper.storage.claims.claim_config): atomic across agents, so no two trials run one config.
Claim = Callable[[Study, str, int], bool]
# Whether a trial is a prior (an earlier result a warm start loaded; sweeper.storage.attrs.is_prior):
# it teaches the model, but holds no config of this sweep (the sweep may run that config itself).
IsPrior = Callable[[FrozenTrial], bool]

_logger = logging.getLogger(__name__)


def choose_bayes_sampler(spec: SweepSpec, *, parallelism: int, priors: int = 0) -> str:
    """``"gp"`` or ``"tpe"``: the spec's explicit choice, or the ``auto`` rule (the GP models every
    trial, ``priors`` included, so they count toward its limit)."""
    if spec.sweeper.sampler != "auto":
        return spec.sweeper.sampler
    if spec.space.is_conditional:
        return "tpe"  # the GP models one fixed set of parameters
    distributions = spec.space.distributions()
    numeric = not any(isinstance(d, CategoricalDistribution) for d in distributions.values())
    modest = len(distributions) <= GP_MAX_DIMENSIONS and (spec.run_cap or 0) + priors <= GP_MAX_TRIALS
    has_torch = importlib.util.find_spec("torch") is not None
    if numeric and modest and spec.run_cap is not None and parallelism <= GP_MAX_PARALLELISM and has_torch:
        return "gp"
    return "tpe"


def make_sampler(
    spec: SweepSpec,
    *,
    parallelism: int = 1,
    claim: Claim | None = None,
    priors: int = 0,
    is_prior: IsPrior | None = None,
) -> BaseSampler:
    """The Optuna sampler that proposes this sweep's trials.

    A distinct sweep (:attr:`SweepSpec.distinct`: a finite space) claims each config through
    ``claim`` before a trial gets it, so no config runs twice however many agents race; without
    ``claim`` (one process, benchmarks) only the configs of visible trials are avoided. The
    model learns from every finished trial, its ``priors`` too (a warm start: how many, for the
    GP-or-TPE choice); ``is_prior`` tells them apart, as their configs are not taken.
    """
    space = spec.space
    seed = spec.sweeper.seed
    random = WandbRandomSampler(space, seed)
    distinct = spec.distinct
    if spec.method != "bayes":
        if not distinct:
            return random
        return DistinctSampler(random, space, seed, claim=claim, finite=True, is_prior=is_prior)
    inner: BaseSampler
    if choose_bayes_sampler(spec, parallelism=parallelism, priors=priors) == "gp":
        inner = GPSampler(seed=seed, independent_sampler=random)
    else:
        with warnings.catch_warnings():
            # `group` (and `multivariate`) are experimental in Optuna: chosen on purpose, not news to users.
            warnings.simplefilter("ignore", ExperimentalWarning)
            inner = TPESampler(
                seed=seed,
                multivariate=True,
                group=space.is_conditional,
                constant_liar=True,
            )
    return DistinctSampler(
        inner, space, seed, claim=claim if distinct else None, finite=distinct, is_prior=is_prior
    )


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

    def sampler(
        self,
        *,
        parallelism: int = 1,
        claim: Claim | None = None,
        priors: int = 0,
        is_prior: IsPrior | None = None,
    ) -> BaseSampler:
        """The sampler that proposes the trials (GP or TPE for bayes depends on ``parallelism`` and
        ``priors``; ``claim`` makes a distinct sweep's configs unique across agents; ``is_prior``
        tells a warm start's priors apart: see :func:`make_sampler`)."""
        if self.scheduler is not None:
            return self.scheduler.sampler
        return make_sampler(
            self._spec, parallelism=parallelism, claim=claim, priors=priors, is_prior=is_prior
        )

    @property
    def asks(self) -> SearchSpace | Callable[[optuna.Trial], None]:
        """What the queue suggests on each asked trial: the spec's space (its active parameters,
        define-by-run), or the user's define-by-run function (see :func:`sweeper.storage.queue.ask_trial`)."""
        if self.scheduler is not None and self.scheduler.space is not None:
            return self.scheduler.space
        return self._spec.space

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
    """Wraps a sampler so it never proposes a point another trial already holds.

    In a discrete space TPE and GP happily re-propose a finished or running point (and their random
    start-up phase repeats points too); a repeat costs a whole trial and teaches nothing. Each trial
    is therefore sampled jointly: the model's proposal where it has one, W&B's prior law for the
    rest, and a fresh prior draw whenever the point is taken.

    With ``claim`` (a finite space), the point must also be claimed: a claim another trial won is a
    taken point, so racing agents never share one. Past the redraws, a finite space is searched in
    a shuffled order (reproducible per trial) for a free config: near the end of a space, the last
    free configs are found rather than hoped for. A prior (``is_prior``) holds no point: it is an
    earlier result, not a run of this sweep, which may run its config itself (priors claim nothing).
    """

    def __init__(
        self,
        inner: BaseSampler,
        space: SearchSpace,
        seed: int | None,
        *,
        claim: Claim | None = None,
        finite: bool = False,
        is_prior: IsPrior | None = None,
    ) -> None:
        self._inner = inner
        self._space = space
        self._prior = WandbRandomSampler(space, seed)
        self._claim = claim
        self._finite = finite
        self._taken = _TakenPoints(space, is_prior)

    def reseed_rng(self) -> None:
        self._inner.reseed_rng()

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        # Every parameter is proposed jointly; a conditional one's value is used only where the
        # trial's own choices make it active (the define-by-run suggestion skips the rest).
        return self._space.distributions()

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not search_space:
            return {}
        prior = draw_all(self._space, self._prior.seed, trial.number)
        if trial.system_attrs.get("fixed_params"):
            # A grid point, a retry or a repeat: its params are given (and run again on purpose).
            return prior
        # The model learns from stopped trials too, by the best value they logged, as W&B's does.
        view: Any = StoppedCountAsComplete(study)
        inner_space = self._inner.infer_relative_search_space(view, trial)
        proposal = self._inner.sample_relative(view, trial, inner_space) if inner_space else {}
        first = {name: proposal.get(name, prior[name]) for name in search_space}
        # With claims, the configs of visible trials are gathered (a scan of every trial) only once a
        # claim is lost, to skip the rest of them; most trials win their first claim.
        taken = None if self._claim is not None else self._taken(study, trial)
        for params in self._candidates(first, trial.number):
            if taken is not None and _point(self._space.active_params(params)) in taken:
                continue
            if self._claim is None or self._claim(study, self._space.config_key(params), trial.number):
                return params
            if taken is None:
                taken = self._taken(study, trial)
        if self._claim is not None:
            _logger.warning(
                "trial %d: every config of the space is claimed; it repeats one (a claim whose trial "
                "was lost before it got its params can cause this)",
                trial.number,
            )
        return first

    def _candidates(self, first: dict[str, Any], number: int) -> Iterator[dict[str, Any]]:
        yield first
        for attempt in range(_RESAMPLE_ATTEMPTS):
            # A seed per attempt keeps the redraws of one trial reproducible and apart from the prior's.
            yield draw_all(self._space, self._prior.seed + 1 + attempt, number)
        size = self._space.finite_size() if self._finite else None
        if size is not None and size <= _ENUMERATE_LIMIT:
            configs = list(self._space.iter_finite())
            _random.Random(f"{self._prior.seed}:{number}").shuffle(configs)
            for config in configs:
                yield {**first, **config}

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


def _point(params: dict[str, Any]) -> tuple[Any, ...]:
    """A config's identity: its (name, value) pairs, numbers as floats so 1 and 1.0 are one point
    (as in W&B's grid). With conditional parameters, only the active ones are in ``params``."""
    return tuple(sorted((n, float(v) if isinstance(v, int | float) else v) for n, v in params.items()))


def _trial_point(trial: FrozenTrial, space: SearchSpace, names: set[str]) -> tuple[Any, ...] | None:
    """The config a trial holds, or None while its params are incomplete (still being suggested)."""
    # Params a trainer suggested itself are not part of the spec's config.
    params = {n: v for n, v in trial.params.items() if n in names}
    if params and set(params) == set(space.active(params)) & names:
        return _point(params)
    return None


class _TakenPoints:
    """The configs the study's trials hold (priors aside); a finished trial's config is computed once."""

    def __init__(self, space: SearchSpace, is_prior: IsPrior | None = None) -> None:
        self._space = space
        self._names = set(space.names)
        self._finished: dict[int, tuple[Any, ...] | None] = {}
        self._is_prior = is_prior

    def __call__(self, study: Study, current: FrozenTrial) -> set[tuple[Any, ...]]:
        states = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.PRUNED, TrialState.FAIL)
        points: set[tuple[Any, ...]] = set()
        for trial in study._get_trials(deepcopy=False, states=states, use_cache=True):
            if trial.number == current.number:
                continue
            if trial.state.is_finished():
                if trial.number not in self._finished:
                    prior = self._is_prior is not None and self._is_prior(trial)
                    point = None if prior else _trial_point(trial, self._space, self._names)
                    self._finished[trial.number] = point
                point = self._finished[trial.number]
            else:
                point = _trial_point(trial, self._space, self._names)
            if point is not None:
                points.add(point)
        return points


__all__ = [
    "DistinctSampler",
    "SearchPlan",
    "StoppedCountAsComplete",
    "choose_bayes_sampler",
    "make_sampler",
    "plan_search",
]
