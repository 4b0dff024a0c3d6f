"""Reliability test fixtures: a scratch project directory used as the agent's cwd."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project directory used as the agent's cwd (checkpoints and tracker files land here)."""
    root = tmp_path / "project"
    root.mkdir()
    monkeypatch.chdir(root)
    monkeypatch.delenv("SWEEPER_STORAGE", raising=False)
    return root
