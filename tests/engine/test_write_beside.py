"""A write beside the loop: while the loop's storage write commits, the slots freed meanwhile are refilled.

Only where asks need not wait for that write: the sampler draws each trial alone (W&B's random
law), and the storage lets another thread's asks through while it commits (PostgreSQL). On SQLite,
the journal file and in memory the loop writes, then refills.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import engine_trainers
import optuna
import pytest
from optuna.trial import TrialState
from quick_executor import RANDOM, EndsAtOnce

import sweeper
from sweeper.engine import setup
from sweeper.storage import batch, queue
from sweeper.storage.urls import open_storage


def _run_with_slow_writes(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[optuna.trial.FrozenTrial], list[tuple[int, int]], list[list[int]]]:
    """Run a random sweep of 8 trials on 2 slots, each write that ends trials taking 0.2 s.

    Returns the trials, and for each such write how many trials had been started when it began and
    when it returned, and the trials each write ended."""
    sweep_id = sweeper.sweep(RANDOM, storage=url)
    executor = EndsAtOnce(slots=2)
    monkeypatch.setattr(setup, "make_executor", lambda *args, **kwargs: executor)
    spans: list[tuple[int, int]] = []
    ended_by: list[list[int]] = []

    def noted(ends: list[int], commit: Callable[[], batch.Refused]) -> batch.Refused:
        before = executor.started
        refused = commit()
        spans.append((before, executor.started))
        ended_by.append(ends)
        return refused

    _slow_writes(monkeypatch, noted)
    summary = sweeper.agent(sweep_id, function=engine_trainers.quadratic, storage=url, executor="local")
    assert summary.complete == 8
    assert executor.most_at_once == 2  # never more trials than slots
    trials = optuna.load_study(study_name=sweep_id, storage=open_storage(url)).trials
    return trials, spans, ended_by


def _slow_writes(
    monkeypatch: pytest.MonkeyPatch,
    around: Callable[[list[int], Callable[[], batch.Refused]], batch.Refused] = lambda ends, commit: commit(),
) -> None:
    """Each write that ends trials takes 0.2 s more to commit (a slow round trip to the database);
    ``around`` runs each such commit (given the trials it ends)."""
    real_write = batch.write_trials

    def stalled(commit: Callable[[], batch.Refused]) -> batch.Refused:
        time.sleep(0.2)
        return commit()

    def write(storage: Any, writes: list[batch.TrialWrite]) -> batch.Refused:
        commit = functools.partial(real_write, storage, writes)
        ends = [w.trial_id for w in writes if w.state is not None]
        return around(ends, functools.partial(stalled, commit)) if ends else commit()

    monkeypatch.setattr(batch, "write_trials", write)


def _recorded_once_each(trials: list[optuna.trial.FrozenTrial], ended_by: list[list[int]]) -> None:
    assert len(trials) == 8
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert all(t.values == [t.params["x"]] for t in trials)  # each its own params and value
    assert len({t.params["x"] for t in trials}) == 8
    ends = [trial_id for each in ended_by for trial_id in each]
    assert sorted(ends) == sorted(t._trial_id for t in trials)  # each end written once


@pytest.mark.usefixtures("project")
@pytest.mark.postgres
def test_slots_freed_while_a_write_commits_are_refilled_before_it_returns(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    trials, spans, ended_by = _run_with_slow_writes(postgres_url, monkeypatch)
    _recorded_once_each(trials, ended_by)
    # Trials were started while a write of ends was still committing: no slot waited for it.
    assert any(after > before for before, after in spans), spans
    # And the trials that ended meanwhile were recorded by the next write, not left behind.
    assert len(ended_by) < 8


@pytest.mark.usefixtures("project")
@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_elsewhere_the_loop_refills_after_its_write(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite's commit holds the database's one write lock, the journal's appends share one lock:
    an ask beside the write would only queue behind it."""
    url = (
        f"sqlite:///{tmp_path / 'db.sqlite'}" if kind == "sqlite" else f"journal://{tmp_path / 'journal.log'}"
    )
    trials, spans, ended_by = _run_with_slow_writes(url, monkeypatch)
    _recorded_once_each(trials, ended_by)
    assert all(after == before for before, after in spans), spans


@pytest.mark.parametrize(
    ("kind", "beside"),
    [
        ("memory", False),
        ("sqlite", False),
        pytest.param("postgresql", True, marks=pytest.mark.postgres),
        ("journal", False),
    ],
)
def test_which_storages_let_asks_through_while_a_write_commits(
    kind: str, beside: bool, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    urls = {
        "sqlite": f"sqlite:///{tmp_path / 'db.sqlite'}",
        "journal": f"journal://{tmp_path / 'journal.log'}",
    }
    if kind == "memory":
        storage = optuna.storages.InMemoryStorage()
    else:
        storage = open_storage(
            urls[kind] if kind != "postgresql" else request.getfixturevalue("postgres_url")
        )
    assert batch.writes_beside_asks(storage) is beside


@pytest.mark.usefixtures("project")
@pytest.mark.postgres
def test_a_refill_that_raises_beside_a_write_loses_no_trial_that_ended(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The write under way is recorded, then the trials that ended meanwhile, then the error is raised."""
    url = postgres_url
    sweep_id = sweeper.sweep(RANDOM, storage=url)
    executor = EndsAtOnce(slots=2)
    monkeypatch.setattr(setup, "make_executor", lambda *args, **kwargs: executor)
    real_ask = queue.ask_trial
    asks = 0

    def fourth_breaks(*args: Any) -> Any:
        nonlocal asks
        asks += 1
        if asks == 4:  # beside the first write of ends: the second trial ended meanwhile
            raise RuntimeError("the search space broke")
        return real_ask(*args)

    _slow_writes(monkeypatch)
    monkeypatch.setattr(queue, "ask_trial", fourth_breaks)
    with pytest.raises(RuntimeError, match="the search space broke"):
        sweeper.agent(sweep_id, function=engine_trainers.quadratic, storage=url, executor="local")
    trials = optuna.load_study(study_name=sweep_id, storage=open_storage(url)).trials
    assert len(trials) >= 3
    assert all(t.state != TrialState.RUNNING for t in trials)  # the third, in flight, was handed back
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    # The first two trials ended (the second while the first's end was written): both recorded.
    assert sorted(t.number for t in done) == [0, 1]
    assert all(t.values == [t.params["x"]] for t in done)
