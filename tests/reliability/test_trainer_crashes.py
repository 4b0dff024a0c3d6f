"""A trainer that takes its process down (``os._exit``, a segfault) or leaves processes behind (``setsid``),
or runs past its timeout: its trial fails with the reason, the agent goes on to the next one, and no
process of the trial is left."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import engine_trainers
import optuna
import pytest
from agent_command import local_agent, with_support
from optuna.trial import TrialState

import sweeper
from sweeper.storage.urls import open_storage

EXITED = "worker died: the trial's process exited with code 0 before the trial ended"
SEGFAULT = "worker died: the trial's process was killed by SIGSEGV (Segmentation fault)"
TIMEOUT = "timeout: trial ran past sweeper.timeout (3 s)"


def _sweep(project: Path, url: str, modes: list[str]) -> str:
    pids = project / "pids"
    pids.mkdir()
    spec = {
        "method": "grid",
        "metric": {"name": "loss"},
        "parameters": {"mode": {"values": modes}, "pids": {"value": str(pids)}},
        "sweeper": {"timeout": 3},
    }
    return sweeper.sweep(spec, storage=url)


def _by_mode(url: str, sweep_id: str) -> dict[str, optuna.trial.FrozenTrial]:
    trials = optuna.load_study(study_name=sweep_id, storage=open_storage(url)).trials
    return {t.params["mode"]: t for t in trials}


def _gone(pid: int, within: float) -> bool:
    """Whether no process runs with this pid (a zombie runs nothing), waiting up to `within` s."""
    deadline = time.monotonic() + within
    while True:
        try:
            with open(f"/proc/{pid}/stat", "rb") as stat:
                state = stat.read().rsplit(b")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state in (b"Z", b"X"):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def _left(project: Path, names: list[str], within: float = 5.0) -> list[str]:
    """The recorded processes still running."""
    pids = {p.name: int(p.read_text()) for p in (project / "pids").iterdir() if p.read_text().isdigit()}
    missing = [name for name in names if name not in pids]
    assert not missing, f"the trainer recorded no pid for {missing}"
    return [f"{name} (pid {pids[name]})" for name in names if not _gone(pids[name], within)]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="setsid processes are found through /proc")
def test_a_local_agent_survives_crashing_trainers_and_leaves_no_process(project: Path) -> None:
    url = f"sqlite:///{project / 's.db'}"
    modes = ["exit0", "segv", "setsid_return", "setsid_exit", "setsid_hang", "ok"]
    sweep_id = _sweep(project, url, modes)
    done = subprocess.run(
        local_agent(sweep_id, url, "engine_trainers:crash"),
        check=False,
        cwd=project,
        env=with_support(),
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stderr
    summary = done.stdout.strip().splitlines()
    assert "6 trials (2 complete, 0 pruned, 4 failed)" in summary[0], done.stdout
    by_mode = _by_mode(url, sweep_id)
    assert by_mode["exit0"].user_attrs["fail_reason"].startswith(EXITED)
    assert by_mode["segv"].user_attrs["fail_reason"] == SEGFAULT
    assert by_mode["setsid_exit"].user_attrs["fail_reason"].startswith(EXITED)
    assert by_mode["setsid_hang"].user_attrs["fail_reason"] == TIMEOUT
    for mode in ("exit0", "segv", "setsid_exit", "setsid_hang"):
        assert by_mode[mode].state == TrialState.FAIL
        assert by_mode[mode].intermediate_values == {1: 2.0}  # what it reported before it died is kept
    assert [by_mode[m].state for m in ("setsid_return", "ok")] == [TrialState.COMPLETE] * 2
    assert not _left(
        project, [f"{m}-self" for m in modes] + ["setsid_return-0", "setsid_exit-0", "setsid_exit-1"]
    )


@pytest.mark.ray
@pytest.mark.usefixtures("ray_trainers")
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="setsid processes are found through /proc")
def test_a_ray_agent_survives_crashing_trainers_and_leaves_no_process(project: Path) -> None:
    url = f"sqlite:///{project / 's.db'}"
    modes = ["exit0", "segv", "setsid_return", "setsid_hang", "ok"]
    sweep_id = _sweep(project, url, modes)
    summary = sweeper.agent(sweep_id, function=engine_trainers.crash, storage=url, max_concurrent=1)

    assert (summary.complete, summary.failed, summary.state) == (2, 3, "finished")
    by_mode = _by_mode(url, sweep_id)
    for mode in ("exit0", "segv"):
        assert by_mode[mode].user_attrs["fail_reason"].startswith("worker died: "), by_mode[mode].user_attrs
    assert by_mode["setsid_hang"].user_attrs["fail_reason"] == TIMEOUT
    assert [by_mode[m].state for m in modes] == [TrialState.FAIL] * 2 + [
        TrialState.COMPLETE,
        TrialState.FAIL,
    ] + [TrialState.COMPLETE]
    # A Ray worker runs on (it is reused) unless its trial took it down or was killed.
    assert not _left(
        project, ["exit0-self", "segv-self", "setsid_hang-self", "setsid_return-0", "setsid_hang-0"]
    )


LEAVES_A_DAEMON = """
import subprocess, sys, sweeper
child = subprocess.Popen(["setsid", "sleep", "600"])  # its own session, and the program's stdout
open(sys.argv[1].split("=", 1)[1] + "/daemon-0", "w").write(str(child.pid))
sweeper.init().log({"loss": 0.5})
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="setsid processes are found through /proc")
@pytest.mark.parametrize("executor", ["local", pytest.param("ray", marks=pytest.mark.ray)])
def test_a_program_trials_setsid_child_ends_with_the_trial(
    project: Path, executor: str, request: pytest.FixtureRequest
) -> None:
    if executor == "ray":
        request.getfixturevalue("ray_session")
    (project / "daemon.py").write_text(LEAVES_A_DAEMON)
    pids = project / "pids"
    pids.mkdir()
    url = f"sqlite:///{project / 's.db'}"
    spec = {
        "method": "grid",
        "program": "daemon.py",
        "metric": {"name": "loss"},
        "parameters": {"pids": {"value": str(pids)}},
    }
    sweep_id = sweeper.sweep(spec, storage=url)
    summary = sweeper.agent(sweep_id, storage=url, executor=executor)  # type: ignore[arg-type]

    assert summary.complete == 1, summary.line()
    assert not _left(project, ["daemon-0"])
