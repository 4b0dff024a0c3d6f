"""Optuna samplers that follow W&B's sweep semantics.

:class:`WandbRandomSampler` draws every parameter from W&B's law (see :mod:`sweeper.spec.space`). Each
draw comes from its own generator keyed by ``(seed, trial number, parameter name)``, so trial ``n``
gets the same config whichever agent asks for it, in whatever order, however many run at once
(on a finite space, unless another trial holds that config: :class:`~sweeper.search.strategy.DistinctSampler`
then draws again). A conditional parameter is drawn only where it is active.
"""

from __future__ import annotations

import secrets
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from sweeper.spec.space import SearchSpace


def param_rng(seed: int, trial_number: int, name: str) -> np.random.Generator:
    """The generator for one parameter of one trial: independent of every other draw."""
    return np.random.default_rng([seed, trial_number, zlib.crc32(name.encode("utf-8"))])


def draw_params(space: SearchSpace, seed: int, trial_number: int) -> dict[str, Any]:
    """The flat Optuna params :class:`WandbRandomSampler` gives trial ``trial_number`` under ``seed``
    (the active parameters only, drawn in dependency order).

    >>> from sweeper.spec.reader import load_spec
    >>> space = load_spec({"method": "random", "parameters": {"x": {"min": 0, "max": 9}}}).space
    >>> draw_params(space, 7, 3) == draw_params(space, 7, 3)
    True
    """
    return space.define_by_run(lambda name, _: space.sample(name, param_rng(seed, trial_number, name)))


def draw_all(space: SearchSpace, seed: int, trial_number: int) -> dict[str, Any]:
    """Like :func:`draw_params`, but a value for every parameter, active or not (same values)."""
    return {name: space.sample(name, param_rng(seed, trial_number, name)) for name in space.names}


class WandbRandomSampler(BaseSampler):
    """Random search with W&B's sampling law for every distribution, reproducible per trial.

    Args:
        space: the sweep's search space.
        seed: the sweep seed; ``None`` picks one at random (kept for this sampler's lifetime).

    >>> import optuna
    >>> from sweeper.spec.reader import load_spec
    >>> space = load_spec({"method": "random", "parameters": {"x": {"min": 0.0, "max": 1.0}}}).space
    >>> study = optuna.create_study(sampler=WandbRandomSampler(space, seed=1))
    >>> trial = study.ask(space.distributions())
    >>> trial.params == draw_params(space, 1, trial.number)
    True
    """

    def __init__(self, space: SearchSpace, seed: int | None = None) -> None:
        self._space = space
        self._seed = secrets.randbits(63) if seed is None else seed
        self._known = set(space.names)

    @property
    def seed(self) -> int:
        """The seed in use (drawn at random when none was given)."""
        return self._seed

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return {}

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        rng = param_rng(self._seed, trial.number, param_name)
        if param_name in self._known:
            value = self._space.sample(param_name, rng)
            if param_distribution._contains(param_distribution.to_internal_repr(value)):
                return value
        # A parameter outside the spec (a trainer calling trial.suggest_* itself): plain random.
        fallback = RandomSampler(seed=int(rng.integers(2**31)))
        return fallback.sample_independent(study, trial, param_name, param_distribution)

    def reseed_rng(self) -> None:
        # Draws are keyed by (seed, trial number): nothing to reseed, and reseeding must not
        # change what a trial gets (Optuna calls this when it copies samplers into workers).
        return None

    def after_trial(
        self,
        study: Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        return None


def draws_alone(sampler: BaseSampler) -> bool:
    """Whether ``sampler`` draws each trial's params from the sweep's seed and the trial's number
    alone, never reading the other trials (W&B's random law; a grid's queued points are fixed):
    trials it proposes may be prepared together and started in one write."""
    return type(sampler) is WandbRandomSampler


__all__ = ["WandbRandomSampler", "draw_all", "draw_params", "draws_alone", "param_rng"]
