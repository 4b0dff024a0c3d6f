"""The scikit-learn and PyTorch example trainers, run directly against a stand-in trial."""

from __future__ import annotations

import doctest
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sweeper.errors import TrialPruned
from trainers import boosting, digits, forest


@pytest.mark.parametrize("module", [boosting, digits, forest])
def test_doctests_pass(module) -> None:
    result = doctest.testmod(module)
    assert result.attempted > 0
    assert result.failed == 0


def test_boosting_reports_every_chunk_and_learns(make_trial) -> None:
    trial = make_trial()
    assert boosting.train({"max_iter": 35, "report_every": 10, "learning_rate": 0.2}, trial) is None
    assert trial.steps() == [10, 20, 30, 35]
    for _, metrics in trial.rows:
        assert set(metrics) == {"train_loss", "val_loss", "val_accuracy"}
        assert 0.0 <= metrics["val_accuracy"] <= 1.0
    losses = trial.series("train_loss")
    assert losses[-1] < losses[0]


def test_forest_grows_in_chunks_and_stops_when_pruned(make_trial) -> None:
    shallow, deep = make_trial(), make_trial()
    forest.train({"complexity": "shallow", "n_estimators": 25, "report_every": 10}, shallow)
    forest.train({"complexity": "deep", "n_estimators": 20, "tree": {"min_samples_leaf": 2}}, deep)
    assert shallow.steps() == [10, 20, 25] and deep.steps() == [10, 20]
    for _, metrics in shallow.rows + deep.rows:
        assert set(metrics) == {"val_loss", "val_accuracy"} and 0.8 < metrics["val_accuracy"] <= 1.0
    pruned = make_trial(prune_at_report=1)
    with pytest.raises(TrialPruned):
        forest.train({"n_estimators": 40}, pruned)
    assert pruned.steps() == [10]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"complexity": "medium"}, r"complexity must be one of \('shallow', 'deep'\), got 'medium'"),
        ({"n_estimators": 0}, "n_estimators must be >= 1, got 0"),
        ({"tree": {"max_depth": 3}}, r"unknown key\(s\) tree\.max_depth"),
        ({"max_features": 0}, r"max_features must be in \(0, 1\], got 0"),
        ({"val_fraction": 1}, r"val_fraction must be in \(0, 1\), got 1"),
    ],
)
def test_forest_rejects_bad_configs(config, message) -> None:
    with pytest.raises(ValueError, match=message):
        forest.settings(config)


def test_boosting_takes_nested_tree_settings_and_other_datasets(make_trial) -> None:
    stumps, deep = make_trial(), make_trial()
    config = {"dataset": "wine", "max_iter": 10, "learning_rate": 0.3}
    boosting.train({**config, "tree": {"max_depth": 1, "max_leaf_nodes": 2}}, stumps)
    boosting.train({**config, "tree": {"max_depth": 6}}, deep)
    # Deeper trees fit the training data better in the same number of stages.
    assert deep.series("train_loss")[-1] < stumps.series("train_loss")[-1]


def test_boosting_stops_when_pruned(make_trial) -> None:
    trial = make_trial(prune_at_report=2)
    with pytest.raises(TrialPruned):
        boosting.train({"max_iter": 100, "report_every": 10}, trial)
    assert trial.steps() == [10, 20]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"learnin_rate": 0.1}, "unknown key.*learnin_rate; expected some of dataset, learning_rate"),
        ({"tree": {"depth": 3}}, "unknown key.*tree.depth"),
        ({"tree": 3}, "tree must be a mapping, got 3"),
        ({"dataset": "mnist"}, r"dataset must be one of \('breast_cancer', 'wine'\), got 'mnist'"),
        ({"report_every": 0}, "report_every must be >= 1, got 0"),
        ({"val_fraction": 1.5}, r"val_fraction must be in \(0, 1\), got 1.5"),
    ],
)
def test_boosting_rejects_bad_configs(config, message, make_trial) -> None:
    with pytest.raises(ValueError, match=message):
        boosting.train(config, make_trial())


def test_digits_logs_each_epoch_and_checkpoints(make_trial) -> None:
    trial = make_trial()
    digits.train({"epochs": 3, "lr": 0.01}, trial)
    assert trial.steps() == [1, 2, 3]
    assert set(trial.rows[0][1]) == {"train_loss", "train_accuracy", "val_loss", "val_accuracy"}
    assert trial.series("val_loss")[-1] < trial.series("val_loss")[0]
    assert (trial.checkpoint_dir / digits.CHECKPOINT).is_file()


def test_digits_resumes_from_its_checkpoint_as_if_never_stopped(tmp_path, make_trial) -> None:
    config = {"epochs": 4, "lr": 0.01, "hidden": 32, "dropout": 0.2}
    straight = make_trial(checkpoint_dir=tmp_path / "straight")
    digits.train(config, straight)

    # First attempt pruned (or killed) after epoch 2; the retry shares the checkpoint dir.
    first = make_trial(prune_at_report=2, checkpoint_dir=tmp_path / "resumed")
    with pytest.raises(TrialPruned):
        digits.train(config, first)
    retry = make_trial(checkpoint_dir=tmp_path / "resumed")
    digits.train(config, retry)

    assert retry.steps() == [1, 2, 3, 4]
    assert retry.rows[:2] == first.rows  # finished epochs are replayed, not retrained
    for (_, resumed), (_, fresh) in zip(retry.rows, straight.rows, strict=True):
        assert resumed == pytest.approx(fresh, rel=1e-5)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"learning_rate": 0.1}, "unknown key.*learning_rate; expected some of epochs"),
        ({"optimizer": "lbfgs"}, r"optimizer must be one of \('adam', 'sgd'\), got 'lbfgs'"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\), got 1.0"),
        ({"lr": 0}, "lr must be > 0, got 0"),
    ],
)
def test_digits_rejects_bad_configs(config, message, make_trial) -> None:
    with pytest.raises(ValueError, match=message):
        digits.train(config, make_trial())


@pytest.mark.parametrize(
    ("module", "missing", "extra"),
    [
        (digits, "torch", "pip install -e '.[torch]'"),
        (digits, "sklearn", "pip install -e '.[examples]'"),
        (boosting, "sklearn", "pip install -e '.[examples]'"),
    ],
)
def test_a_missing_library_fails_at_call_time_naming_the_extra(
    module, missing, extra, make_trial, monkeypatch
) -> None:
    # None in sys.modules makes `import missing` raise ImportError, as if it were not installed
    # (set whether or not an earlier test of this process imported it).
    monkeypatch.setitem(sys.modules, missing, None)
    for name in list(sys.modules):
        if name.startswith(missing + "."):
            monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=re.escape(extra)):
        module.train({}, make_trial())


def test_wandb_script_runs_by_hand_like_any_wandb_script(tmp_path) -> None:
    script = Path(__file__).resolve().parents[2] / "trainers" / "wandb_script.py"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "SWEEPER_"))}
    done = subprocess.run(
        [sys.executable, str(script), "--epochs", "2", "--lr", "0.5"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*")  # offline by default: nothing left the machine
    assert list(run_dir.glob("*.wandb"))
