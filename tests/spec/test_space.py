"""SearchSpace: spec fragments to Optuna distributions, natural types, grid order and to_config."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from sweeper import load_spec
from sweeper.spec.space import SearchSpace


def space_of(fragment: dict[str, Any], method: str = "random") -> SearchSpace:
    return load_spec({"method": method, "parameters": {"p": fragment}}).space


E = math.e


@pytest.mark.parametrize(
    ("fragment", "distribution", "value_type"),
    [
        ({"values": ["a", "b", "a"]}, CategoricalDistribution(["a", "b"]), str),
        (
            {"values": [2, 2.5, None, True]},
            CategoricalDistribution([2, 2.5, None, True]),
            (int, float, type(None)),
        ),
        ({"values": [[1, 2], {"k": "v"}]}, CategoricalDistribution(["[1, 2]", '{"k": "v"}']), (list, dict)),
        ({"values": [1, 1.0]}, CategoricalDistribution(["1", "1.0"]), (int, float)),
        ({"values": ["x", "y"], "probabilities": [0.1, 0.9]}, CategoricalDistribution(["x", "y"]), str),
        ({"min": -2, "max": 3}, IntDistribution(-2, 3), int),
        ({"min": -2.0, "max": 3}, FloatDistribution(-2.0, 3.0), float),
        (
            {"distribution": "q_uniform", "min": 0, "max": 1, "q": 0.1},
            FloatDistribution(0.0, 1.0, step=0.1),
            float,
        ),
        ({"distribution": "q_uniform", "min": 1, "max": 10, "q": 4}, IntDistribution(0, 8, step=4), int),
        ({"distribution": "q_uniform", "min": 1, "max": 10}, FloatDistribution(1.0, 10.0, step=1.0), float),
        ({"distribution": "log_uniform", "min": -2, "max": 1}, FloatDistribution(E**-2, E, log=True), float),
        (
            {"distribution": "log_uniform_values", "min": 1e-4, "max": 1},
            FloatDistribution(1e-4, 1, log=True),
            float,
        ),
        ({"distribution": "q_log_uniform", "min": 0, "max": 3, "q": 2}, IntDistribution(0, 20, step=2), int),
        (
            {"distribution": "q_log_uniform_values", "min": 1, "max": 100, "q": 0.5},
            FloatDistribution(1.0, 100.0, step=0.5),
            float,
        ),
        (
            {"distribution": "inv_log_uniform", "min": 0, "max": 2},
            FloatDistribution(E**-2, 1.0, log=True),
            float,
        ),
        (
            {"distribution": "inv_log_uniform_values", "min": 0.01, "max": 1},
            FloatDistribution(0.01, 1, log=True),
            float,
        ),
        ({"distribution": "normal", "mu": 1, "sigma": 2}, FloatDistribution(-15.0, 17.0), float),
        (
            {"distribution": "q_normal", "mu": 0, "sigma": 1, "q": 0.5},
            FloatDistribution(-8.0, 8.0, step=0.5),
            float,
        ),
        ({"distribution": "q_normal", "mu": 0, "sigma": 1, "q": 3}, IntDistribution(-9, 9, step=3), int),
        ({"distribution": "log_normal"}, FloatDistribution(E**-8, E**8, log=True), float),
        ({"distribution": "q_log_normal", "q": 1}, IntDistribution(0, 2981), int),
        ({"distribution": "beta", "a": 2, "b": 5}, FloatDistribution(0.0, 1.0), float),
        ({"distribution": "q_beta", "q": 0.25}, FloatDistribution(0.0, 1.0, step=0.25), float),
    ],
)
def test_fragment_to_optuna_distribution_and_sampled_type(
    fragment: dict[str, Any], distribution: Any, value_type: type | tuple[type, ...]
) -> None:
    space = space_of(fragment)
    got = space.distributions()["p"]
    if isinstance(distribution, FloatDistribution):
        assert isinstance(got, FloatDistribution)
        assert (got.log, got.step) == (distribution.log, distribution.step)
        assert math.isclose(got.low, distribution.low) and math.isclose(got.high, distribution.high)
    else:
        assert got == distribution
    rng = np.random.default_rng(0)
    for _ in range(300):
        value = space.sample("p", rng)
        assert got._contains(got.to_internal_repr(value)), value
        natural = space.to_config({"p": value})["p"]
        assert isinstance(natural, value_type) and not (value_type is int and isinstance(natural, bool))


def test_quantized_float_values_are_decimal_multiples() -> None:
    space = space_of({"distribution": "q_uniform", "min": 0, "max": 1, "q": 0.1})
    rng = np.random.default_rng(1)
    seen = {space.sample("p", rng) for _ in range(500)}
    assert seen == {round(0.1 * k, 10) for k in range(11)}  # 0.3, not 0.30000000000000004


def test_constants_and_nesting_in_to_config() -> None:
    spec = load_spec(
        {
            "method": "random",
            "parameters": {
                "opt": {
                    "parameters": {
                        "name": {"value": "adam"},
                        "lr": {"min": 0.0, "max": 1.0},
                        "betas": {"value": [0.9, 0.99]},
                    }
                },
                "layers": {"values": [[64, 64], [128]]},
                "epochs": {"value": 3},
            },
        }
    )
    space = spec.space
    assert set(space.distributions()) == {"layers", "opt.lr"}
    config = space.to_config({"layers": "[128]", "opt.lr": 0.5})
    assert config == {"epochs": 3, "layers": [128], "opt": {"betas": [0.9, 0.99], "lr": 0.5, "name": "adam"}}
    config["opt"]["betas"].append(1)  # the trainer's copy, not the spec's
    assert space.to_config({"layers": "[128]", "opt.lr": 0.5})["opt"]["betas"] == [0.9, 0.99]


GRID_CASES: list[dict[str, Any]] = [
    {"b": {"values": [1, 2]}, "a": {"values": ["x", "y", "z"]}},
    {"lr": {"values": [0.1, 0.01]}, "bs": {"min": 1, "max": 3}, "const": {"value": 7}},
    {"q": {"distribution": "q_uniform", "min": 0, "max": 1, "q": 0.25}, "w": {"values": [True, False]}},
    {"q": {"distribution": "q_uniform", "min": 1, "max": 10, "q": 3}},
    {
        "z": {"values": [1, 2]},
        "model": {
            "parameters": {
                "width": {"values": [8, 16]},
                "act": {"value": "relu"},
                "deep": {"parameters": {"k": {"values": ["u", "v"]}}},
            }
        },
        "model_b": {"values": [0, 1]},
        "a": {"values": [[1, 2], {"k": 1}]},
    },
]


@pytest.mark.parametrize("parameters", GRID_CASES)
def test_grid_order_matches_wandb(parameters: dict[str, Any], wandb_grid: Callable[..., Any]) -> None:
    space = load_spec({"method": "grid", "parameters": parameters}).space
    ours = [space.to_config(point) for point in space.grid()]
    assert ours == wandb_grid(parameters)
    assert len(ours) == space.grid_size()
    distributions = space.distributions()
    for point in space.grid():
        for name, value in point.items():
            assert distributions[name]._contains(distributions[name].to_internal_repr(value))


def test_grid_worked_example_last_name_fastest() -> None:
    space = load_spec(
        {
            "method": "grid",
            "parameters": {"b": {"values": [1, 2]}, "a": {"parameters": {"y": {"values": ["p", "q"]}}}},
        }
    ).space
    assert space.grid() == [
        {"a.y": "p", "b": 1},
        {"a.y": "p", "b": 2},
        {"a.y": "q", "b": 1},
        {"a.y": "q", "b": 2},
    ]


def test_grid_collapses_duplicates() -> None:
    space = load_spec(
        {
            "method": "grid",
            "parameters": {"a": {"values": [1, 1.0, 2, 1]}, "b": {"values": ["s", "s", True, 1]}},
        }
    ).space
    configs = [space.to_config(point) for point in space.grid()]
    assert configs == [{"a": a, "b": b} for a in (1, 2) for b in ("s", True, 1)]
    assert type(configs[0]["a"]) is int and type(configs[1]["b"]) is bool


def test_grid_of_constants_is_one_point() -> None:
    space = load_spec({"method": "grid", "parameters": {"a": {"value": 1}}}).space
    assert space.grid() == [{}]
    assert space.to_config({}) == {"a": 1}


def test_parameter_order_given_does_not_matter() -> None:
    spec = load_spec({"method": "grid", "parameters": {"b": {"values": [1, 2]}, "a": {"values": [3, 4]}}})
    assert SearchSpace(tuple(reversed(spec.parameters)), method="grid").grid() == spec.space.grid()


@pytest.mark.parametrize("q", [0.1, 0.05, 1.2108073776175732, 0.3333])
def test_awkward_float_steps_keep_every_multiple(q: float) -> None:
    space = space_of({"distribution": "q_normal", "mu": 3.7, "sigma": 20.0, "q": q})
    distribution = space.distributions()["p"]
    assert isinstance(distribution, FloatDistribution)
    assert distribution.low <= -156.3 + q and distribution.high >= 163.7 - q  # mu -+ 8 sigma, quantized
    rng = np.random.default_rng(3)
    for _ in range(200):
        value = space.sample("p", rng)
        assert distribution._contains(value)
        assert space.to_config({"p": value})["p"] == value
    # Whatever Optuna suggests inside the range, the trainer sees a multiple of q.
    suggested = (distribution.low + distribution.high) / 3
    snapped = space.to_config({"p": suggested})["p"]
    assert abs(snapped - suggested) <= q / 2 + 1e-9
    assert abs(snapped / q - round(snapped / q)) < 1e-9
