"""The agent's side of pruning: decisions from an in-memory view of the sweep, values stored after.

Workers never reach the storage. Their trials' values reach the agent (through the
:mod:`~sweeper.engine.report_server` on Ray, through a pipe with the local executor), where the
:class:`PruningJudge` asks the Optuna pruner once per trial and batch, from its in-memory view
holding every value reported, and a :class:`Persister` thread stores the values in one write at
most every ``PERSIST_S``, so no decision waits on it.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Container, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from sweeper.engine.report_channel import Batch
from sweeper.storage import batch

_logger = logging.getLogger(__name__)

PERSIST_S = 0.5
"""While reports keep coming, their values are stored at most this often, in one write each time (by
a :class:`Persister`); a trial's end write carries its values not stored yet."""
REFRESH_S = PERSIST_S
"""How old the judge's read of the study may get while none of its own trials started: other agents'
values reach the storage at most this often, so a fresher read would rarely show more."""


@dataclass(frozen=True)
class Report:
    """One value of the first objective metric; ``key`` matches it to its decision."""

    key: int
    trial_id: int
    step: int
    value: float
    wants_decision: bool = True


class PruningJudge:
    """Agent side: decides on each report from memory, then stores the values it decided on.

    The judge keeps an in-memory view of its trials' intermediate values: a trial's stored values
    are read once, the ones it reports are added as they come. Decisions come from that view (other
    agents' trials come from the storage, as the pruner reads the study), so no decision waits on a
    write; :meth:`persist` then stores every value decided on since the last call in one write.

    Thread-safe enough for one deciding thread (the report server's, or the local executor's) plus
    the agent loop: the Optuna storages serialize their own writes, and the view is guarded by a lock.
    """

    def __init__(self, study: optuna.Study, pruner: optuna.pruners.BasePruner) -> None:
        self._study = study
        self._pruner = pruner
        self._prunes = not isinstance(pruner, optuna.pruners.NopPruner)
        self._lock = threading.Lock()
        self._trials: dict[int, FrozenTrial] = {}  # trial id -> the trial, its values as reported
        self._unstored: dict[int, dict[int, float]] = {}  # trial id -> values not stored yet
        self._persisting = threading.Lock()  # held while a persist writes
        # The last read of the study: when, at which generation of this agent's set of running
        # trials (one of its own trials starting makes the next decision read again), and the trials.
        self._read: tuple[float, int, list[FrozenTrial]] | None = None
        self._generation = 0
        # This agent's ended trials as it knows them, until a read shows them ended: their end write
        # may land after the read a decision uses. First the view with every value, then (once the
        # recorder made it, see :meth:`ended`) the trial as its end write stores it.
        self._ended: dict[int, FrozenTrial] = {}

    @property
    def prunes(self) -> bool:
        """Whether decisions can ever be "stop"; if not, trials need not wait for them."""
        return self._prunes

    def decide(self, reports: Sequence[Report]) -> dict[int, bool]:
        """Take the reports' values into the view and return ``{report key: stop the trial?}``.

        The values are stored by the next :meth:`persist`.
        """
        groups: dict[int, tuple[dict[int, float], bool]] = {}
        for report in reports:
            values, wants = groups.get(report.trial_id, ({}, False))
            values[report.step] = report.value
            groups[report.trial_id] = (values, wants or report.wants_decision)
        stopped = self._decide(groups)
        return {r.key: r.trial_id in stopped for r in reports}

    def decide_batches(self, batches: Sequence[Batch]) -> set[int]:
        """Take the batches' values into the view, in order; return the trials to stop.

        The pruner is asked once per trial, on its last value, with every value before it in the
        trial's view. The values are stored by the next :meth:`persist`.
        """
        groups: dict[int, tuple[dict[int, float], bool]] = {}
        for each in batches:
            values, wants = groups.get(each.trial_id, ({}, False))
            values.update(zip(each.steps, each.values, strict=True))
            groups[each.trial_id] = (values, wants or each.wants_decision)
        return self._decide(groups)

    def _decide(self, groups: dict[int, tuple[dict[int, float], bool]]) -> set[int]:
        """``{trial id: (its new values, whether a decision is wanted)}`` -> the trials to stop."""
        stopped: set[int] = set()
        snapshot: optuna.Study | None = None
        for trial_id, (values, wants) in groups.items():
            with self._lock:
                self._unstored.setdefault(trial_id, {}).update(values)
            if not self._prunes or not wants:
                continue
            try:
                frozen = self._view(trial_id, values)
                if frozen is None:
                    continue  # the trial ended (or was cancelled) before its report arrived
                snapshot = snapshot or self._snapshot()
                if self._pruner.prune(snapshot, frozen):
                    stopped.add(trial_id)
            except Exception:  # a broken pruner must not kill the agent; the trial goes on
                _logger.exception("pruner failed on trial %d; letting it go on", trial_id)
        return stopped

    def unstored(self, trial_id: int) -> dict[int, float]:
        """Take the values of an ended trial not stored yet (they ride in its end write); forget it.

        Waits for a :meth:`persist` in progress: the values it writes are then stored before the
        trial's end write (written after it, they would be refused and lost).
        """
        with self._persisting, self._lock:
            view = self._trials.pop(trial_id, None)
            if view is not None:
                self._ended[trial_id] = view
            return self._unstored.pop(trial_id, {})

    def ended(self, trial: FrozenTrial) -> None:
        """The trial as its end write stores it: decisions see it so from now on, write landed or not.

        Called by the recorder before it writes; the storage's version wins once a read shows the trial
        ended (or ended otherwise: a cancel, a lease reaper).
        """
        if not self._prunes:
            return
        with self._lock:
            view = self._ended.get(trial._trial_id)
            if view is not None:  # the values this judge stored already are not in the end write
                trial = copy.copy(trial)
                trial.intermediate_values = {**view.intermediate_values, **trial.intermediate_values}
            self._ended[trial._trial_id] = trial

    def persist(self) -> None:
        """Store the values decided on since the last call: one storage write for all of them."""
        with self._persisting:
            with self._lock:
                unstored, self._unstored = self._unstored, {}
            if not unstored:
                return
            writes = [batch.TrialWrite(tid, intermediate=values) for tid, values in unstored.items()]
            try:
                refused = batch.write_trials(self._study._storage, writes)
            except BaseException:
                with self._lock:  # kept for the next write or the trial's end, older values first
                    for trial_id, values in unstored.items():
                        self._unstored[trial_id] = {**values, **self._unstored.get(trial_id, {})}
                raise
            with self._lock:
                for trial_id in refused:  # ended: its values came with its end (see OutcomeRecorder)
                    self._trials.pop(trial_id, None)

    def _snapshot(self) -> optuna.Study:
        """The study as a read of the storage shows it, with this agent's trials as it knows them.

        A pruner reads the whole study for each decision. One read serves every decision of the
        calls that arrived together, and the ones after them until one of this agent's trials starts or
        :data:`REFRESH_S` passes: other agents' trials as stored then, this agent's running trials
        with every value decided on, its ended ones as they ended. (Re-reading per batch cost a
        database 200 ms a batch at 32 running trials: Optuna's cache re-reads every running trial.)
        """
        with self._lock:
            generation = self._generation
        now = time.monotonic()
        read = self._read
        if read is None or read[1] != generation or now - read[0] > REFRESH_S:
            read = (now, generation, self._study.get_trials(deepcopy=False))
            self._read = read
            running = {t._trial_id for t in read[2] if t.state == TrialState.RUNNING}
            with self._lock:  # a trial the storage shows ended needs no stand-in any more
                self._ended = {tid: t for tid, t in self._ended.items() if tid in running}
        with self._lock:
            mine = {**self._ended, **self._trials}
        trials = [mine.get(t._trial_id, t) if t.state == TrialState.RUNNING else t for t in read[2]]

        def get_trials(
            deepcopy: bool = True, states: Container[TrialState] | None = None, **_: Any
        ) -> list[FrozenTrial]:
            chosen = [t for t in trials if states is None or t.state in states]
            return copy.deepcopy(chosen) if deepcopy else chosen

        view = copy.copy(self._study)
        view.get_trials = get_trials  # type: ignore[method-assign]
        view._get_trials = get_trials  # type: ignore[method-assign,assignment]
        return view

    def _view(self, trial_id: int, values: dict[int, float]) -> FrozenTrial | None:
        """The trial with every value it reported, or None once it is no longer running.

        The view's values grow in place: a trial that reports 100,000 times is not copied each time.
        """
        with self._lock:
            known = self._trials.get(trial_id)
        if known is None:
            try:
                stored = self._study._storage.get_trial(trial_id)  # once per trial
            except KeyError:
                return None
            if stored.state != TrialState.RUNNING:
                return None
            known = copy.copy(stored)
            known.intermediate_values = dict(stored.intermediate_values)
            with self._lock:
                self._trials[trial_id] = known
                self._generation += 1  # a read from before it started may not hold it
        known.intermediate_values.update(values)
        return known


class Persister:
    """A thread that stores the judge's values, so that no decision waits on a write.

    :meth:`request` returns at once; the thread runs :meth:`PruningJudge.persist` (one write for
    every value decided on since the last), at most once every ``every_s`` while requests keep
    coming. A write that fails is logged: its values stay with the judge for the next write or the
    trial's end write. :meth:`close` makes a last write of what is left.
    """

    def __init__(self, judge: PruningJudge, every_s: float = PERSIST_S) -> None:
        self._judge = judge
        self._every_s = every_s
        self._due = threading.Event()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sweeper-persist", daemon=True)
        self._thread.start()

    def request(self) -> None:
        """Store what was decided on so far, soon (never blocks)."""
        self._due.set()

    def close(self, timeout: float = 5.0) -> None:
        """Make the last write and stop the thread (after the write in progress)."""
        self._closing.set()
        self._due.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            self._due.wait()
            self._due.clear()
            closing = self._closing.is_set()
            try:
                self._judge.persist()
            except Exception:  # the storage is away: the values ride in the next write or trial end
                _logger.exception("storing the reported values failed; they are stored with the trials' ends")
            if closing:
                return
            self._closing.wait(self._every_s)  # requests meanwhile share the next write
