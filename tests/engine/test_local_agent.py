"""The agent loop with the in-process executor on real Optuna storages."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import engine_trainers
import optuna
import pytest
from optuna.trial import TrialState

import sweeper
from sweeper.errors import TrainerError, UsageError
from sweeper.storage import batch, sweeps
from sweeper.storage.urls import open_storage


def _trials(url: str, sweep_id: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=sweep_id, storage=open_storage(url)).trials


def test_grid_sweep_runs_every_point_once_and_finishes(project: Path) -> None:
    url = f"sqlite:///{project / 's.db'}"
    spec = {
        "method": "grid",
        "metric": {"name": "loss", "goal": "minimize"},
        "parameters": {"x": {"values": [0.0, 1.0, 2.0]}, "opt": {"parameters": {"name": {"value": "sgd"}}}},
    }
    sweep_id = sweeper.sweep(spec, storage=url)
    summary = sweeper.agent(sweep_id, function=engine_trainers.quadratic, storage=url, executor="local")

    trials = _trials(url, sweep_id)
    assert sorted(t.params["x"] for t in trials) == [0.0, 1.0, 2.0]
    assert all(t.state == TrialState.COMPLETE for t in trials)
    for t in trials:
        assert t.user_attrs["config"] == {"x": t.params["x"], "opt": {"name": "sgd"}}
        # W&B's objective: the best value logged (the last step here), at steps 1..3.
        assert t.values == [pytest.approx((t.params["x"] - 1.0) ** 2 + 1.0 / 3)]
        assert sorted(t.intermediate_values) == [1, 2, 3]
        assert t.user_attrs["attempt"] == 0
        assert t.user_attrs["metrics"]["step_seen"] == 3
        assert "jsonl" in t.user_attrs["tracker_runs"]
    assert summary.complete == 3 and summary.failed == 0
    assert summary.best_value == pytest.approx(1.0 / 3)
    assert summary.state == "finished"
    assert sweeps.get_sweep(open_storage(url), sweep_id).state == "finished"


def test_trainer_failures_are_failed_trials_with_reasons(project: Path) -> None:
    url = f"journal://{project / 'j.log'}"
    spec = {
        "method": "grid",
        "metric": {"name": "loss"},
        "parameters": {"mode": {"values": ["ok", "raise", "nan", "silent", "sleep"]}},
        "sweeper": {"timeout": 1},
    }
    sweep_id = sweeper.sweep(spec, storage=url)
    summary = sweeper.agent(sweep_id, function=engine_trainers.misbehave, storage=url, executor="local")

    by_mode = {t.params["mode"]: t for t in _trials(url, sweep_id)}
    assert by_mode["ok"].state == TrialState.COMPLETE
    for mode in ("raise", "nan", "silent", "sleep"):
        assert by_mode[mode].state == TrialState.FAIL, mode
    assert by_mode["raise"].user_attrs["fail_reason"].startswith("ValueError: boom in trial")
    assert "no finite value of loss" in by_mode["nan"].user_attrs["fail_reason"]
    assert "no finite value of loss" in by_mode["silent"].user_attrs["fail_reason"]
    assert "timeout" in by_mode["sleep"].user_attrs["fail_reason"]
    assert (summary.complete, summary.failed, summary.state) == (1, 4, "finished")


def test_retry_reruns_same_params_with_the_same_checkpoint_dir(project: Path) -> None:
    url = f"sqlite:///{project / 's.db'}"
    spec = {
        "method": "random",
        "run_cap": 2,
        "metric": {"name": "loss"},
        "parameters": {"x": {"min": 0.0, "max": 1.0}},
        "sweeper": {"retries": 1, "seed": 3},
    }
    sweep_id = sweeper.sweep(spec, storage=url)
    summary = sweeper.agent(sweep_id, function=engine_trainers.flaky, storage=url, executor="local")

    trials = _trials(url, sweep_id)
    failed = [t for t in trials if t.state == TrialState.FAIL]
    retries = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(failed) == 2 and len(retries) == 2  # retries ride on top of run_cap
    for retry in retries:
        original = next(t for t in failed if t.number == retry.user_attrs["retry_of"])
        assert retry.params == original.params
        assert retry.user_attrs["attempt"] == 1
        # The retry read what the first attempt left in the shared checkpoint dir.
        assert retry.value == pytest.approx(original.number + original.params["x"])
    assert summary.ran == 4


def test_count_limits_the_agent_and_a_second_agent_finishes_the_run_cap(project: Path) -> None:
    url = f"sqlite:///{project / 's.db'}"
    spec = {
        "method": "random",
        "run_cap": 5,
        "metric": {"name": "loss"},
        "parameters": {"x": {"min": 0, "max": 9}},
    }
    sweep_id = sweeper.sweep(spec, storage=url)
    first = sweeper.agent(
        sweep_id, function=engine_trainers.quadratic, count=2, storage=url, executor="local"
    )
    assert first.ran == 2 and first.state == "running"
    second = sweeper.agent(sweep_id, function=engine_trainers.quadratic, storage=url, executor="local")
    assert second.ran == 3 and second.state == "finished"
    assert len(_trials(url, sweep_id)) == 5


def test_metric_target_ends_the_sweep(project: Path) -> None:
    url = f"sqlite:///{project / 's.db'}"
    spec = {
        "method": "grid",
        "metric": {"name": "loss", "target": 0.5},
        "parameters": {"x": {"values": [3.0, 1.0, 5.0, 7.0]}},
    }
    sweep_id = sweeper.sweep(spec, storage=url)
    summary = sweeper.agent(sweep_id, function=engine_trainers.quadratic, storage=url, executor="local")
    assert summary.ended == "metric target reached"
    assert summary.state == "finished"
    assert summary.ran == 2  # x=3 misses the target, x=1 reaches it, nothing after


def test_hyperband_stops_a_trainer_that_steps_faster_than_the_agent_decides_at_its_band(
    project: Path,
) -> None:
    url = f"sqlite:///{project / 's.db'}"
    sweep_id = sweeper.sweep(engine_trainers.INSTANT_HYPERBAND, storage=url)
    summary = sweeper.agent(sweep_id, function=engine_trainers.quadratic, storage=url, executor="local")
    assert (summary.complete, summary.pruned) == (2, 4)
    study = optuna.load_study(study_name=sweep_id, storage=open_storage(url))
    engine_trainers.assert_stopped_at_the_first_band(study.trials)


def test_multi_objective_sweep_keeps_both_values(project: Path) -> None:
    url = f"sqlite:///{project / 's.db'}"
    spec = {
        "method": "grid",
        "metrics": [{"name": "loss"}, {"name": "cost", "goal": "minimize"}],
        "parameters": {"x": {"values": [0.0, 0.5, 1.0]}},
    }
    sweep_id = sweeper.sweep(spec, storage=url)
    sweeper.agent(sweep_id, function=engine_trainers.two_objectives, storage=url, executor="local")
    study = optuna.load_study(study_name=sweep_id, storage=open_storage(url))
    assert len(study.directions) == 2
    assert sorted(tuple(t.values) for t in study.best_trials) == [(0.0, 1.0), (0.5, 0.5), (1.0, 0.0)]


def test_stop_lets_the_running_trial_finish_and_pause_starts_nothing(project: Path) -> None:
    url = f"sqlite:///{project / 's.db'}"
    started = project / "started"
    started.mkdir()
    release = project / "release"
    spec = {
        "method": "grid",
        "metric": {"name": "loss"},
        "parameters": {
            "i": {"values": [0, 1, 2]},
            "started": {"value": str(started)},
            "release": {"value": str(release)},
        },
    }
    sweep_id = sweeper.sweep(spec, storage=url)
    storage = open_storage(url)
    sweeps.set_state(storage, sweep_id, "paused")
    result: list[sweeper.engine.agent.AgentSummary] = []  # type: ignore[name-defined]

    def work() -> None:
        result.append(
            sweeper.agent(sweep_id, function=engine_trainers.wait_for_file, storage=url, executor="local")
        )

    agent = threading.Thread(target=work)
    agent.start()
    time.sleep(2.5)  # a paused sweep: the agent polls its state and starts nothing
    assert not list(started.iterdir())
    sweeps.set_state(storage, sweep_id, "running")
    while not list(started.iterdir()):
        time.sleep(0.05)
    sweeps.set_state(storage, sweep_id, "finished")  # `sweeper stop`
    time.sleep(1.5)
    release.touch()
    agent.join(timeout=60)
    assert result and result[0].ended == "sweep stopped"
    trials = _trials(url, sweep_id)
    assert [t.state for t in trials if t.state != TrialState.WAITING] == [TrialState.COMPLETE]


@pytest.mark.parametrize("executor", ["local", pytest.param("ray", marks=pytest.mark.ray)])
def test_a_trial_ended_elsewhere_before_its_start_write_is_stopped_and_keeps_that_end(
    project: Path, executor: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    # Trials start ahead of their start write (engine/loop.py); `sweeper cancel` (here, a write of
    # another process) can end one in between: the write refuses its start, and the agent stops it
    # (on Ray its lane has it already: killed; the local executor has it queued: dropped).
    if executor == "ray":
        request.getfixturevalue("ray_trainers")
    url = f"journal://{project / 'j.log'}"
    started = project / "started"
    started.mkdir()
    spec = {
        "method": "grid",
        "metric": {"name": "loss"},
        "parameters": {
            "x": {"values": [0.0, 1.0, 2.0]},
            "first_s": {"value": 60},
            "started": {"value": str(started)},
        },
    }
    sweep_id = sweeper.sweep(spec, storage=url)
    elsewhere = open_storage(url)
    real_write = batch.write_trials
    ended: list[int] = []

    def end_first_start_elsewhere(storage: Any, writes: list[batch.TrialWrite]) -> batch.Refused:
        starts = [w.trial_id for w in writes if w.params and w.state is None]
        if starts and not ended:
            ended.append(starts[0])
            if executor == "ray":  # its lane runs it already
                deadline = time.monotonic() + 30
                while not (started / "0").exists() and time.monotonic() < deadline:
                    time.sleep(0.01)
            elsewhere.set_trial_user_attr(starts[0], "fail_reason", "cancelled elsewhere")
            elsewhere.set_trial_state_values(starts[0], TrialState.FAIL)
        return real_write(storage, writes)

    monkeypatch.setattr(batch, "write_trials", end_first_start_elsewhere)
    began = time.monotonic()
    summary = sweeper.agent(sweep_id, function=engine_trainers.slow_first, storage=url, executor=executor)

    assert time.monotonic() - began < 40  # trial 0 (60 s) was stopped, not waited for
    assert (started / "0").exists() == (executor == "ray")
    trials = {t._trial_id: t for t in _trials(url, sweep_id)}
    withdrawn = trials.pop(ended[0])
    assert withdrawn.number == 0
    assert withdrawn.state == TrialState.FAIL
    assert withdrawn.user_attrs["fail_reason"] == "cancelled elsewhere"  # the stop's outcome was refused
    assert sorted(t.params["x"] for t in trials.values()) == [1.0, 2.0]
    assert all(t.state == TrialState.COMPLETE for t in trials.values())
    assert summary.complete == 2


def test_unknown_trainer_and_bad_options_are_user_errors(project: Path) -> None:
    url = f"sqlite:///{project / 's.db'}"
    spec = {"method": "grid", "metric": {"name": "loss"}, "parameters": {"x": {"values": [1]}}}
    sweep_id = sweeper.sweep(spec, storage=url)
    with pytest.raises(TrainerError, match="cannot import trainer module 'nowhere'"):
        sweeper.agent(sweep_id, trainer="nowhere:train", storage=url, executor="local")
    with pytest.raises(TrainerError, match="names no trainer"):
        sweeper.agent(sweep_id, storage=url, executor="local")
    with pytest.raises(UsageError, match="executor must be one of ray, local, got 'gpu'"):
        sweeper.agent(sweep_id, function=engine_trainers.quadratic, storage=url, executor="gpu")  # type: ignore[arg-type]
