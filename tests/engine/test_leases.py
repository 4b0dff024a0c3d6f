"""Dead agents: stale trial leases are failed as "agent lost" and re-queued, once, on every storage."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

import sweeper
from sweeper.engine import leases
from sweeper.errors import UsageError
from sweeper.storage import queue, sweeps
from sweeper.storage.urls import open_storage
from sweeper.worker.task import Failure

GRID = {
    "method": "grid",
    "metric": {"name": "loss"},
    "parameters": {"x": {"values": [0, 1, 2, 3, 4, 5]}},
}

SLOW = """
import pathlib
import time


def train(config, trial):
    marks = pathlib.Path(config["marks"])
    marks.mkdir(exist_ok=True)
    checkpoint = trial.checkpoint_dir / "progress"
    resumed = checkpoint.exists()
    checkpoint.write_text("started")
    (marks / f"{trial.number}-{trial.attempt}-{int(resumed)}").write_text("")
    time.sleep(float(config["sleep"]))
    return float(config["x"])
"""


def _url(kind: str, project: Path, request: pytest.FixtureRequest) -> str:
    if kind == "journal":
        return f"journal://{project / 'j.log'}"
    if kind == "sqlite":
        return f"sqlite:///{project / 's.db'}"
    return str(request.getfixturevalue("postgres_url"))


def _frozen(attrs: dict[str, int]) -> FrozenTrial:
    return optuna.trial.create_trial(state=TrialState.FAIL, user_attrs=attrs)


def test_the_requeue_rule() -> None:
    # Lost to the infrastructure: re-queued whatever retries says, up to MAX_LOST per point.
    assert leases.should_requeue(_frozen({"attempt": 0}), Failure.AGENT_LOST, retries=0)
    assert leases.should_requeue(_frozen({"attempt": 2, "lost": 2}), Failure.NODE_LOST, retries=0)
    assert not leases.should_requeue(
        _frozen({"attempt": 3, "lost": leases.MAX_LOST}), Failure.AGENT_LOST, retries=5
    )
    # Failed by itself: only within retries, and lost attempts do not use them up.
    assert not leases.should_requeue(_frozen({"attempt": 0}), Failure.TRAINER, retries=0)
    assert leases.should_requeue(_frozen({"attempt": 2, "lost": 2}), Failure.TRAINER, retries=1)
    assert not leases.should_requeue(_frozen({"attempt": 1}), Failure.TRAINER, retries=1)


def test_lease_policy_is_validated() -> None:
    expected = "renew interval must be < the grace period, got renew 5 s, grace 2 s"
    with pytest.raises(UsageError, match=expected):
        leases.LeasePolicy(grace_s=2, renew_s=5)
    with pytest.raises(UsageError, match="must be > 0"):
        leases.LeasePolicy(grace_s=0, renew_s=-1)


@pytest.mark.parametrize("kind", ["journal", "sqlite", "postgresql"])
def test_two_watchers_of_a_dead_agents_trial_requeue_it_once(
    kind: str, project: Path, request: pytest.FixtureRequest
) -> None:
    url = _url(kind, project, request)
    sweep_id = sweeper.sweep(GRID, storage=url)
    storage = open_storage(url)
    study = sweeps.load_study(storage, sweep_id)
    # A dead agent: it popped a grid point and took its lease, then renewed nothing (it died before
    # its start write: no params stored, only the grid point its queue entry carried).
    dead = leases.LeaseKeeper(study, "dead-agent", leases.LeasePolicy(grace_s=0.3, renew_s=0.1), retries=0)
    trial = queue.ask_trial(study, sweeper.load_spec(GRID).space.distributions(), sweeper.load_spec(GRID))
    assert trial is not None
    dead.hold(trial._trial_id)

    policy = leases.LeasePolicy(grace_s=0.3, renew_s=0.1)
    watchers = [
        leases.LeaseKeeper(sweeps.load_study(open_storage(url), sweep_id), f"w{i}", policy, retries=0)
        for i in range(4)
    ]
    reaped: list[int] = []
    lock = threading.Lock()

    def watch(keeper: leases.LeaseKeeper) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            got = keeper.reap()
            with lock:
                reaped.extend(got)
            if not keeper.others_running():
                return
            time.sleep(0.05)

    threads = [threading.Thread(target=watch, args=(w,)) for w in watchers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert reaped == [trial.number]
    trials = sweeps.load_study(open_storage(url), sweep_id).trials
    lost = trials[trial.number]
    assert lost.state == TrialState.FAIL
    assert lost.user_attrs["fail_reason"].startswith("agent lost: agent dead-agent renewed no lease")
    retries = [t for t in trials if t.user_attrs.get("retry_of") == trial.number]
    assert len(retries) == 1
    assert retries[0].state == TrialState.WAITING
    assert lost.params == {}
    assert retries[0].system_attrs["fixed_params"] == trial.params == {"x": trial.params["x"]}
    assert (retries[0].user_attrs["attempt"], retries[0].user_attrs["lost"]) == (1, 1)


def test_a_live_agent_keeps_its_leases(project: Path) -> None:
    url = f"journal://{project / 'j.log'}"
    sweep_id = sweeper.sweep(GRID, storage=url)
    study = sweeps.load_study(open_storage(url), sweep_id)
    policy = leases.LeasePolicy(grace_s=0.5, renew_s=0.1)
    owner = leases.LeaseKeeper(study, "owner", policy, retries=0)
    trial = queue.ask_trial(study, sweeper.load_spec(GRID).space.distributions(), sweeper.load_spec(GRID))
    assert trial is not None
    owner.hold(trial._trial_id)
    owner.start()
    watcher = leases.LeaseKeeper(sweeps.load_study(open_storage(url), sweep_id), "w", policy, retries=0)
    try:
        deadline = time.monotonic() + 2.0  # four grace periods
        while time.monotonic() < deadline:
            assert watcher.reap() == []
            time.sleep(0.1)
    finally:
        # Closing with a reason hands the trial back: nothing the agent ran stays RUNNING.
        assert owner.close(Failure.AGENT_STOPPED) == [trial._trial_id]
    frozen = open_storage(url).get_trial(trial._trial_id)
    assert frozen.state == TrialState.FAIL
    assert frozen.user_attrs["fail_reason"] == Failure.AGENT_STOPPED.value


def _start_agent(project: Path, url: str, sweep_id: str) -> subprocess.Popen[str]:
    script = Path(sys.executable).with_name("sweeper")
    command = [str(script), "agent", sweep_id, "--storage", url, "--executor", "local"]
    command += ["--trainer", "slow:train", "--lease-grace", "2", "--lease-renew", "0.5"]
    return subprocess.Popen(command, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("kind", ["journal", "postgresql"])
def test_sigkilled_agent_then_a_new_one_every_grid_point_completes_once(
    kind: str, project: Path, request: pytest.FixtureRequest
) -> None:
    url = _url(kind, project, request)
    (project / "slow.py").write_text(SLOW)
    marks = project / "marks"
    spec = {
        **GRID,
        "parameters": {**GRID["parameters"], "marks": {"value": str(marks)}, "sleep": {"value": 0.6}},
    }
    sweep_id = sweeper.sweep(spec, storage=url)
    proc = _start_agent(project, url, sweep_id)
    storage = open_storage(url)
    try:
        # Kill it while its second trial runs: one trial done, one RUNNING, four waiting. The first
        # trial's end is written just after the second starts (its slot is refilled first), so the
        # kill waits for that write too: a kill between them leaves two trials for the leases.
        while (
            not marks.exists()
            or len(list(marks.iterdir())) < 2
            or not [t for t in sweeps.load_study(storage, sweep_id).trials if t.state == TrialState.COMPLETE]
        ):
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    running = [t for t in sweeps.load_study(storage, sweep_id).trials if t.state == TrialState.RUNNING]
    assert len(running) == 1  # the dead agent's trial, until some agent reaps it

    summary = sweeper.agent(
        sweep_id,
        trainer="slow:train",
        storage=url,
        executor="local",
        lease_grace_s=2.0,
        lease_renew_s=0.5,
    )

    trials = sweeps.load_study(open_storage(url), sweep_id).trials
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert sorted(t.params["x"] for t in complete) == [0, 1, 2, 3, 4, 5]  # every point, none twice
    lost = trials[running[0].number]
    assert lost.state == TrialState.FAIL
    assert lost.user_attrs["fail_reason"].startswith("agent lost")
    rerun = next(t for t in complete if t.user_attrs.get("retry_of") == lost.number)
    assert rerun.params == lost.params and rerun.user_attrs["lost"] == 1
    # The re-run found what the lost attempt left in the trial's checkpoint dir.
    assert (marks / f"{rerun.number}-1-1").exists()
    assert summary.state == "finished" and summary.complete == 5
