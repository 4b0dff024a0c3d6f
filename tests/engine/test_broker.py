"""The pruning judge: decisions from its in-memory view, the values stored after, in one write."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from counting import CountingStorage
from optuna.trial import FrozenTrial, TrialState

from sweeper.engine.broker import Batch, PruningJudge, Report
from sweeper.storage.urls import open_storage


class PruneAtThird(optuna.pruners.BasePruner):
    """Stops a trial once it has three values, and sees what the study holds meanwhile."""

    def __init__(self) -> None:
        self.seen_others: list[int] = []

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        self.seen_others.append(len(study.get_trials(deepcopy=False)))
        return len(trial.intermediate_values) >= 3


@pytest.fixture(params=["sqlite", "journal"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> CountingStorage:
    if request.param == "sqlite":
        return CountingStorage(open_storage(f"sqlite:///{tmp_path / 's.db'}"))
    return CountingStorage(open_storage(f"journal://{tmp_path / 'j.log'}"))


def test_decisions_come_from_memory_and_wait_on_no_write(storage: CountingStorage) -> None:
    study = optuna.create_study(study_name="judge", storage=storage)
    first, second = (storage.create_new_trial(study._study_id) for _ in range(2))
    judge = PruningJudge(study, PruneAtThird())
    storage.reset()

    assert judge.decide([Report(1, first, 1, 0.9), Report(2, second, 1, 0.8)]) == {1: False, 2: False}
    assert judge.decide([Report(3, first, 2, 0.7)]) == {3: False}
    # The third value is decided on with the two before it, none of them stored yet.
    assert judge.decide([Report(4, first, 3, 0.6), Report(5, second, 2, 0.5)]) == {4: True, 5: False}
    assert storage.writes() == 0
    # The pruner read the study once per batch (one snapshot shared by the batch's decisions).
    assert storage.calls["get_all_trials"] == 3

    judge.persist()

    assert storage.calls["write_trials"] == 1 and storage.writes() == 1
    assert storage.get_trial(first).intermediate_values == {1: 0.9, 2: 0.7, 3: 0.6}
    assert storage.get_trial(second).intermediate_values == {1: 0.8, 2: 0.5}
    judge.persist()  # nothing new: no write
    assert storage.writes() == 1


def test_reports_of_an_ended_trial_are_dropped_without_a_decision(storage: CountingStorage) -> None:
    study = optuna.create_study(study_name="judge", storage=storage)
    ended = storage.create_new_trial(study._study_id)
    running = storage.create_new_trial(study._study_id)
    storage.set_trial_state_values(ended, TrialState.FAIL)
    judge = PruningJudge(study, PruneAtThird())

    decisions = judge.decide([Report(k, ended, k, 1.0) for k in (1, 2, 3)] + [Report(4, running, 1, 1.0)])
    judge.persist()

    assert decisions == {1: False, 2: False, 3: False, 4: False}
    assert storage.get_trial(ended).intermediate_values == {}
    assert storage.get_trial(running).intermediate_values == {1: 1.0}


def test_values_are_stored_even_when_nothing_prunes(storage: CountingStorage) -> None:
    study = optuna.create_study(study_name="judge", storage=storage)
    trial_id = storage.create_new_trial(study._study_id)
    judge = PruningJudge(study, optuna.pruners.NopPruner())

    assert judge.decide([Report(1, trial_id, 1, 2.0, wants_decision=False)]) == {1: False}
    judge.persist()

    assert storage.get_trial(trial_id).intermediate_values == {1: 2.0}


class Recording(optuna.pruners.BasePruner):
    """Notes the steps of the trial each call saw; never stops it."""

    def __init__(self) -> None:
        self.seen: list[list[int]] = []

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        self.seen.append(list(trial.intermediate_values))
        return False


def test_batches_are_decided_once_per_trial_on_every_value_in_order_and_stored_whole(
    storage: CountingStorage,
) -> None:
    study = optuna.create_study(study_name="judge", storage=storage)
    first, second = (storage.create_new_trial(study._study_id) for _ in range(2))
    pruner = Recording()
    judge = PruningJudge(study, pruner)

    assert judge.decide_batches([Batch(first, [0, 1, 2], [0.9, 0.8, 0.7])]) == set()
    drained = [Batch(second, [0], [5.0]), Batch(first, [3, 4], [0.6, 0.5]), Batch(second, [1], [4.0])]
    assert judge.decide_batches(drained) == set()
    judge.persist()

    # One call per trial and drain; each saw every value reported so far, in step order (the
    # second trial's two batches of one drain together).
    assert pruner.seen == [[0, 1, 2], [0, 1], [0, 1, 2, 3, 4]]
    assert storage.get_trial(first).intermediate_values == {0: 0.9, 1: 0.8, 2: 0.7, 3: 0.6, 4: 0.5}
    assert storage.get_trial(second).intermediate_values == {0: 5.0, 1: 4.0}


def test_a_batch_whose_last_value_the_pruner_stops_at_stops_its_trial(storage: CountingStorage) -> None:
    study = optuna.create_study(study_name="judge", storage=storage)
    trial_id = storage.create_new_trial(study._study_id)
    judge = PruningJudge(study, PruneAtThird())

    assert judge.decide_batches([Batch(trial_id, [0, 1], [1.0, 1.0])]) == set()
    assert judge.decide_batches([Batch(trial_id, [2, 3, 4], [1.0, 1.0, 1.0])]) == {trial_id}


def test_an_ended_trials_unstored_values_are_taken_once_and_the_judge_forgets_it(
    storage: CountingStorage,
) -> None:
    study = optuna.create_study(study_name="judge", storage=storage)
    trial_id = storage.create_new_trial(study._study_id)
    pruner = Recording()
    judge = PruningJudge(study, pruner)
    judge.decide_batches([Batch(trial_id, [0, 1], [1.0, 2.0])])
    storage.reset()

    assert judge.unstored(trial_id) == {0: 1.0, 1: 2.0}
    assert judge.unstored(trial_id) == {}
    judge.persist()
    assert storage.writes() == 0  # nothing left to store: the trial's end write carries them
    # Forgotten: a late batch of the same trial is judged from the storage again, not the old view.
    judge.decide_batches([Batch(trial_id, [2], [3.0])])
    assert pruner.seen[-1] == [2]
