"""An agent in its own process (the console script): cancel and Ctrl-C reach an in-process trial."""

from __future__ import annotations

import doctest
import importlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

import sweeper
from sweeper.storage import sweeps
from sweeper.storage.urls import open_storage

WAITER = """
import pathlib
import time


def train(config, trial):
    trial.log({"loss": 1.0})
    pathlib.Path(config["started"]).write_text(str(trial.number))
    time.sleep(300)
    return 0.0
"""


def _start_agent(project: Path, url: str, sweep_id: str) -> subprocess.Popen[str]:
    (project / "waiter.py").write_text(WAITER)
    script = Path(sys.executable).with_name("sweeper")
    return subprocess.Popen(
        [str(script), "agent", sweep_id, "--storage", url, "--executor", "local", "--trainer=waiter:train"],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(path: Path, proc: subprocess.Popen[str]) -> None:
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)


def _sweep(project: Path, url: str, retries: int = 0) -> str:
    spec = {
        "method": "grid",
        "metric": {"name": "loss"},
        "parameters": {"i": {"values": [0, 1]}, "started": {"value": str(project / "started")}},
        "sweeper": {"retries": retries},
    }
    (project / "sweep.yaml").write_text(yaml.safe_dump(spec))
    return sweeper.sweep(project / "sweep.yaml", storage=url)


def test_cancel_interrupts_a_trial_running_in_the_agent_process(project: Path) -> None:
    url = f"sqlite:///{project / 's.db'}"
    sweep_id = _sweep(project, url)
    proc = _start_agent(project, url, sweep_id)
    _wait_for(project / "started", proc)
    sweeps.set_state(open_storage(url), sweep_id, "cancelled")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "sweep cancelled" in out.strip().splitlines()[-1]
    trials = optuna.load_study(study_name=sweep_id, storage=open_storage(url)).trials
    ran = [t for t in trials if t.state != TrialState.WAITING]
    assert [(t.state, t.user_attrs["fail_reason"]) for t in ran] == [(TrialState.FAIL, "sweep cancelled")]


def test_ctrl_c_fails_the_running_trial_and_puts_its_params_back(project: Path) -> None:
    url = f"sqlite:///{project / 's.db'}"
    sweep_id = _sweep(project, url)
    proc = _start_agent(project, url, sweep_id)
    _wait_for(project / "started", proc)
    os.kill(proc.pid, signal.SIGINT)  # the first Ctrl-C only stops new trials (tests/reliability)
    time.sleep(0.5)
    os.kill(proc.pid, signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode != 0
    trials = optuna.load_study(study_name=sweep_id, storage=open_storage(url)).trials
    [failed] = [t for t in trials if t.state == TrialState.FAIL]
    assert failed.user_attrs["fail_reason"] == "agent interrupted"
    waiting = [t for t in trials if t.state == TrialState.WAITING]
    requeued = [t for t in waiting if t.user_attrs.get("retry_of") is not None]
    assert [t.user_attrs["retry_of"] for t in requeued] == [failed.number]
    assert requeued[0].system_attrs["fixed_params"] == failed.params


@pytest.mark.parametrize("module", ["sweeper.worker.trial", "sweeper.engine.executor"])
def test_docstring_examples_run(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
