"""The sampler each method gets, and bayes never proposing a taken point."""

from __future__ import annotations

import importlib.util
from typing import Any

import optuna
import pytest
from optuna.samplers import GPSampler, TPESampler

from sweeper import load_spec
from sweeper.search.samplers import WandbRandomSampler
from sweeper.search.strategy import DistinctSampler, choose_bayes_sampler, make_sampler

NUMERIC = {"x": {"min": -5.0, "max": 10.0}, "y": {"min": 0.0, "max": 15.0}}
DISCRETE = {"a": {"values": ["relu", "tanh"]}, "b": {"min": 1, "max": 3}}


def _spec(parameters: dict[str, Any], method: str = "bayes", **sweeper: Any) -> Any:
    return load_spec(
        {
            "method": method,
            "metric": {"name": "loss"},
            "run_cap": 50,
            "parameters": parameters,
            "sweeper": {"seed": 3, **sweeper},
        }
    )


def test_random_and_grid_use_the_wandb_law() -> None:
    assert isinstance(make_sampler(_spec(NUMERIC, "random")), WandbRandomSampler)
    assert isinstance(make_sampler(_spec(DISCRETE, "grid")), WandbRandomSampler)


@pytest.mark.parametrize(
    ("parameters", "settings", "parallelism", "expected"),
    [
        (NUMERIC, {}, 1, "gp"),
        (NUMERIC, {}, 32, "tpe"),  # many trials at once: constant-liar TPE
        (DISCRETE, {}, 1, "tpe"),  # categorical: GP is weak there
        ({f"x{i}": {"min": 0.0, "max": 1.0} for i in range(20)}, {}, 1, "tpe"),
        (NUMERIC, {"sampler": "tpe"}, 1, "tpe"),
        (DISCRETE, {"sampler": "gp"}, 1, "gp"),
    ],
)
def test_auto_rule(
    parameters: dict[str, Any], settings: dict[str, Any], parallelism: int, expected: str
) -> None:
    spec = _spec(parameters, **settings)
    assert choose_bayes_sampler(spec, parallelism=parallelism) == expected
    inner = make_sampler(spec, parallelism=parallelism)._inner  # type: ignore[attr-defined]
    assert isinstance(inner, GPSampler if expected == "gp" else TPESampler)


def test_auto_without_torch_falls_back_to_tpe(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a)
    )
    assert choose_bayes_sampler(_spec(NUMERIC), parallelism=1) == "tpe"


@pytest.mark.parametrize("sampler", ["tpe", "gp"])
def test_bayes_never_repeats_a_point_while_any_is_free(sampler: str) -> None:
    # 2 x 3 = 6 points; with 4 running at once and the rest finished, all 6 must be distinct.
    spec = _spec(DISCRETE, sampler=sampler)
    study = optuna.create_study(sampler=make_sampler(spec, parallelism=4))
    distributions = spec.space.distributions()
    running = [study.ask(distributions) for _ in range(4)]
    finished = []
    for _ in range(2):
        trial = study.ask(distributions)
        study.tell(trial, float(trial.params["b"]))
        finished.append(trial)
    points = {(t.params["a"], t.params["b"]) for t in running + finished}
    assert len(points) == 6


def test_bayes_finds_branin_optimum_region() -> None:
    spec = load_spec("sweeps/bayes.yaml")
    sampler = make_sampler(spec, parallelism=1)
    assert isinstance(sampler, DistinctSampler)
    study = optuna.create_study(sampler=sampler)
    from trainers.functions import branin_value

    for _ in range(30):
        trial = study.ask(spec.space.distributions())
        study.tell(trial, branin_value(trial.params["x1"], trial.params["x2"]))
    # Random search over 30 points rarely gets under 2; the model must.
    assert study.best_value < 2.0


def test_bayes_is_reproducible_with_a_seed() -> None:
    spec = _spec(NUMERIC, sampler="tpe")

    def run() -> list[dict[str, Any]]:
        study = optuna.create_study(sampler=make_sampler(spec))
        out = []
        for _ in range(12):
            trial = study.ask(spec.space.distributions())
            study.tell(trial, trial.params["x"] ** 2 + trial.params["y"])
            out.append(trial.params)
        return out

    assert run() == run()


def test_the_model_learns_from_stopped_trials_by_the_best_value_they_logged() -> None:
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    from sweeper.search.strategy import StoppedCountAsComplete

    study = optuna.create_study()
    x = {"x": FloatDistribution(0, 1)}
    study.add_trial(create_trial(state=TrialState.COMPLETE, value=0.5, params={"x": 0.5}, distributions=x))
    # Stopped with its best logged value (what the engine stores), and one stopped before any report.
    study.add_trial(create_trial(state=TrialState.PRUNED, value=0.1, params={"x": 0.1}, distributions=x))
    study.add_trial(create_trial(state=TrialState.PRUNED, params={"x": 0.9}, distributions=x))
    view: Any = StoppedCountAsComplete(study)

    complete = view._get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    assert [(t.number, t.state, t.value) for t in complete] == [
        (0, TrialState.COMPLETE, 0.5),
        (1, TrialState.COMPLETE, 0.1),
    ]
    both = view._get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert [(t.number, t.state) for t in both] == [
        (0, TrialState.COMPLETE),
        (1, TrialState.COMPLETE),
        (2, TrialState.PRUNED),
    ]
    assert [t.state for t in view._get_trials(states=(TrialState.PRUNED,))] == [
        TrialState.PRUNED,
        TrialState.PRUNED,
    ]
    assert study.trials[1].state == TrialState.PRUNED  # the study itself is untouched
    # Optuna's GP fits once it has n_startup_trials complete trials: the stopped one makes the second.
    if importlib.util.find_spec("torch") is not None:
        gp = GPSampler(seed=0, n_startup_trials=2)
        trial = study._storage.get_trial(study.ask()._trial_id)
        assert gp.sample_relative(study, trial, x) == {}  # alone, the study has one complete trial
        assert set(gp.sample_relative(view, trial, x)) == {"x"}
