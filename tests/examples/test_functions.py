"""The test functions: documented optima are real minima, trainers wrap the pure functions, the
multi-fidelity curve converges and ranks configs the same at every step."""

from __future__ import annotations

import doctest
import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize

from sweeper.errors import TrialPruned
from trainers import functions

unit = st.floats(0.0, 1.0)


def test_doctests_pass() -> None:
    result = doctest.testmod(functions)
    assert result.attempted > 0
    assert result.failed == 0


@pytest.mark.parametrize("minimizer", functions.BRANIN_MINIMIZERS)
def test_branin_minimizers_reach_the_documented_minimum(minimizer: tuple[float, float]) -> None:
    assert functions.branin_value(*minimizer) == pytest.approx(functions.BRANIN_MINIMUM, abs=1e-6)
    # A local optimiser started there finds nothing lower: it is a minimum, not just a value.
    found = minimize(lambda x: functions.branin_value(*x), minimizer, method="Nelder-Mead")
    assert found.fun == pytest.approx(functions.BRANIN_MINIMUM, abs=1e-6)


@settings(deadline=None)
@given(st.floats(-5.0, 10.0), st.floats(0.0, 15.0))
def test_branin_never_goes_below_its_minimum(x1: float, x2: float) -> None:
    assert functions.branin_value(x1, x2) >= functions.BRANIN_MINIMUM - 1e-9


def test_hartmann6_minimizer_reaches_the_documented_minimum() -> None:
    x = functions.HARTMANN6_MINIMIZER
    assert functions.hartmann6_value(x) == pytest.approx(functions.HARTMANN6_MINIMUM, abs=1e-5)
    found = minimize(functions.hartmann6_value, x, method="Nelder-Mead", bounds=[(0, 1)] * 6)
    assert found.fun == pytest.approx(functions.HARTMANN6_MINIMUM, abs=1e-5)


@settings(max_examples=200, deadline=None)
@given(st.lists(unit, min_size=6, max_size=6))
def test_hartmann6_never_goes_below_its_minimum(x: list[float]) -> None:
    assert functions.hartmann6_value(x) >= functions.HARTMANN6_MINIMUM - 1e-9


@settings(deadline=None)
@given(st.lists(st.floats(-5.0, 5.0), min_size=2, max_size=8))
def test_rosenbrock_and_ackley_minima_are_zero(x: list[float]) -> None:
    assert functions.rosenbrock_value([1.0] * len(x)) == 0.0
    assert functions.ackley_value([0.0] * len(x)) == pytest.approx(0.0, abs=1e-12)
    assert functions.rosenbrock_value(x) >= 0.0
    assert functions.ackley_value(x) >= -1e-12


@pytest.mark.parametrize(
    ("trainer", "pure", "config"),
    [
        (functions.branin, lambda c: functions.branin_value(c["x1"], c["x2"]), {"x1": 1.5, "x2": 7.0}),
        (
            functions.hartmann6,
            lambda c: functions.hartmann6_value(list(c.values())),
            {f"x{i}": 0.1 * i for i in range(1, 7)},
        ),
        (
            functions.rosenbrock,
            lambda c: functions.rosenbrock_value(list(c.values())),
            {"x1": 0.5, "x2": -1.0, "x3": 2.0},
        ),
        (functions.ackley, lambda c: functions.ackley_value(list(c.values())), {"x1": 0.5, "x2": -1.0}),
    ],
)
def test_trainers_return_the_value_of_the_pure_function(trainer, pure, config) -> None:
    assert trainer(config, None) == {"value": pure(config)}


def test_coordinates_are_read_in_numeric_order() -> None:
    config = {f"x{i}": float(i) for i in range(12, 0, -1)}  # x12 before x2, as dict order
    assert functions.rosenbrock(config, None)["value"] == functions.rosenbrock_value(
        [float(i) for i in range(1, 13)]
    )


@pytest.mark.parametrize(
    ("trainer", "config", "message"),
    [
        (functions.branin, {"x1": 1.0}, r"exactly x1, x2; got \['x1'\]"),
        (functions.branin, {"x1": 1.0, "x2": 2.0, "x3": 3.0}, "exactly x1, x2"),
        (functions.hartmann6, {"x1": 0.5}, "exactly x1, x2, x3, x4, x5, x6"),
        (functions.rosenbrock, {"x1": 1.0, "x3": 1.0}, r"exactly x1, x2; got \['x1', 'x3'\]"),
        (functions.rosenbrock, {"x1": 1.0}, "at least 2 coordinates, got 1"),
        (functions.ackley, {}, "at least 1 coordinate, got 0"),
    ],
)
def test_bad_configs_say_what_must_hold(trainer, config, message) -> None:
    with pytest.raises(ValueError, match=message):
        trainer(config, None)


def test_branin_currin_objectives_conflict() -> None:
    grid = [(i / 20, j / 20) for i in range(21) for j in range(21)]
    scores = {x: functions.branin_currin({"x1": x[0], "x2": x[1]}, None) for x in grid}
    best_branin = min(grid, key=lambda x: scores[x]["branin"])
    best_currin = min(grid, key=lambda x: scores[x]["currin"])
    # Neither objective's best point is best at the other: a Pareto front, not a single optimum.
    assert scores[best_branin]["currin"] > scores[best_currin]["currin"]
    assert scores[best_currin]["branin"] > scores[best_branin]["branin"]
    assert math.isfinite(functions.currin_value(0.3, 0.0))  # the x2 -> 0 limit, not a division by zero


def test_multifidelity_branin_logs_a_converging_curve(make_trial) -> None:
    trial = make_trial()
    assert functions.multifidelity_branin({"x1": 2.0, "x2": 3.0, "steps": 12}, trial) is None
    values = trial.series("value")
    assert trial.steps() == list(range(1, 13))
    assert all(later < earlier for earlier, later in itertools.pairwise(values))
    true = functions.branin_value(2.0, 3.0)
    assert all(v > true for v in values)
    assert values[-1] - true == pytest.approx(functions.FIDELITY_GAP * 0.5**11)


@settings(deadline=None)
@given(
    st.floats(-5.0, 10.0),
    st.floats(0.0, 15.0),
    st.floats(-5.0, 10.0),
    st.floats(0.0, 15.0),
    st.integers(1, 40),
)
def test_multifidelity_branin_ranks_configs_as_the_true_function_does(a1, a2, b1, b2, step) -> None:
    early = functions.multifidelity_branin_value(a1, a2, step) - functions.multifidelity_branin_value(
        b1, b2, step
    )
    final = functions.branin_value(a1, a2) - functions.branin_value(b1, b2)
    assert early == pytest.approx(final, abs=1e-9)


def test_multifidelity_branin_stops_when_pruned(make_trial) -> None:
    trial = make_trial(prune_at_report=3)
    with pytest.raises(TrialPruned):
        functions.multifidelity_branin({"x1": 2.0, "x2": 3.0, "steps": 27}, trial)
    assert trial.steps() == [1, 2, 3]


def test_multifidelity_branin_rejects_bad_steps(make_trial) -> None:
    with pytest.raises(ValueError, match="steps must be >= 1, got 0"):
        functions.multifidelity_branin({"x1": 2.0, "x2": 3.0, "steps": 0}, make_trial())
