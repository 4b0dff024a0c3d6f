"""Fixtures of the inspect tests: finished, running and multi-objective sweeps in a journal file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from inspect_sweeps import MULTI_SPEC, SPEC, Built, add_finished, beat, create, finish_trial, start_trial

from sweeper.storage import sweeps


@pytest.fixture
def journal_url(tmp_path: Path) -> str:
    """A fresh journal storage URL in the test's directory."""
    return f"journal://{tmp_path / 'sweeps.log'}"


@pytest.fixture
def finished(journal_url: str) -> Built:
    """A finished single-objective sweep: 9 complete trials, 1 pruned, 1 failed (9 budget tokens left)."""
    built = create(journal_url, SPEC)
    add_finished(built)
    sweeps.set_state(built.storage, built.sweep_id, "finished")
    return built


@pytest.fixture
def running(journal_url: str) -> Built:
    """A sweep still running: 4 complete trials, 2 running with partial curves, 14 budget tokens waiting,
    one agent beating and one gone."""
    built = create(journal_url, SPEC)
    for _ in range(4):
        finish_trial(built, start_trial(built))
    start_trial(built, {1: 3.0, 2: 2.5})
    start_trial(built, {1: 4.0})
    beat(built, "agent-a", seconds_ago=2)
    beat(built, "agent-old", seconds_ago=3600)
    return built


@pytest.fixture
def multi(journal_url: str) -> Built:
    """A finished two-objective sweep (min loss, max accuracy) of 10 complete trials."""
    built = create(journal_url, MULTI_SPEC)
    for _ in range(10):
        finish_trial(built, start_trial(built))
    sweeps.set_state(built.storage, built.sweep_id, "finished")
    return built


@pytest.fixture(scope="session")
def ray_inspect_trainers(ray_session: None) -> Iterator[None]:
    """The session's Ray, with the inspect test trainers pickled by value (workers cannot import them)."""
    import inspect_trainers
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(inspect_trainers)
    yield
    ray.cloudpickle.unregister_pickle_by_value(inspect_trainers)
