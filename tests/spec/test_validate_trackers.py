"""`sweeper validate` checks the trackers a spec names: unknown names and options are located errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from sweeper.cli import main
from sweeper.errors import TrackerNotInstalledError
from sweeper.spec.model import TrackerSpec
from sweeper.trackers import tracker_problems
from sweeper.trackers.registry import missing_library


def _spec(tmp_path: Path, trackers: str) -> str:
    path = tmp_path / "s.yaml"
    path.write_text(
        f"method: random\nparameters: {{x: {{min: 0.0, max: 1.0}}}}\nsweeper:\n  trackers: {trackers}\n"
    )
    return str(path)


def test_unknown_tracker_and_option_are_located_errors(tmp_path: Path) -> None:
    path = _spec(tmp_path, "[mlfow, {type: tensorboard, log_dir: runs}]")
    result = CliRunner().invoke(main, ["validate", path])
    assert result.exit_code == 2
    assert f"{path}: sweeper.trackers: unknown tracker 'mlfow' (did you mean 'mlflow'?)" in result.stderr
    assert "unknown option(s) 'log_dir'; allowed options: logdir; did you mean 'logdir'?" in result.stderr


def test_known_trackers_validate(tmp_path: Path) -> None:
    path = _spec(tmp_path, "[jsonl, {type: tensorboard, logdir: runs}]")
    result = CliRunner().invoke(main, ["validate", path])
    assert result.exit_code == 0, result.stderr
    assert f"{path}: ok" in result.stdout


def test_a_tracker_not_installed_here_is_only_a_note(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(name: str) -> None:
        raise missing_library(name, "mlflow")

    monkeypatch.setattr("sweeper.trackers.tracker_set.get_tracker_class", not_installed)
    errors, notes = tracker_problems((TrackerSpec("mlflow"),))
    assert errors == []
    assert notes == [str(missing_library("mlflow", "mlflow"))]
    assert isinstance(missing_library("mlflow", "mlflow"), TrackerNotInstalledError)
    assert "pip install -e '.[mlflow]'" in notes[0]
