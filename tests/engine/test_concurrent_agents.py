"""Several agents racing on one sweep: grid points run exactly once, run_cap holds exactly."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from racing import race

import sweeper
from sweeper.storage import sweeps
from sweeper.storage.urls import open_storage


def _grid_spec() -> dict[str, object]:
    return {
        "method": "grid",
        "metric": {"name": "loss"},
        "parameters": {"x": {"values": [0.0, 0.5, 1.0, 1.5, 2.0]}, "y": {"values": ["a", "b", "c"]}},
    }


@pytest.fixture(params=["sqlite", "postgres"])
def storage_url(request: pytest.FixtureRequest, project: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{project / 'race.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.mark.postgres
def test_four_agents_run_each_grid_point_exactly_once(storage_url: str) -> None:
    sweep_id = sweeper.sweep(_grid_spec(), storage=storage_url)
    results = race(sweep_id, storage_url)

    trials = optuna.load_study(study_name=sweep_id, storage=open_storage(storage_url)).trials
    points = Counter((t.params["x"], t.params["y"]) for t in trials if t.state == TrialState.COMPLETE)
    assert len(trials) == 15 and len(points) == 15 and set(points.values()) == {1}
    assert sum(r.ran for r in results) == 15
    # The last agent to leave finds nothing open and marks the sweep finished.
    assert "finished" in {r.state for r in results}
    assert sweeps.get_sweep(open_storage(storage_url), sweep_id).state == "finished"


@pytest.mark.postgres
def test_run_cap_is_exact_under_concurrency(storage_url: str) -> None:
    spec = {
        "method": "random",
        "run_cap": 13,
        "metric": {"name": "loss"},
        "parameters": {"x": {"min": 0.0, "max": 2.0}},
        "sweeper": {"seed": 7},
    }
    sweep_id = sweeper.sweep(spec, storage=storage_url)
    results = race(sweep_id, storage_url)

    trials = optuna.load_study(study_name=sweep_id, storage=open_storage(storage_url)).trials
    assert len(trials) == 13
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert sum(r.ran for r in results) == 13
