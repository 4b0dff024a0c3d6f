"""Optuna's journal storage, with a trial's intermediate values replayed in linear time and its
waiting trials indexed.

Optuna's replay of the journal copies a trial, and all its intermediate values, for each value
it applies (copy on write: a trial handed out earlier must not change under its reader). A trial
that reports 100,000 values then costs 5 * 10^9 dict copies to read back or to append to, minutes
of CPU for every process that opens the journal. :class:`LinearJournalStorage` replays the same
records into the same trials, but copies a trial once per sync at most: a copy made during one
replay is not handed out before the replay ends, so the values after it can go into it in place.

Optuna finds the next queued trial by reading every trial of the study (``get_all_trials`` with
``states=(WAITING,)``), for each trial an agent starts: 0.6 ms a trial at 10,000 trials, where the
agent ran at two thirds of its rate on a fresh sweep. :class:`LinearJournalStorage` answers a
``get_all_trials`` of the WAITING trials alone from an index the replay keeps once asked (one pass
over the trials, then each record that creates a trial or sets its state keeps it).

Example:
    >>> import tempfile, optuna
    >>> from optuna.storages.journal import JournalFileBackend
    >>> path = tempfile.mkdtemp() + "/j.log"
    >>> storage = LinearJournalStorage(JournalFileBackend(path))
    >>> study = optuna.create_study(storage=storage)
    >>> trial_id = storage.create_new_trial(study._study_id)
    >>> for step in range(3):
    ...     storage.set_trial_intermediate_value(trial_id, step, 1.0 / (step + 1))
    >>> LinearJournalStorage(JournalFileBackend(path)).get_trial(trial_id).intermediate_values
    {0: 1.0, 1: 0.5, 2: 0.3333333333333333}
"""

from __future__ import annotations

import copy
from collections.abc import Container, Iterable
from typing import Any

from optuna.storages import JournalStorage
from optuna.storages.journal._storage import JournalStorageReplayResult
from optuna.trial import FrozenTrial, TrialState


class LinearReplay(JournalStorageReplayResult):
    """Optuna's replay, where consecutive values of a trial within one sync share one copy of it."""

    def __init__(self, worker_id_prefix: str) -> None:
        super().__init__(worker_id_prefix)
        self._fresh: set[int] = set()  # trials copied during the replay in progress
        self._waiting: dict[int, set[int]] | None = None  # study id -> its WAITING trials, once asked

    def waiting_trial_ids(self, study_id: int) -> list[int]:
        """The study's WAITING trials, oldest first (Optuna's ``get_all_trials`` order)."""
        if self._waiting is None:  # the first ask: one pass (trials restored or replayed in place too)
            self._waiting = {}
            for trial_id, trial in self._trials.items():
                if trial.state == TrialState.WAITING:
                    self._waiting.setdefault(self._trial_id_to_study_id[trial_id], set()).add(trial_id)
        return sorted(self._waiting.get(study_id, ()))

    def _index(self, trial_id: int) -> None:
        """Keep the index true to the trial's state now (after a record applied, or ignored)."""
        trial = self._trials.get(trial_id)
        if self._waiting is None or trial is None:
            return
        waiting = self._waiting.setdefault(self._trial_id_to_study_id[trial_id], set())
        if trial.state == TrialState.WAITING:
            waiting.add(trial_id)
        else:
            waiting.discard(trial_id)

    def _apply_create_trial(self, log: dict[str, Any]) -> None:
        try:
            super()._apply_create_trial(log)
        finally:
            self._index(len(self._trials) - 1)  # the trial made, if the record made one

    def _apply_set_trial_state_values(self, log: dict[str, Any]) -> None:
        try:
            super()._apply_set_trial_state_values(log)
        finally:
            self._index(log["trial_id"])

    def apply_logs(self, logs: Iterable[dict[str, Any]]) -> None:
        self._fresh = set()
        try:
            super().apply_logs(logs)
        finally:
            self._fresh = set()  # what was copied is handed out from now on

    def _apply_set_trial_intermediate_value(self, log: dict[str, Any]) -> None:
        trial_id = log["trial_id"]
        if not self._trial_exists_and_updatable(trial_id, log):
            return
        trial = self._trials[trial_id]
        if trial_id not in self._fresh:
            # Optuna's copy on write, once per sync (other records of this sync may copy the
            # trial again: the copies share these values, and none is handed out before its end).
            trial = copy.copy(trial)
            trial.intermediate_values = dict(trial.intermediate_values)
            self._trials[trial_id] = trial
            self._fresh.add(trial_id)
        trial.intermediate_values[log["step"]] = log["intermediate_value"]


class LinearJournalStorage(JournalStorage):
    """:class:`optuna.storages.JournalStorage` whose replay is :class:`LinearReplay`."""

    def get_all_trials(
        self, study_id: int, deepcopy: bool = True, states: Container[TrialState] | None = None
    ) -> list[FrozenTrial]:
        """Optuna's; the WAITING trials alone (a pop of a queued trial, a claim) from the replay's
        index instead of a pass over every trial of the study."""
        if _only_waiting(states):
            with self._thread_lock:
                self._sync_with_backend()
                replay = self._replay_result
                if isinstance(replay, LinearReplay) and study_id in replay._studies:
                    trials = [replay._trials[trial_id] for trial_id in replay.waiting_trial_ids(study_id)]
                    return copy.deepcopy(trials) if deepcopy else trials
        return super().get_all_trials(study_id, deepcopy, states)  # (its lock is not reentrant)

    def _sync_with_backend(self) -> None:
        if not isinstance(self._replay_result, LinearReplay) and self._replay_result.log_number_read == 0:
            # Optuna's __init__ (and __setstate__) made a fresh replay result: ours instead.
            self._replay_result = LinearReplay(self._worker_id_prefix)
        super()._sync_with_backend()


def _only_waiting(states: Container[TrialState] | None) -> bool:
    """Whether ``states`` asks for the WAITING trials and nothing else."""
    if not isinstance(states, (tuple, list, set, frozenset)):
        return False
    return len(states) > 0 and all(state == TrialState.WAITING for state in states)
