"""Was the best trial luck? Re-run one trial's config with other seeds and look at the spread.

``repeat`` enqueues K trials with the original's params, each marked ``repeat_of`` (and ``seed``),
then runs an agent (:func:`sweeper.agent`) that picks exactly those trials up. The config's top-level
``seed`` key gets each repeat's seed: through the params when ``seed`` is a swept parameter (any
trainer, programs included), else by wrapping the trainer function so it receives the new seed.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from optuna.storages import BaseStorage
from optuna.trial import TrialState

from sweeper import study as sweeps
from sweeper.errors import UsageError
from sweeper.results import SweepResults, TrialRecord, jsonable_dict, load
from sweeper.storage import open_storage

SEED_KEY = "seed"
CONFIDENCE = 0.95


@dataclass(frozen=True)
class RepeatStats:
    """Spread of the objective over the complete repeats: mean, sample std, range, t-interval of the mean."""

    n: int
    mean: float
    std: float | None
    min: float
    max: float
    ci_low: float | None
    ci_high: float | None
    confidence: float = CONFIDENCE

    def contains(self, value: float) -> bool | None:
        """Whether ``value`` lies inside the confidence interval (``None`` without an interval)."""
        if self.ci_low is None or self.ci_high is None:
            return None
        return self.ci_low <= value <= self.ci_high


@dataclass(frozen=True)
class RepeatReport:
    """The repeats of one trial and their statistics on the first objective."""

    sweep_id: str
    metric: str
    original: TrialRecord
    repeats: tuple[TrialRecord, ...]
    stats: RepeatStats | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        stats = self.stats
        return jsonable_dict(
            {
                "sweep_id": self.sweep_id,
                "metric": self.metric,
                "trial": self.original.number,
                "original_value": self.original.value,
                "seeds": [_seed_of(t) for t in self.repeats],
                "repeats": [t.to_dict() for t in self.repeats],
                "stats": None
                if stats is None
                else {
                    "n": stats.n,
                    "mean": stats.mean,
                    "std": stats.std,
                    "min": stats.min,
                    "max": stats.max,
                    "ci_low": stats.ci_low,
                    "ci_high": stats.ci_high,
                    "confidence": stats.confidence,
                    "original_inside_ci": stats.contains(self.original.value)
                    if self.original.value is not None
                    else None,
                },
            }
        )


def describe(values: Sequence[float], confidence: float = CONFIDENCE) -> RepeatStats:
    """Mean, sample std, min, max and Student's t-interval of the mean of ``values``.

    Example:
        >>> s = describe([1.0, 2.0, 3.0])
        >>> (s.mean, s.std, round(s.ci_low, 3), round(s.ci_high, 3))
        (2.0, 1.0, -0.484, 4.484)
    """
    if not values:
        raise UsageError("statistics need at least one value, got none")
    from scipy import stats as scipy_stats

    n = len(values)
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if n > 1 else None
    low = high = None
    if std is not None:
        half = float(scipy_stats.t.ppf((1 + confidence) / 2, df=n - 1)) * std / math.sqrt(n)
        low, high = mean - half, mean + half
    return RepeatStats(n, mean, std, min(values), max(values), low, high, confidence)


def default_seeds(original: TrialRecord, k: int) -> list[int]:
    """``k`` seeds after the original's (its config's ``seed``, else 0): seed+1 ... seed+k."""
    base = original.config.get(SEED_KEY)
    start = base if isinstance(base, int) and not isinstance(base, bool) else 0
    return [start + i for i in range(1, k + 1)]


def summarize(results: SweepResults, trial_number: int) -> RepeatReport:
    """The repeats of trial ``trial_number`` already in the sweep, with their statistics."""
    original = results.trial(trial_number)
    repeats = tuple(t for t in results.trials if t.repeat_of == trial_number)
    values = [t.value for t in repeats if t.state == "complete" and t.value is not None]
    return RepeatReport(
        sweep_id=results.id,
        metric=results.objective_names[0],
        original=original,
        repeats=repeats,
        stats=describe(values) if values else None,
    )


def repeat(
    sweep_id: str,
    trial_number: int,
    seeds: int | Sequence[int],
    *,
    storage: str | BaseStorage | None = None,
    function: Callable[..., Any] | None = None,
    trainer: str | None = None,
    executor: str = "ray",
    max_concurrent: int | None = None,
    ray_address: str | None = None,
) -> RepeatReport:
    """Re-run trial ``trial_number``'s config once per seed, as new trials marked ``repeat_of``.

    Args:
        sweep_id: The sweep id or unique name.
        trial_number: The trial to repeat (it must have params).
        seeds: How many repeats (seeds after the original's), or the seeds themselves.
        storage: The sweep's storage, URL or open storage.
        function: The trainer function (default: the spec's ``sweeper.trainer``).
        trainer: A ``module:function`` trainer instead of ``function``.
        executor: ``ray`` or ``local``, as for :func:`sweeper.agent`.
        max_concurrent: At most this many repeats at once.
        ray_address: The Ray cluster to use.

    Raises:
        UsageError: no such trial; the sweep has queued trials or working agents that would get
            in the way; or the seed cannot be overridden (a program trainer and no swept ``seed``).
    """
    from sweeper.api import agent

    store = storage if isinstance(storage, BaseStorage) else open_storage(storage)
    results = load(sweep_id, store)
    original = results.trial(trial_number)
    chosen = default_seeds(original, seeds) if isinstance(seeds, int) else list(seeds)
    if not chosen:
        raise UsageError(f"repeat needs at least 1 seed, got {seeds!r}")
    _check_free(results)
    if not original.params:
        raise UsageError(
            f"trial {trial_number} of sweep {results.id} has no params yet (it is {original.state})"
        )
    distributions = results.spec.space.distributions()
    seed_is_param = SEED_KEY in distributions
    target: str | Callable[..., Any] | None = function or trainer or results.spec.sweeper.trainer
    if not seed_is_param and target is None:
        raise UsageError(
            f"sweep {results.id} runs a program and {SEED_KEY!r} is not a swept parameter, so its seed "
            f"cannot be overridden; add {SEED_KEY!r} to the spec's parameters or pass a trainer function"
        )
    if seed_is_param:
        distribution = distributions[SEED_KEY]
        for seed in chosen:
            if not distribution._contains(distribution.to_internal_repr(seed)):
                raise UsageError(
                    f"seed must lie in the sweep's {SEED_KEY!r} parameter ({distribution}), got {seed}"
                )
    study = sweeps.load_study(store, results.id)
    for seed in chosen:
        params = dict(original.params)
        if seed_is_param:
            params[SEED_KEY] = seed
        attrs = {sweeps.ATTEMPT: 0, sweeps.REPEAT_OF: original.number, SEED_KEY: seed}
        study.enqueue_trial(params, user_attrs=attrs, skip_if_exists=False)
    queued = {
        t.number: t.user_attrs[SEED_KEY]
        for t in store.get_all_trials(results.info.study_id, deepcopy=False, states=(TrialState.WAITING,))
        if t.user_attrs.get(sweeps.REPEAT_OF) == original.number
    }
    previous = results.state
    if previous != "running":  # an ended sweep takes no trials: reopen it for the repeats only
        store.set_study_user_attr(results.info.study_id, sweeps.STATE, "running")
    try:
        options: dict[str, Any] = {
            "count": len(chosen),
            "storage": store,
            "executor": executor,
            "max_concurrent": max_concurrent,
            "ray_address": ray_address,
        }
        if seed_is_param:
            agent(results.id, function=function, trainer=trainer, **options)
        else:
            assert target is not None
            # The agent records the config it built; sweeper.load shows a repeat's config with the
            # seed its user attr names, which is what the wrapped trainer received.
            agent(results.id, function=Reseeded(target, queued), **options)
    finally:
        if previous != "running":
            store.set_study_user_attr(results.info.study_id, sweeps.STATE, previous)
    return summarize(load(results.id, store), original.number)


class Reseeded:
    """A trainer wrapper that sets ``config["seed"]`` for the trials it knows (picklable for Ray)."""

    def __init__(self, target: str | Callable[..., Any], seeds: Mapping[int, int]) -> None:
        self.target = target
        self.seeds = dict(seeds)

    def __call__(self, config: dict[str, Any], trial: Any) -> Any:
        """Run the wrapped trainer with the trial's seed in its config."""
        from sweeper.trial import load_trainer

        function = load_trainer(self.target) if isinstance(self.target, str) else self.target
        number = getattr(trial, "number", None)
        if number in self.seeds:
            config = {**config, SEED_KEY: self.seeds[number]}
        return function(config, trial)


def _check_free(results: SweepResults) -> None:
    counts = results.counts()
    queued = counts["waiting"]
    if queued:
        raise UsageError(
            f"sweep {results.id} has {queued} queued trials (retries, grid points or unused run_cap "
            "budget) that an agent would run before the repeats; let the sweep run them first"
        )
    # A running trial means an agent is still at work; it would take the repeats too, seeds unset.
    running = counts["running"]
    if running:
        raise UsageError(
            f"sweep {results.id} still has {running} running trials; repeat a trial once they ended"
        )


def _seed_of(trial: TrialRecord) -> Any:
    return trial.config.get(SEED_KEY)
