"""The user's scheduler file the custom-scheduler tests write, and a reader of what its sampler recorded."""

from __future__ import annotations

from pathlib import Path

# The user's scheduler file, W&B's own example of a define-by-run space (complexity, then a range
# of n_estimators that depends on it). Its sampler records every draw it makes, with the process
# and the study it drew for, so a test can tell who proposed a trial and where.
SOURCE = """
import os
from pathlib import Path

import optuna

CALLS = Path(__file__).with_name("sampler_calls.txt")


class RecordingTPE(optuna.samplers.TPESampler):
    def sample_independent(self, study, trial, param_name, param_distribution):
        value = super().sample_independent(study, trial, param_name, param_distribution)
        with CALLS.open("a") as calls:
            calls.write(f"{os.getpid()} {study.study_name} {trial.number} {param_name} {value!r}\\n")
        return value


class PruneFromStep(optuna.pruners.BasePruner):
    def __init__(self, step):
        self.step = step

    def prune(self, study, trial):
        return trial.last_step is not None and trial.last_step >= self.step


def build_study():
    return optuna.create_study(direction="minimize", sampler=RecordingTPE(seed=7, n_startup_trials=10))


def build_pruning_study():
    return optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1), pruner=PruneFromStep(2))


def space(trial):
    complexity = trial.suggest_categorical("complexity", ["shallow", "deep"])
    if complexity == "shallow":
        n_estimators = trial.suggest_int("n_estimators", 10, 40)
        tree = {}
    else:
        n_estimators = trial.suggest_int("n_estimators", 60, 100)
        tree = {"min_samples_leaf": trial.suggest_int("min_samples_leaf", 1, 8)}
    lr = trial.suggest_float("lr", 1e-3, 1e-1, log=True)
    return {"complexity": complexity, "n_estimators": n_estimators, "tree": tree, "lr": lr}
"""


def sampler_calls(directory: Path) -> list[tuple[int, str, int, str]]:
    """(pid, study name, trial number, param) of every draw the recording sampler made."""
    path = directory / "sampler_calls.txt"
    if not path.exists():
        return []
    rows = [line.split(" ", 4) for line in path.read_text().splitlines()]
    return [(int(pid), study, int(number), name) for pid, study, number, name, _ in rows]
