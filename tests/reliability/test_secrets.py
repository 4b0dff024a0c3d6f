"""Credentials in a trainer's error never reach the storage or the agent's output."""

from __future__ import annotations

from pathlib import Path

import optuna
from click.testing import CliRunner

import sweeper
from sweeper.cli import main
from sweeper.storage.urls import open_storage

LEAKY = """
def train(config, trial):
    raise ConnectionError(
        "cannot reach postgresql://bob:hunter2@db.internal/exp with WANDB_API_KEY=abc123secret"
    )
"""


def test_fail_reasons_are_masked_in_the_storage_and_the_output(project: Path) -> None:
    (project / "leaky.py").write_text(LEAKY)
    url = f"sqlite:///{project / 's.db'}"
    spec = {"method": "grid", "metric": {"name": "loss"}, "parameters": {"x": {"values": [1]}}}
    sweep_id = sweeper.sweep(spec, storage=url)

    command = ["agent", sweep_id, "--storage", url, "--executor", "local", "--trainer", "leaky:train"]
    result = CliRunner().invoke(main, [*command, "--json"])

    assert result.exit_code == 0, result.output
    [trial] = optuna.load_study(study_name=sweep_id, storage=open_storage(url)).trials
    reason = trial.user_attrs["fail_reason"]
    assert reason.startswith("ConnectionError: cannot reach postgresql://bob:***@db.internal/exp")
    assert "WANDB_API_KEY=***" in reason
    shown = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert "bob:***@" in shown
    for secret in ("hunter2", "abc123secret"):
        assert secret not in reason and secret not in shown
