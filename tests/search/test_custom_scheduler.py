"""`method: custom` with `scheduler: {engine: optuna}`: the user's study and define-by-run space.

The agent runs in-process here (`--executor local`); test_custom_scheduler_ray.py runs it on Ray.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import optuna
import pytest
import search_trainers
from click.testing import CliRunner
from optuna.trial import TrialState
from scheduler_source import SOURCE, sampler_calls

import sweeper
from sweeper import api
from sweeper.cli import main
from sweeper.errors import SpecError
from sweeper.search.custom import MAX_FAILURES_IN_ROW, load_scheduler
from sweeper.search.strategy import plan_search
from sweeper.spec.reader import load_spec
from sweeper.storage.sweeps import list_sweeps, load_study
from sweeper.storage.urls import open_storage

SCHEDULER = {
    "engine": "optuna",
    "source": "scheduler.py",
    "optimizer": "build_study",
    "search_space": "space",
}


@pytest.fixture(autouse=True)
def _scheduler_file(project: Path) -> None:
    """The scheduler source file ``scheduler.py`` in the scratch project (the cwd)."""
    (project / "scheduler.py").write_text(SOURCE)


def custom_spec(**changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "method": "custom",
        "metric": {"name": "loss", "goal": "minimize"},
        "run_cap": 6,
        "scheduler": dict(SCHEDULER),
    }
    for key, value in changes.items():
        if key == "scheduler":
            spec["scheduler"] = {**SCHEDULER, **value}
        else:
            spec[key] = value
    return spec


def write_spec(directory: Path, spec: dict[str, Any], name: str = "custom.yaml") -> Path:
    path = directory / name
    path.write_text(json.dumps(spec))  # JSON is YAML
    return path


def trials_of(url: str) -> list[optuna.trial.FrozenTrial]:
    storage = open_storage(url)
    (sweep,) = list_sweeps(storage)
    return load_study(storage, sweep.id).trials


def replayed(params: dict[str, Any]) -> dict[str, Any]:
    """What the test space returns for these params (the space, written out)."""
    tree = {"min_samples_leaf": params["min_samples_leaf"]} if params["complexity"] == "deep" else {}
    return {
        "complexity": params["complexity"],
        "n_estimators": params["n_estimators"],
        "tree": tree,
        "lr": params["lr"],
    }


# -- running -------------------------------------------------------------------------------------


def test_the_users_sampler_proposes_conditional_configs_in_the_agent(project: Path) -> None:
    url = f"sqlite:///{project / 's.db'}"
    sweep_id = sweeper.sweep(write_spec(project, custom_spec()), storage=url)
    # Loading the file checks the space on a scratch study with its own sampler, never the user's.
    assert sampler_calls(project) == []

    first = sweeper.agent(
        sweep_id, function=search_trainers.conditional, storage=url, executor="local", count=2
    )
    rest = sweeper.agent(sweep_id, function=search_trainers.conditional, storage=url, executor="local")

    assert (first.complete, rest.complete, rest.state) == (2, 4, "finished")  # count, then run_cap
    trials = trials_of(url)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 6
    for trial in trials:
        # The trainer got what the space returned (nested dict included), stored as the trial's config.
        assert trial.user_attrs["config"] == replayed(trial.params)
        expected = {"complexity", "n_estimators", "lr"} | (
            {"min_samples_leaf"} if "deep" in str(trial.params) else set()
        )
        assert set(trial.params) == expected
    assert {t.params["complexity"] for t in trials} == {"shallow", "deep"}
    # Every param of every trial was drawn by the user's sampler, in this process (the agent's).
    calls = sampler_calls(project)
    assert {(number, name) for _, _, number, name in calls} == {
        (t.number, n) for t in trials for n in t.params
    }
    assert {(pid, study) for pid, study, _, _ in calls} == {(os.getpid(), sweep_id)}


def test_preview_shows_the_configs_the_users_sampler_gives_the_trials(project: Path) -> None:
    url = f"sqlite:///{project / 's.db'}"
    path = write_spec(project, custom_spec())
    result = CliRunner().invoke(main, ["preview", str(path), "-n", "6"])
    assert result.exit_code == 0, result.output
    assert "custom: 6 config(s) proposed by the scheduler's RecordingTPE" in result.stderr
    previewed = [json.loads(line) for line in result.stdout.splitlines()]
    assert {c["complexity"] for c in previewed} == {"shallow", "deep"}
    for config in previewed:  # conditional: each complexity has its own range and keys
        low, high = (10, 40) if config["complexity"] == "shallow" else (60, 100)
        assert low <= config["n_estimators"] <= high
        assert ("min_samples_leaf" in config["tree"]) == (config["complexity"] == "deep")

    # The seeded sampler's start-up draws: exactly what the sweep's trials get, in order.
    sweep_id = sweeper.sweep(path, storage=url)
    sweeper.agent(sweep_id, function=search_trainers.conditional, storage=url, executor="local")
    assert [t.user_attrs["config"] for t in trials_of(url)] == previewed

    seeded = CliRunner().invoke(main, ["preview", str(path), "--seed", "3"])
    assert seeded.exit_code == 2
    assert "--seed does not apply to method custom" in seeded.stderr


def test_the_users_pruner_prunes(project: Path) -> None:
    url = f"sqlite:///{project / 's.db'}"
    spec = custom_spec(run_cap=3, scheduler={"optimizer": "build_pruning_study"})
    sweep_id = sweeper.sweep(write_spec(project, spec), storage=url)

    # Stops travel while the trial goes on (no report waits for its decision): 1 s a step lets
    # each decision reach the trainer before its next report, on a loaded machine too. (It fell
    # short on CI at 0.1, 0.3 and 1 s: the test session's million objects made each full garbage
    # collection in the agent's process a 0.5-1.4 s stall; the agent now freezes the heap it finds.)
    def paced(config: dict[str, Any], trial: Any) -> float:
        return search_trainers.conditional({**config, "sleep_s": 1.0}, trial)

    summary = sweeper.agent(sweep_id, function=paced, storage=url, executor="local")

    assert (summary.pruned, summary.complete) == (3, 0)
    for trial in trials_of(url):
        assert trial.state == TrialState.PRUNED
        # PruneFromStep(2) stopped it at step 2; the stop is raised at its next report (W&B's semantics).
        assert sorted(trial.intermediate_values) == [1, 2, 3]


def test_a_retry_replays_the_same_params_and_config(project: Path) -> None:
    url = f"sqlite:///{project / 's.db'}"
    spec = custom_spec(run_cap=2, sweeper={"retries": 1})
    (project / "scheduler.py").write_text(
        SOURCE.replace('"lr": lr}', '"lr": lr, "fail_first_attempt": True}')
    )
    sweep_id = sweeper.sweep(write_spec(project, spec), storage=url)
    summary = sweeper.agent(sweep_id, function=search_trainers.conditional, storage=url, executor="local")

    assert (summary.failed, summary.complete) == (2, 2)
    trials = trials_of(url)
    for retry in (t for t in trials if t.user_attrs.get("retry_of") is not None):
        original = trials[retry.user_attrs["retry_of"]]
        assert original.state == TrialState.FAIL and retry.state == TrialState.COMPLETE
        assert retry.params == original.params
        assert retry.user_attrs["config"] == original.user_attrs["config"]
    assert sum(1 for t in trials if t.user_attrs.get("retry_of") is not None) == 2


def test_without_optimizer_optuna_defaults_seeded_and_no_pruner(project: Path) -> None:
    spec = load_spec(custom_spec(scheduler={"optimizer": None}, sweeper={"seed": 5}))
    spec = load_spec({**spec.raw, "scheduler": {k: v for k, v in SCHEDULER.items() if k != "optimizer"}})
    first, second = load_scheduler(spec, project), load_scheduler(spec, project)
    assert isinstance(first.sampler, optuna.samplers.TPESampler) and first.pruner is None
    draws = []
    for loaded in (first, second):
        study = optuna.create_study(sampler=loaded.sampler)
        assert loaded.space is not None
        draws.append(loaded.space.run(study.ask()))
    assert draws[0] == draws[1]  # sweeper.seed seeds it


@pytest.mark.parametrize(
    ("study", "kept"),
    [
        ("optuna.create_study()", None),  # Optuna's implicit MedianPruner: W&B's default is none
        ("optuna.create_study(pruner=optuna.pruners.NopPruner())", None),
        ("optuna.create_study(pruner=optuna.pruners.MedianPruner(n_startup_trials=1))", "MedianPruner"),
        ("optuna.create_study(pruner=optuna.pruners.ThresholdPruner(upper=1.0))", "ThresholdPruner"),
        ("optuna.create_study(pruner=PruneFromStep(2))", "PruneFromStep"),
    ],
)
def test_the_pruner_is_the_studys_unless_it_is_optunas_implicit_default(
    project: Path, study: str, kept: str | None
) -> None:
    (project / "scheduler.py").write_text(SOURCE + f"\n\ndef chosen():\n    return {study}\n")
    loaded = plan_search(load_spec(custom_spec(scheduler={"optimizer": "chosen"})), project)
    assert loaded.scheduler is not None
    assert (type(loaded.pruner(["minimize"])).__name__ if kept else loaded.pruner(["minimize"])) == kept


# -- the user's file: located errors -------------------------------------------------------------

BROKEN = [
    # (what is wrong, the source file's extra text, scheduler changes, spec changes, the message)
    (
        "no such function",
        "",
        {"optimizer": "make_study"},
        {},
        r"scheduler\.optimizer: .*scheduler\.py defines no "
        r"'make_study' \(its functions: build_pruning_study, build_study, space\)",
    ),
    (
        "optimizer takes arguments",
        "def needs(x):\n    return x\n",
        {"optimizer": "needs"},
        {},
        r"scheduler\.optimizer: needs\(\) in .* must take no arguments, not needs\(x\)",
    ),
    (
        "optimizer raises",
        "def boom():\n    raise RuntimeError('no GPU')\n",
        {"optimizer": "boom"},
        {},
        r"scheduler\.optimizer: boom\(\) raised RuntimeError: no GPU",
    ),
    (
        "optimizer returns no study",
        "def sampler_only():\n    return optuna.samplers.TPESampler()\n",
        {"optimizer": "sampler_only"},
        {},
        r"scheduler\.optimizer: sampler_only\(\) must return an optuna\.Study .*got TPESampler",
    ),
    (
        "directions disagree",
        "def maximizing():\n    return optuna.create_study(direction='maximize')\n",
        {"optimizer": "maximizing"},
        {},
        r"scheduler\.optimizer: maximizing\(\) returned a study with directions \['maximize'\], "
        r"but the spec's metric asks for \['minimize'\]",
    ),
    (
        "several objectives, one direction",
        "",
        {},
        {"metric": None, "metrics": [{"name": "a"}, {"name": "b"}]},
        r"scheduler\.optimizer: build_study\(\) returned a study with directions \['minimize'\], "
        r"but the spec's metrics asks for \['minimize', 'minimize'\]",
    ),
    (
        "a pruner on several objectives",
        "def two():\n"
        "    return optuna.create_study(directions=['minimize', 'maximize'], pruner=PruneFromStep(1))\n",
        {"optimizer": "two"},
        {"metric": None, "metrics": [{"name": "a"}, {"name": "b", "goal": "maximize"}]},
        r"scheduler\.optimizer: two\(\) returned a study with a PruneFromStep, "
        r"but Optuna's pruners cannot judge",
    ),
    (
        "search space takes no trial",
        "def nothing():\n    return {}\n",
        {"search_space": "nothing"},
        {},
        r"scheduler\.search_space: nothing\(\) in .* must take one argument \(an optuna\.Trial\)",
    ),
    (
        "search space raises",
        "def strict(trial):\n    raise ValueError('bad range')\n",
        {"search_space": "strict"},
        {},
        r"scheduler\.search_space: strict\(trial\) raised ValueError: bad range",
    ),
    (
        "search space returns no mapping",
        "def params_only(trial):\n    trial.suggest_int('x', 0, 3)\n",
        {"search_space": "params_only"},
        {},
        r"scheduler\.search_space: params_only\(trial\) must return the trial's config as a mapping "
        r"\(e\.g\. `return trial\.params`\), got NoneType",
    ),
    (
        "search space returns no plain data",
        "def objects(trial):\n    return {'a': {'b': object()}}\n",
        {"search_space": "objects"},
        {},
        r"scheduler\.search_space: objects\(trial\) returned a config that is not plain data: a\.b: object ",
    ),
    (
        "search space not reproducible",
        "import random\n\ndef noisy(trial):\n"
        "    return {'x': trial.suggest_int('x', 0, 3), 'noise': random.random()}\n",
        {"search_space": "noisy"},
        {},
        r"scheduler\.search_space: noisy\(trial\) must give the same config for the same params",
    ),
]


@pytest.mark.parametrize(
    ("what", "extra", "scheduler", "changes", "message"), BROKEN, ids=[b[0] for b in BROKEN]
)
def test_a_broken_scheduler_file_is_a_located_error(
    project: Path, what: str, extra: str, scheduler: dict[str, Any], changes: dict[str, Any], message: str
) -> None:
    (project / "scheduler.py").write_text(SOURCE + "\n\n" + extra)
    data = custom_spec(scheduler=scheduler, **{k: v for k, v in changes.items() if v is not None})
    for key, value in changes.items():
        if value is None:
            del data[key]
    path = write_spec(project, data)
    with pytest.raises(SpecError, match=f"^{path}: {message}"):
        plan_search(load_spec(path), project)


def test_validate_and_submit_report_the_users_file_and_create_nothing(project: Path) -> None:
    url = f"sqlite:///{project / 's.db'}"
    (project / "broken_scheduler.py").write_text("import optuna\n\ndef build_study(:\n")
    path = write_spec(project, custom_spec(scheduler={"source": "broken_scheduler.py"}))
    runner = CliRunner()
    validated = runner.invoke(main, ["validate", str(path)])
    assert validated.exit_code == 2
    assert (
        f"error: {path}: scheduler.source: {project / 'broken_scheduler.py'} failed to import: SyntaxError"
        in (validated.stderr)
    )
    submitted = runner.invoke(main, ["submit", str(path), "--storage", url])
    assert submitted.exit_code == 2 and "failed to import: SyntaxError" in submitted.stderr
    assert "Traceback" not in validated.output + submitted.output
    assert list_sweeps(open_storage(url)) == []

    good = runner.invoke(main, ["validate", str(write_spec(project, custom_spec(), "good.yaml"))])
    assert good.exit_code == 0, good.output
    assert (
        "good.yaml: ok (custom, searched parameters defined by run; engine optuna: RecordingTPE, no pruner, "
        "define-by-run space space())"
    ) in good.stdout


def test_the_source_is_found_next_to_the_spec_then_in_the_project(project: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "specs"
    elsewhere.mkdir()
    (elsewhere / "scheduler.py").write_text(SOURCE.replace("seed=7", "seed=8"))
    next_to_spec = load_spec(write_spec(elsewhere, custom_spec()))
    assert plan_search(next_to_spec, project).scheduler.source == (elsewhere / "scheduler.py")  # type: ignore[union-attr]
    from_project = load_spec(custom_spec())  # a mapping: no spec file to look next to
    assert plan_search(from_project, project).scheduler.source == project / "scheduler.py"  # type: ignore[union-attr]
    absolute = load_spec(custom_spec(scheduler={"source": str(elsewhere / "scheduler.py")}))
    assert plan_search(absolute, project).scheduler.source == elsewhere / "scheduler.py"  # type: ignore[union-attr]

    missing = write_spec(elsewhere, custom_spec(scheduler={"source": "nope.py"}), "missing.yaml")
    with pytest.raises(SpecError, match=rf"^{missing}: scheduler\.source: no file 'nope\.py' \(looked for "):
        plan_search(load_spec(missing), project)


# -- the search space failing during a sweep -----------------------------------------------------

# Fails on the agent's calls past the check's (4 asked + 4 replayed): on chosen trials only.
FLAKY = """

CHECK_CALLS = 8
calls = 0


def flaky(trial):
    global calls
    calls += 1
    if calls - CHECK_CALLS in FAILING:
        raise RuntimeError(f"call {calls} went wrong")
    return space(trial)
"""


def test_a_search_space_failure_fails_its_trial_and_the_agent_goes_on(project: Path) -> None:
    url = f"sqlite:///{project / 's.db'}"
    (project / "scheduler.py").write_text(SOURCE + FLAKY + "\nFAILING = {2}\n")
    spec = load_spec(custom_spec(run_cap=4, scheduler={"search_space": "flaky"}))
    sweep_id = sweeper.sweep(spec, storage=url)
    summary = sweeper.agent(sweep_id, function=search_trainers.conditional, storage=url, executor="local")

    states = [t.state for t in trials_of(url)]
    assert states == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    reason = trials_of(url)[1].user_attrs["fail_reason"]
    assert reason == "<mapping>: scheduler.search_space: flaky(trial) raised RuntimeError: call 10 went wrong"
    assert (summary.complete, summary.state) == (3, "finished")


def test_search_space_failures_in_a_row_stop_the_agent_leaving_nothing_running(project: Path) -> None:
    url = f"sqlite:///{project / 's.db'}"
    (project / "scheduler.py").write_text(SOURCE + FLAKY + "\nFAILING = set(range(2, 100))\n")
    sweep_id = sweeper.sweep(
        load_spec(custom_spec(run_cap=10, scheduler={"search_space": "flaky"})), storage=url
    )
    with pytest.raises(
        SpecError,
        match=rf"raised RuntimeError: call \d+ went wrong \({MAX_FAILURES_IN_ROW} trials "
        r"in a row; stopping\)",
    ):
        sweeper.agent(sweep_id, function=search_trainers.conditional, storage=url, executor="local")
    states = [t.state for t in trials_of(url)]
    assert (
        states[: 1 + MAX_FAILURES_IN_ROW] == [TrialState.COMPLETE] + [TrialState.FAIL] * MAX_FAILURES_IN_ROW
    )
    assert TrialState.RUNNING not in states


def test_repeat_replays_a_define_by_run_config_with_seeds(project: Path) -> None:
    url = f"sqlite:///{project / 's.db'}"
    sweep_id = sweeper.sweep(load_spec(custom_spec(run_cap=2)), storage=url)
    sweeper.agent(sweep_id, function=search_trainers.conditional, storage=url, executor="local")
    api.repeat(sweep_id, 0, [11, 12], storage=url, function=search_trainers.conditional, executor="local")

    trials = trials_of(url)
    repeats = [t for t in trials if t.user_attrs.get("repeat_of") == 0]
    assert [t.state for t in repeats] == [TrialState.COMPLETE] * 2
    for repeat, seed in zip(repeats, (11, 12), strict=True):
        assert repeat.params == trials[0].params
        assert repeat.user_attrs["config"] == {**trials[0].user_attrs["config"], "seed": seed}


def test_a_multi_objective_study_over_the_specs_parameters(project: Path) -> None:
    (project / "scheduler.py").write_text(
        SOURCE
        + "\n\ndef pareto():\n"
        + "    return optuna.create_study(directions=['minimize', 'minimize'],"
        + " sampler=optuna.samplers.NSGAIISampler(seed=2, population_size=4))\n"
    )
    url = f"sqlite:///{project / 's.db'}"
    spec = {
        "method": "custom",
        "metrics": [{"name": "a"}, {"name": "b"}],
        "run_cap": 6,
        "parameters": {"x": {"min": 0.0, "max": 1.0}},
        "scheduler": {"engine": "optuna", "source": "scheduler.py", "optimizer": "pareto"},
    }
    sweep_id = sweeper.sweep(spec, storage=url)
    summary = sweeper.agent(sweep_id, function=search_trainers.two_objectives, storage=url, executor="local")

    assert summary.complete == 6 and summary.pareto_size == 6  # a and b conflict everywhere on [0, 1]
    for trial in trials_of(url):
        assert trial.user_attrs["config"] == {"x": trial.params["x"]}
        assert trial.values == pytest.approx([trial.params["x"] ** 2, (1 - trial.params["x"]) ** 2])
    # NSGA-II's first generation is random draws with its seed: a rerun proposes the same points.
    again = sweeper.sweep(spec, storage=url)
    sweeper.agent(again, function=search_trainers.two_objectives, storage=url, executor="local", count=4)
    first = [t.params["x"] for t in load_study(open_storage(url), sweep_id).trials[:4]]
    assert [t.params["x"] for t in load_study(open_storage(url), again).trials[:4]] == first


def test_a_wandb_style_run_suggestion_gives_its_config(project: Path) -> None:
    # W&B's SDK examples return RunSuggestion(config=trial.params, run_id=trial.number).
    suggestion = (
        "\n\nclass RunSuggestion:\n"
        "    def __init__(self, config, run_id):\n"
        "        self.config, self.run_id = config, run_id\n\n\n"
        "def wandb_style(trial):\n"
        "    trial.suggest_categorical('complexity', ['shallow', 'deep'])\n"
        "    return RunSuggestion(config=trial.params, run_id=trial.number)\n"
    )
    (project / "scheduler.py").write_text(SOURCE + suggestion)
    plan = plan_search(load_spec(custom_spec(scheduler={"search_space": "wandb_style"})), project)
    assert plan.scheduler is not None and plan.scheduler.space is not None
    trial = optuna.create_study().ask()
    assert plan.scheduler.space.run(trial) == {"complexity": trial.params["complexity"]}
