"""What to try next: the Optuna sampler for a spec's method.

- ``grid``: every point is enqueued when the sweep is created, so the sampler only sees fixed
  params; W&B's random law is the fallback that never runs in practice.
- ``random``: W&B's sampling law of every distribution, reproducible per (seed, trial number).
- ``bayes``: ``sampler: auto`` picks Optuna's GP where it is strong (a numeric space of modest
  dimension and budget, few trials at once, torch installed) and multivariate TPE with constant
  liar elsewhere; ``gp`` / ``tpe`` force one. Either way running trials never make it suggest a
  point that is already taken in a discrete space.
- conditional parameters (``sweeper_if``): always TPE, multivariate and *grouped*: Optuna splits
  the parameters into groups that always occur together and models each group on the trials that
  have it, so a parameter is learned only from trials where it was active. A trial is suggested
  define-by-run (:meth:`SearchSpace.define_by_run`), so it holds only its active parameters.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from typing import Any

from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.samplers import BaseSampler, GPSampler, TPESampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from sweeper.search.samplers import WandbRandomSampler, draw_all
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
    if spec.space.is_conditional:
        return "tpe"  # the GP models one fixed set of parameters
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
            group=space.is_conditional,
            constant_liar=True,
        )
    return DistinctSampler(inner, space, seed)


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
        # Every parameter is proposed jointly; a conditional one's value is used only where the
        # trial's own choices make it active (the define-by-run suggestion skips the rest).
        return self._space.distributions()

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not search_space:
            return {}
        inner_space = self._inner.infer_relative_search_space(study, trial)
        proposal = self._inner.sample_relative(study, trial, inner_space) if inner_space else {}
        prior = draw_all(self._space, self._prior.seed, trial.number)
        params = {name: proposal.get(name, prior[name]) for name in search_space}
        taken = _taken_points(study, trial, self._space)
        for attempt in range(_RESAMPLE_ATTEMPTS):
            if _point(self._space.active_params(params)) not in taken:
                break
            # A seed per attempt keeps the redraws of one trial reproducible and apart from the prior's.
            redraw = draw_all(self._space, self._prior.seed + 1 + attempt, trial.number)
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


def _point(params: dict[str, Any]) -> tuple[Any, ...]:
    """A config's identity: its (name, value) pairs, numbers as floats so 1 and 1.0 are one point
    (as in W&B's grid). With conditional parameters, only the active ones are in ``params``."""
    return tuple(sorted((n, float(v) if isinstance(v, int | float) else v) for n, v in params.items()))


def _taken_points(study: Study, current: FrozenTrial, space: SearchSpace) -> set[tuple[Any, ...]]:
    states = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.PRUNED, TrialState.FAIL)
    names = set(space.names)
    points: set[tuple[Any, ...]] = set()
    for trial in study._get_trials(deepcopy=False, states=states, use_cache=True):
        if trial.number == current.number:
            continue
        # Params a trainer suggested itself are not part of the spec's config.
        params = {n: v for n, v in trial.params.items() if n in names}
        if params and set(params) == set(space.active(params)) & names:
            points.add(_point(params))
    return points


__all__ = ["DistinctSampler", "choose_bayes_sampler", "make_sampler"]
