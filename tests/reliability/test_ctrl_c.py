"""Ctrl-C on an agent: once, it starts nothing new and waits; twice, it cancels; nothing stays RUNNING."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import optuna
from agent_command import local_agent
from optuna.trial import TrialState

import sweeper
from sweeper.storage.urls import open_storage

GATED = """
import pathlib
import time


def train(config, trial):
    pathlib.Path(config["started"], str(trial.number)).write_text("")
    while not pathlib.Path(config["release"]).exists():
        time.sleep(0.05)
    return float(config["i"])
"""


def _start(project: Path) -> tuple[str, str, subprocess.Popen[str]]:
    (project / "gated.py").write_text(GATED)
    (project / "started").mkdir()
    url = f"sqlite:///{project / 's.db'}"
    spec = {
        "method": "grid",
        "metric": {"name": "loss"},
        "parameters": {
            "i": {"values": [0, 1, 2]},
            "started": {"value": str(project / "started")},
            "release": {"value": str(project / "release")},
        },
    }
    sweep_id = sweeper.sweep(spec, storage=url)
    command = local_agent(sweep_id, url, "gated:train")
    proc = subprocess.Popen(command, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while not list((project / "started").iterdir()):
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    return url, sweep_id, proc


def _states(url: str, sweep_id: str) -> list[TrialState]:
    return [t.state for t in optuna.load_study(study_name=sweep_id, storage=open_storage(url)).trials]


def test_one_ctrl_c_lets_the_running_trial_finish_and_starts_nothing_more(project: Path) -> None:
    url, sweep_id, proc = _start(project)
    os.kill(proc.pid, signal.SIGINT)
    time.sleep(1.0)  # the agent keeps running its trial meanwhile
    assert proc.poll() is None
    (project / "release").touch()
    out, err = proc.communicate(timeout=60)

    assert proc.returncode == 0, err
    assert "Ctrl-C again cancels them" in err
    assert "interrupted: started no new trials" in out.strip().splitlines()[-1]
    assert _states(url, sweep_id) == [TrialState.COMPLETE, TrialState.WAITING, TrialState.WAITING]


def test_two_ctrl_c_cancel_the_running_trial_and_put_it_back(project: Path) -> None:
    url, sweep_id, proc = _start(project)
    os.kill(proc.pid, signal.SIGINT)
    time.sleep(0.5)
    os.kill(proc.pid, signal.SIGINT)
    proc.communicate(timeout=60)

    assert proc.returncode != 0
    trials = optuna.load_study(study_name=sweep_id, storage=open_storage(url)).trials
    assert TrialState.RUNNING not in [t.state for t in trials]
    [cancelled] = [t for t in trials if t.state == TrialState.FAIL]
    assert cancelled.user_attrs["fail_reason"] == "agent interrupted"
    [again] = [t for t in trials if t.user_attrs.get("retry_of") == cancelled.number]
    assert again.state == TrialState.WAITING and again.system_attrs["fixed_params"] == cancelled.params
