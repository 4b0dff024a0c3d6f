"""The scheduler of ``sweeps/custom_optuna.yaml`` (W&B's ``scheduler: {engine: optuna}``).

``build_study`` returns the Optuna study whose sampler proposes the trials and whose pruner stops
them (only those and the direction are used: the sweep's storage holds the trials).
``search_space`` defines the space by run, as in W&B's own example: ``complexity`` first, then an
``n_estimators`` range that depends on it, and a leaf size only deep forests search. It returns
the trainer's config (nested mappings allowed); given the same params it must return the same
config, since a retried trial replays them.
"""

from __future__ import annotations

from typing import Any

import optuna


def build_study() -> optuna.Study:
    return optuna.create_study(
        direction="minimize",  # the spec's metric: val_loss, minimize
        sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=8),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=10),
    )


def search_space(trial: optuna.Trial) -> dict[str, Any]:
    complexity = trial.suggest_categorical("complexity", ["shallow", "deep"])
    if complexity == "shallow":
        n_estimators = trial.suggest_int("n_estimators", 10, 40)
        tree: dict[str, Any] = {}
    else:
        n_estimators = trial.suggest_int("n_estimators", 60, 100)
        tree = {"min_samples_leaf": trial.suggest_int("min_samples_leaf", 1, 8)}
    return {
        "complexity": complexity,
        "n_estimators": n_estimators,
        "max_features": trial.suggest_float("max_features", 0.5, 1.0),
        "tree": tree,
    }
