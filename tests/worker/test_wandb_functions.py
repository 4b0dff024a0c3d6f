"""W&B-style function trainers (``def train(): wandb.init(); wandb.log(...)``) with real, offline wandb."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import optuna
import pytest
import wandb_trainers
from optuna.trial import TrialState
from tracker_readers import read_jsonl, read_wandb, wandb_records

import sweeper
from sweeper.search.pruners import make_pruner
from sweeper.spec.model import EarlyTerminate
from sweeper.storage.urls import open_storage
from sweeper.worker import zygote
from trainers import wandb_tutorial

# W&B offline, its files under the scratch project (see tests/conftest.py).
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("wandb_offline")]


def _trials(url: str, sweep_id: str) -> list[optuna.trial.FrozenTrial]:
    trials = optuna.load_study(study_name=sweep_id, storage=open_storage(url)).trials
    return sorted(trials, key=lambda t: t.number)


def _wandb_runs(trials: list[optuna.trial.FrozenTrial]) -> dict[str, Any]:
    return read_wandb({str(t.number): t.user_attrs["tracker_runs"]["wandb"] for t in trials})


TUTORIAL_SPEC: dict[str, Any] = {
    "name": "tutorial",
    "method": "bayes",
    "metric": {"name": "val_loss", "goal": "minimize"},
    "early_terminate": {"type": "hyperband", "min_iter": 1, "eta": 2},
    "parameters": {
        "optimizer": {"values": ["adam", "sgd"]},
        "hidden": {"values": [8, 16]},
        "learning_rate": {"distribution": "log_uniform_values", "min": 0.0005, "max": 0.05},
        "batch_size": {"value": 256},
        "epochs": {"value": 4},
    },
    "sweeper": {"seed": 3, "max_concurrent": 1},
}
TUTORIAL_TRIALS = 5


def _stop_decisions(trials: list[optuna.trial.FrozenTrial]) -> dict[int, int | None]:
    """``{trial number: the index of the report its pruner's stop was decided at, or None}``, the
    sweep's hyperband rule replayed on the stored values (one trial at a time: each trial's
    decisions see every earlier trial as it ended)."""
    early = make_pruner(EarlyTerminate(**TUTORIAL_SPEC["early_terminate"]), ["minimize"])
    decided: dict[int, int | None] = {}
    earlier = optuna.create_study(direction="minimize")
    for trial in trials:
        steps = sorted(trial.intermediate_values)
        decided[trial.number] = None
        for i in range(1, len(steps) + 1):
            head = copy.copy(trial)
            head.intermediate_values = {s: trial.intermediate_values[s] for s in steps[:i]}
            if early.prune(earlier, head):
                decided[trial.number] = i - 1
                break
        earlier.add_trial(trial)
    return decided


def test_wandb_tutorial_trainer_runs_unchanged_and_matches_trial_log(project: Path) -> None:
    url = f"sqlite:///{project / 's.db'}"
    outcomes = {}
    for function in (wandb_tutorial.train_sweep, wandb_trainers.tutorial_with_trial):
        sweep_id = sweeper.sweep(TUTORIAL_SPEC, storage=url)
        sweeper.agent(sweep_id, function=function, count=TUTORIAL_TRIALS, storage=url, executor="local")
        outcomes[function.__name__] = (sweep_id, _trials(url, sweep_id))

    sweep_id, wandb_style = outcomes["train_sweep"]
    _, trial_style = outcomes["tutorial_with_trial"]
    epochs = list(range(TUTORIAL_SPEC["parameters"]["epochs"]["value"]))
    # The pruner's stop reaches a trainer at its first report after the decision came back (reports
    # wait for theirs only after a band): a trial may run a few reports past its stop, or to its end if the
    # stop comes after its last report (then it completes, as under W&B's agent). So each sweep is
    # held to the hyperband rule replayed on its own values, not to the other's states.
    for trials in (wandb_style, trial_style):
        decided = _stop_decisions(trials)
        for t in trials:
            steps = sorted(t.intermediate_values)
            if t.state == TrialState.PRUNED:
                stop = decided[t.number]
                assert stop is not None and steps[-1] > steps[stop], (t.number, steps, stop)
                assert t.values == [min(t.intermediate_values.values())]
            else:
                assert t.state == TrialState.COMPLETE and steps == epochs, (t.number, t.state, steps)
        assert TrialState.PRUNED in {t.state for t in trials}
        assert any(stop is None for stop in decided.values())
    for ours, theirs in zip(wandb_style, trial_style, strict=True):
        assert ours.params == theirs.params
        # Exact: the same seeded training, the same values at the same steps.
        common = ours.intermediate_values.keys() & theirs.intermediate_values.keys()
        assert common and all(ours.intermediate_values[s] == theirs.intermediate_values[s] for s in common)
        if ours.state == theirs.state == TrialState.COMPLETE:
            assert ours.values == theirs.values
            assert ours.intermediate_values == theirs.intermediate_values
            assert ours.user_attrs["metrics"] == theirs.user_attrs["metrics"]

    # One W&B run per trial, offline in the sweep's directory, grouped by sweep, named per trial.
    runs = _wandb_runs(wandb_style)
    assert sorted(runs) == [f"tutorial-{t.number}" for t in wandb_style]
    for t in wandb_style:
        run = runs[f"tutorial-{t.number}"]
        assert run.extra["dir"].is_relative_to(project / ".sweeper" / "sweeps" / sweep_id / "wandb")
        assert run.extra["group"] == "tutorial"
        assert f"sweep:{sweep_id}" in run.extra["tags"]
        # The sweep's values over wandb.init(config=DEFAULTS): sweep values win.
        assert run.params == {**wandb_tutorial.DEFAULTS, **t.user_attrs["config"]}
        assert run.extra["exit_code"] == 0
        # What W&B recorded is what the trial was told, at the same steps.
        assert dict(run.history["val_loss"]) == t.intermediate_values
        assert [step for step, _ in run.history["epoch"]] == sorted(t.intermediate_values)


def test_every_log_form_reaches_the_trial_as_wandb_records_it(project: Path) -> None:
    url = f"sqlite:///{project / 's.db'}"
    spec = {
        "name": "forms",
        "method": "grid",
        "metric": {"name": "loss", "goal": "minimize"},
        "parameters": {"lr": {"values": [0.1]}, "opt": {"parameters": {"name": {"value": "adam"}}}},
        "sweeper": {"trackers": ["jsonl"]},
    }
    sweep_id = sweeper.sweep(spec, storage=url)
    summary = sweeper.agent(sweep_id, function=wandb_trainers.logs_every_way, storage=url, executor="local")
    assert summary.complete == 1
    (trial,) = _trials(url, sweep_id)

    # W&B's own record of the run: the rows its step/commit rules make.
    (run,) = _wandb_runs([trial]).values()
    assert run.history["loss"] == [(0, 0.9), (1, 0.8), (5, 0.7), (7, 0.5), (8, 0.4), (9, 0.3)]
    assert run.history["b"] == [(1, 2.0)]
    assert run.history["c"] == [(5, 3.0)]
    assert run.history["d"] == [(8, 4.0)]
    assert run.history["media_step"] == [(10, 1.0)]
    assert run.extra["summary"]["best_loss"] == 0.01

    # The trial got the same rows at the same steps, and the summary value as a final metric.
    assert trial.intermediate_values == dict(run.history["loss"])
    (recorded,) = read_jsonl({"0": trial.user_attrs["tracker_runs"]["jsonl"]}).values()
    assert recorded.history["loss"] == run.history["loss"]
    assert recorded.history["c"] == [(5, 3.0)]
    assert recorded.history["media_step"] == [(10, 1.0)]
    assert "curve" not in recorded.history and "weights" not in recorded.history
    assert trial.values == [0.05]  # run.summary["loss"] = 0.05: the best value the trial got
    assert trial.user_attrs["metrics"]["best_loss"] == 0.01

    # wandb.config: the sweep's values (nested as W&B delivers them) over the trainer's defaults,
    # attribute and item access, sweep keys locked against the trainer's updates.
    # (The trainer wrote it by relative path: it is in the trial's own directory.)
    seen = json.loads((Path(trial.user_attrs["trial_dir"]) / "seen-forms-0.json").read_text())
    assert seen["config"] == {"lr": 0.1, "extra": "kept", "opt": {"name": "adam", "momentum": 0.9}}
    assert seen["attribute_lr"] == 0.1 and seen["item_opt"] == {"name": "adam", "momentum": 0.9}
    assert seen["global_run_is_run"] is True
    assert seen["lr_after_update"] == 0.1


def test_wandb_tracker_and_wandb_init_make_one_run_per_trial(project: Path) -> None:
    url = f"sqlite:///{project / 's.db'}"
    spec = {
        "name": "both",
        "method": "grid",
        "metric": {"name": "loss", "goal": "minimize"},
        "parameters": {"x": {"values": [1.0, 2.0]}, "steps": {"value": 3}},
        "sweeper": {"trackers": ["jsonl", {"type": "wandb", "project": "mine", "dir": "runs"}]},
    }
    sweep_id = sweeper.sweep(spec, storage=url)
    sweeper.agent(sweep_id, function=wandb_trainers.curve, storage=url, executor="local")
    trials = _trials(url, sweep_id)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    # The tracker stood aside: the trainer's own run is the trial's W&B run, where the tracker said.
    run_dirs = sorted((project / "runs" / "wandb").glob("offline-run-*"))
    assert len(run_dirs) == 2
    assert not (project / ".sweeper" / "sweeps" / sweep_id / "wandb").exists()
    runs = _wandb_runs(trials)
    for t in trials:
        run = runs[f"both-{t.number}"]
        assert [v for _, v in run.history["loss"]] == [t.params["x"] / (s + 1) for s in range(3)]
        (log,) = Path(t.user_attrs["tracker_runs"]["wandb"]).glob("*.wandb")
        (record,) = [r.run for r in wandb_records(log) if r.WhichOneof("record_type") == "run"]
        assert record.project == "mine"


def test_a_trainer_that_logs_nothing_through_wandb_returns_its_value(project: Path) -> None:
    url = f"sqlite:///{project / 's.db'}"
    spec = {"method": "grid", "metric": {"name": "loss"}, "parameters": {"x": {"values": [1]}}}
    sweep_id = sweeper.sweep(spec, storage=url)
    function = wandb_trainers.uses_wandb_without_init
    sweeper.agent(sweep_id, function=function, storage=url, executor="local")
    (trial,) = _trials(url, sweep_id)
    assert trial.state == TrialState.COMPLETE and trial.values == [0.25]


def test_without_wandb_a_wandb_style_trainer_fails_naming_the_extra(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What an environment without wandb looks like to the trial's process (a fresh interpreter
    # with the agent's sys.path): importing wandb fails as Python fails on a missing module.
    shim = project / "no_wandb"
    shim.mkdir()
    (shim / "wandb.py").write_text('raise ModuleNotFoundError("No module named \'wandb\'", name="wandb")\n')
    monkeypatch.syspath_prepend(str(shim))
    zygote.reset()  # a fresh process to fork trials from, as a new environment has (no preloaded wandb)
    url = f"sqlite:///{project / 's.db'}"
    spec = {"method": "grid", "metric": {"name": "loss"}, "parameters": {"x": {"values": [1]}}}
    sweep_id = sweeper.sweep(spec, storage=url)
    sweeper.agent(sweep_id, function=wandb_trainers.curve, storage=url, executor="local")
    (trial,) = _trials(url, sweep_id)
    assert trial.state == TrialState.FAIL
    assert "pip install 'sweeper[wandb]'" in trial.user_attrs["fail_reason"]
    assert "trainer curve()" in trial.user_attrs["fail_reason"]


@pytest.mark.ray
def test_wandb_style_trainers_on_ray_workers_one_run_each(project: Path, ray_trainers: None) -> None:
    url = f"sqlite:///{project / 's.db'}"
    spec = {
        "name": "onray",
        "method": "grid",
        "metric": {"name": "loss", "goal": "minimize"},
        "early_terminate": {"type": "hyperband", "min_iter": 2, "eta": 2},
        # Steps of 0.1 s: the pruner's answer to the 2nd report reaches the trial before its end.
        "parameters": {"x": {"values": [1.0, 8.0, 2.0, 9.0]}, "steps": {"value": 6}, "pause": {"value": 0.1}},
        "sweeper": {"max_concurrent": 1},
    }
    sweep_id = sweeper.sweep(spec, storage=url)
    sweeper.agent(sweep_id, function=wandb_trainers.curve, storage=url, executor="ray")
    trials = _trials(url, sweep_id)
    by_x = {t.params["x"]: t for t in trials}
    assert by_x[1.0].state == TrialState.COMPLETE and by_x[1.0].values == [pytest.approx(1.0 / 6)]
    assert by_x[9.0].state == TrialState.PRUNED  # worse than half the trials at 2 reports
    runs = _wandb_runs(trials)
    assert len(runs) == 4
    for t in trials:
        run = runs[f"onray-{t.number}"]
        assert run.params == {"x": t.params["x"], "steps": 6, "pause": 0.1}
        assert dict(run.history["loss"]) == t.intermediate_values
    # Several trials ran one after another in the same Ray worker process, each with its own run.
    pids = [int(v) for t in trials for _, v in runs[f"onray-{t.number}"].history["pid"][:1]]
    assert len(set(pids)) < len(pids)
