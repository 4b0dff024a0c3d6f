"""Credentials in a trainer's error never reach the storage or the agent's output."""

from __future__ import annotations

import os
from pathlib import Path

import optuna
import pytest
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


def test_mask_url_hides_every_form_of_password() -> None:
    from sweeper.redaction import redact
    from sweeper.storage.urls import mask_url

    cases = {
        "postgres://postgres:se@cret@127.0.0.1/db": "postgres://postgres:***@127.0.0.1/db",
        "postgresql+psycopg2://u:p@ss/w@rd@db.internal:5432/x": "postgresql+psycopg2://u:***@db.internal:5432/x",
        "postgresql://:onlypass@db/x": "postgresql://:***@db/x",
        "mysql://u:p%40ss@db/x?ssl=1": "mysql://u:***@db/x?ssl=1",
        "postgresql://u@db/x?password=hunter2&sslmode=require": "postgresql://u@db/x?password=***&sslmode=require",
        "postgresql://db/x": "postgresql://db/x",
        "journal:///tmp/j.log": "journal:///tmp/j.log",
    }
    for url, masked in cases.items():
        assert mask_url(url) == masked
        assert redact(f"cannot open {url}: refused") == f"cannot open {masked}: refused"


def test_the_storage_url_reaches_neither_trainers_nor_their_children(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sweeper.worker.task import Objective, TrialTask
    from sweeper.worker.trial import execute_trial

    def train(config: dict[str, object], trial: object) -> float:
        import subprocess
        import sys

        child = subprocess.run(
            [sys.executable, "-c", "import os; print(os.environ.get('SWEEPER_STORAGE'))"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert child.stdout.strip() == "None"
        assert "SWEEPER_STORAGE" not in os.environ
        return 1.0

    secret = "postgresql://bob:se@cret@db.internal/x"
    monkeypatch.setenv("SWEEPER_STORAGE", secret)
    task = TrialTask(
        "s", "s", 0, 0, {}, {}, (Objective("loss"),), str(project / "c"), str(project), trainer=train
    )
    outcome = execute_trial(task)
    assert outcome.state == "complete", outcome.fail_reason
    assert os.environ["SWEEPER_STORAGE"] == secret  # the agent's own environment is back
