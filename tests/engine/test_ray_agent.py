"""The agent on a real local Ray with declared fake GPUs."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import engine_trainers
import optuna
import pytest
from optuna.trial import TrialState

import sweeper
from sweeper.engine.agent import AgentSummary
from sweeper.storage import sweeps
from sweeper.storage.urls import open_storage

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_trainers")]


def _trials(url: str, sweep_id: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=sweep_id, storage=open_storage(url)).trials


def test_half_gpu_trials_pack_two_per_gpu_and_never_share_beyond_their_share(project: Path) -> None:
    out = project / "out"
    out.mkdir()
    url = f"sqlite:///{project / 's.db'}"
    spec = {
        "method": "grid",
        "metric": {"name": "seen", "goal": "maximize"},
        "parameters": {
            "i": {"values": list(range(8))},
            "out": {"value": str(out)},
            "expect": {"value": 8},
        },
        "sweeper": {"resources": {"gpus": 0.5, "cpus": 0.5}},
    }
    sweep_id = sweeper.sweep(spec, storage=url)
    summary = sweeper.agent(sweep_id, function=engine_trainers.record_gpu, storage=url)

    records = [json.loads(p.read_text()) for p in out.glob("*.json")]
    assert len(records) == 8 and summary.complete == 8
    # All eight ran at once on four GPUs: each saw every start before its own wait ended.
    assert all(r["seen"] == 8 for r in records)
    for r in records:
        assert r["cvd"] is not None and len(r["cvd"].split(",")) == 1, r
    # At every trial's start, the trials running on its GPU hold at most one whole GPU together.
    for r in records:
        overlapping = [o for o in records if o["cvd"] == r["cvd"] and o["start"] <= r["start"] < o["end"]]
        assert 0.5 * len(overlapping) <= 1.0, (r, overlapping)
    assert sorted({r["cvd"] for r in records}) == ["0", "1", "2", "3"]


def test_failures_on_ray_end_as_failed_trials_and_the_sweep_finishes(project: Path) -> None:
    url = f"sqlite:///{project / 's.db'}"
    spec = {
        "method": "grid",
        "metric": {"name": "loss"},
        "parameters": {"mode": {"values": ["ok", "raise", "nan", "sleep", "kill"]}},
        "sweeper": {"timeout": 5},
    }
    sweep_id = sweeper.sweep(spec, storage=url)
    summary = sweeper.agent(sweep_id, function=engine_trainers.misbehave, storage=url)

    by_mode = {t.params["mode"]: t for t in _trials(url, sweep_id)}
    assert by_mode["ok"].state == TrialState.COMPLETE, by_mode["ok"].user_attrs
    reasons = {mode: t.user_attrs.get("fail_reason", "") for mode, t in by_mode.items() if mode != "ok"}
    assert all(by_mode[mode].state == TrialState.FAIL for mode in reasons)
    assert reasons["raise"].startswith("ValueError: boom")
    assert "no finite value of loss" in reasons["nan"]
    assert reasons["sleep"].startswith("timeout: trial ran past sweeper.timeout (5 s)")
    assert reasons["kill"].startswith("worker died")
    assert (summary.complete, summary.failed, summary.state) == (1, 4, "finished")


def test_hyperband_prunes_bad_trials_through_the_report_channel(project: Path) -> None:
    url = f"sqlite:///{project / 's.db'}"
    spec = {
        "method": "grid",
        "metric": {"name": "loss"},
        # Steps of 0.1 s: the pruner's answer to a band's report reaches the trial before its end.
        "parameters": {
            "x": {"values": [1.0, 1.1, 4.0, 5.0, 6.0, 7.0]},
            "steps": {"value": 9},
            "step_s": {"value": 0.1},
        },
        "early_terminate": {"type": "hyperband", "min_iter": 3, "eta": 2},
        "sweeper": {"max_concurrent": 1},
    }
    sweep_id = sweeper.sweep(spec, storage=url)
    summary = sweeper.agent(sweep_id, function=engine_trainers.quadratic, storage=url)

    trials = {t.params["x"]: t for t in _trials(url, sweep_id)}
    assert summary.pruned >= 1
    assert trials[1.0].state == TrialState.COMPLETE  # the best run is never stopped
    for t in trials.values():
        if t.state == TrialState.PRUNED:
            # Stopped at a band, long before its last step; its value is the best it logged.
            assert max(t.intermediate_values) < 9
            assert t.value == pytest.approx(min(t.intermediate_values.values()))


def test_hyperband_stops_a_trainer_that_steps_faster_than_the_agent_decides_at_its_band(
    project: Path,
) -> None:
    url = f"sqlite:///{project / 's.db'}"
    sweep_id = sweeper.sweep(engine_trainers.INSTANT_HYPERBAND, storage=url)
    summary = sweeper.agent(sweep_id, function=engine_trainers.quadratic, storage=url)
    assert (summary.complete, summary.pruned) == (2, 4)
    engine_trainers.assert_stopped_at_the_first_band(_trials(url, sweep_id))


def test_cancel_kills_running_trials(project: Path) -> None:
    url = f"sqlite:///{project / 's.db'}"
    started = project / "started"
    started.mkdir()
    spec = {
        "method": "grid",
        "metric": {"name": "loss"},
        "parameters": {
            "i": {"values": [0, 1]},
            "started": {"value": str(started)},
            "release": {"value": str(project / "never")},
        },
    }
    sweep_id = sweeper.sweep(spec, storage=url)
    result: list[AgentSummary] = []
    agent = threading.Thread(
        target=lambda: result.append(
            sweeper.agent(sweep_id, function=engine_trainers.wait_for_file, storage=url)
        )
    )
    agent.start()
    while len(list(started.iterdir())) < 2:
        time.sleep(0.05)
    sweeps.set_state(open_storage(url), sweep_id, "cancelled")
    agent.join(timeout=60)
    assert result and result[0].ended == "sweep cancelled" and result[0].state == "cancelled"
    trials = _trials(url, sweep_id)
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL]
    assert all(t.user_attrs["fail_reason"] == "sweep cancelled" for t in trials)
