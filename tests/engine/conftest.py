"""Engine test fixtures: test trainers shipped to Ray workers by value, a scratch project directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import engine_trainers
import pytest


@pytest.fixture(scope="session")
def ray_trainers(ray_session: None) -> Iterator[None]:
    """The session's Ray, with the test trainers pickled by value (workers cannot import this dir)."""
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(engine_trainers)
    yield
    ray.cloudpickle.unregister_pickle_by_value(engine_trainers)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project directory used as the agent's cwd (checkpoints and tracker files land here)."""
    root = tmp_path / "project"
    root.mkdir()
    monkeypatch.chdir(root)
    monkeypatch.delenv("SWEEPER_STORAGE", raising=False)
    return root
