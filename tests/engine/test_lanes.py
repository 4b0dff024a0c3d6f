"""Lanes: Ray tasks that each run one trial after another, on a real local Ray with fake GPUs."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from multiprocessing import Pipe
from pathlib import Path
from typing import Any

import engine_trainers
import pytest
from optuna.trial import TrialState

import sweeper
from sweeper.engine import report_server
from sweeper.engine.agent import AgentSummary
from sweeper.engine.lanes import LanePool
from sweeper.engine.report_channel import handshake
from sweeper.engine.watch import STATE_POLL_S
from sweeper.storage import sweeps
from sweeper.storage.urls import open_storage
from sweeper.worker.task import Objective, TrialOutcome, TrialTask


def _task(trial_id: int) -> TrialTask:
    return TrialTask(
        sweep_id="abcdefgh",
        sweep_name="lanes",
        trial_id=trial_id,
        number=trial_id,
        params={},
        config={},
        objectives=(Objective("loss"),),
        checkpoint_dir="/nonexistent",
        sweep_dir="/nonexistent",
        trainer="m:f",
    )


class TestPool:
    """The pool's bookkeeping, with pipes standing in for the lanes' connections (no Ray)."""

    def _pool(self) -> tuple[LanePool, list[tuple[TrialTask | None, int]]]:
        submitted: list[tuple[TrialTask | None, int]] = []

        def submit(first: TrialTask | None, lane: int, join: bool) -> str:
            assert join == pool.joins
            submitted.append((first, lane))
            return f"ref-{lane}"

        pool = LanePool(submit)
        return pool, submitted

    def test_a_trial_goes_to_an_idle_lane_that_joined_else_to_a_new_lane(self) -> None:
        pool, submitted = self._pool()
        pool.start(_task(1))
        assert [(t.trial_id, lane) for t, lane in submitted] == [(1, 0)]
        agent_end, lane_end = Pipe()
        pool.joined(0, agent_end)
        pool.start(_task(2))  # lane 0 still runs trial 1: a new lane
        assert [(t.trial_id, lane) for t, lane in submitted] == [(1, 0), (2, 1)]

        outcome = TrialOutcome("complete", values=(1.0,))
        pool.handed_back(0, 1, outcome)
        assert pool._ended.get_nowait() == (_task(1), outcome)  # what the next wait returns
        pool.start(_task(3))  # lane 0 is idle and joined: it gets trial 3 over its connection
        kind, (trial_id, payload) = lane_end.recv()
        assert (kind, trial_id, len(submitted)) == ("run", 3, 2)
        assert isinstance(payload, bytes)

    def test_a_lane_offering_to_leave_goes_only_when_no_trial_is_on_its_way(self) -> None:
        pool, submitted = self._pool()
        pool.start(_task(1))
        agent_end, lane_end = Pipe()
        pool.joined(0, agent_end)
        pool.handed_back(0, 1, TrialOutcome("complete", values=(1.0,)))
        pool.start(_task(2))  # sent as the lane offers to leave: the lane runs it
        pool.leaving(0, agent_end)
        assert lane_end.recv()[0] == "run"
        assert not lane_end.poll(0.1)  # no exit
        pool.handed_back(0, 2, TrialOutcome("complete", values=(1.0,)))
        pool.leaving(0, agent_end)  # idle now: it goes
        assert lane_end.recv() == ("exit", None)
        pool.start(_task(3))  # never to the lane that left
        assert [lane for _, lane in submitted] == [0, 1]
        assert not lane_end.poll(0.1)

    def test_a_trial_given_to_a_lane_still_joining_goes_to_it_when_it_joins(self) -> None:
        pool, submitted = self._pool()
        pool.prestart(2)
        assert [(first, lane) for first, lane in submitted] == [(None, 0), (None, 1)]
        pool.start(_task(1))  # no lane joined yet: it waits for one, no new lane
        pool.start(_task(2))
        pool.start(_task(3))  # both joining lanes hold a trial: a lane of its own
        assert [(None if t is None else t.trial_id, lane) for t, lane in submitted][2:] == [(3, 2)]
        agent_end, lane_end = Pipe()
        pool.joined(1, agent_end)
        kind, (trial_id, _) = lane_end.recv()
        assert (kind, trial_id) == ("run", 2)

    def test_a_trial_waiting_for_its_lane_to_join_is_cancelled_without_starting(self) -> None:
        pool, _ = self._pool()
        pool.prestart(1)
        pool.start(_task(1))
        assert pool.kill(1)
        task, error = pool._ended.get_nowait()
        assert task.trial_id == 1 and isinstance(error, RuntimeError)
        agent_end, lane_end = Pipe()
        pool.joined(0, agent_end)  # the lane joins later: nothing is sent to it
        assert not lane_end.poll(0.1)

    def test_once_a_lane_could_not_join_trials_wait_for_no_joining_lane(self) -> None:
        pool, submitted = self._pool()
        pool.prestart(1)
        pool.joins = False  # as the pool sets it when a lane ends without having joined
        pool.start(_task(1))  # a lane of its own, told not to try (see submit's check)
        assert [(None if t is None else t.trial_id, lane) for t, lane in submitted] == [(None, 0), (1, 1)]

    def test_an_unknown_lane_offering_to_leave_is_let_go(self) -> None:
        pool, _ = self._pool()
        agent_end, lane_end = Pipe()
        pool.leaving(7, agent_end)
        assert lane_end.recv() == ("exit", None)

    def test_an_outcome_for_a_trial_the_lane_does_not_hold_is_ignored(self) -> None:
        pool, _ = self._pool()
        pool.start(_task(1))
        agent_end, _lane_end = Pipe()
        pool.joined(0, agent_end)
        pool.handed_back(0, 99, TrialOutcome("complete", values=(1.0,)))
        pool.handed_back(5, 1, TrialOutcome("complete", values=(1.0,)))
        assert pool._ended.empty()


@pytest.mark.ray
@pytest.mark.usefixtures("ray_trainers")
def test_trials_run_one_after_another_in_their_lanes(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    connections = Counter[bool]()

    def counted(sock: Any, authkey: bytes, *, accepting: bool) -> Any:
        connections[accepting] += 1
        return handshake(sock, authkey, accepting=accepting)

    monkeypatch.setattr(report_server, "handshake", counted)  # the agent's side of each connect
    out = project / "out"
    out.mkdir()
    url = f"sqlite:///{project / 's.db'}"
    spec = {
        "method": "grid",
        "metric": {"name": "loss"},
        "parameters": {"i": {"values": list(range(8))}, "out": {"value": str(out)}},
        "sweeper": {"resources": {"gpus": 1}},
    }
    sweep_id = sweeper.sweep(spec, storage=url)
    summary = sweeper.agent(sweep_id, function=engine_trainers.lane_witness, storage=url, max_concurrent=2)

    assert summary.complete == 8
    seen = [json.loads(p.read_text()) for p in out.glob("*.json")]
    by_task = Counter(s["task"] for s in seen)
    # Two lanes at most (one per slot), each a single Ray task that ran several trials.
    assert len(by_task) <= 2 and max(by_task.values()) >= 4, by_task
    for task in by_task:  # a lane keeps its process and its GPU from one trial to the next
        assert len({(s["pid"], s["gpus"]) for s in seen if s["task"] == task}) == 1
    # Every trial's reports went over its lane's connection: one connect and key check a lane.
    assert connections == {True: len(by_task)}
    trials = open_storage(url).get_all_trials(sweeps.get_sweep(open_storage(url), sweep_id).study_id)
    assert [t.intermediate_values for t in trials] == [{s: i + s for s in range(3)} for i in range(8)]


@pytest.mark.ray
@pytest.mark.usefixtures("ray_trainers")
def test_an_idle_lane_leaves_and_gives_its_gpu_back_while_the_sweep_is_paused(project: Path) -> None:
    import ray

    url = f"sqlite:///{project / 's.db'}"
    started, release = project / "started", project / "release"
    started.mkdir()
    spec = {
        "method": "grid",
        "metric": {"name": "loss"},
        "parameters": {
            "i": {"values": [0, 1, 2]},
            "started": {"value": str(started)},
            "release": {"value": str(release)},
        },
        "sweeper": {"resources": {"gpus": 1}},
    }
    sweep_id = sweeper.sweep(spec, storage=url)
    result: list[AgentSummary] = []
    agent = threading.Thread(
        target=lambda: result.append(
            sweeper.agent(sweep_id, function=engine_trainers.wait_for_file, storage=url, max_concurrent=1)
        )
    )
    agent.start()
    try:
        _until(lambda: len(list(started.iterdir())) == 1, "the first trial to start")
        sweeps.set_state(open_storage(url), sweep_id, "paused")
        time.sleep(3 * STATE_POLL_S)  # the agent polls the sweep's state
        release.write_text("go")  # the first trial ends; the paused sweep starts no other
        gpus = ray.cluster_resources()["GPU"]
        _until(lambda: ray.available_resources().get("GPU", 0) == gpus, "the GPU back")
        assert len(list(started.iterdir())) < 3 and agent.is_alive()
    finally:
        sweeps.set_state(open_storage(url), sweep_id, "running")
        agent.join(timeout=60)
    assert result and result[0].complete == 3
    states = [t.state for t in sweeps.load_study(open_storage(url), sweep_id).trials]
    assert states == [TrialState.COMPLETE] * 3


def _until(check: Any, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.ray
@pytest.mark.usefixtures("ray_session")
def test_a_lane_per_slot_starts_with_the_run_but_no_more_than_its_count(journal_url: str) -> None:
    import optuna

    from sweeper.engine.executor import RayExecutor
    from sweeper.engine.judge import PruningJudge
    from sweeper.spec.model import Resources

    study = optuna.create_study(storage=open_storage(journal_url))
    judge = PruningJudge(study, optuna.pruners.NopPruner())
    for count, lanes in ((None, 4), (2, 2)):  # the session's Ray has 4 CPUs
        executor = RayExecutor(Resources(cpus=1), judge, count=count)
        try:
            assert executor.slots() == 4 and executor._lanes.size == lanes
        finally:
            executor.close()
