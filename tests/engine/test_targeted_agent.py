"""The engine hooks `sweeper repeat` stands on: trial config overrides and targeted agents."""

from __future__ import annotations

import doctest
from collections import Counter
from pathlib import Path
from typing import Any

import engine_trainers
import optuna
import pytest
from optuna.trial import TrialState
from racing import together

import sweeper
from sweeper.engine.agent import AgentSummary
from sweeper.errors import UsageError
from sweeper.storage import attrs as keys
from sweeper.storage import queue, sweeps, work
from sweeper.storage.urls import open_storage
from sweeper.trackers.jsonl import read_events

GRID: dict[str, Any] = {
    "method": "grid",
    "metric": {"name": "loss"},
    "parameters": {"x": {"values": [0.0, 1.0, 2.0]}, "opt": {"parameters": {"name": {"value": "sgd"}}}},
}


def _enqueue(url: str, sweep_id: str, x: float, overrides: dict[str, Any] | None = None) -> int:
    study = sweeps.load_study(open_storage(url), sweep_id)
    attrs: dict[str, Any] = {keys.ATTEMPT: 0}
    if overrides is not None:
        attrs[keys.CONFIG_OVERRIDES] = overrides
    return queue.enqueue(study, {"x": x}, attrs)


def _trials(url: str, sweep_id: str) -> dict[int, optuna.trial.FrozenTrial]:
    study = optuna.load_study(study_name=sweep_id, storage=open_storage(url))
    return {t.number: t for t in study.trials}


def test_config_overrides_reach_the_trainer_the_trackers_and_the_stored_config(project: Path) -> None:
    url = f"sqlite:///{project / 's.db'}"
    sweep_id = sweeper.sweep(GRID, storage=url)
    number = _enqueue(url, sweep_id, 0.0, {"x": 3.0, "opt.name": "adam", "opt.momentum": 0.9})

    summary = sweeper.agent(
        sweep_id, function=engine_trainers.quadratic, storage=url, executor="local", trials=[number]
    )

    trial = _trials(url, sweep_id)[number]
    expected = {"x": 3.0, "opt": {"name": "adam", "momentum": 0.9}}
    assert trial.user_attrs["config"] == expected
    assert trial.params == {"x": 0.0}  # the point is unchanged, only the config
    assert trial.values == [pytest.approx((3.0 - 1.0) ** 2 + 1.0 / 3)]  # the trainer saw x = 3
    assert read_events(trial.user_attrs["tracker_runs"]["jsonl"])[0]["config"] == expected
    assert summary.ran == 1 and summary.ended == "targeted trials done"


def test_a_targeted_agent_runs_only_its_trials_and_a_finished_sweep_stays_finished(project: Path) -> None:
    url = f"journal://{project / 'j.log'}"
    sweep_id = sweeper.sweep(GRID, storage=url)
    first, second = _enqueue(url, sweep_id, 1.0), _enqueue(url, sweep_id, 2.0)

    summary = sweeper.agent(
        sweep_id, function=engine_trainers.quadratic, storage=url, executor="local", trials=[second, first]
    )

    trials = _trials(url, sweep_id)
    assert {n for n, t in trials.items() if t.state == TrialState.COMPLETE} == {first, second}
    waiting = [t.system_attrs["fixed_params"]["x"] for t in trials.values() if t.state == TrialState.WAITING]
    assert waiting == []  # a targeted agent queues none of the grid's points: all 3 are still ahead
    info = sweeps.get_sweep(open_storage(url), sweep_id)
    assert work.queued(open_storage(url), info.study_id, info.spec.budget) == 0
    assert work.work_left(open_storage(url), info.study_id, info.spec.budget)
    assert summary.state == "running" and summary.complete == 2

    sweeps.set_state(open_storage(url), sweep_id, "finished")
    third = _enqueue(url, sweep_id, 0.0)
    summary = sweeper.agent(
        sweep_id, function=engine_trainers.quadratic, storage=url, executor="local", trials=[third]
    )
    assert _trials(url, sweep_id)[third].state == TrialState.COMPLETE
    assert summary.state == "finished" and summary.ended == "targeted trials done"
    # An untargeted agent still obeys the stop: the grid points stay queued.
    untargeted = sweeper.agent(sweep_id, function=engine_trainers.quadratic, storage=url, executor="local")
    assert untargeted.ran == 0 and untargeted.ended == "sweep stopped"


def test_a_targeted_trial_that_fails_is_retried_with_its_marks_by_the_same_agent(project: Path) -> None:
    url = f"sqlite:///{project / 's.db'}"
    sweep_id = sweeper.sweep({**GRID, "sweeper": {"retries": 1}}, storage=url)
    study = sweeps.load_study(open_storage(url), sweep_id)
    marks = {keys.ATTEMPT: 0, keys.REPEAT_OF: 1, keys.CONFIG_OVERRIDES: {"x": 4.0}}
    number = queue.enqueue(study, {"x": 0.0}, marks)

    summary = sweeper.agent(
        sweep_id, function=engine_trainers.flaky, storage=url, executor="local", trials=[number]
    )

    trials = _trials(url, sweep_id)
    [retry] = [t for t in trials.values() if t.user_attrs.get(keys.RETRY_OF) == number]
    assert trials[number].state == TrialState.FAIL and retry.state == TrialState.COMPLETE
    assert retry.user_attrs[keys.REPEAT_OF] == 1 and retry.user_attrs["config"]["x"] == 4.0
    assert retry.values == [pytest.approx(number + 4.0)]  # resumed from the first attempt's checkpoint
    assert summary.ran == 2 and summary.failed == 1 and summary.complete == 1


def test_targeted_agents_racing_run_each_trial_once(project: Path) -> None:
    url = f"sqlite:///{project / 's.db'}"
    sweep_id = sweeper.sweep(GRID, storage=url)
    numbers = [_enqueue(url, sweep_id, float(i % 3)) for i in range(6)]

    def work(_: int) -> AgentSummary:
        return sweeper.agent(
            sweep_id, function=engine_trainers.quadratic, storage=url, executor="local", trials=numbers
        )

    results = together(work, 3, timeout_s=240)
    assert sum(r.ran for r in results) == 6 and len(results) == 3
    trials = _trials(url, sweep_id)
    assert Counter(trials[n].state for n in numbers) == {TrialState.COMPLETE: 6}
    assert Counter(t.state for t in trials.values()) == {TrialState.COMPLETE: 6}  # no grid point queued


def test_targeting_refuses_what_cannot_run_and_skips_what_ran(project: Path) -> None:
    url = f"journal://{project / 'j.log'}"
    sweep_id = sweeper.sweep(GRID, storage=url)
    done = _enqueue(url, sweep_id, 1.0)
    sweeper.agent(sweep_id, function=engine_trainers.quadratic, storage=url, executor="local", trials=[done])
    run = {"function": engine_trainers.quadratic, "storage": url, "executor": "local"}

    # A trial already run (by another agent, racing on the same targets) is done: nothing to run.
    again = sweeper.agent(sweep_id, trials=[done], **run)
    assert again.ran == 0 and again.ended == "targeted trials done"
    with pytest.raises(UsageError, match=rf"sweep {sweep_id} has no trial 98, 99"):
        sweeper.agent(sweep_id, trials=[0, 99, 98], **run)
    with pytest.raises(UsageError, match="at least one trial number"):
        sweeper.agent(sweep_id, trials=[], **run)
    sweeps.set_state(open_storage(url), sweep_id, "cancelled")
    with pytest.raises(UsageError, match="is cancelled"):
        sweeper.agent(sweep_id, trials=[0], **run)


def test_a_malformed_override_fails_its_trial_not_the_agent(project: Path) -> None:
    url = f"journal://{project / 'j.log'}"
    sweep_id = sweeper.sweep(GRID, storage=url)
    bad, good = _enqueue(url, sweep_id, 0.0, {"opt..name": "adam"}), _enqueue(url, sweep_id, 1.0)

    sweeper.agent(
        sweep_id, function=engine_trainers.quadratic, storage=url, executor="local", trials=[bad, good]
    )

    trials = _trials(url, sweep_id)
    assert trials[bad].state == TrialState.FAIL and trials[good].state == TrialState.COMPLETE
    assert "config override keys must be dotted names" in trials[bad].user_attrs["fail_reason"]


def test_docstring_examples_of_config_overrides_run() -> None:
    from sweeper.spec import overrides

    result = doctest.testmod(overrides)
    assert result.attempted > 0 and result.failed == 0
