"""The pruning judge: decisions from its in-memory view, the values stored after, in one write."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
from counting import CountingStorage
from optuna.trial import FrozenTrial, TrialState

from sweeper.engine import judge as judging
from sweeper.engine.judge import Batch, Persister, PruningJudge, Report
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
    # One read serves a batch's decisions and the batches after it, until one of the judge's own
    # trials starts: the second batch read again (`second` joined the view after the first batch's
    # read), the third did not.
    assert storage.calls["get_all_trials"] == 2

    judge.persist()

    assert storage.calls["write_trials"] == 1 and storage.writes() == 1
    assert storage.get_trial(first).intermediate_values == {1: 0.9, 2: 0.7, 3: 0.6}
    assert storage.get_trial(second).intermediate_values == {1: 0.8, 2: 0.5}
    judge.persist()  # nothing new: no write
    assert storage.writes() == 1


class SeesOthers(optuna.pruners.BasePruner):
    """Never stops a trial; records every other trial's state and values as each decision sees them."""

    def __init__(self) -> None:
        self.seen: list[dict[int, tuple[TrialState, dict[int, float]]]] = []

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        others = [t for t in study.get_trials(deepcopy=False) if t._trial_id != trial._trial_id]
        self.seen.append({t._trial_id: (t.state, dict(t.intermediate_values)) for t in others})
        return False


def test_a_read_of_the_study_is_reused_and_the_judges_ended_trials_show_as_they_ended(
    storage: CountingStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    study = optuna.create_study(study_name="judge", storage=storage)
    ending, going = (storage.create_new_trial(study._study_id) for _ in range(2))
    pruner = SeesOthers()
    judge = PruningJudge(study, pruner)
    judge.decide([Report(1, ending, 1, 0.9), Report(2, going, 1, 0.8)])
    judge.persist()  # `ending`'s first value is stored; its second is not
    judge.decide([Report(3, ending, 2, 0.7)])
    storage.reset()
    for step in range(2, 12):  # nothing of the judge's own starts: no read
        judge.decide([Report(step, going, step, 0.5)])
    assert storage.calls["get_all_trials"] == 0

    # `ending` ends. Until the recorder made its end, decisions see it running with every value.
    assert judge.unstored(ending) == {2: 0.7}
    judge.decide([Report(20, going, 20, 0.4)])
    assert pruner.seen[-1][ending] == (TrialState.RUNNING, {1: 0.9, 2: 0.7})
    # Then as its end write stores it, before that write lands (the storage still says running).
    # The end write carries only the values not stored yet; the view keeps the stored ones too.
    ended = FrozenTrial(
        number=0, state=TrialState.COMPLETE, value=0.7, datetime_start=None, datetime_complete=None,
        params={}, distributions={}, user_attrs={}, system_attrs={}, intermediate_values={2: 0.7},
        trial_id=ending,
    )  # fmt: skip
    judge.ended(ended)
    judge.decide([Report(21, going, 21, 0.3)])
    assert storage.calls["get_all_trials"] == 0
    assert pruner.seen[-1][ending] == (TrialState.COMPLETE, {1: 0.9, 2: 0.7})

    # Another agent's change shows once the read is REFRESH_S old; by then the end write landed
    # and the storage's version stands.
    storage.set_trial_state_values(ending, TrialState.PRUNED, [0.5])  # say a cancel came first
    monkeypatch.setattr(judging, "REFRESH_S", 0.05)
    other = storage.create_new_trial(study._study_id)
    storage.set_trial_intermediate_value(other, 1, 0.1)
    time.sleep(0.1)
    judge.decide([Report(22, going, 22, 0.2)])
    assert storage.calls["get_all_trials"] == 1
    assert pruner.seen[-1][other] == (TrialState.RUNNING, {1: 0.1})
    assert pruner.seen[-1][ending] == (TrialState.PRUNED, {1: 0.9})


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


class HeldWrites(CountingStorage):
    """A storage whose batched writes wait until ``release`` is set (a slow disk, a busy database)."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.release = threading.Event()
        self.writing = threading.Event()

    def _call(self, what: str, call: Callable[[], Any], on_retry: Callable[[], Any] | None = None) -> Any:
        if what == "write_trials":
            self.writing.set()
            self.release.wait(30)
        return super()._call(what, call, on_retry)


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_decisions_go_on_while_the_persister_writes_and_it_stores_the_rest_on_close(
    kind: str, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}" if kind == "sqlite" else f"journal://{tmp_path / 'j.log'}"
    storage = HeldWrites(open_storage(url))
    study = optuna.create_study(study_name="judge", storage=storage)
    trial_id = storage.create_new_trial(study._study_id)
    judge = PruningJudge(study, PruneAtThird())
    persister = Persister(judge)
    judge.decide([Report(1, trial_id, 1, 0.9)])
    persister.request()
    assert storage.writing.wait(10)

    decided: list[dict[int, bool]] = []
    deciding = threading.Thread(target=lambda: decided.append(judge.decide([Report(2, trial_id, 2, 0.8)])))
    deciding.start()
    deciding.join(10)
    assert decided == [{2: False}]  # while the write still waits
    assert judge.decide([Report(3, trial_id, 3, 0.7)]) == {3: True}
    storage.release.set()
    persister.close()

    assert storage.get_trial(trial_id).intermediate_values == {1: 0.9, 2: 0.8, 3: 0.7}
    assert storage.calls["write_trials"] == 2  # the held write, then what was decided meanwhile
