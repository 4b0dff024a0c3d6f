"""Custom-scheduler test fixtures: a scheduler source file written for each test, a scratch project."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import search_trainers
from scheduler_source import SOURCE


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A scratch project directory, the cwd, holding the scheduler file ``scheduler.py``."""
    root = tmp_path / "project"
    root.mkdir()
    (root / "scheduler.py").write_text(SOURCE)
    monkeypatch.chdir(root)
    monkeypatch.delenv("SWEEPER_STORAGE", raising=False)
    return root


@pytest.fixture(scope="session")
def ray_trainers(ray_session: None) -> Iterator[None]:
    """The session's Ray, with the test trainers pickled by value (workers cannot import this dir)."""
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(search_trainers)
    yield
    ray.cloudpickle.unregister_pickle_by_value(search_trainers)
