"""The pruning judge: decisions from its in-memory view, the values stored after, in one write."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from counting import CountingStorage
from optuna.trial import FrozenTrial, TrialState

from sweeper.engine.broker import PruningJudge, Report
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
