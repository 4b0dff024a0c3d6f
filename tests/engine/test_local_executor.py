"""The local executor's trial processes: stopped however they behave, gone with the agent, apart from it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import engine_trainers
import optuna
import pytest
from agent_command import local_agent, with_support
from optuna.trial import TrialState

import sweeper
from sweeper.storage.urls import open_storage
from sweeper.worker import forked, zygote

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pids are checked in /proc")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in (b"Z", b"X")


def _wait_gone(pids: list[int], within: float = 10.0) -> list[int]:
    deadline = time.monotonic() + within
    while (alive := [pid for pid in pids if _alive(pid)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive


def _sweep(project: Path, url: str, modes: list[str], timeout: float | None = None) -> str:
    (project / "pids").mkdir()
    spec: dict[str, object] = {
        "method": "grid",
        "metric": {"name": "loss"},
        "parameters": {"mode": {"values": modes}, "pids": {"value": str(project / "pids")}},
    }
    if timeout is not None:
        spec["sweeper"] = {"timeout": timeout}
    return sweeper.sweep(spec, storage=url)


def _pid(project: Path, name: str) -> int:
    path = project / "pids" / name
    while not (path.exists() and path.read_text()):
        time.sleep(0.05)
    return int(path.read_text())


def test_a_trainer_deaf_to_its_timeout_is_killed_and_keyboard_interrupt_fails_only_its_trial(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(forked, "KILL_GRACE_S", 0.5)  # read by the supervisor, forked after this
    url = f"sqlite:///{project / 's.db'}"
    sweep_id = _sweep(project, url, ["deaf", "keyboard_interrupt", "ok"], timeout=1)
    summary = sweeper.agent(sweep_id, function=engine_trainers.crash, storage=url, executor="local")

    trials = {
        t.params["mode"]: t for t in optuna.load_study(study_name=sweep_id, storage=open_storage(url)).trials
    }
    assert trials["deaf"].user_attrs["fail_reason"] == "timeout: trial ran past sweeper.timeout (1 s)"
    assert trials["keyboard_interrupt"].user_attrs["fail_reason"].startswith("KeyboardInterrupt")
    assert trials["ok"].state == TrialState.COMPLETE
    assert (summary.complete, summary.failed) == (1, 2)
    assert not _wait_gone([_pid(project, f"{mode}-{who}") for mode in trials for who in ("self", "parent")])


def test_a_trainer_closure_runs_in_its_own_process(project: Path) -> None:
    url = f"sqlite:///{project / 's.db'}"
    seen: list[int] = []

    def train(config: dict[str, object], trial: sweeper.Trial) -> float:  # a closure: pickled by value
        seen.append(os.getpid())
        (project / "pid").write_text(str(os.getpid()))
        return 0.5

    sweep_id = sweeper.sweep(
        {"method": "grid", "metric": {"name": "loss"}, "parameters": {"x": {"value": 1}}}, storage=url
    )
    summary = sweeper.agent(sweep_id, function=train, storage=url, executor="local")

    assert summary.complete == 1
    assert int((project / "pid").read_text()) != os.getpid()
    assert seen == []  # what the trainer changed stayed in its process


# An agent whose process already ran PyTorch's OpenMP pool (a notebook that trained a model, W&B's
# tutorial run twice): a trial forked from that process would hang at its first parallel operation.
OPENMP_AGENT = """
import sys, torch
import sweeper

def train(config, trial):
    x = torch.randn(400, 400)
    for step in range(3):
        trial.log({"loss": float((x @ x).abs().mean()) + step}, step=step)
    return float((x @ x).abs().mean())

(torch.randn(400, 400) @ torch.randn(400, 400)).sum()  # starts the pool in the agent's process
url = sys.argv[1]
spec = {"method": "grid", "metric": {"name": "loss"}, "parameters": {"x": {"values": [1, 2]}}}
summary = sweeper.agent(sweeper.sweep(spec, storage=url), function=train, storage=url, executor="local")
print("complete", summary.complete)
"""


def test_trials_run_torch_after_the_agents_process_started_its_thread_pool(project: Path) -> None:
    (project / "agent.py").write_text(OPENMP_AGENT)
    done = subprocess.run(
        [sys.executable, "agent.py", f"sqlite:///{project / 's.db'}"],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
        timeout=240,  # a hang, not a slow machine: the two trials take a second or two
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "complete 2"


def test_a_trial_sees_the_agents_environment_and_directory_as_they_are_when_it_starts(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{project / 's.db'}"
    out = project / "where.json"
    spec = {"method": "grid", "metric": {"name": "loss"}, "parameters": {"out": {"value": str(out)}}}
    first = sweeper.sweep(spec, storage=url)
    sweeper.agent(first, function=engine_trainers.where, storage=url, executor="local")
    # The process trials are forked from is started by now; what changes after still reaches them.
    (project / "elsewhere").mkdir()
    monkeypatch.chdir(project / "elsewhere")
    monkeypatch.setenv("SWEEPER_TEST_MARK", "set after the first agent")
    sweep_id = sweeper.sweep(spec, storage=url)
    sweeper.agent(sweep_id, function=engine_trainers.where, storage=url, executor="local")
    (trial,) = optuna.load_study(study_name=sweep_id, storage=open_storage(url)).trials
    assert trial.state == TrialState.COMPLETE, trial.user_attrs.get("fail_reason")
    seen = json.loads(out.read_text())
    assert seen["mark"] == "set after the first agent"
    # The trial's own directory, under the agent's directory of the moment.
    assert Path(seen["cwd"]).resolve().is_relative_to((project / "elsewhere").resolve())


def test_libraries_a_trial_imported_are_loaded_before_the_next_trials_start(project: Path) -> None:
    url = f"sqlite:///{project / 's.db'}"
    spec = {
        "method": "grid",
        "metric": {"name": "loss"},
        "parameters": {"x": {"values": [1, 2, 3]}, "out": {"value": str(project)}},
    }
    zygote.reset()  # a zygote that has preloaded nothing yet
    summary = sweeper.agent(
        sweeper.sweep(spec, storage=url), function=engine_trainers.preloaded, storage=url, executor="local"
    )
    assert summary.complete == 3
    seen = [json.loads((project / f"{x}.json").read_text()) for x in (1, 2, 3)]
    assert [s["sortedcontainers"] for s in seen] == [False, True, True]  # the first trial's import, once
    assert [s["counting"] for s in seen] == [False, False, False]  # the project's code: fresh each trial


def test_the_zygote_fills_the_caches_a_trial_start_reads_for_the_trials_import_path(tmp_path: Path) -> None:
    import pickle

    from sweeper.trackers import environment, registry

    registry.scan_entry_points.cache_clear()
    environment._package_versions.cache_clear()
    path = [*sys.path, str(tmp_path)]  # the trial's path differs from this process's
    saved = list(sys.path)
    zygote._warm(pickle.dumps((dict(os.environ), os.getcwd(), path, b"the task, never unpickled")))
    assert sys.path == saved
    assert registry.scan_entry_points.cache_info().misses == 1
    assert environment._package_versions.cache_info().currsize == 1
    sys.path[:] = path  # as in a trial forked from the zygote: its scan is a cache hit
    try:
        assert "jsonl" in registry.available_trackers()
    finally:
        sys.path[:] = saved
    assert registry.scan_entry_points.cache_info().misses == 1


def test_sweeper_modules_and_installed_libraries_are_preloaded_not_the_projects() -> None:
    import counting  # noqa: F401 - a project module (tests/support)
    import sortedcontainers  # noqa: F401 - an installed library

    imported = {"sweeper.trackers.jsonl", "sortedcontainers", "sortedcontainers.sortedlist", "counting"}
    assert sorted(zygote.installed_libraries(imported)) == ["sortedcontainers", "sweeper.trackers.jsonl"]


def test_a_trainer_that_cannot_be_pickled_runs_forked_from_the_agent_with_a_warning(
    project: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{project / 's.db'}"
    monkeypatch.setattr(forked, "_warned_fork", False)  # warned once a process: maybe by an earlier test
    lock = threading.Lock()

    def train(config: dict[str, object], trial: sweeper.Trial) -> float:  # closes over a lock
        with lock:
            return 0.25

    spec = {"method": "grid", "metric": {"name": "loss"}, "parameters": {"x": {"values": [1]}}}
    summary = sweeper.agent(sweeper.sweep(spec, storage=url), function=train, storage=url, executor="local")
    assert summary.complete == 1
    (warning,) = [r.getMessage() for r in caplog.records if "forked from the agent" in r.getMessage()]
    assert "cannot be pickled" in warning and "OpenMP" in warning


def test_a_killed_agent_takes_its_trial_and_what_it_started_along(project: Path) -> None:
    url = f"sqlite:///{project / 's.db'}"
    sweep_id = _sweep(project, url, ["setsid_hang"])
    agent = subprocess.Popen(
        local_agent(sweep_id, url, "engine_trainers:crash"),
        cwd=project,
        env=with_support(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        pids = [_pid(project, name) for name in ("setsid_hang-self", "setsid_hang-parent", "setsid_hang-0")]
        assert all(_alive(pid) for pid in pids)
        agent.send_signal(signal.SIGKILL)
        agent.wait()
        assert not _wait_gone(pids)
    finally:
        agent.kill()
        agent.wait()
