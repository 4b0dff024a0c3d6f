"""Inspect real sweeps run by the engine (local executor): finished, still running, and repeated."""

from __future__ import annotations

import doctest
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from inspect_trainers import noisy

import sweeper
from sweeper import api
from sweeper.analysis import repeats
from sweeper.cli import main
from sweeper.errors import TrainerError, UsageError
from sweeper.storage import attrs as keys
from sweeper.storage import queue, sweeps
from sweeper.storage.sweeps import set_state
from sweeper.storage.urls import open_storage
from sweeper.trackers.jsonl import read_events

SUPPORT = Path(__file__).parents[1] / "support"
# A W&B-style program: ``noisy``'s curve, its seed read from sweeper.init() and from ``--seed``.
PROGRAM = """
import argparse

import sweeper
from inspect_trainers import noisy

parser = argparse.ArgumentParser()
parser.add_argument("--seed", type=int)
args, _ = parser.parse_known_args()
trial = sweeper.init()
assert trial.config["seed"] == args.seed, (trial.config, args)
noisy(dict(trial.config), trial)
"""
SPEC: dict[str, Any] = {
    "method": "random",
    "name": "e2e",
    "metric": {"name": "loss", "goal": "minimize"},
    "parameters": {
        "lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-1},
        "model": {"parameters": {"depth": {"values": [2, 4, 8]}}},
        "seed": {"value": 0},
    },
    "sweeper": {"seed": 1},
}


def cli_json(*args: str) -> Any:
    result = CliRunner().invoke(main, [*args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def sweeper_exe() -> str:
    return str(Path(sys.executable).parent / "sweeper")


def subprocess_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(SUPPORT), os.environ.get("PYTHONPATH", "")])}


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.chdir(tmp_path)  # the agent writes its tracker files under ./.sweeper/
    return f"journal://{tmp_path / 'sweeps.log'}"


def test_inspect_a_finished_sweep_run_by_the_engine(url: str) -> None:
    sweep_id = sweeper.sweep(SPEC, storage=url)
    sweeper.agent(sweep_id, function=noisy, count=6, storage=url, executor="local")

    results = sweeper.load(sweep_id, storage=url)
    assert results.counts()["complete"] == 6
    for t in results.trials:
        assert t.config["seed"] == 0 and t.config["model"]["depth"] in (2, 4, 8)
        assert [step for step, _ in t.intermediate_values] == [1, 2, 3, 4, 5]
        assert t.value == min(v for _, v in t.intermediate_values)  # W&B's objective: the best value
        assert t.duration_s is not None and t.duration_s >= 0
        assert t.tracker_runs  # the default jsonl tracker
        assert t.metrics["loss"] == t.intermediate_values[-1][1]

    best = cli_json("best", sweep_id, "--storage", url)
    assert best[0]["number"] == results.best()[0].number
    trials = cli_json("trials", sweep_id, "--storage", url, "--sort", "loss")
    assert [r["value"] for r in trials] == sorted(r["value"] for r in trials)
    status = cli_json("status", sweep_id, "--storage", url)
    assert status["counts"]["complete"] == 6 and status["running"] == []
    assert len(status["agents"]) == 1  # the agent that ran it left its heartbeat
    assert {r["param"] for r in cli_json("importance", sweep_id, "--storage", url)} == {"lr", "model.depth"}


def test_inspect_a_sweep_while_it_runs(url: str, tmp_path: Path) -> None:
    spec = {**SPEC, "name": "slow", "parameters": {**SPEC["parameters"], "steps": {"value": 100}}}
    spec_path = tmp_path / "slow.yaml"
    spec_path.write_text(json.dumps(spec))  # JSON is YAML
    agent = subprocess.Popen(
        [
            *(sweeper_exe(), "run", str(spec_path), "--storage", url, "--executor", "local"),
            *("--trainer", "inspect_trainers:slow", "--count", "2"),
        ],
        cwd=tmp_path,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    status: dict[str, Any] = {}
    try:
        status = wait_for_a_running_trial_with_steps(url, agent, steps=3)
        sweep_id = status["id"]
        (live,) = status["running"]
        assert live["state"] == "running" and live["elapsed_s"] > 0
        assert live["last_metric"]["name"] == "loss" and live["last_metric"]["step"] >= 3
        assert status["state"] == "running" and status["agents"][0]["active"] is True
        assert live["config"]["steps"] == 100

        running = cli_json("trials", sweep_id, "--storage", url, "--state", "running")
        assert [r["number"] for r in running] == [live["number"]]
        assert cli_json("best", sweep_id, "--storage", url) == []  # nothing complete yet
        table = CliRunner().invoke(main, ["status", sweep_id, "--storage", url])
        assert "Running" in table.stdout and "No complete trial yet." in table.stdout
    finally:
        if status:  # cancel: the agent interrupts its trial and exits
            set_state(open_storage(url), status["id"], "cancelled")
        try:
            agent.communicate(timeout=60)
        finally:
            if agent.poll() is None:
                agent.kill()
                agent.communicate()
    after = sweeper.load(status["id"], storage=url)
    assert after.state == "cancelled" and after.counts()["running"] == 0


def wait_for_a_running_trial_with_steps(url: str, agent: subprocess.Popen[str], steps: int) -> Any:
    """``sweeper status --json`` (a real subprocess) once a trial has reported ``steps`` values."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if agent.poll() is not None:
            raise AssertionError(f"the agent exited early: {agent.communicate()}")
        listing = subprocess.run(
            [sweeper_exe(), "ls", "--storage", url, "--json"], capture_output=True, text=True, check=True
        )
        sweeps = json.loads(listing.stdout)
        if sweeps:
            done = subprocess.run(
                [sweeper_exe(), "status", sweeps[0]["id"], "--storage", url, "--json"],
                capture_output=True,
                text=True,
                check=True,
            )
            status = json.loads(done.stdout)
            live = status["running"]
            if live and live[0]["last_metric"] and live[0]["last_metric"]["step"] >= steps:
                return status
        time.sleep(0.3)
    raise AssertionError("no trial reported in time")


def test_inspect_while_an_agent_thread_runs(url: str) -> None:
    spec = {**SPEC, "name": "threaded", "parameters": {**SPEC["parameters"], "steps": {"value": 15}}}
    sweep_id = sweeper.sweep(spec, storage=url)
    from inspect_trainers import slow

    worker = threading.Thread(
        target=sweeper.agent,
        args=(sweep_id,),
        kwargs={"function": slow, "count": 2, "storage": url, "executor": "local"},
    )
    worker.start()
    seen_running = False
    while worker.is_alive():
        results = sweeper.load(sweep_id, storage=url)
        live = [t for t in results.trials if t.state == "running" and t.intermediate_values]
        if live:
            seen_running = True
            record = cli_json("trials", sweep_id, "--storage", url, "--state", "running")[0]
            assert record["number"] == live[0].number and record["config"]["steps"] == 15
            break
        time.sleep(0.1)
    worker.join(timeout=60)
    assert seen_running
    final = sweeper.load(sweep_id, storage=url)
    assert final.counts()["complete"] == 2


def test_repeat_the_best_trial_with_other_seeds(url: str) -> None:
    sweep_id = sweeper.sweep(SPEC, storage=url)
    sweeper.agent(sweep_id, function=noisy, count=4, storage=url, executor="local")
    best = sweeper.load(sweep_id, storage=url).best()[0]

    report = api.repeat(sweep_id, best.number, 3, storage=url, function=noisy, executor="local")

    assert [t.repeat_of for t in report.repeats] == [best.number] * 3
    assert [t.config["seed"] for t in report.repeats] == [1, 2, 3]  # the config the trainer saw
    assert all(t.params == best.params for t in report.repeats)
    values = [t.value for t in report.repeats]
    assert values == pytest.approx([noisy_value(t.config) for t in report.repeats])
    assert len(set(values)) == 3  # the seed changed the noise
    for t in report.repeats:  # the tracker saw the repeat's seed too
        start = read_events(t.tracker_runs["jsonl"])[0]
        assert start["config"] == t.config and start["config"]["seed"] != 0
    from scipy import stats

    assert report.stats is not None
    low, high = stats.t.interval(0.95, 2, loc=report.stats.mean, scale=stats.sem(values))
    assert report.stats.ci_low == pytest.approx(low) and report.stats.ci_high == pytest.approx(high)
    assert report.stats.min == min(values) and report.stats.max == max(values)  # type: ignore[type-var]
    results = sweeper.load(sweep_id, storage=url)
    assert results.state == "running"  # the sweep's state is as it was
    assert results.counts()["complete"] == 7

    summary = cli_json("repeat", sweep_id, "--trial", str(best.number), "--seeds", "0", "--storage", url)
    assert summary["seeds"] == [1, 2, 3] and summary["stats"]["n"] == 3
    assert summary["stats"]["mean"] == pytest.approx(report.stats.mean)


def test_repeat_command_with_a_swept_seed_on_a_finished_sweep(url: str) -> None:
    spec = {
        **SPEC,
        "name": "seeded",
        "parameters": {**SPEC["parameters"], "seed": {"values": list(range(10))}},
        "sweeper": {"seed": 1, "trainer": "inspect_trainers:noisy"},
    }
    sweep_id = sweeper.sweep(spec, storage=url)
    sweeper.agent(sweep_id, count=3, storage=url, executor="local")
    set_state(open_storage(url), sweep_id, "finished")
    best = sweeper.load(sweep_id, storage=url).best()[0]

    result = CliRunner().invoke(
        main,
        [
            *("repeat", sweep_id, "--trial", str(best.number), "--seeds", "2", "--executor", "local"),
            *("--storage", url, "--json"),
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    seed = best.config["seed"]
    assert summary["seeds"] == [seed + 1, seed + 2]
    assert [r["config"]["seed"] for r in summary["repeats"]] == [seed + 1, seed + 2]
    # The params still name the point repeated; the override gave the trainer its seed.
    assert [r["params"]["seed"] for r in summary["repeats"]] == [seed, seed]
    assert [r["value"] for r in summary["repeats"]] == pytest.approx(
        [noisy_value(r["config"]) for r in summary["repeats"]]
    )
    assert summary["stats"]["n"] == 2 and summary["stats"]["ci_low"] <= summary["stats"]["mean"]
    assert sweeper.load(sweep_id, storage=url).state == "finished"  # never reopened

    table = CliRunner().invoke(
        main, ["repeat", sweep_id, "--trial", str(best.number), "--seeds", "0", "--storage", url]
    )
    assert "95% t-interval of the mean" in table.stdout


def test_repeat_runs_only_the_repeats_while_other_trials_are_queued(url: str) -> None:
    sweep_id = sweeper.sweep({**SPEC, "run_cap": 5}, storage=url)
    sweeper.agent(sweep_id, function=noisy, count=2, storage=url, executor="local")
    before = sweeper.load(sweep_id, storage=url)
    assert before.counts()["waiting"] == 3

    report = api.repeat(sweep_id, 0, [5, 6], storage=url, function=noisy, executor="local")

    assert [t.state for t in report.repeats] == ["complete", "complete"]
    assert [t.config["seed"] for t in report.repeats] == [5, 6]
    after = sweeper.load(sweep_id, storage=url)
    assert after.counts()["waiting"] == 3  # the run_cap tokens are still there for the sweep's agents
    assert after.counts()["complete"] == 4 and after.state == "running"
    queued = {t.number for t in before.trials if t.state == "waiting"}
    assert {t.number for t in after.trials if t.state == "waiting"} == queued

    # The sweep's own agent then spends its budget: the repeats never counted against run_cap.
    sweeper.agent(sweep_id, function=noisy, storage=url, executor="local")
    final = sweeper.load(sweep_id, storage=url)
    assert final.counts()["complete"] == 7 and final.state == "finished"


def test_repeat_a_program_trainer(url: str, tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text(PROGRAM)
    shutil.copy(SUPPORT / "inspect_trainers.py", tmp_path)  # beside the program, on its sys.path
    spec = {**SPEC, "name": "program", "program": "train.py", "sweeper": {"seed": 1}}
    sweep_id = sweeper.sweep(spec, storage=url)
    sweeper.agent(sweep_id, count=2, storage=url, executor="local")
    best = sweeper.load(sweep_id, storage=url).best()[0]
    assert best.state == "complete", best.fail_reason

    report = api.repeat(sweep_id, best.number, 2, storage=url, executor="local")

    assert [t.state for t in report.repeats] == ["complete", "complete"], [
        r.fail_reason for r in report.repeats
    ]
    assert [t.config["seed"] for t in report.repeats] == [1, 2]
    # The program read its seed from sweeper.init() and from its --seed argument, which agree.
    assert [t.value for t in report.repeats] == pytest.approx([noisy_value(t.config) for t in report.repeats])
    assert report.stats is not None and report.stats.n == 2


def test_repeat_refuses_what_it_could_not_run(url: str) -> None:
    sweep_id = sweeper.sweep({**SPEC, "run_cap": 3}, storage=url)
    sweeper.agent(sweep_id, function=noisy, count=1, storage=url, executor="local")
    with pytest.raises(UsageError, match=r"has no params lr, model.depth yet \(it is waiting\)"):
        api.repeat(sweep_id, 2, 2, storage=url, function=noisy, executor="local")
    with pytest.raises(TrainerError, match="names no trainer"):
        api.repeat(sweep_id, 0, 2, storage=url, executor="local")
    set_state(open_storage(url), sweep_id, "paused")
    with pytest.raises(UsageError, match="is paused; resume it first"):
        api.repeat(sweep_id, 0, 2, storage=url, function=noisy, executor="local")
    assert sweeper.load(sweep_id, storage=url).counts()["waiting"] == 2  # nothing was enqueued


def test_a_queued_repeat_shows_the_config_its_agent_will_build(url: str) -> None:
    sweep_id = sweeper.sweep(SPEC, storage=url)
    study = sweeps.load_study(open_storage(url), sweep_id)
    marks = {keys.ATTEMPT: 0, keys.REPEAT_OF: 0, keys.CONFIG_OVERRIDES: {"seed": 9}}
    number = queue.enqueue(study, {"lr": 0.01, "model.depth": 4}, marks)

    queued = sweeper.load(sweep_id, storage=url).trial(number)
    assert queued.state == "waiting" and queued.config == {"lr": 0.01, "model": {"depth": 4}, "seed": 9}

    sweeper.agent(sweep_id, function=noisy, storage=url, executor="local", trials=[number])
    ran = sweeper.load(sweep_id, storage=url).trial(number)
    assert ran.state == "complete" and ran.config == queued.config
    assert ran.value == pytest.approx(noisy_value(queued.config))


@pytest.mark.ray
def test_repeat_on_ray_runs_the_trainer_with_each_seed(url: str, ray_inspect_trainers: None) -> None:
    sweep_id = sweeper.sweep(SPEC, storage=url)
    sweeper.agent(sweep_id, function=noisy, count=2, storage=url, executor="local")
    best = sweeper.load(sweep_id, storage=url).best()[0]

    report = api.repeat(sweep_id, best.number, [11, 12], storage=url, function=noisy, executor="ray")

    assert [t.state for t in report.repeats] == ["complete", "complete"]
    assert [t.config["seed"] for t in report.repeats] == [11, 12]
    expected = [noisy_value(t.config) for t in report.repeats]  # what the trainer computes for that seed
    assert [t.value for t in report.repeats] == pytest.approx(expected)


def noisy_value(config: dict[str, Any]) -> float:
    """The objective ``noisy`` reaches for ``config`` (its best logged loss)."""
    logged: list[float] = []

    class Recorder:
        def log(self, metrics: dict[str, float], step: int | None = None) -> None:
            logged.append(metrics["loss"])

    noisy(config, Recorder())
    return min(logged)


def test_docstring_examples_of_repeats_run() -> None:
    result = doctest.testmod(repeats)
    assert result.attempted > 0 and result.failed == 0


def _by_optimizer(config: dict[str, Any], trial: Any) -> float:
    """A trainer of a conditional space: momentum exists only with sgd."""
    assert ("momentum" in config) == (config["optimizer"] == "sgd"), config
    return float(config.get("momentum", 0.5)) + 0.01 * float(config["seed"])


def test_repeat_a_trial_whose_conditional_parameters_are_inactive(url: str) -> None:
    spec = {
        "method": "random",
        "metric": {"name": "loss"},
        "run_cap": 2,
        "parameters": {
            # adam always: momentum, active only with sgd, is never part of a config here.
            "optimizer": {"values": ["sgd", "adam"], "probabilities": [0.0, 1.0]},
            "momentum": {"min": 0.0, "max": 0.9, "sweeper_if": {"optimizer": ["sgd"]}},
            "seed": {"value": 0},
        },
    }
    sweep_id = sweeper.sweep(spec, storage=url)
    sweeper.agent(sweep_id, function=_by_optimizer, storage=url, executor="local")
    original = sweeper.load(sweep_id, storage=url).best()[0]
    assert original.params == {"optimizer": "adam"}

    report = api.repeat(sweep_id, original.number, 2, storage=url, function=_by_optimizer, executor="local")

    assert [t.config for t in report.repeats] == [
        {"optimizer": "adam", "seed": 1},
        {"optimizer": "adam", "seed": 2},
    ]
    assert [t.value for t in report.repeats] == pytest.approx([0.51, 0.52])
