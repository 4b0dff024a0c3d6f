"""Was the best trial luck? Re-run one trial's config with other seeds and look at the spread.

``repeat`` enqueues K trials with the original's params, each marked ``repeat_of`` and carrying a
config override of the top-level ``seed`` key (:data:`sweeper.storage.sweeps.CONFIG_OVERRIDES`), then runs a
targeted agent (``sweeper.agent(..., trials=...)``) on exactly those trials. The trainer (function or
program) and the trackers see the repeat's seed, and the stored ``config`` is what the trainer saw.
The params stay the original's, so a swept ``seed`` param still names the point being repeated.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from optuna.storages import BaseStorage

from sweeper.analysis.results import SweepResults, TrialRecord, load
from sweeper.errors import TrainerError, UsageError
from sweeper.plain import strict_json_dict
from sweeper.spec import overrides
from sweeper.storage import attrs as keys
from sweeper.storage import queue, sweeps
from sweeper.storage.urls import open_storage

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
        return strict_json_dict(
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

    Each repeat keeps the original's params and overrides the config's ``seed`` key (a trial
    config override), so function and program trainers alike see it. A targeted agent runs
    exactly the repeats: other queued trials stay queued, and a finished sweep stays finished.

    Args:
        sweep_id: The sweep id or unique name.
        trial_number: The trial to repeat (it must have all its params).
        seeds: How many repeats (seeds after the original's), or the seeds themselves.
        storage: The sweep's storage, URL or open storage.
        function: The trainer function (default: the spec's ``sweeper.trainer`` or program).
        trainer: A ``module:function`` trainer instead of ``function``.
        executor: ``ray`` or ``local``, as for :func:`sweeper.agent`.
        max_concurrent: At most this many repeats at once.
        ray_address: The Ray cluster to use.

    Raises:
        UsageError: no such trial, no seeds, the trial has no params yet, or the sweep is
            paused or cancelled.
        TrainerError: the sweep names no trainer and none is given.
    """
    from sweeper.api import agent
    from sweeper.engine.agent import EXECUTORS

    if executor not in EXECUTORS:  # checked before anything is enqueued
        raise UsageError(f"executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    store = storage if isinstance(storage, BaseStorage) else open_storage(storage)
    results = load(sweep_id, store)
    original = results.trial(trial_number)
    chosen = default_seeds(original, seeds) if isinstance(seeds, int) else list(seeds)
    if not chosen:
        raise UsageError(f"repeat needs at least 1 seed, got {seeds!r}")
    _check_runnable(results, original, function is not None or trainer is not None)
    study = sweeps.load_study(store, results.id)
    numbers = [
        queue.enqueue(
            study,
            dict(original.params),
            {
                keys.ATTEMPT: 0,
                keys.REPEAT_OF: original.number,
                keys.CONFIG_OVERRIDES: overrides.check({SEED_KEY: seed}),
            },
        )
        for seed in chosen
    ]
    # Interrupted, the repeats left queued keep their seeds: any later agent runs them as repeats.
    agent(
        results.id,
        function=function,
        trainer=trainer,
        storage=store,
        executor=executor,
        max_concurrent=max_concurrent,
        ray_address=ray_address,
        trials=numbers,
    )
    return summarize(load(results.id, store), original.number)


def _check_runnable(results: SweepResults, original: TrialRecord, trainer_given: bool) -> None:
    """Refuse before anything is enqueued what would leave repeats queued and never run."""
    if results.state in ("paused", "cancelled"):
        hint = "resume it first" if results.state == "paused" else "its trials cannot run"
        raise UsageError(f"sweep {results.id} is {results.state}; {hint}")
    missing = sorted(set(results.spec.space.distributions()) - set(original.params))
    if missing:
        raise UsageError(
            f"trial {original.number} of sweep {results.id} has no params {', '.join(missing)} yet "
            f"(it is {original.state}); repeat a trial that has run"
        )
    spec = results.spec
    if not trainer_given and spec.sweeper.trainer is None and spec.program is None and spec.command is None:
        raise TrainerError(
            f"sweep {results.id} names no trainer: set sweeper.trainer or program in the spec, "
            "or pass a trainer"
        )


def _seed_of(trial: TrialRecord) -> Any:
    return trial.config.get(SEED_KEY)
