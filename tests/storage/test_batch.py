"""Batched trial writes: Optuna's own readers see exactly what Optuna's own calls would have written.

Each test runs on SQLite, PostgreSQL and the journal file. The same trial is written twice, once
call by call through Optuna's storage API and once through :func:`write_trials`; then a fresh
storage (Optuna's reader, no cache shared with the writer) reads both back, and on the journal the
raw records are compared too.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import optuna
import pytest
from counting import CountingStorage
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.storages import BaseStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from sweeper.storage import batch
from sweeper.storage.batch import DeferredWrites, TrialWrite, write_trials
from sweeper.storage.retry import CREATE_TOKEN
from sweeper.storage.urls import open_storage

PARAMS: dict[str, tuple[float, Any]] = {
    "lr": (0.01, FloatDistribution(1e-4, 1.0, log=True)),
    "layers": (3.0, IntDistribution(1, 8)),
    "opt": (1.0, CategoricalDistribution(["sgd", "adam", None])),
}
START_USER = {"config": {"lr": 0.01, "layers": 3, "opt": "adam"}, "attempt": 0, "agent": "host-1-ab"}
START_SYSTEM = {"sweeper:lease": {"agent": "host-1-ab", "seq": 0, "grace_s": 60.0}}
END_USER = {"host": "node-1", "duration_s": 1.25, "metrics": {"loss": 0.5, "acc": float("inf")}}
INTERMEDIATE = {1: 0.9, 2: float("-inf"), 3: float("nan"), 4: 0.5}


def _by_calls(storage: BaseStorage, trial_id: int, state: TrialState, values: list[float] | None) -> None:
    """What Optuna's own calls write for a trial as the agent starts and ends it."""
    for name, (internal, distribution) in PARAMS.items():
        storage.set_trial_param(trial_id, name, internal, distribution)
    for key, value in START_USER.items():
        storage.set_trial_user_attr(trial_id, key, value)
    for key, value in START_SYSTEM.items():
        storage.set_trial_system_attr(trial_id, key, value)
    for key, value in END_USER.items():
        storage.set_trial_user_attr(trial_id, key, value)
    for step, value in INTERMEDIATE.items():
        storage.set_trial_intermediate_value(trial_id, step, value)
    storage.set_trial_state_values(trial_id, state, values)


def _by_batches(storage: BaseStorage, trial_id: int, state: TrialState, values: list[float] | None) -> None:
    start = TrialWrite(
        trial_id, params=dict(PARAMS), user_attrs=dict(START_USER), system_attrs=dict(START_SYSTEM)
    )
    assert write_trials(storage, [start]) == {}
    end = TrialWrite(
        trial_id, user_attrs=dict(END_USER), intermediate=dict(INTERMEDIATE), state=state, values=values
    )
    assert write_trials(storage, [end]) == {}


def _comparable(trial: FrozenTrial) -> dict[str, Any]:
    """A trial as Optuna reads it, less what differs between any two trials (ids, clocks)."""
    assert trial.datetime_start is not None and trial.datetime_complete is not None
    assert trial.datetime_complete >= trial.datetime_start
    return {
        "state": trial.state,
        "values": trial.values,
        "params": trial.params,
        "distributions": trial.distributions,
        "user_attrs": trial.user_attrs,
        "system_attrs": {k: v for k, v in trial.system_attrs.items() if k != CREATE_TOKEN},
        # NaN != NaN: compare the JSON text, which spells it.
        "intermediate_values": json.dumps(trial.intermediate_values, sort_keys=True),
    }


@pytest.mark.parametrize(
    ("state", "values"),
    [
        (TrialState.COMPLETE, [0.25]),
        (TrialState.COMPLETE, [float("inf")]),
        (TrialState.PRUNED, [0.5]),
        (TrialState.FAIL, None),
    ],
)
def test_optuna_reads_what_its_own_calls_would_have_written(
    any_storage_url: str, state: TrialState, values: list[float] | None
) -> None:
    storage = open_storage(any_storage_url)
    study_id = storage.create_new_study([StudyDirection.MINIMIZE], "equivalence")
    by_calls = storage.create_new_trial(study_id)
    by_batches = storage.create_new_trial(study_id)
    _by_calls(storage, by_calls, state, values)
    _by_batches(storage, by_batches, state, values)

    fresh = optuna.load_study(study_name="equivalence", storage=open_storage(any_storage_url))
    trials = {t._trial_id: t for t in fresh.get_trials(deepcopy=False)}
    assert _comparable(trials[by_batches]) == _comparable(trials[by_calls])
    assert trials[by_batches].state == state


@pytest.mark.parametrize(
    "postgres", [False, pytest.param(True, marks=pytest.mark.postgres)], ids=["sqlite", "postgresql"]
)
def test_other_databases_write_the_same_through_optunas_helpers(
    postgres: bool, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MySQL and the rest take Optuna's row-by-row helpers: the same rows, checked here on ours."""
    url = str(request.getfixturevalue("postgres_url")) if postgres else f"sqlite:///{tmp_path / 's.db'}"
    monkeypatch.setattr(batch, "_write_rdb_rows", batch._write_rdb_each)
    storage = open_storage(url)
    study_id = storage.create_new_study([StudyDirection.MINIMIZE], "helpers")
    by_calls = storage.create_new_trial(study_id)
    by_batches = storage.create_new_trial(study_id)
    ended_elsewhere = storage.create_new_trial(study_id)
    storage.set_trial_state_values(ended_elsewhere, TrialState.FAIL)
    _by_calls(storage, by_calls, TrialState.COMPLETE, [0.5])
    _by_batches(storage, by_batches, TrialState.COMPLETE, [0.5])

    assert set(write_trials(storage, [TrialWrite(ended_elsewhere, user_attrs={"a": 1})])) == {ended_elsewhere}
    trials = {t._trial_id: t for t in open_storage(url).get_all_trials(study_id)}
    assert _comparable(trials[by_batches]) == _comparable(trials[by_calls])


def test_journal_records_are_those_optuna_appends(tmp_path: Path) -> None:
    url = f"journal://{tmp_path / 'journal.log'}"
    storage = open_storage(url)
    study_id = storage.create_new_study([StudyDirection.MAXIMIZE], "records")
    by_calls = storage.create_new_trial(study_id)
    by_batches = storage.create_new_trial(study_id)
    _by_calls(storage, by_calls, TrialState.COMPLETE, [1.5])
    _by_batches(storage, by_batches, TrialState.COMPLETE, [1.5])

    logs = [json.loads(line) for line in (tmp_path / "journal.log").read_text().splitlines()]

    def of(trial_id: int) -> list[dict[str, Any]]:
        return [
            {k: v for k, v in log.items() if k not in ("worker_id", "trial_id", "datetime_complete")}
            for log in logs
            if log.get("trial_id") == trial_id
        ]

    assert of(by_batches) == of(by_calls)
    assert len(of(by_calls)) == len(PARAMS) + len(START_USER) + len(START_SYSTEM) + len(END_USER) + 5


def test_a_trial_ended_elsewhere_is_refused_and_the_rest_of_the_batch_written(any_storage_url: str) -> None:
    agent = open_storage(any_storage_url)
    reaper = open_storage(any_storage_url)  # another agent, with its own connection and cache
    study_id = agent.create_new_study([StudyDirection.MINIMIZE], "race")
    ids = [agent.create_new_trial(study_id) for _ in range(3)]
    assert reaper.set_trial_state_values(ids[1], TrialState.FAIL)

    writes = [
        TrialWrite(
            i, user_attrs={"host": "a"}, intermediate={1: 1.0}, state=TrialState.COMPLETE, values=[1.0]
        )
        for i in ids
    ]
    refused = write_trials(agent, writes)

    assert set(refused) == {ids[1]}
    assert isinstance(refused[ids[1]], optuna.exceptions.UpdateFinishedTrialError)
    fresh = {t._trial_id: t for t in open_storage(any_storage_url).get_all_trials(study_id)}
    assert [fresh[i].state for i in ids] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    assert fresh[ids[1]].user_attrs == {} and fresh[ids[1]].intermediate_values == {}
    assert fresh[ids[0]].user_attrs == {"host": "a"} and fresh[ids[0]].values == [1.0]
    # The refused trial does not poison the writer: its next calls work as before.
    assert set(write_trials(agent, [TrialWrite(ids[0], user_attrs={"late": 1})])) == {ids[0]}
    after = agent.create_new_trial(study_id)
    agent.set_trial_user_attr(after, "next", 1)
    assert agent.get_trial(after).user_attrs == {"next": 1}


def test_a_missing_trial_is_refused_with_a_key_error(any_storage_url: str) -> None:
    storage = open_storage(any_storage_url)
    study_id = storage.create_new_study([StudyDirection.MINIMIZE], "missing")
    trial_id = storage.create_new_trial(study_id)
    refused = write_trials(storage, [TrialWrite(trial_id + 1000, user_attrs={"a": 1})])
    assert isinstance(refused[trial_id + 1000], KeyError)


def test_trials_that_end_together_share_one_round_trip(any_storage_url: str) -> None:
    storage = CountingStorage(open_storage(any_storage_url))
    study_id = storage.create_new_study([StudyDirection.MINIMIZE], "group")
    ids = [storage.create_new_trial(study_id) for _ in range(8)]
    storage.reset()

    write_trials(
        storage,
        [
            TrialWrite(i, user_attrs={"n": n}, state=TrialState.COMPLETE, values=[float(n)])
            for n, i in enumerate(ids)
        ],
    )

    assert storage.calls == {"write_trials": 1}
    fresh = open_storage(any_storage_url).get_all_trials(study_id)
    assert [(t.state, t.values, t.user_attrs) for t in fresh] == [
        (TrialState.COMPLETE, [float(n)], {"n": n}) for n in range(8)
    ]


def test_deferred_writes_keep_a_trials_params_and_attrs_until_written(any_storage_url: str) -> None:
    storage = CountingStorage(open_storage(any_storage_url))
    study = optuna.create_study(study_name="deferred", storage=storage)
    trial_id = storage.create_new_trial(study._study_id)
    trial = optuna.Trial(study, trial_id)
    deferred = DeferredWrites(storage, trial_id)
    trial.storage = deferred  # type: ignore[assignment]
    storage.reset()

    x = trial.suggest_float("x", 0.0, 1.0)
    kind = trial.suggest_categorical("kind", ["a", "b"])
    trial.set_user_attr("config", {"x": x, "kind": kind})
    assert storage.writes() == 0
    assert write_trials(storage, [deferred.pending]) == {}

    assert storage.writes() == 1
    stored = open_storage(any_storage_url).get_trial(trial_id)
    assert stored.params == {"x": x, "kind": kind}
    assert stored.user_attrs == {"config": {"x": x, "kind": kind}}
    assert not math.isnan(x)


def test_a_write_must_end_a_trial_not_restart_it() -> None:
    with pytest.raises(ValueError, match="can only end a trial"):
        TrialWrite(1, state=TrialState.RUNNING)


def test_a_trials_start_and_end_in_one_batch_are_both_written(any_storage_url: str) -> None:
    # A trial launched by a refill can end before the loop writes: its start and its end then ride
    # in the same batch, and Optuna reads both, as if written one after the other.
    storage = open_storage(any_storage_url)
    study_id = storage.create_new_study([StudyDirection.MINIMIZE], "start-and-end")
    by_calls = storage.create_new_trial(study_id)
    together = storage.create_new_trial(study_id)
    other = storage.create_new_trial(study_id)
    _by_calls(storage, by_calls, TrialState.COMPLETE, [0.25])
    start = TrialWrite(
        together, params=dict(PARAMS), user_attrs=dict(START_USER), system_attrs=dict(START_SYSTEM)
    )
    end = TrialWrite(
        together,
        user_attrs=dict(END_USER),
        intermediate=dict(INTERMEDIATE),
        state=TrialState.COMPLETE,
        values=[0.25],
    )
    other_end = TrialWrite(other, user_attrs={"host": "b"}, state=TrialState.FAIL)

    assert write_trials(storage, [start, other_end, end]) == {}

    fresh = {t._trial_id: t for t in open_storage(any_storage_url).get_all_trials(study_id)}
    assert _comparable(fresh[together]) == _comparable(fresh[by_calls])
    assert fresh[other].state == TrialState.FAIL and fresh[other].user_attrs == {"host": "b"}
    assert start.state is None and end.params == {}  # the caller's writes are left as they were
