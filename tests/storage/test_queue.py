"""A budgeted sweep's work queued block by block: what Optuna reads, each point once, atomic creation."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import engine_trainers
import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from racing import together

import sweeper
from sweeper.errors import SweepNotFoundError
from sweeper.spec.reader import load_spec
from sweeper.storage import attrs as keys
from sweeper.storage import journal_read, queue, sweeps, work
from sweeper.storage.retry import CREATE_TOKEN
from sweeper.storage.urls import open_storage

# 3 x 5 x 7 = 105 points: more than one block, and a last block that is not full.
GRID: dict[str, Any] = {
    "method": "grid",
    "metric": {"name": "loss"},
    "parameters": {
        "a": {"values": [0, 1, 2]},
        "b": {"values": ["p", "q", "r", "s", "t"]},
        "c": {"values": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]},
    },
}


def _drain(url: str, sweep_id: str) -> list[dict[str, Any]]:
    """Take every trial of the sweep as an agent does (ask, tell), in the order taken."""
    storage = open_storage(url)
    spec = sweeps.get_sweep(storage, sweep_id).spec
    study = sweeps.load_study(storage, sweep_id)
    taken = []
    while (trial := queue.ask_trial(study, spec.space, spec)) is not None:
        taken.append(trial.params)
        study.tell(trial, 0.0)
    return taken


def test_a_grid_is_queued_block_by_block_in_wandbs_order_each_point_once(any_storage_url: str) -> None:
    spec = load_spec(GRID)
    storage = open_storage(any_storage_url)
    info = sweeps.create_sweep(storage, spec)
    assert storage.get_n_trials(info.study_id) == 0  # creation queued nothing
    assert work.queued(storage, info.study_id, spec.budget) == 0
    assert work.work_left(storage, info.study_id, spec.budget)

    assert _drain(any_storage_url, info.id) == spec.space.grid()

    assert work.queued(storage, info.study_id, spec.budget) == 105
    assert not work.work_left(storage, info.study_id, spec.budget)
    trials = storage.get_all_trials(info.study_id)
    assert [t.number for t in trials] == list(range(105))
    assert all(t.state == TrialState.COMPLETE and t.user_attrs == {keys.ATTEMPT: 0} for t in trials)


def test_queued_trials_read_back_as_optunas_enqueue_trial_writes_them(any_storage_url: str) -> None:
    spec = load_spec(GRID)
    storage = open_storage(any_storage_url)
    info = sweeps.create_sweep(storage, spec)
    work.queue_through(storage, info.study_id, spec, 0)  # one block, none taken
    ours = storage.get_all_trials(info.study_id)

    reference = optuna.create_study(storage=storage, study_name="reference")
    for point in spec.space.grid()[: work.QUEUE_BLOCK]:
        reference.enqueue_trial(point, user_attrs={keys.ATTEMPT: 0}, skip_if_exists=False)
    # Our retry layer stamps what it creates through create_new_trial; the batch needs no stamp.
    theirs = storage.get_all_trials(reference._study_id)
    for trial in theirs:
        trial.system_attrs.pop(CREATE_TOKEN, None)

    fields = ("number", "state", "params", "distributions", "user_attrs", "system_attrs", "values")
    assert len(ours) == len(theirs) == work.QUEUE_BLOCK
    for mine, optunas in zip(ours, theirs, strict=True):
        assert {f: getattr(mine, f) for f in fields} == {f: getattr(optunas, f) for f in fields}
        assert mine.datetime_start is None and mine.datetime_complete is None
    # Optuna's own pop takes them in order, with their fixed params.
    popped = optuna.load_study(study_name=info.id, storage=storage).ask()
    assert popped.number == 0 and popped.params == {}
    assert storage.get_trial_system_attrs(popped._trial_id)["fixed_params"] == spec.space.grid()[0]


def test_racing_agents_queue_and_take_each_point_exactly_once(any_storage_url: str) -> None:
    info = sweeps.create_sweep(open_storage(any_storage_url), load_spec(GRID))
    # Each with a storage of its own.
    taken = together(lambda _: _drain(any_storage_url, info.id), 4)
    points = [tuple(sorted(p.items())) for run in taken for p in run]
    assert Counter(points) == Counter(tuple(sorted(p.items())) for p in load_spec(GRID).space.grid())
    storage = open_storage(any_storage_url)
    assert storage.get_n_trials(info.study_id) == 105  # no point queued twice


def test_a_billion_point_grid_costs_nothing_to_create_and_runs_from_its_first_points(
    journal_url: str,
) -> None:
    spec = {
        "method": "grid",
        "metric": {"name": "loss"},
        "parameters": {f"p{i}": {"values": list(range(10))} for i in range(9)},
    }
    sweep_id = sweeper.sweep(spec, storage=journal_url)
    storage = open_storage(journal_url)
    info = sweeps.get_sweep(storage, sweep_id)
    assert info.spec.budget == 10**9
    assert storage.get_n_trials(info.study_id) == 0

    summary = sweeper.agent(
        sweep_id, function=engine_trainers.constant, storage=journal_url, executor="local", count=3
    )

    assert summary.complete == 3 and summary.state == "running"
    trials = storage.get_all_trials(info.study_id)
    first = [{**{f"p{i}": 0 for i in range(8)}, "p8": last} for last in range(3)]
    assert [t.params for t in trials if t.state == TrialState.COMPLETE] == first
    assert len(trials) == work.QUEUE_BLOCK  # one block queued, the rest of the billion ahead


def test_a_sweep_made_before_the_queue_cursor_runs_the_points_it_queued_at_creation(journal_url: str) -> None:
    """Earlier versions queued every grid point at creation and stored no cursor."""
    spec = load_spec(GRID | {"parameters": {"a": {"values": [0, 1, 2]}}})
    storage = open_storage(journal_url)
    study_id = storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], study_name="oldsweep")
    for key, value in {keys.NAME: "old", keys.STATE: "running", keys.SPEC: dict(spec.raw)}.items():
        storage.set_study_user_attr(study_id, key, value)
    study = sweeps.load_study(storage, "oldsweep")
    for point in spec.space.grid():
        queue.enqueue(study, point, {keys.ATTEMPT: 0})

    summary = sweeper.agent(
        "oldsweep", function=engine_trainers.constant, storage=journal_url, executor="local"
    )

    assert summary.complete == 3 and summary.state == "finished"
    assert storage.get_n_trials(study_id) == 3


_CREATOR = textwrap.dedent(
    """
    import sys
    from sweeper.spec.reader import load_spec
    from sweeper.storage import sweeps
    from sweeper.storage.urls import open_storage

    spec = load_spec({
        "method": "grid", "metric": {"name": "loss"},
        "parameters": {f"p{i}": {"values": list(range(10))} for i in range(5)},
    })
    storage = open_storage(sys.argv[1])
    print("ready", flush=True)
    while True:
        sweeps.create_sweep(storage, spec)
    """
)


@pytest.mark.parametrize("kind", ["journal", "postgresql"])
def test_a_creation_killed_at_any_moment_leaves_whole_sweeps_or_nothing_an_agent_would_run(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = f"journal://{tmp_path / 'j.log'}" if kind == "journal" else request.getfixturevalue("postgres_url")
    rng = random.Random(0)
    for _ in range(10):
        creator = subprocess.Popen([sys.executable, "-c", _CREATOR, url], stdout=subprocess.PIPE, text=True)
        assert creator.stdout is not None and creator.stdout.readline().strip() == "ready"
        threading.Event().wait(rng.uniform(0.0, 0.3))  # kill it at a random moment of its loop
        creator.send_signal(signal.SIGKILL)
        creator.wait(timeout=30)

    storage = open_storage(url)
    whole = {s.id for s in sweeps.list_sweeps(storage)}
    studies = [s.study_name for s in storage.get_all_studies()]
    # The creator does nothing but create sweeps: kills land mid-creation (the test would prove
    # nothing otherwise).
    assert whole and set(studies) > whole
    for name in studies:
        if name in whole:
            info = sweeps.get_sweep(storage, name)
            assert info.state == "running" and info.spec.budget == 10**5
            assert work.queued(storage, info.study_id, info.spec.budget) == 0
            assert storage.get_n_trials(info.study_id) == 0
        else:  # cut short: no agent can take it for a sweep, so none runs or finishes it
            with pytest.raises(SweepNotFoundError, match="interrupted"):
                sweeper.agent(name, function=engine_trainers.constant, storage=url, executor="local", count=1)
            assert storage.get_n_trials(storage.get_study_id_from_name(name)) == 0
    # A retried submit gives a whole sweep that runs.
    sweep_id = sweeper.sweep(GRID, storage=url)
    summary = sweeper.agent(
        sweep_id, function=engine_trainers.constant, storage=url, executor="local", count=2
    )
    assert summary.complete == 2


@pytest.mark.parametrize("method", ["random", "grid"])
def test_an_ask_on_the_journal_is_made_durable_by_the_trials_start_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    """One ``fsync`` a trial: the ask's record (a trial created, or a grid point taken) is written
    at once, and made durable by the start write that comes before the trial is launched."""
    path = tmp_path / "journal.log"
    url = f"journal://{path}"
    spec = load_spec(GRID if method == "grid" else {**GRID, "method": "random"})
    storage = open_storage(url)
    info = sweeps.create_sweep(storage, spec)
    study = sweeps.load_study(storage, info.id)
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(os.fstat(fd).st_size) or real_fsync(fd))

    for _ in range(3):
        trial = queue.ask_trial(study, spec.space, spec)
        assert trial is not None and synced == []
        # Every process reads the ask's record at once: the trial is taken.
        other = JournalStorage(JournalFileBackend(str(path))).get_trial(trial._trial_id)
        assert other.state == TrialState.RUNNING
        queue.start_trial(trial)
        assert synced == [path.stat().st_size]  # the start write's fsync covers both
        synced.clear()
        study.tell(trial, 0.5)
        synced.clear()

    # Another thread's appends meanwhile keep their own fsync.
    with journal_read.unsynced():
        thread = threading.Thread(target=storage.set_study_user_attr, args=(info.study_id, "k", 1))
        thread.start()
        thread.join()
    assert len(synced) == 1
