"""Each example spec, run for real: `sweeper run SPEC --count N` on the session's Ray (4 fake GPUs).

The agent runs in a scratch directory holding a link to the repository's ``trainers/``, as a user's
project directory would, so its ``.sweeper/`` outputs (trackers, checkpoints) stay out of the repo.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
import pytest
from click.testing import CliRunner

from sweeper.cli import main
from sweeper.storage.sweeps import list_sweeps, load_study
from sweeper.storage.urls import open_storage
from trainers import functions

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.usefixtures("ray_session")]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "trainers").symlink_to(REPO / "trainers", target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_spec(project: Path, name: str, *args: str) -> optuna.Study:
    url = f"sqlite:///{project / 'sweeps.db'}"
    result = CliRunner().invoke(main, ["run", str(REPO / "sweeps" / f"{name}.yaml"), "--storage", url, *args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    storage = open_storage(url)
    (sweep,) = list_sweeps(storage)
    return load_study(storage, sweep.id)


def ended(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Trials that ran (the agent may have queued more than --count, as WAITING)."""
    return [t for t in study.trials if t.state.is_finished()]


def states(study: optuna.Study) -> dict[str, int]:
    counts: dict[str, int] = {}
    for trial in ended(study):
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    return counts


def config(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    return dict(trial.user_attrs["config"])


def test_quickstart(project: Path) -> None:
    study = run_spec(project, "quickstart", "--count", "3")
    assert states(study) == {"COMPLETE": 3}
    for trial in ended(study):
        assert 0 < trial.value < 1  # a log loss on a two-class problem that the model learns
        assert set(config(trial)) == {"learning_rate", "max_iter", "l2_regularization"}


def test_asha_prunes_and_never_prunes_the_best_config(project: Path) -> None:
    # One trial at a time makes the pruning decisions a function of the seed alone.
    study = run_spec(project, "asha", "--count", "12", "--max-concurrent", "1")
    counts = states(study)
    assert counts.get("PRUNED", 0) > 0
    assert counts.get("PRUNED", 0) + counts.get("COMPLETE", 0) == 12
    trials = ended(study)
    best = min(trials, key=lambda t: functions.branin_value(config(t)["x1"], config(t)["x2"]))
    # The curve ranks configs as the function does, so the best config is in the top third at every rung.
    assert best.state == optuna.trial.TrialState.COMPLETE
    for trial in ended(study):
        steps = sorted(trial.intermediate_values)
        assert steps == list(range(1, len(steps) + 1))
        if trial.state == optuna.trial.TrialState.PRUNED:
            assert len(steps) < 27
        else:
            assert trial.value == pytest.approx(
                functions.multifidelity_branin_value(config(trial)["x1"], config(trial)["x2"], 27)
            )


def test_hyperband_stops_bad_learning_rates_early(project: Path) -> None:
    study = run_spec(project, "hyperband", "--count", "6", "--max-concurrent", "1")
    counts = states(study)
    assert counts.get("PRUNED", 0) > 0
    assert counts.get("PRUNED", 0) + counts.get("COMPLETE", 0) == 6
    for trial in ended(study):
        reports = len(trial.intermediate_values)
        assert reports < 30 if trial.state == optuna.trial.TrialState.PRUNED else reports == 30


def test_warm_start_loads_the_priors_next_to_the_spec_and_runs_its_own_trials(project: Path) -> None:
    study = run_spec(project, "warm_start", "--count", "3")
    priors = [t for t in study.trials if "prior" in t.user_attrs]
    assert len(priors) == 20 and all(t.state == optuna.trial.TrialState.COMPLETE for t in priors)
    assert states(study) == {"COMPLETE": 23}
    own = [t for t in ended(study) if "prior" not in t.user_attrs]
    assert [t.number for t in own] == [20, 21, 22]
    for trial in own:
        assert trial.value == pytest.approx(functions.branin_value(config(trial)["x1"], config(trial)["x2"]))


def test_multi_objective(project: Path) -> None:
    study = run_spec(project, "multi_objective", "--count", "5")
    assert states(study) == {"COMPLETE": 5}
    for trial in ended(study):
        expected = functions.branin_currin(config(trial), None)
        assert trial.values == pytest.approx([expected["branin"], expected["currin"]])
    result = CliRunner().invoke(
        main, ["best", study.study_name, "--storage", f"sqlite:///{project / 'sweeps.db'}"]
    )
    assert result.exit_code == 0, result.output


def test_nested_parameters_reach_the_trainer_as_a_dict(project: Path) -> None:
    study = run_spec(project, "nested", "--count", "3")
    assert states(study) == {"COMPLETE": 3}
    for trial in ended(study):
        tree = config(trial)["tree"]
        assert set(tree) == {"max_leaf_nodes", "max_depth", "min_samples_leaf"}
        assert trial.params["tree.max_leaf_nodes"] == tree["max_leaf_nodes"]
        assert 0.5 < trial.value <= 1.0


def test_conditional_parameters_reach_the_trainer_only_when_active(project: Path) -> None:
    # The trainer (trainers.functions.model_family) fails a config holding another family's settings.
    study = run_spec(project, "conditional", "--count", "8")
    assert states(study) == {"COMPLETE": 8}
    for trial in ended(study):
        got = config(trial)
        family = got["model"]
        assert {"svm", "forest", "boosting"} & set(got) == {family}
        assert {name.split(".")[0] for name in trial.params} <= {"model", "class_weight", family}
        assert trial.value == functions.model_family_value(got)


def test_fractional_gpus_share_the_fake_gpus(project: Path) -> None:
    # Two half-GPU trials at once: Ray places both (they may share one fake GPU).
    study = run_spec(project, "fractional_gpus", "--count", "2", "--max-concurrent", "2")
    assert states(study) == {"COMPLETE": 2}
    for trial in ended(study):
        assert sorted(trial.intermediate_values) == [1, 2, 3, 4, 5]
        assert 0.5 < trial.value <= 1.0


def test_program_runs_the_wandb_script(project: Path) -> None:
    study = run_spec(project, "program", "--count", "2")
    assert states(study) == {"COMPLETE": 2}, [t.user_attrs.get("fail_reason") for t in ended(study)]
    for trial in ended(study):
        assert config(trial)["epochs"] == 5
        # wandb.log() alone reports: one row per epoch, at W&B's steps 0..4.
        assert sorted(trial.intermediate_values) == [0, 1, 2, 3, 4]
        assert trial.value == min(trial.intermediate_values.values())


def test_trackers_record_every_trial_in_jsonl_mlflow_and_tensorboard(project: Path) -> None:
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    study = run_spec(project, "trackers", "--count", "2")
    assert states(study) == {"COMPLETE": 2}
    sweep_dir = project / ".sweeper" / "sweeps" / study.study_name
    client = MlflowClient(tracking_uri=f"sqlite:///{sweep_dir / 'mlflow.db'}")
    for trial in ended(study):
        refs = trial.user_attrs["tracker_runs"]
        assert set(refs) == {"jsonl", "mlflow", "tensorboard"}, trial.user_attrs.get("tracker_errors")
        assert not trial.user_attrs.get("tracker_errors")
        history = client.get_metric_history(refs["mlflow"], "val_loss")
        assert min(m.value for m in history) == pytest.approx(trial.value)
    jsonl_rows = [
        json.loads(line) for path in sweep_dir.rglob("*.jsonl") for line in path.read_text().splitlines()
    ]
    assert jsonl_rows
    event_files = list((sweep_dir / "tensorboard").rglob("events.out.tfevents.*"))
    assert event_files
    tags = set()
    for path in event_files:
        accumulator = EventAccumulator(str(path))
        accumulator.Reload()
        tags |= set(accumulator.Tags().get("scalars", [])) | set(accumulator.Tags().get("tensors", []))
    assert any("val_loss" in tag for tag in tags)


def test_digits(project: Path) -> None:
    study = run_spec(project, "digits", "--count", "1")
    assert states(study) == {"COMPLETE": 1}
    for trial in ended(study):
        assert sorted(trial.intermediate_values) == list(range(1, 11))
        assert trial.value == max(trial.intermediate_values.values())


def test_custom_optuna_scheduler_runs_its_conditional_space_four_at_a_time(project: Path) -> None:
    spec_path = str(REPO / "sweeps" / "custom_optuna.yaml")
    preview = CliRunner().invoke(main, ["preview", spec_path, "-n", "8"])
    assert preview.exit_code == 0, preview.output
    previewed = [json.loads(line) for line in preview.stdout.splitlines()]

    study = run_spec(project, "custom_optuna", "--count", "8")
    trials = sorted(ended(study), key=lambda t: t.number)
    assert len(trials) == 8 and {t.state.name for t in trials} <= {"COMPLETE", "PRUNED"}
    # The study's seeded TPE sampler proposed them: its first draws, exactly as preview shows them.
    assert [config(t) for t in trials] == previewed
    for trial in trials:
        shallow = config(trial)["complexity"] == "shallow"
        assert (
            (10 <= trial.params["n_estimators"] <= 40)
            if shallow
            else (60 <= trial.params["n_estimators"] <= 100)
        )
        assert ("min_samples_leaf" in trial.params) == (not shallow)
    # sweeper.max_concurrent: 4, and the agent kept the four slots busy. (In the storage a freed slot's
    # next trial starts just before the trial that freed it is recorded: its end is refilled first.
    # That never more than four trials run at once is checked with the trainers' own clocks in
    # tests/search/test_custom_scheduler_ray.py.)
    overlaps = [
        sum(1 for o in trials if o.datetime_start <= t.datetime_start < o.datetime_complete) for t in trials
    ]
    assert max(overlaps) >= 4


def test_wandb_tutorial_trainer_runs_unchanged(project: Path) -> None:
    study = run_spec(project, "wandb_tutorial", "--count", "1")
    assert states(study) == {"COMPLETE": 1}, [t.user_attrs.get("fail_reason") for t in ended(study)]
    (trial,) = ended(study)
    # wandb.log() once per epoch: rows at W&B's steps 0..9 reach the trial.
    assert sorted(trial.intermediate_values) == list(range(10))
    assert trial.value == min(trial.intermediate_values.values())
    run_dir = Path(trial.user_attrs["tracker_runs"]["wandb"])
    assert run_dir.parent == project / ".sweeper" / "sweeps" / study.study_name / "wandb"
    assert list(run_dir.glob("*.wandb"))
