"""Fixtures for the worker tests: a scratch project with W&B isolated (offline, files under tmp)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
for entry in (REPO, REPO / "tests" / "trackers"):  # `trainers.*`, and the trackers' readers
    if str(entry) not in sys.path:
        sys.path.insert(0, str(entry))

import wandb_trainers  # noqa: E402
from tracker_env import isolate_tracker_env  # noqa: E402


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project directory, the agent's cwd; W&B offline with its own files under tmp."""
    root = tmp_path / "project"
    root.mkdir()
    isolate_tracker_env(monkeypatch, root)
    # Runs go where sweeper puts them (the sweep's directory), not to a WANDB_DIR.
    monkeypatch.delenv("WANDB_DIR")
    monkeypatch.delenv("SWEEPER_STORAGE", raising=False)
    return root


@pytest.fixture(scope="session")
def ray_trainers(ray_session: None) -> Iterator[None]:
    """The session's Ray, with the test trainers pickled by value (workers cannot import this dir)."""
    import ray.cloudpickle

    import trainers.wandb_tutorial

    ray.cloudpickle.register_pickle_by_value(wandb_trainers)
    ray.cloudpickle.register_pickle_by_value(trainers.wandb_tutorial)
    yield
    ray.cloudpickle.unregister_pickle_by_value(wandb_trainers)
    ray.cloudpickle.unregister_pickle_by_value(trainers.wandb_tutorial)
