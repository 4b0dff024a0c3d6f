"""WandbRandomSampler in real Optuna studies: W&B's law, reproducible per (seed, trial number)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from sweeper import load_spec
from sweeper.search.samplers import WandbRandomSampler, draw_params
from sweeper.spec.space import SearchSpace

SPEC = {
    "method": "random",
    "parameters": {
        "lr": {"distribution": "log_uniform_values", "min": 1e-5, "max": 0.1},
        "layers": {"values": [[64], [64, 64], {"kind": "res"}]},
        "model": {
            "parameters": {
                "width": {"distribution": "q_log_uniform_values", "min": 8, "max": 512, "q": 8},
                "drop": {"distribution": "q_beta", "a": 2, "b": 5, "q": 0.05},
                "act": {"value": "relu"},
            }
        },
        "noise": {"distribution": "q_normal", "mu": 0, "sigma": 1, "q": 0.1},
        "epochs": {"min": 1, "max": 9},
    },
}


@pytest.fixture
def space() -> SearchSpace:
    return load_spec(SPEC).space


def _run(space: SearchSpace, storage: str, seed: int | None, n_jobs: int, name: str) -> optuna.Study:
    sampler = WandbRandomSampler(space, seed=seed)
    study = optuna.create_study(storage=storage, study_name=name, sampler=sampler)
    distributions = space.distributions()

    def objective(trial: optuna.Trial) -> float:
        params = {name: trial._suggest(name, dist) for name, dist in distributions.items()}
        config = space.to_config(params)
        return float(config["lr"])

    study.optimize(objective, n_trials=8, n_jobs=n_jobs)
    return study


def test_trials_get_wandb_draws_keyed_by_seed_and_number(space: SearchSpace, tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'db.sqlite'}"
    study = _run(space, storage, seed=11, n_jobs=1, name="serial")
    trials = study.get_trials()
    assert len(trials) == 8
    for trial in trials:
        assert trial.params == draw_params(space, 11, trial.number)
        assert trial.distributions == space.distributions()
    config = space.to_config(trials[0].params)
    assert config["model"]["act"] == "relu" and type(config["model"]["width"]) is int


def test_same_seed_same_configs_whatever_the_concurrency(space: SearchSpace, tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'db.sqlite'}"
    serial = _run(space, storage, seed=5, n_jobs=1, name="serial")
    parallel = _run(space, storage, seed=5, n_jobs=4, name="parallel")
    by_number = {t.number: t.params for t in parallel.get_trials()}
    assert {t.number: t.params for t in serial.get_trials()} == by_number
    other = _run(space, storage, seed=6, n_jobs=1, name="other")
    assert [t.params for t in other.get_trials()] != [t.params for t in serial.get_trials()]


def test_without_seed_the_chosen_seed_reproduces(space: SearchSpace) -> None:
    sampler = WandbRandomSampler(space)
    study = optuna.create_study(sampler=sampler)
    trial = study.ask(space.distributions())
    assert trial.params == draw_params(space, sampler.seed, trial.number)


def test_parameters_outside_the_spec_fall_back_to_random(space: SearchSpace) -> None:
    study = optuna.create_study(sampler=WandbRandomSampler(space, seed=1))
    trial = study.ask()
    value = trial.suggest_float("extra", 2.0, 3.0)
    assert 2.0 <= value <= 3.0
    # Same seed and number, same fallback value.
    again = optuna.create_study(sampler=WandbRandomSampler(space, seed=1)).ask()
    assert again.suggest_float("extra", 2.0, 3.0) == value


def test_enqueued_params_win(space: SearchSpace) -> None:
    study = optuna.create_study(sampler=WandbRandomSampler(space, seed=1))
    study.enqueue_trial({"epochs": 3})
    trial = study.ask(space.distributions())
    assert trial.params["epochs"] == 3
