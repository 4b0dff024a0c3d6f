"""An agent that has left is shown as such at once, not as active until its heartbeat goes stale."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import sweeper
from sweeper.cli import main


def _train(config: dict[str, float], trial: sweeper.Trial) -> float:
    return (config["x"] - 1.0) ** 2


def test_a_finished_agent_is_not_active(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    url = f"journal://{tmp_path / 'journal.log'}"
    spec = {"method": "grid", "metric": {"name": "loss"}, "parameters": {"x": {"values": [0.0, 1.0]}}}
    sweep_id = sweeper.sweep(spec, storage=url)
    summary = sweeper.agent(sweep_id, function=_train, storage=url, executor="local")

    [agent] = sweeper.load(sweep_id, storage=url).agents
    assert agent.id == summary.agent_id
    assert agent.stopped_at is not None and not agent.is_active()
    status = json.loads(CliRunner().invoke(main, ["status", sweep_id, "--storage", url, "--json"]).stdout)
    assert status["agents"][0]["active"] is False
    assert status["agents"][0]["stopped_at"] is not None
