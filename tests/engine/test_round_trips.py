"""Storage round trips on the agent's path: at most three per trial, on every storage.

Taking or creating the trial is one; its params, attrs and lease are one more; its end (state,
values, attrs, late intermediate values) is the last. Counted with a storage wrapper that counts
every call made through it, run by a real agent.
"""

from __future__ import annotations

from pathlib import Path

import engine_trainers
import pytest
from counting import CountingStorage
from optuna.trial import TrialState

import sweeper
from sweeper.engine.agent import Agent
from sweeper.storage.urls import open_storage

TRIALS = 12


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres), "journal"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'sweeps.db'}"
    if request.param == "journal":
        return f"journal://{tmp_path / 'journal.log'}"
    return str(request.getfixturevalue("postgres_url"))


def _per_trial_writes(storage: CountingStorage) -> int:
    """Writes about trials (the agent's heartbeat and the sweep's state are the study's, per agent)."""
    return storage.writes() - sum(n for name, n in storage.calls.items() if name.startswith("set_study"))


@pytest.mark.parametrize("budgeted", [False, True], ids=["created", "taken from the queue"])
def test_each_trial_costs_at_most_three_storage_writes(url: str, project: Path, budgeted: bool) -> None:
    spec: dict[str, object] = {
        "method": "random",
        "metric": {"name": "loss"},
        "parameters": {"x": {"min": 0.0, "max": 2.0}, "kind": {"values": ["a", "b", "c"]}},
    }
    if budgeted:
        spec["run_cap"] = TRIALS
    sweep_id = sweeper.sweep(spec, storage=url)
    storage = CountingStorage(open_storage(url))

    summary = Agent(
        sweep_id, storage=storage, function=engine_trainers.noop, executor="local", count=TRIALS
    ).run()

    assert summary.complete == TRIALS
    assert _per_trial_writes(storage) <= 3 * TRIALS, dict(storage.calls)
    # Every trial's params, attrs, lease and result are all there, as Optuna reads them.
    trials = open_storage(url).get_all_trials(open_storage(url).get_study_id_from_name(sweep_id))
    assert len(trials) == TRIALS
    for trial in trials:
        assert trial.state == TrialState.COMPLETE
        assert set(trial.params) == {"x", "kind"}
        assert trial.values == [trial.params["x"]]
        assert trial.user_attrs["config"] == {"x": trial.params["x"], "kind": trial.params["kind"]}
        assert trial.user_attrs["agent"] == summary.agent_id and trial.user_attrs["attempt"] == 0
        assert {"host", "duration_s", "metrics"} <= set(trial.user_attrs)
        assert trial.system_attrs["sweeper:lease"]["agent"] == summary.agent_id
