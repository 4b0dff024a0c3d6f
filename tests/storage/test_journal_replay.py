"""The journal's linear replay reads back what Optuna's own replay reads, and keeps its copy on write."""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

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
