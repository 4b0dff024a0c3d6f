"""The journal's linear replay reads back what Optuna's own replay reads, keeps its copy on write, and
indexes the waiting trials as a read of every trial finds them."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from sweeper.storage import journal_snapshot, queue
from sweeper.storage.journal_replay import LinearJournalStorage
from sweeper.storage.urls import open_storage


def _write_a_study(path: Path) -> None:
    """Several trials, their records interleaved as parallel agents write them (Optuna's own calls)."""
    storage = JournalStorage(JournalFileBackend(str(path)))
    study = optuna.create_study(study_name="replayed", storage=storage)
    ids = [storage.create_new_trial(study._study_id) for _ in range(3)]
    for step in range(50):
        for index, trial_id in enumerate(ids):
            if index == 1 and step >= 30:
                if step == 30:
                    storage.set_trial_state_values(trial_id, TrialState.PRUNED, [float(step)])
                continue
            storage.set_trial_intermediate_value(trial_id, step, step * (index + 1) / 7)
            if step % 10 == 0:
                storage.set_trial_user_attr(trial_id, f"at{step}", step)
                storage.set_trial_system_attr(trial_id, "lease", {"step": step})
    storage.set_trial_intermediate_value(ids[0], 3, -1.0)  # a step reported again: the last value wins
    storage.set_trial_state_values(ids[0], TrialState.COMPLETE, [1.0])


def test_the_linear_replay_reads_back_what_optunas_replay_reads(tmp_path: Path) -> None:
    path = tmp_path / "journal.log"
    _write_a_study(path)

    theirs = JournalStorage(JournalFileBackend(str(path)))
    ours = open_storage(f"journal://{path}")
    assert isinstance(ours, LinearJournalStorage)

    (study,) = theirs.get_all_studies()
    expected = theirs.get_all_trials(study._study_id)
    got = ours.get_all_trials(study._study_id)
    assert got == expected
    assert got[0].intermediate_values[3] == -1.0
    assert [t.state for t in got] == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING]


def test_a_trial_handed_out_before_a_sync_does_not_change_after_it(tmp_path: Path) -> None:
    path = tmp_path / "journal.log"
    writer = LinearJournalStorage(JournalFileBackend(str(path)))
    study = optuna.create_study(study_name="cow", storage=writer)
    trial_id = writer.create_new_trial(study._study_id)
    reader = LinearJournalStorage(JournalFileBackend(str(path)))
    for step in range(5):
        writer.set_trial_intermediate_value(trial_id, step, float(step))

    before = reader.get_trial(trial_id)  # not a copy: the replay's own object
    values_before = dict(before.intermediate_values)
    for step in range(5, 10):
        writer.set_trial_intermediate_value(trial_id, step, float(step))
    after = reader.get_trial(trial_id)  # this sync replays five values into one copy

    assert before.intermediate_values == values_before == {s: float(s) for s in range(5)}
    assert after.intermediate_values == {s: float(s) for s in range(10)}
    assert after is not before


def _waiting(storage: JournalStorage, study_id: int) -> list[int]:
    """The study's WAITING trials: Optuna's own storage reads every trial, ours its index."""
    return [t._trial_id for t in storage.get_all_trials(study_id, states=(TrialState.WAITING,))]


def test_the_index_of_waiting_trials_is_what_a_read_of_every_trial_finds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal_snapshot, "MIN_RECORDS", 0)  # the second open starts from a snapshot
    path = tmp_path / "journal.log"
    other = JournalStorage(JournalFileBackend(str(path)))  # another process's writes
    one = optuna.create_study(study_name="one", storage=other)
    two = optuna.create_study(study_name="two", storage=other)
    for x in range(4):
        one.enqueue_trial({"x": x})
    two.enqueue_trial({"x": 9})
    one.ask()  # pops the first
    for opened in range(2):  # replayed in place, then restored from the snapshot
        assert journal_snapshot.path_of(str(path)).exists() is (opened == 1)
        ours = open_storage(f"journal://{path}")
        assert isinstance(ours, LinearJournalStorage)
        for study in (one, two):
            assert _waiting(ours, study._study_id) == _waiting(other, study._study_id)
    # Later records reach the index through Optuna's replay: a pop, an end, new queued trials,
    # a waiting trial failed before it ran, and this storage's own writes.
    waiting = _waiting(ours, one._study_id)
    one.ask()
    other.set_trial_state_values(waiting[1], TrialState.FAIL)
    one.enqueue_trial({"x": 5})
    fresh = ours.create_new_trial(one._study_id, optuna.trial.create_trial(state=TrialState.WAITING))
    assert _waiting(ours, one._study_id) == _waiting(other, one._study_id) == [waiting[2], fresh - 1, fresh]
    ours.set_trial_state_values(fresh, TrialState.RUNNING)
    assert _waiting(ours, one._study_id) == _waiting(other, one._study_id)
    assert _waiting(ours, two._study_id) == _waiting(other, two._study_id) != []
    # Other reads, and the trials handed out, are Optuna's: copies unless asked for none.
    assert ours.get_all_trials(one._study_id) == other.get_all_trials(one._study_id)
    (queued,) = ours.get_all_trials(two._study_id, states=[TrialState.WAITING])
    assert queued == other.get_all_trials(two._study_id, states=(TrialState.WAITING,))[0]
    assert queued is not ours.get_trial(queued._trial_id)
    with pytest.raises(KeyError):
        ours.get_all_trials(99, states=(TrialState.WAITING,))


def test_optunas_pop_of_queued_trials_reads_the_index_in_optunas_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "journal.log"
    writer = optuna.create_study(study_name="q", storage=JournalStorage(JournalFileBackend(str(path))))
    for x in range(3):
        writer.enqueue_trial({"x": x})
    study = optuna.load_study(study_name="q", storage=open_storage(f"journal://{path}"))

    def no_scan(*args: object, **kwargs: object) -> None:
        raise AssertionError("read every trial")

    monkeypatch.setattr(study._storage._replay_result, "get_all_trials", no_scan)  # type: ignore[attr-defined]
    popped = [queue._pop_waiting(study) for _ in range(4)]
    assert popped[:3] == [t._trial_id for t in writer.trials] and popped[3] is None
    assert [t.state for t in writer.get_trials()] == [TrialState.RUNNING] * 3
