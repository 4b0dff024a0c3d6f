"""Recording how trials ended: one place that tells Optuna, re-queues, counts and reports them.

Trials that end together are stored in one write (:func:`sweeper.storage.batch.write_trials`): their
states, values, attributes and late intermediate values, one transaction or journal append for all.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from sweeper.engine import leases
from sweeper.engine.flapping import FlapGuard
from sweeper.engine.judge import PruningJudge
from sweeper.engine.progress import Progress, Tally
from sweeper.plain import first_line
from sweeper.redaction import redact
from sweeper.spec.model import SweepSpec
from sweeper.storage import attrs as keys
from sweeper.storage import batch, queue, sweeps
from sweeper.worker.task import Objective, TrialOutcome, TrialTask

_logger = logging.getLogger(__name__)

Ended = tuple[optuna.Trial, TrialTask, TrialOutcome]
"""A trial that ended: its Optuna trial, its task, its outcome."""


@dataclass(frozen=True)
class Recorded:
    """What recording one outcome led to."""

    retried: bool  # another attempt was queued
    reached: bool  # it reached the metric's target


@dataclass(frozen=True)
class Ends:
    """Trials that ended together, prepared for one write (see :meth:`OutcomeRecorder.prepare`)."""

    prepared: list[tuple[TrialTask, TrialOutcome, batch.TrialWrite, FrozenTrial]]

    @property
    def writes(self) -> list[batch.TrialWrite]:
        return [write for _, _, write, _ in self.prepared]


class OutcomeRecorder:
    """Records the outcomes of one agent's trials.

    Args:
        study: The sweep's study (its sampler learns from pruned trials too).
        spec: The sweep's spec (retries, objectives, target).
        tally: The agent's counts, updated here.
        flaps: The agent's fast-failure guard, fed here.
        progress: Where each ended trial is shown.
        keeper: The agent's lease keeper (the lease is released once the trial is told).
        targeted: Whether the agent runs named trials only: their reaching the target does not
            finish the sweep (a repeat measures noise; a lucky seed must not end a search).
        judge: The agent's pruning judge: its unstored values of a trial ride in the trial's end
            write, and it learns how the trial ended before the write lands.
    """

    def __init__(
        self,
        study: optuna.Study,
        spec: SweepSpec,
        *,
        tally: Tally,
        flaps: FlapGuard,
        progress: Progress,
        keeper: leases.LeaseKeeper | None,
        targeted: bool,
        judge: PruningJudge | None = None,
    ) -> None:
        self._study = study
        self._judge = judge
        self._spec = spec
        self._objectives = tuple(Objective(m.name, m.goal) for m in spec.objectives)
        self._tally = tally
        self._flaps = flaps
        self._progress = progress
        self._keeper = keeper
        self._targeted = targeted
        self._noted: set[int] = set()  # trial ids whose outcomes fed the guard before being recorded

    def record(
        self, trial: optuna.Trial, task: TrialTask, outcome: TrialOutcome, *, running: int, requeue: bool
    ) -> Recorded:
        """Tell Optuna how ``trial`` ended, re-queue it if the rule says so (and ``requeue``).

        ``running`` is how many of the agent's trials still run, for the progress view.
        """
        return self.record_many([(trial, task, outcome)], running=running, requeue=requeue)[0]

    def note(self, ended: Sequence[Ended]) -> bool:
        """Feed the fast-failure guard before the trials are recorded; whether one reached the target.

        What the loop needs to know before it refills the slots these trials freed (see
        :meth:`record_many`, which does not feed the guard twice).
        """
        reached = False
        for _, task, outcome in ended:
            if task.trial_id not in self._noted:
                self._noted.add(task.trial_id)
                self._flaps.record(outcome)
            reached = reached or (outcome.state == "complete" and self._target_reached(outcome.values))
        return reached and not self._targeted

    def record_many(self, ended: Sequence[Ended], *, running: int, requeue: bool) -> list[Recorded]:
        """Record trials that ended together in one storage write (group commit); one result each.

        Each trial's state, values, attributes and late intermediate values ride in that write; a
        trial someone else ended first (``sweeper cancel``, a lease reaper) is left as they left it.
        """
        ends = self.prepare(ended)
        refused = batch.write_trials(self._study._storage, ends.writes)
        return self.finish(ends, refused, running=running, requeue=requeue)

    def prepare(self, ended: Sequence[Ended]) -> Ends:
        """The end writes of trials that ended together, for :meth:`finish` once they are written.

        The caller may write others' writes with them (:func:`sweeper.storage.batch.write_trials`:
        one round trip); :meth:`record_many` writes them alone.
        """
        return Ends([self._prepare(trial, task, outcome) for trial, task, outcome in ended])

    def finish(self, ends: Ends, refused: batch.Refused, *, running: int, requeue: bool) -> list[Recorded]:
        """After the write of ``ends`` (``refused``: the trials it refused), count, re-queue and show them."""
        study = self._study
        storage = study._storage
        results: list[Recorded] = []
        for task, outcome, write, frozen in ends.prepared:
            told = write.trial_id not in refused
            if self._keeper is not None:
                self._keeper.release(task.trial_id)
            self._count(task, outcome, running)
            if task.trial_id in self._noted:
                self._noted.discard(task.trial_id)
            else:
                self._flaps.record(outcome)
            retried = False
            retries = self._spec.sweeper.retries
            if (
                outcome.state == "failed"
                and told
                and requeue
                and leases.should_requeue(frozen, outcome.failure, retries)
            ):
                leases.requeue(study, frozen, outcome.failure)
                retried = True
            reached = outcome.state == "complete" and self._target_reached(outcome.values)
            if reached and not self._targeted:
                sweeps.finish(storage, study._study_id)
            self._progress.trial_ended(
                task.number, outcome.state, list(outcome.values or ()), outcome.fail_reason, self._tally
            )
            results.append(Recorded(retried=retried, reached=reached))
        return results

    def _prepare(
        self, trial: optuna.Trial, task: TrialTask, outcome: TrialOutcome
    ) -> tuple[TrialTask, TrialOutcome, batch.TrialWrite, FrozenTrial]:
        """The outcome (redacted), its write, and the trial as ended; the sampler learns of it here."""
        # A reason may quote a connection string or a key: mask it before it is stored or shown.
        outcome = replace(
            outcome,
            fail_reason=redact(outcome.fail_reason) if outcome.fail_reason else outcome.fail_reason,
            tracker_errors=tuple(redact(error) for error in outcome.tracker_errors),
        )
        state, values = self._final(outcome)
        attrs = _attrs(outcome)
        # The channel may not have delivered every report: the end write carries them all (the
        # ones stored already are written again with the same value).
        # A trial the executor ended (timeout, cancel, a dead worker) reports nothing itself: the
        # values the judge took but has not stored yet come with its end.
        judge = self._judge
        unstored = judge.unstored(task.trial_id) if judge is not None else {}
        intermediate = {**unstored, **dict(outcome.intermediate)}
        frozen = queue.ended_view(trial, state, values, attrs, intermediate)
        if judge is not None:
            judge.ended(frozen)
        study = self._study
        try:
            # What Optuna's tell does before it stores the state. W&B's objective for a pruned
            # trial is its best value, which Optuna's tell (the last value) would not store.
            study.sampler.after_trial(study, frozen, state, values)
        except Exception:  # a broken sampler must not lose the trial's result
            _logger.exception("the sampler failed after trial %d; its result is stored", task.number)
        write = batch.TrialWrite(
            task.trial_id, user_attrs=attrs, intermediate=intermediate, state=state, values=values
        )
        return task, outcome, write, frozen

    def _final(self, outcome: TrialOutcome) -> tuple[TrialState, list[float] | None]:
        """The state and values Optuna's tell would store for this outcome."""
        if outcome.state == "complete" and outcome.values is not None:
            values = [float(v) for v in outcome.values]
            n_objectives = len(self._study.directions)
            if len(values) != n_objectives or any(math.isnan(v) for v in values):
                _logger.warning("trial values %s are not feasible; the trial fails", values)
                return TrialState.FAIL, None
            return TrialState.COMPLETE, values
        if outcome.state == "pruned":
            return TrialState.PRUNED, list(outcome.values) if outcome.values else None
        return TrialState.FAIL, None

    def _count(self, task: TrialTask, outcome: TrialOutcome, running: int) -> None:
        tally = self._tally
        tally.running = running
        if outcome.state == "complete":
            tally.complete += 1
        elif outcome.state == "pruned":
            tally.pruned += 1
        else:
            tally.failed += 1
            tally.reasons[first_line(outcome.fail_reason)] += 1
        if outcome.state == "complete" and outcome.values and self._objectives:
            value = outcome.values[0]
            objective = self._objectives[0]
            if tally.best_value is None or objective.better(value, tally.best_value):
                tally.best_value = value
                tally.best_trial = task.number

    def _target_reached(self, values: tuple[float, ...] | None) -> bool:
        if not values or not self._spec.objectives:
            return False
        metric = self._spec.objectives[0]
        if metric.target is None or not math.isfinite(values[0]):
            return False
        return values[0] <= metric.target if metric.goal == "minimize" else values[0] >= metric.target


def _attrs(outcome: TrialOutcome) -> dict[str, Any]:
    """The trial user attrs an outcome stores."""
    attrs: dict[str, Any] = {
        keys.HOST: outcome.host,
        keys.DURATION_S: round(outcome.duration_s, 3),
        keys.METRICS: dict(outcome.metrics),
    }
    if outcome.tracker_runs:
        attrs[keys.TRACKER_RUNS] = dict(outcome.tracker_runs)
    if outcome.tracker_errors:
        attrs[keys.TRACKER_ERRORS] = list(outcome.tracker_errors)
    if outcome.fail_reason:
        attrs[keys.FAIL_REASON] = outcome.fail_reason
    if outcome.trial_dir:
        attrs[keys.TRIAL_DIR] = outcome.trial_dir
    return attrs
