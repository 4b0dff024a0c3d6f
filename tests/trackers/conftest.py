"""Tracker tests write only under tmp directories and never reach the network."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tracker_env import isolate_tracker_env


@pytest.fixture(autouse=True)
def _isolated_trackers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    isolate_tracker_env(monkeypatch, tmp_path)
    yield
