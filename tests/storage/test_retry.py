"""Storage hiccups: dropped connections are retried; many agents on one PostgreSQL sweep stay exact."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import optuna
import psycopg2
import pytest
from optuna.trial import TrialState
from racing import together
from sqlalchemy.exc import OperationalError

import sweeper
from sweeper.engine.agent import AgentSummary
from sweeper.storage import sweeps
from sweeper.storage.retry import CREATE_TOKEN, RetryingStorage, is_transient
from sweeper.storage.urls import open_storage


def _dropped() -> optuna.exceptions.StorageInternalError:
    """What Optuna's RDB storage raises when the server closed the connection mid-call."""
    try:
        raise OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))
    except OperationalError as cause:
        try:
            raise optuna.exceptions.StorageInternalError(
                "An exception is raised during the commit."
            ) from cause
        except optuna.exceptions.StorageInternalError as exc:
            return exc


class _Flaky:
    """Wraps a storage method: the next ``fail`` calls raise a dropped connection, ``after`` committing."""

    def __init__(self, method: Any, fail: int, commit_first: bool) -> None:
        self.method = method
        self.fail = fail
        self.commit_first = commit_first
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.fail > 0:
            self.fail -= 1
            if self.commit_first:
                self.method(*args, **kwargs)  # the write lands, the answer is lost
            raise _dropped()
        return self.method(*args, **kwargs)


def test_transient_errors_are_told_from_real_ones() -> None:
    assert is_transient(_dropped())
    assert not is_transient(optuna.exceptions.StorageInternalError("no cause"))
    assert not is_transient(KeyError("no such trial"))


def test_dropped_connections_are_retried_and_a_lost_answer_creates_no_second_trial(project: Path) -> None:
    url = f"sqlite:///{project / 's.db'}"
    storage = open_storage(url)
    assert isinstance(storage, RetryingStorage)
    storage._sleep = lambda s: None
    study_id = storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], "s")
    inner = storage.inner

    # A trial creation whose commit landed but whose answer was lost: one trial, found by its token.
    flaky = _Flaky(inner.create_new_trial, fail=1, commit_first=True)
    inner.create_new_trial = flaky  # type: ignore[method-assign]
    trial_id = storage.create_new_trial(study_id)
    trials = storage.get_all_trials(study_id)
    assert [t._trial_id for t in trials] == [trial_id]
    assert CREATE_TOKEN in trials[0].system_attrs and flaky.calls == 1  # then found, not re-created

    # An idempotent write that failed before landing is simply retried.
    inner.set_trial_user_attr = _Flaky(inner.set_trial_user_attr, fail=3, commit_first=False)  # type: ignore[method-assign]
    storage.set_trial_user_attr(trial_id, "k", 1)
    assert storage.get_trial(trial_id).user_attrs == {"k": 1}
    assert storage.retried == 4

    # A real error is not retried; nor is a transient one past the time bound.
    with pytest.raises(KeyError):
        storage.get_trial(10_000)
    storage.max_wait_s = 0.0
    inner.get_trial = _Flaky(inner.get_trial, fail=1, commit_first=False)  # type: ignore[method-assign]
    with pytest.raises(optuna.exceptions.StorageInternalError):
        storage.get_trial(trial_id)


def _terminate_backends(url: str) -> int:
    database = url.rsplit("/", 1)[1]
    admin = psycopg2.connect(url.rsplit("/", 1)[0] + "/postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        )
        killed = len(cur.fetchall())
    admin.close()
    return killed


def _steps(config: dict[str, Any], trial: Any) -> float:
    for step in range(1, 6):
        trial.log({"loss": config["x"] + 1.0 / step})
        time.sleep(0.02)
    return float(config["x"])


def _agent_of(
    sweep_id: str, storage: RetryingStorage, result: list[AgentSummary], errors: list[BaseException]
) -> None:
    try:
        result.append(sweeper.agent(sweep_id, function=_steps, storage=storage, executor="local"))
    except BaseException as exc:
        errors.append(exc)


def test_postgres_backends_terminated_mid_sweep_the_sweep_completes(postgres_url: str, project: Path) -> None:
    spec = {
        "method": "grid",
        "metric": {"name": "loss"},
        "parameters": {"x": {"values": list(range(12))}},
    }
    storage = open_storage(postgres_url)
    assert isinstance(storage, RetryingStorage)
    # A kill lands on a query in flight (the retry path) only by chance: an idle connection killed
    # is replaced by the pool's pre-ping, unseen. Sweeps run, each to its end, until one was retried.
    for _ in range(4):
        sweep_id = sweeper.sweep(spec, storage=postgres_url)
        result: list[AgentSummary] = []
        errors: list[BaseException] = []
        agent = threading.Thread(target=_agent_of, args=(sweep_id, storage, result, errors))
        agent.start()
        killed = 0
        while agent.is_alive():
            killed += _terminate_backends(postgres_url)
            time.sleep(0.15)
        agent.join()

        assert not errors, errors
        assert killed > 0  # the server side really went away under the agent
        trials = sweeps.load_study(open_storage(postgres_url), sweep_id).trials
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        assert sorted(t.params["x"] for t in complete) == list(range(12))
        for t in complete:  # every report was kept: five steps each
            assert sorted(t.intermediate_values) == [1, 2, 3, 4, 5]
        assert result[0].state == "finished"
        if storage.retried > 0:
            break
    assert storage.retried > 0  # the retry path was taken, and the sweeps completed through it


def test_eight_agents_on_one_postgres_sweep_run_exactly_run_cap(postgres_url: str, project: Path) -> None:
    spec = {
        "method": "random",
        "run_cap": 32,
        "metric": {"name": "loss"},
        "parameters": {"x": {"min": 0.0, "max": 1.0}},
        "sweeper": {"seed": 1},
    }
    sweep_id = sweeper.sweep(spec, storage=postgres_url)
    summaries = together(  # fails the test if an agent deadlocked
        lambda _: sweeper.agent(
            sweep_id, function=lambda c, t: c["x"], storage=postgres_url, executor="local"
        ),
        8,
        timeout_s=240,
    )
    trials = sweeps.load_study(open_storage(postgres_url), sweep_id).trials
    assert len(trials) == 32
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert len({t.params["x"] for t in trials}) == 32  # no token ran twice
    assert sum(s.complete for s in summaries) == 32
    assert sweeps.get_sweep(open_storage(postgres_url), sweep_id).state == "finished"
