"""Conditional parameters (`sweeper_if`): located errors, the grid of valid combinations, W&B's laws
for the active parameters only, preview, and trials that hold only their active parameters."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from click.testing import CliRunner
from scipy import stats

from sweeper import load_spec
from sweeper.cli import main
from sweeper.errors import SpecError
from sweeper.search.samplers import draw_params
from sweeper.search.strategy import make_sampler
from sweeper.storage.queue import ask_trial, suggest_params

ROOT = Path(__file__).parents[2]

OPTIMIZER = {
    "optimizer": {"values": ["sgd", "adam"]},
    "momentum": {"min": 0.0, "max": 0.99, "sweeper_if": {"optimizer": ["sgd"]}},
    "adam": {
        "sweeper_if": {"optimizer": ["adam"]},
        "parameters": {"beta1": {"values": [0.8, 0.9]}, "eps": {"value": 1e-8}},
    },
    "lr": {"values": [0.1, 0.01]},
}


def spec(parameters: dict[str, Any], method: str = "random", **top: Any) -> Any:
    extra = {"metric": {"name": "loss"}} if method == "bayes" else {}
    return load_spec({"method": method, "parameters": parameters, **extra, **top})


# -- located errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parameters", "match"),
    [
        (
            {"a": {"values": [1], "sweeper_if": {"b": ["x"]}}},
            r"parameters\.a\.sweeper_if\.b: names no parameter of this sweep, got 'b'",
        ),
        (
            {"a": {"values": [1], "sweeper_if": {"optimiser": ["sgd"]}}, "optimizer": {"values": ["sgd"]}},
            r"parameters\.a\.sweeper_if\.optimiser: names no parameter.*did you mean 'optimizer'\?",
        ),
        (
            {"a": {"values": [1], "sweeper_if": {"b": [1]}}, "b": {"parameters": {"c": {"values": [1]}}}},
            r"parameters\.a\.sweeper_if\.b: .*b is a block; name one of its parameters",
        ),
        (
            {"a": {"values": [1], "sweeper_if": {"b": ["sgd", "rmsprop"]}}, "b": {"values": ["sgd", "adam"]}},
            r"parameters\.a\.sweeper_if\.b\.1: is not a value b can take, got 'rmsprop'; "
            r"its values are \['sgd', 'adam'\]",
        ),
        (
            {"a": {"values": [1], "sweeper_if": {"b": [2]}}, "b": {"value": 1}},
            r"parameters\.a\.sweeper_if\.b\.0: is not a value b can take, got 2",
        ),
        (
            {
                "a": {"values": [1, 2], "sweeper_if": {"b": [1]}},
                "b": {"values": [1, 2], "sweeper_if": {"c": [1]}},
                "c": {"values": [1, 2], "sweeper_if": {"a": [1]}},
            },
            r"makes a cycle of conditions \(a -> b -> c -> a\)",
        ),
        (
            {"a": {"values": [1], "sweeper_if": {"a": [1]}}},
            r"parameters\.a\.sweeper_if\.a: cannot make a depend on itself",
        ),
        (
            {"blk": {"sweeper_if": {"blk.x": [1]}, "parameters": {"x": {"values": [1]}}}},
            r"parameters\.blk\.sweeper_if\.'blk\.x': cannot make blk depend on its own parameter blk\.x",
        ),
        (
            {"a": {"values": [1], "sweeper_if": {"b": [0.5]}}, "b": {"min": 0.0, "max": 1.0}},
            r"parameters\.a\.sweeper_if\.b: must name a categorical or constant parameter "
            r"\(values: or value:\), got b with distribution uniform",
        ),
        (
            {"a": {"values": [1], "sweeper_if": {"b": [1]}}, "b": {"min": 0, "max": 3}},
            r"got b with distribution int_uniform",
        ),
        (
            {"a": {"values": [1], "sweeper_if": {"b": "x"}}, "b": {"values": ["x"]}},
            r"parameters\.a\.sweeper_if\.b: must be a non-empty list of the values of b under which a is "
            r"active, got 'x'",
        ),
        ({"a": {"values": [1], "sweeper_if": {}}}, r"parameters\.a\.sweeper_if: must name at least one"),
        ({"a": {"values": [1], "sweeper_if": ["b"]}}, r"parameters\.a\.sweeper_if: must be a mapping"),
        (
            {"a": {"values": [1], "sweeper_iff": {"b": [1]}}, "b": {"values": [1]}},
            r"parameters\.a\.sweeper_iff: unknown key; did you mean 'sweeper_if'\?",
        ),
        (
            {
                "a": {"sweeper_if": {"b": [1]}, "parameters": {"x": {"value": 1}}, "value": 2},
                "b": {"values": [1]},
            },
            r"parameters\.a\.value: cannot sit next to a nested `parameters` block",
        ),
    ],
)
def test_invalid_conditions_are_located(parameters: dict[str, Any], match: str) -> None:
    with pytest.raises(SpecError, match=match):
        spec(parameters)


def test_gp_cannot_model_a_conditional_space() -> None:
    with pytest.raises(SpecError, match=r"sweeper\.sampler: cannot be gp with conditional parameters"):
        spec(OPTIMIZER, "bayes", sweeper={"sampler": "gp"})
    assert spec(OPTIMIZER, "bayes", sweeper={"sampler": "tpe"}).space.is_conditional


def test_a_spec_without_conditions_is_unchanged() -> None:
    plain = spec({"b": {"values": [1, 2]}, "a": {"min": 0.0, "max": 1.0}})
    assert not plain.space.is_conditional
    assert all(p.when == () for p in plain.parameters)


def test_conditions_of_a_block_reach_its_leaves_and_combine_with_their_own() -> None:
    loaded = spec(
        {
            "model": {"values": ["a", "b"]},
            "deep": {"values": [True, False], "sweeper_if": {"model": ["a"]}},
            "blk": {
                "sweeper_if": {"model": ["a"]},
                "parameters": {"layers": {"values": [2, 4], "sweeper_if": {"deep": [True]}}},
            },
        }
    )
    layers = next(p for p in loaded.parameters if p.name == "blk.layers")
    assert [(c.parent, c.values) for c in layers.when] == [("model", ("a",)), ("deep", (True,))]
    space = loaded.space
    assert space.to_config({"model": "a", "deep": True, "blk.layers": 2}) == {
        "blk": {"layers": 2},
        "deep": True,
        "model": "a",
    }
    # A condition's values compare as the grid compares them: True is not 1.
    assert space.to_config({"model": "a", "deep": False}) == {"deep": False, "model": "a"}
    assert space.to_config({"model": "b"}) == {"model": "b"}


# -- the grid -----------------------------------------------------------------------------------


def _dedup_inactive(
    points: list[dict[str, Any]], active: Callable[[dict[str, Any]], dict[str, Any]]
) -> list[Any]:
    seen: list[Any] = []
    for point in points:
        kept = active(point)
        if kept not in seen:
            seen.append(kept)
    return seen


def test_grid_is_wandbs_order_with_inactive_parameters_dropped(wandb_grid: Any) -> None:
    # Parents sort before their children here, so the rule reads: W&B's grid of the same parameters
    # without conditions, each point cut to its active parameters, repeats dropped.
    parameters = {
        "arch": {"values": ["cnn", "mlp"]},
        "kernel": {"values": [3, 5], "sweeper_if": {"arch": ["cnn"]}},
        "width": {"values": [64, 128, 256], "sweeper_if": {"arch": ["mlp"]}},
        "lr": {"values": [0.1, 0.01]},
    }
    loaded = spec(parameters, "grid")
    ours = [loaded.space.to_config(point) for point in loaded.space.grid()]
    flat = {name: {k: v for k, v in p.items() if k != "sweeper_if"} for name, p in parameters.items()}
    expected = _dedup_inactive(wandb_grid(flat), loaded.space.to_config)
    assert ours == expected
    # cnn: kernel (2) x lr (2); mlp: width (3) x lr (2).
    assert len(ours) == loaded.space.grid_size() == loaded.budget == 10
    assert Counter(c["arch"] for c in ours) == {"cnn": 4, "mlp": 6}


def test_grid_of_a_conditional_space_counts_only_valid_combinations() -> None:
    parameters = {**OPTIMIZER, "momentum": {"values": [0.0, 0.5, 0.9], "sweeper_if": {"optimizer": ["sgd"]}}}
    loaded = spec(parameters, "grid")
    points = loaded.space.grid()
    # W&B's order is adam.*, lr, momentum, optimizer; adam.beta1 and momentum depend on optimizer,
    # so the walk is lr, optimizer, adam.beta1, momentum (the last varying fastest).
    assert points[:4] == [
        {"lr": 0.1, "optimizer": "sgd", "momentum": 0.0},
        {"lr": 0.1, "optimizer": "sgd", "momentum": 0.5},
        {"lr": 0.1, "optimizer": "sgd", "momentum": 0.9},
        {"lr": 0.1, "optimizer": "adam", "adam.beta1": 0.8},
    ]
    # lr (2) x [sgd x momentum (3) + adam x beta1 (2)] = 10, not the flat product 2 * 2 * 3 * 2 = 24.
    assert len(points) == loaded.space.grid_size() == 10
    assert len({json.dumps(p, sort_keys=True) for p in points}) == 10
    configs = [loaded.space.to_config(p) for p in points]
    assert all(("momentum" in c) == (c["optimizer"] == "sgd") for c in configs)
    assert all(("adam" in c) == (c["optimizer"] == "adam") for c in configs)
    assert all(c["adam"] == {"beta1": c["adam"]["beta1"], "eps": 1e-8} for c in configs if "adam" in c)


def test_grid_still_rejects_a_continuous_parameter_even_when_conditional() -> None:
    with pytest.raises(SpecError, match=r"parameters\.momentum: must be discrete for method grid"):
        spec(OPTIMIZER, "grid")


# -- random: W&B's laws for the active parameters ---------------------------------------------------


def test_random_draws_only_active_parameters_from_their_laws() -> None:
    parameters = {
        "optimizer": {"values": ["sgd", "adam"], "probabilities": [0.25, 0.75]},
        "momentum": {"min": 0.0, "max": 0.9, "sweeper_if": {"optimizer": ["sgd"]}},
        "adam": {
            "sweeper_if": {"optimizer": ["adam"]},
            "parameters": {"beta2": {"distribution": "log_uniform_values", "min": 0.9, "max": 0.9999}},
        },
    }
    space = spec(parameters).space
    draws = [draw_params(space, 3, n) for n in range(4000)]
    sgd = [d for d in draws if d["optimizer"] == "sgd"]
    adam = [d for d in draws if d["optimizer"] == "adam"]
    assert all(set(d) == {"optimizer", "momentum"} for d in sgd)
    assert all(set(d) == {"optimizer", "adam.beta2"} for d in adam)
    assert stats.binomtest(len(sgd), len(draws), 0.25).pvalue > 1e-3
    assert stats.kstest([d["momentum"] for d in sgd], stats.uniform(0.0, 0.9).cdf).pvalue > 1e-3
    logs = [math.log(d["adam.beta2"]) for d in adam]
    lo, hi = math.log(0.9), math.log(0.9999)
    assert stats.kstest(logs, stats.uniform(lo, hi - lo).cdf).pvalue > 1e-3
    # An active parameter's draw does not depend on its siblings: keyed by (seed, trial, name).
    assert all(
        d["momentum"] == space.sample("momentum", _rng(3, n, "momentum"))
        for n, d in enumerate(draws)
        if "momentum" in d
    )
    # sample_params (the examples' check) follows the same rule.
    rng = np.random.default_rng(0)
    for _ in range(200):
        params = space.sample_params(rng)
        assert set(params) == set(space.active(params)) & set(space.names)


def _rng(seed: int, number: int, name: str) -> np.random.Generator:
    from sweeper.search.samplers import param_rng

    return param_rng(seed, number, name)


def test_random_sweep_trials_hold_only_active_params() -> None:
    loaded = spec(OPTIMIZER, sweeper={"seed": 1})
    study = optuna.create_study(sampler=make_sampler(loaded))
    for _ in range(40):
        trial = ask_trial(study, loaded.space, loaded)
        assert trial is not None
        assert trial.params == draw_params(loaded.space, 1, trial.number)
        study.tell(trial, 0.0)


# -- bayes: grouped TPE, trials with their active parameters only ---------------------------------


def test_bayes_trials_hold_only_active_params_and_learn_per_family() -> None:
    loaded = spec(OPTIMIZER, "bayes", sweeper={"seed": 0})
    sampler = make_sampler(loaded)
    study = optuna.create_study(sampler=sampler)
    for _ in range(40):
        trial = ask_trial(study, loaded.space, loaded)
        assert trial is not None
        params = trial.params
        assert set(params) == set(loaded.space.active(params)) & set(loaded.space.names)
        config = loaded.space.to_config(params)
        assert ("momentum" in config) == (config["optimizer"] == "sgd")
        assert ("adam" in config) == (config["optimizer"] == "adam")
        # sgd with momentum near 0.9 is best; adam is always worse.
        loss = (config["momentum"] - 0.9) ** 2 if "momentum" in config else 1.0 + config["adam"]["beta1"]
        study.tell(trial, loss)
    inner = sampler._inner  # type: ignore[attr-defined]
    assert isinstance(inner, optuna.samplers.TPESampler) and inner._group and inner._multivariate
    late = [t.params["optimizer"] for t in study.trials[-15:]]
    assert late.count("sgd") > late.count("adam")


def test_suggest_params_follows_dependency_order() -> None:
    loaded = spec(OPTIMIZER)
    answers = {"lr": 0.1, "optimizer": "adam", "adam.beta1": 0.8}
    asked: list[str] = []

    class Recorder:
        """Stands in for an Optuna trial: records what is asked, in order."""

        def _suggest(self, name: str, distribution: Any) -> Any:
            asked.append(name)
            return answers[name]

    assert suggest_params(Recorder(), loaded.space) == answers  # type: ignore[arg-type]
    assert asked == ["lr", "optimizer", "adam.beta1"]


# -- preview ------------------------------------------------------------------------------------


def test_preview_shows_inactive_parameters_absent(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        main, ["preview", str(ROOT / "sweeps" / "conditional.yaml"), "-n", "30", "--seed", "4"]
    )
    assert result.exit_code == 0, result.output
    configs = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(configs) == 30
    families = {"svm", "forest", "boosting"}
    for config in configs:
        model = config["model"]
        assert families & set(config) == {model}
        assert ("class_weight" in config) == (model in ("svm", "forest"))
        assert None not in config[model].values()
    assert {c["model"] for c in configs} == families

    grid = tmp_path / "grid.yaml"
    grid.write_text(
        "method: grid\nparameters:\n"
        "  optimizer: {values: [sgd, adam]}\n"
        "  momentum: {values: [0.5, 0.9], sweeper_if: {optimizer: [sgd]}}\n"
    )
    result = runner.invoke(main, ["preview", str(grid)])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        '{"momentum": 0.5, "optimizer": "sgd"}',
        '{"momentum": 0.9, "optimizer": "sgd"}',
        '{"optimizer": "adam"}',
    ]
    assert "grid: 3 point(s)" in result.stderr
