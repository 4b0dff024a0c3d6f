"""Early termination: W&B's hyperband stopping rule as an Optuna pruner, plus our ``asha``/``median``.

W&B's ``early_terminate: {type: hyperband}`` is a stopping rule, not Hyperband's budget allocation:
at a few fixed iteration counts (the *bands*) a running trial is stopped when it is worse than the
best ``1/eta`` of every trial that reached that band. :class:`WandbHyperbandPruner` applies the rule
of W&B's engine (``sweeps.hyperband_stopping.hyperband_stop_runs``, version 0.3) each time a trial
reports a value, instead of every few minutes as W&B's controller does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from operator import itemgetter
from typing import TYPE_CHECKING

import optuna
from optuna.pruners import BasePruner, MedianPruner, NopPruner, SuccessiveHalvingPruner
from optuna.study import StudyDirection

from sweeper.errors import UsageError

if TYPE_CHECKING:
    from sweeper.spec.model import EarlyTerminate

# W&B computes this many bands in the ``min_iter`` form; later ones are unreachable in practice.
_MIN_ITER_BANDS = 100
# Bands past this many iterations can never be reached; stop before int() of a huge float overflows.
_MAX_BAND = 2**62


def hyperband_bands(min_iter: int | None, max_iter: int | None, s: int | None, eta: float) -> list[int]:
    """The iteration counts at which W&B's hyperband rule checks a run, ascending.

    With ``max_iter`` (which wins when both forms are given): divide ``max_iter`` by ``eta`` up to
    ``s`` times, stopping below 1, keeping the integer part; ``max_iter`` itself is never a band.
    With ``min_iter``: ``int(min_iter * eta**k)`` for k = 0, 1, 2, ...

    Examples:
        >>> hyperband_bands(None, 27, 2, 3)
        [3, 9]
        >>> hyperband_bands(None, 81, 3, 3)
        [3, 9, 27]
        >>> hyperband_bands(3, None, None, 3)[:4]
        [3, 9, 27, 81]

    Raises:
        UsageError: when neither form is given, ``eta <= 1``, or no band is left.
    """
    if not eta > 1:
        raise UsageError(f"early_terminate.eta must be > 1, got {eta!r}")
    bands: list[int] = []
    if max_iter is not None:
        if s is None:
            raise UsageError("early_terminate: hyperband with max_iter needs s, got no s")
        band = float(max_iter)
        for _ in range(s):
            band /= eta
            if band < 1:
                break
            bands.append(int(band))
        bands.sort()
    elif min_iter is not None:
        if min_iter < 1:
            raise UsageError(f"early_terminate.min_iter must be >= 1, got {min_iter!r}")
        band = float(min_iter)
        for _ in range(_MIN_ITER_BANDS):
            if band >= _MAX_BAND:
                break
            bands.append(int(band))
            band *= eta
    else:
        raise UsageError("early_terminate: hyperband needs max_iter with s, or min_iter; got neither")
    if not bands:
        raise UsageError(
            f"early_terminate: hyperband with max_iter={max_iter}, s={s}, eta={eta} gives no band "
            "(max_iter / eta must be >= 1); increase max_iter or s, or decrease eta"
        )
    return bands


def learning_curve(trial: optuna.trial.FrozenTrial) -> list[float]:
    """A trial's iterations: its finite intermediate values ordered by step (iteration i is item i-1)."""
    values = trial.intermediate_values
    return [values[step] for step in sorted(values) if math.isfinite(values[step])]


def _iteration(trial: optuna.trial.FrozenTrial, n: int) -> float | None:
    """``learning_curve(trial)[n - 1]``, or None when the curve is shorter, without building the curve.

    A decision reads every trial's value at its band; this runs once per trial per decision, so the
    common case (the first ``n`` values all finite) stays in C: a sum is finite only if they all are.
    """
    values = trial.intermediate_values
    if len(values) < n:
        return None
    steps = sorted(values)
    head = [values[step] for step in steps[:n]] if n < 2 else list(itemgetter(*steps[:n])(values))
    if math.isfinite(sum(head)):
        return head[-1]
    curve = learning_curve(trial)  # a NaN or an inf among them (or a sum past a float's range)
    return curve[n - 1] if len(curve) >= n else None


class WandbHyperbandPruner(BasePruner):
    """W&B's hyperband stopping rule, applied each time a trial reports an intermediate value.

    The rule, with values negated when maximizing: for band ``b``, take the ``b``-th value of every
    trial in the study that has at least ``b`` values, in any state (finished, pruned and failed ones
    included); the threshold is ``sorted(values)[int(len(values) / eta)]``. A trial is checked only
    at the largest band it has reached (so a trial past the last band keeps being checked against
    it): strict compares its ``b``-th value, non-strict its best value so far, and it is pruned when
    that value is strictly greater than the threshold.

    Args:
        min_iter: First band (``min_iter`` form).
        max_iter: Iteration count the bands are derived from (``max_iter`` form; wins over min_iter).
        s: Number of bands in the ``max_iter`` form.
        eta: Reduction factor, > 1: about ``1/eta`` of the trials pass each band.
        strict: Compare the value at the band (true, W&B's default) or the best value so far.

    Example:
        >>> pruner = WandbHyperbandPruner(max_iter=27, s=2)
        >>> pruner.bands
        [3, 9]
    """

    def __init__(
        self,
        *,
        min_iter: int | None = None,
        max_iter: int | None = None,
        s: int | None = None,
        eta: float = 3.0,
        strict: bool = True,
    ) -> None:
        self.bands = hyperband_bands(min_iter, max_iter, s, eta)
        self._verdict_points = frozenset(self.bands)  # see verdict_points: read for every trial
        self.eta = eta
        self.strict = strict
        # W&B multiplies by r = 1/eta rather than dividing by eta; keep its rounding exactly.
        self._r = 1.0 / eta

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        """Whether ``trial`` must stop now, given every trial of ``study``."""
        sign = -1.0 if study.direction == StudyDirection.MAXIMIZE else 1.0
        own = [sign * v for v in learning_curve(trial)]
        band = self._reached_band(len(own))
        if band is None:
            return False
        values = [own[band - 1]]
        for other in study.get_trials(deepcopy=False):
            if other.number == trial.number:
                continue
            value = _iteration(other, band)
            if value is not None:
                values.append(sign * value)
        threshold = sorted(values)[int(self._r * len(values))]
        checked = own[band - 1] if self.strict else min(own)
        return checked > threshold

    def _reached_band(self, iterations: int) -> int | None:
        reached = None
        for band in self.bands:
            if band > iterations:
                break
            reached = band
        return reached


_NO_VERDICT_POINTS: frozenset[int] = frozenset()


def verdict_points(pruner: BasePruner) -> frozenset[int]:
    """The report counts whose verdict a trial's next report waits for: hyperband's bands.

    Reports travel without waiting for their decision, so a trainer whose steps take less time
    than a decision would report its whole budget before the first "stop" reached it. At a band
    the rule compares the trial with every other that reached it, so the report after it waits
    (bounded) for that verdict if it has not arrived yet; the other pruners decide at any report
    and no report waits for them.

    Example:
        >>> sorted(verdict_points(WandbHyperbandPruner(max_iter=27, s=2)))
        [3, 9]
        >>> verdict_points(MedianPruner())
        frozenset()
    """
    return pruner._verdict_points if isinstance(pruner, WandbHyperbandPruner) else _NO_VERDICT_POINTS


def make_pruner(early_terminate: EarlyTerminate | None, directions: Sequence[str]) -> BasePruner:
    """The Optuna pruner for a spec's ``early_terminate`` block (a no-op pruner when there is none).

    Args:
        early_terminate: The parsed block, or None.
        directions: The study's directions ("minimize"/"maximize"), one per objective.

    Raises:
        UsageError: for early termination with several objectives, or options Optuna refuses.
    """
    if early_terminate is None:
        return NopPruner()
    if len(directions) != 1:
        raise UsageError(
            f"early_terminate needs exactly one objective (metric), got {len(directions)}; "
            "remove early_terminate or use a single metric"
        )
    kind = early_terminate.type
    if kind == "hyperband":
        return WandbHyperbandPruner(
            min_iter=early_terminate.min_iter,
            max_iter=early_terminate.max_iter,
            s=early_terminate.s,
            eta=early_terminate.eta,
            strict=early_terminate.strict,
        )
    options = dict(early_terminate.options)
    factory: type[BasePruner]
    if kind == "asha":
        factory = SuccessiveHalvingPruner
    elif kind == "median":
        factory = MedianPruner
    else:
        raise UsageError(f"early_terminate.type must be hyperband, asha or median, got {kind!r}")
    try:
        return factory(**options)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"early_terminate.options for {kind} ({factory.__name__}): {exc}") from exc
