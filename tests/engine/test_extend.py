"""Sweeps that extend: more run_cap, more trials, new grid values; only new points run, exactly once."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import engine_trainers
import pytest
from click.testing import CliRunner
from optuna.trial import TrialState
from racing import together

import sweeper
from sweeper.cli import main
from sweeper.errors import SpecError, UsageError
from sweeper.storage import sweeps, work
from sweeper.storage.urls import open_storage

# 4 x 3 x 2 = 24 points.
GRID: dict[str, Any] = {
    "method": "grid",
    "metric": {"name": "loss"},
    "parameters": {
        "a": {"values": [1, 2, 3, 4]},
        "b": {"values": ["x", "y", "z"]},
        "nested": {"parameters": {"c": {"values": [0.1, 0.2]}}},
    },
}


def _run(url: str, sweep_id: str, **options: Any) -> sweeper.api.AgentSummary:
    return sweeper.agent(
        sweep_id, function=engine_trainers.constant, storage=url, executor="local", **options
    )


def _complete(url: str, sweep_id: str) -> list[dict[str, Any]]:
    storage = open_storage(url)
    study_id = storage.get_study_id_from_name(sweep_id)
    return [t.params for t in storage.get_all_trials(study_id) if t.state == TrialState.COMPLETE]


def test_a_finished_grid_given_a_new_value_runs_only_its_new_points_once_under_racing_agents(
    postgres_url: str,
) -> None:
    sweep_id = sweeper.sweep(GRID, storage=postgres_url)
    assert _run(postgres_url, sweep_id).state == "finished"
    assert len(_complete(postgres_url, sweep_id)) == 24

    extended = sweeper.extend(sweep_id, values={"nested.c": [0.3]}, storage=postgres_url)

    assert (extended.budget_before, extended.budget_after, extended.new_points) == (24, 36, 12)
    assert extended.info.state == "running"
    summaries = together(lambda _: _run(postgres_url, sweep_id), 4)

    assert sum(s.complete for s in summaries) == 12
    points = Counter(tuple(sorted(p.items())) for p in _complete(postgres_url, sweep_id))
    assert len(points) == 36 and set(points.values()) == {1}  # every point of the new grid, once
    info = sweeps.get_sweep(open_storage(postgres_url), sweep_id)
    assert info.state == "finished" and info.spec.space.grid_size() == 36
    assert [(h["values"], h["budget"], h["queued"]) for h in info.history] == [
        ({"nested.c": [0.3]}, [24, 36], 12)
    ]


def test_a_bayes_sweep_extended_by_twenty_trials_ends_with_twenty_more(journal_url: str) -> None:
    spec = {
        "method": "bayes",
        "metric": {"name": "loss"},
        "run_cap": 10,
        "parameters": {"x": {"min": -2.0, "max": 2.0}},
    }
    sweep_id = sweeper.sweep(spec, storage=journal_url)
    first = sweeper.agent(sweep_id, function=engine_trainers.noop, storage=journal_url, executor="local")
    assert first.complete == 10 and first.state == "finished"

    sweeper.extend(sweep_id, trials=20, storage=journal_url)
    second = sweeper.agent(sweep_id, function=engine_trainers.noop, storage=journal_url, executor="local")

    assert second.complete == 20 and second.state == "finished"
    assert len(_complete(journal_url, sweep_id)) == 30
    info = sweeps.get_sweep(open_storage(journal_url), sweep_id)
    assert info.spec.run_cap == 30 and info.history[0]["budget"] == [10, 30]


def test_an_extension_is_checked_and_located_before_anything_is_written(journal_url: str) -> None:
    sweep_id = sweeper.sweep(GRID | {"run_cap": 5}, storage=journal_url)
    _run(journal_url, sweep_id)
    storage = open_storage(journal_url)
    before = sweeps.get_sweep(storage, sweep_id)

    with pytest.raises(
        SpecError,
        match=r"parameters\.nested\.cc: the sweep has no parameter 'nested\.cc'; did you mean 'nested\.c'",
    ):
        sweeper.extend(sweep_id, values={"nested.cc": [0.3]}, storage=journal_url)
    with pytest.raises(SpecError, match=r"parameters\.a\.values: 2 is already one of its values"):
        sweeper.extend(sweep_id, values={"a": [2]}, storage=journal_url)
    with pytest.raises(SpecError, match=r"run_cap: must be larger than the sweep's 5, got 5"):
        sweeper.extend(sweep_id, run_cap=5, storage=journal_url)
    with pytest.raises(SpecError, match="nothing to extend"):
        sweeper.extend(sweep_id, storage=journal_url)
    # A capped grid: new values would reorder the points it has not queued.
    with pytest.raises(UsageError, match="has queued 5 of its 24 grid points"):
        sweeper.extend(sweep_id, values={"a": [5]}, storage=journal_url)

    after = sweeps.get_sweep(storage, sweep_id)
    assert after.spec.raw == before.spec.raw and after.state == before.state == "finished"
    assert after.history == () and storage.get_n_trials(after.study_id) == 5


def test_a_finite_space_that_ran_every_config_has_nothing_new_to_run(project: Path) -> None:
    url = f"sqlite:///{project / 's.db'}"
    spec = {"method": "random", "metric": {"name": "loss"}, "parameters": {"x": {"values": [1.0, 2.0]}}}
    sweep_id = sweeper.sweep(spec, storage=url)
    run = {"function": engine_trainers.noop, "storage": url, "executor": "local"}
    assert sweeper.agent(sweep_id, **run).complete == 2

    with pytest.raises(UsageError, match=r"nothing new to run.*every config of its finite space"):
        sweeper.extend(sweep_id, trials=5, storage=url)
    # New values make the finite space larger: those configs run, each once, and the past trials
    # hold the grown choice list (Optuna reads one distribution per parameter).
    sweeper.extend(sweep_id, values={"x": [3.0]}, storage=url)
    summary = sweeper.agent(sweep_id, **run)
    assert summary.complete == 1
    assert sorted(p["x"] for p in _complete(url, sweep_id)) == [1.0, 2.0, 3.0]
    storage = open_storage(url)
    trials = storage.get_all_trials(storage.get_study_id_from_name(sweep_id))
    assert {t.distributions["x"].choices for t in trials} == {(1.0, 2.0, 3.0)}  # type: ignore[attr-defined]


def test_a_journal_sweep_refuses_new_values_its_past_trials_cannot_take(journal_url: str) -> None:
    sweep_id = sweeper.sweep(GRID, storage=journal_url)
    _run(journal_url, sweep_id, count=2)

    refused = r"journal file.*cannot take new values for a .*SQLite or PostgreSQL"
    with pytest.raises(UsageError, match=refused):
        sweeper.extend(sweep_id, values={"a": [5]}, storage=journal_url)
    # A run_cap past the grid's 24 points adds nothing: they are all queued (one block).
    with pytest.raises(UsageError, match=r"nothing new to run: .* budget of 24 trials and has queued 24"):
        sweeper.extend(sweep_id, run_cap=30, storage=journal_url)


def test_an_extension_racing_another_is_refused_and_writes_nothing(any_storage_url: str) -> None:
    sweep_id = sweeper.sweep(GRID, storage=any_storage_url)
    storage = open_storage(any_storage_url)
    info = sweeps.get_sweep(storage, sweep_id)
    stale = dict(info.spec.raw) | {"run_cap": 3}  # what another extension read before this one wrote

    with pytest.raises(work.SweepChangedError):
        work.apply_extension(
            storage, info.study_id, work.ExtensionWrite(stale, {"sweeper:state": "paused"}, 99, [{"a": 1}])
        )

    after = sweeps.get_sweep(storage, sweep_id)
    assert after.state == "running" and storage.get_n_trials(info.study_id) == 0
    assert work.queued(storage, info.study_id, after.spec.budget) == 0


def test_cli_extend_then_status_shows_the_history(project: Path) -> None:
    url = f"sqlite:///{project / 's.db'}"
    sweep_id = sweeper.sweep(GRID, storage=url)
    _run(url, sweep_id)
    runner = CliRunner()

    result = runner.invoke(main, ["extend", sweep_id, "--add", "a=5", "--add", "b=w", "--storage", url])

    assert result.exit_code == 0, result.output
    assert (
        f"sweep {sweep_id} extended: budget 24 -> 40 trials; 16 new grid point(s) queued; it is running"
        in result.stdout
    )
    status = runner.invoke(main, ["status", sweep_id, "--storage", url])
    assert "a += [5], b += ['w']; budget 24 -> 40 (16 new grid points)" in status.stdout
    bad = runner.invoke(main, ["extend", sweep_id, "--add", "a", "--storage", url])
    assert (
        bad.exit_code == 2
        and "--add 'a': expected PARAM=VALUE" in bad.stderr
        and "Traceback" not in bad.output
    )
    resume = runner.invoke(main, ["resume", sweep_id, "--storage", url])
    assert resume.exit_code == 0  # running again after the extension
