"""Fixtures for the example trainers, sweeps and cluster configs.

``trainers`` is imported from the repository root, as a user's ``trainers.x:train`` would be.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from sweeper.errors import TrialPruned

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


class RecordingTrial:
    """A stand-in for the trainer-facing trial: records what is logged, prunes at a chosen report."""

    def __init__(self, checkpoint_dir: Path, prune_at_report: int | None = None) -> None:
        self.number = 0
        self.attempt = 0
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        self.rows: list[tuple[int | None, dict[str, float]]] = []
        self._prune_at = prune_at_report

    def log(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        self.rows.append((step, dict(metrics)))
        if self._prune_at is not None and len(self.rows) >= self._prune_at:
            raise TrialPruned(f"pruned at report {len(self.rows)}")

    def steps(self) -> list[int | None]:
        return [step for step, _ in self.rows]

    def series(self, name: str) -> list[float]:
        return [metrics[name] for _, metrics in self.rows]


@pytest.fixture
def recording_trial(tmp_path: Path) -> RecordingTrial:
    return RecordingTrial(tmp_path / "checkpoint")


@pytest.fixture
def make_trial(tmp_path: Path) -> Any:
    """Build stand-in trials: ``make_trial(prune_at_report=None, checkpoint_dir=None)``."""

    def make(prune_at_report: int | None = None, checkpoint_dir: Path | None = None) -> RecordingTrial:
        return RecordingTrial(checkpoint_dir or tmp_path / "checkpoint", prune_at_report)

    return make
