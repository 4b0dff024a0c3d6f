"""A flapping machine: trials failing at once, again and again, make the agent back off and stop."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

import sweeper
from sweeper.engine.flapping import FlapGuard, FlapPolicy
from sweeper.storage.urls import open_storage
from sweeper.worker.task import Failure, TrialOutcome


def _failed(duration_s: float, reason: str, failure: Failure = Failure.TRAINER) -> TrialOutcome:
    return TrialOutcome.failed(failure, reason, duration_s=duration_s)


def _broken_gpu(config: dict[str, Any], trial: Any) -> float:
    raise RuntimeError("CUDA error: no CUDA-capable device is detected")


def test_an_agent_on_a_broken_machine_backs_off_then_stops_with_the_reason(project: Path) -> None:
    url = f"sqlite:///{project / 's.db'}"
    spec = {"method": "grid", "metric": {"name": "loss"}, "parameters": {"x": {"values": list(range(20))}}}
    sweep_id = sweeper.sweep(spec, storage=url)
    policy = FlapPolicy(streak=3, backoff_s=0.2, max_backoffs=1)
    summary = sweeper.agent(sweep_id, function=_broken_gpu, storage=url, executor="local", flap_policy=policy)

    assert summary.ended.startswith("stopped: 4 trials in a row failed within 10 s of starting")
    assert "(last: RuntimeError: CUDA error: no CUDA-capable device is detected)" in summary.ended
    assert summary.state == "running"  # the sweep goes on for healthy agents
    trials = optuna.load_study(study_name=sweep_id, storage=open_storage(url)).trials
    assert sum(t.state == TrialState.FAIL for t in trials) == 4  # three, a back-off, one probe
    assert sum(t.state == TrialState.WAITING for t in trials) == 16  # the rest left for others


def test_a_success_clears_the_record_and_slow_or_lost_failures_do_not_count() -> None:
    now = [0.0]
    guard = FlapGuard(FlapPolicy(streak=2, quick_s=5, backoff_s=10), clock=lambda: now[0])
    guard.record(_failed(1.0, "ValueError: x"))
    guard.record(TrialOutcome("complete", duration_s=1.0))
    guard.record(_failed(1.0, "ValueError: x"))
    guard.record(_failed(60.0, "ValueError: slow"))  # slow: the machine ran it for a minute
    guard.record(_failed(0.1, "agent lost: agent a renewed no lease for 60 s", Failure.AGENT_LOST))
    guard.record(_failed(0.1, "timeout: trial ran past sweeper.timeout (1 s)", Failure.TIMEOUT))
    assert not guard.paused() and guard.verdict() is None
    guard.record(_failed(1.0, "ValueError: x"))
    guard.record(_failed(1.0, "ValueError: x"))
    assert guard.paused()
    now[0] = 10.5  # the back-off is over
    assert not guard.paused() and guard.verdict() is None
