"""Recording how a trial ended: one place that tells Optuna, re-queues, counts and reports it."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import optuna
from optuna.trial import TrialState

from sweeper.engine import leases
from sweeper.engine.flapping import FlapGuard
from sweeper.engine.progress import Progress, Tally
from sweeper.plain import first_line
from sweeper.redaction import redact
from sweeper.spec.model import SweepSpec
from sweeper.storage import attrs as keys
from sweeper.storage import sweeps
from sweeper.worker.task import Objective, TrialOutcome, TrialTask


@dataclass(frozen=True)
class Recorded:
    """What recording one outcome led to."""

    retried: bool  # another attempt was queued
    reached: bool  # it reached the metric's target


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
    ) -> None:
        self._study = study
        self._spec = spec
        self._objectives = tuple(Objective(m.name, m.goal) for m in spec.objectives)
        self._tally = tally
        self._flaps = flaps
        self._progress = progress
        self._keeper = keeper
        self._targeted = targeted

    def record(
        self, trial: optuna.Trial, task: TrialTask, outcome: TrialOutcome, *, running: int, requeue: bool
    ) -> Recorded:
        """Tell Optuna how ``trial`` ended, re-queue it if the rule says so (and ``requeue``).

        ``running`` is how many of the agent's trials still run, for the progress view.
        """
        # A reason may quote a connection string or a key: mask it before it is stored or shown.
        outcome = replace(
            outcome,
            fail_reason=redact(outcome.fail_reason) if outcome.fail_reason else outcome.fail_reason,
            tracker_errors=tuple(redact(error) for error in outcome.tracker_errors),
        )
        study = self._study
        storage = study._storage
        told = True
        try:
            # ``agent`` was written when the trial started (TaskFactory); each attribute is one storage
            # write (an fsync'd append on the journal), the bulk of the loop's cost per trial.
            for key, value in _attrs(outcome).items():
                storage.set_trial_user_attr(task.trial_id, key, value)
            self._store_late_reports(task.trial_id, outcome)
            if outcome.state == "complete" and outcome.values is not None:
                study.tell(trial, list(outcome.values))
            elif outcome.state == "pruned":
                self._tell_pruned(task.trial_id, outcome.values)
            else:
                study.tell(trial, state=TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            told = False  # someone else (sweeper cancel, a lease reaper) ended and re-queued it
        if self._keeper is not None:
            self._keeper.release(task.trial_id)
        self._count(task, outcome, running)
        self._flaps.record(outcome)
        retried = False
        if outcome.state == "failed" and told and requeue:
            frozen = storage.get_trial(task.trial_id)
            if leases.should_requeue(frozen, outcome.failure, self._spec.sweeper.retries):
                leases.requeue(study, frozen, outcome.failure)
                retried = True
        reached = outcome.state == "complete" and self._target_reached(outcome.values)
        if reached and not self._targeted:
            sweeps.finish(storage, study._study_id)
        self._progress.trial_ended(
            task.number, outcome.state, list(outcome.values or ()), outcome.fail_reason, self._tally
        )
        return Recorded(retried=retried, reached=reached)

    def _store_late_reports(self, trial_id: int, outcome: TrialOutcome) -> None:
        """Store the reports the channel had not delivered when the trial ended."""
        if not outcome.intermediate:
            return
        storage = self._study._storage
        stored = storage.get_trial(trial_id).intermediate_values
        for step, value in outcome.intermediate:
            if step not in stored:
                storage.set_trial_intermediate_value(trial_id, step, value)

    def _tell_pruned(self, trial_id: int, values: tuple[float, ...] | None) -> None:
        # Optuna's tell would store the last intermediate value; W&B's objective is the best one.
        study = self._study
        frozen = study._storage.get_trial(trial_id)
        study.sampler.after_trial(study, frozen, TrialState.PRUNED, list(values) if values else None)
        study._storage.set_trial_state_values(trial_id, TrialState.PRUNED, list(values) if values else None)

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
