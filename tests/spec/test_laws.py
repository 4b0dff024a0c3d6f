"""Every W&B distribution's sampling law, checked on thousands of `sweeper preview` draws.

The reference law is W&B's own engine (`sweeps.params.HyperParameter.cdf`); continuous laws use a
Kolmogorov-Smirnov test, discrete ones exact support plus a chi-square test on exact frequencies.
Draws are seeded, so these tests are deterministic.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from scipy import stats

from sweeper.cli import main

DRAWS = 4000
ALPHA = 1e-3

CONTINUOUS: dict[str, dict[str, Any]] = {
    "uniform": {"distribution": "uniform", "min": -2.0, "max": 3.0},
    "log_uniform": {"distribution": "log_uniform", "min": -4, "max": 1},
    "log_uniform_values": {"distribution": "log_uniform_values", "min": 1e-4, "max": 0.1},
    "inv_log_uniform": {"distribution": "inv_log_uniform", "min": 0, "max": 3},
    "inv_log_uniform_values": {"distribution": "inv_log_uniform_values", "min": 0.01, "max": 2.0},
    "normal": {"distribution": "normal", "mu": 1.5, "sigma": 2.0},
    "log_normal": {"distribution": "log_normal", "mu": 0.5, "sigma": 0.75},
    "beta": {"distribution": "beta", "a": 2.0, "b": 5.0},
}
# law -> (settings, raw W&B law whose cdf defines the bins)
QUANTIZED: dict[str, dict[str, Any]] = {
    "q_uniform": {"distribution": "q_uniform", "min": 0, "max": 10, "q": 1},
    "q_log_uniform": {"distribution": "q_log_uniform", "min": 0, "max": 3, "q": 2},
    "q_log_uniform_values": {"distribution": "q_log_uniform_values", "min": 1, "max": 100, "q": 5.0},
    "q_normal": {"distribution": "q_normal", "mu": 0.0, "sigma": 3.0, "q": 0.5},
    "q_log_normal": {"distribution": "q_log_normal", "mu": 1.0, "sigma": 0.5, "q": 1},
    "q_beta": {"distribution": "q_beta", "a": 2.0, "b": 3.0, "q": 0.1},
}
DISCRETE: dict[str, dict[str, Any]] = {
    "constant": {"value": {"nested": [1, 2]}},
    "categorical": {"values": ["a", 2, [3], {"k": None}]},
    "weighted": {"values": ["rare", "common", "never"], "probabilities": [0.2, 0.8, 0.0]},
    "int_uniform": {"min": -3, "max": 4},
}


@pytest.fixture(scope="module")
def draws(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Any]]:
    """Configs printed by `sweeper preview -n DRAWS`, one list of values per parameter."""
    parameters = {**CONTINUOUS, **QUANTIZED, **DISCRETE}
    path: Path = tmp_path_factory.mktemp("laws") / "all.yaml"
    path.write_text(yaml.safe_dump({"method": "random", "parameters": parameters}))
    result = CliRunner().invoke(main, ["preview", str(path), "-n", str(DRAWS), "--seed", "2024"])
    assert result.exit_code == 0, result.output
    configs = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(configs) == DRAWS
    return {name: [config[name] for config in configs] for name in parameters}


@pytest.mark.parametrize("name", sorted(CONTINUOUS))
def test_continuous_law_matches_wandb(
    name: str, draws: dict[str, list[Any]], wandb_parameter: Callable[..., Any]
) -> None:
    values = np.array(draws[name])
    assert values.dtype == float
    reference = wandb_parameter(CONTINUOUS[name])
    assert stats.kstest(values, reference.cdf).pvalue > ALPHA
    # Bounded laws stay inside W&B's support.
    low, high = reference.ppf(0.0), reference.ppf(1.0)
    assert np.all((values >= low) & (values <= high))


def _expected_quantized(
    settings: dict[str, Any], support: list[float], wandb_parameter: Callable[..., Any]
) -> np.ndarray:
    """P(value == k q) = F((k + 1/2) q) - F((k - 1/2) q), F the raw law's cdf (W&B's cdf of q_ laws)."""
    reference = wandb_parameter(settings)
    q = settings["q"]
    logs = "log" in settings["distribution"]
    floor = 1e-300 if logs else -math.inf  # log-scale cdfs are 0 below 0; keep np.log finite

    def cdf(x: float) -> float:
        return float(reference.cdf(np.array([max(x, floor)]))[0])

    return np.array([cdf(v + q / 2) - cdf(v - q / 2) for v in support])


@pytest.mark.parametrize("name", sorted(QUANTIZED))
def test_quantized_law_matches_wandb(
    name: str, draws: dict[str, list[Any]], wandb_parameter: Callable[..., Any]
) -> None:
    settings = QUANTIZED[name]
    q = settings["q"]
    values = draws[name]
    # Natural types: ints when q is an int, floats otherwise; every value a multiple of q.
    assert all(type(v) is type(q) for v in values)
    assert all(abs(v / q - round(v / q)) < 1e-9 for v in values)
    counts = Counter(round(v / q) for v in values)
    # Every reachable multiple, in order, with the tails merged until each bin expects >= 5 draws.
    ks = range(min(counts), max(counts) + 1)
    probabilities = _expected_quantized(settings, [k * q for k in ks], wandb_parameter)
    assert probabilities.sum() > 0.999  # nothing observed lies outside W&B's support
    observed, expected = _merge_small_bins([counts.get(k, 0) for k in ks], probabilities * len(values))
    expected *= sum(observed) / expected.sum()
    assert stats.chisquare(observed, expected).pvalue > ALPHA


def _merge_small_bins(observed: list[int], expected: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    obs_out: list[float] = []
    exp_out: list[float] = []
    o_acc = e_acc = 0.0
    for o, e in zip(observed, expected, strict=True):
        o_acc, e_acc = o_acc + o, e_acc + e
        if e_acc >= 5:
            obs_out.append(o_acc)
            exp_out.append(e_acc)
            o_acc = e_acc = 0.0
    if e_acc or o_acc:
        obs_out[-1] += o_acc
        exp_out[-1] += e_acc
    return np.array(obs_out), np.array(exp_out)


def test_constant(draws: dict[str, list[Any]]) -> None:
    assert all(v == {"nested": [1, 2]} for v in draws["constant"])


def test_categorical_is_uniform_over_the_original_objects(draws: dict[str, list[Any]]) -> None:
    values = DISCRETE["categorical"]["values"]
    counts = Counter(json.dumps(v) for v in draws["categorical"])
    assert set(counts) == {json.dumps(v) for v in values}
    assert stats.chisquare([counts[json.dumps(v)] for v in values]).pvalue > ALPHA


def test_categorical_with_probabilities(draws: dict[str, list[Any]]) -> None:
    counts = Counter(draws["weighted"])
    assert set(counts) == {"rare", "common"}  # probability 0 never drawn
    assert stats.chisquare([counts["rare"], counts["common"]], [0.2 * DRAWS, 0.8 * DRAWS]).pvalue > ALPHA


def test_int_uniform_includes_both_ends(draws: dict[str, list[Any]]) -> None:
    counts = Counter(draws["int_uniform"])
    assert sorted(counts) == list(range(-3, 5))
    assert all(type(v) is int for v in draws["int_uniform"])
    assert stats.chisquare([counts[k] for k in range(-3, 5)]).pvalue > ALPHA


def test_every_distribution_is_covered() -> None:
    from sweeper.spec.laws import DISTRIBUTIONS

    covered = {s.get("distribution") for s in (*CONTINUOUS.values(), *QUANTIZED.values())}
    assert covered | {"constant", "categorical", "int_uniform"} == set(DISTRIBUTIONS)
