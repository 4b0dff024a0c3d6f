"""Was the best trial luck? The statistics of a trial and its repeats (re-runs with other seeds).

:func:`sweeper.api.repeat` enqueues K trials with the original's params, each marked ``repeat_of``
and carrying a config override of the top-level ``seed`` key
(:data:`sweeper.storage.attrs.CONFIG_OVERRIDES`), then runs a targeted agent
(``sweeper.agent(..., trials=...)``) on exactly those trials. The trainer (function or program) and
the trackers see the repeat's seed, and the stored ``config`` is what the trainer saw.
The params stay the original's, so a swept ``seed`` param still names the point being repeated.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sweeper.analysis.records import TrialRecord
from sweeper.analysis.results import SweepResults
from sweeper.errors import UsageError
from sweeper.plain import strict_json_dict

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


def _seed_of(trial: TrialRecord) -> Any:
    return trial.config.get(SEED_KEY)
