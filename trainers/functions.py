"""Standard optimisation test functions, as pure functions and as sweeper trainers.

The pure functions (``branin_value``, ``hartmann6_value``, ...) are for benchmarks and exact checks; the
trainers (``branin``, ``hartmann6``, ...) read their inputs from the trial config (``x1``, ``x2``, ...) and
return ``{"value": f(x)}``, so a spec sets ``metric: {name: value, goal: minimize}``. Known optima:

- Branin on x1 in [-5, 10], x2 in [0, 15]: minimum 0.397887 at (-pi, 12.275), (pi, 2.275), (9.42478, 2.475).
- Hartmann-6 on [0, 1]^6: minimum -3.32237 at (0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573).
- Rosenbrock, any dimension >= 2: minimum 0 at (1, ..., 1).
- Ackley, any dimension >= 1: minimum 0 at the origin.

``model_family`` is a conditional problem: a choice of model family, each with its own parameters
(nested under the family's name) and its own best value (boosting 0.1, forest 0.2, svm 0.3); it
rejects a config that holds another family's parameters, as a real trainer would choke on them.

``multifidelity_branin`` logs a learning curve that converges to Branin's value as steps grow, so
hyperband/ASHA have something to prune; ``branin_currin`` returns two conflicting objectives for
multi-objective sweeps.

Example:
    >>> round(branin_value(math.pi, 2.275), 6)
    0.397887
    >>> rosenbrock_value([1.0, 1.0, 1.0])
    0.0
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sweeper import Trial

BRANIN_MINIMUM = 0.397887357729738
BRANIN_MINIMIZERS: tuple[tuple[float, float], ...] = ((-math.pi, 12.275), (math.pi, 2.275), (9.42478, 2.475))
HARTMANN6_MINIMUM = -3.32236801141551
HARTMANN6_MINIMIZER: tuple[float, ...] = (0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573)

# Gap between the step-1 value and the true value of multifidelity_branin; it halves every step.
FIDELITY_GAP = 10.0

_HARTMANN6_ALPHA = (1.0, 1.2, 3.0, 3.2)
_HARTMANN6_A = (
    (10.0, 3.0, 17.0, 3.5, 1.7, 8.0),
    (0.05, 10.0, 17.0, 0.1, 8.0, 14.0),
    (3.0, 3.5, 1.7, 10.0, 17.0, 8.0),
    (17.0, 8.0, 0.05, 10.0, 0.1, 14.0),
)
_HARTMANN6_P = (
    (0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886),
    (0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991),
    (0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.6650),
    (0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381),
)


def branin_value(x1: float, x2: float) -> float:
    """The Branin-Hoo function (domain x1 in [-5, 10], x2 in [0, 15]; minimum 0.397887, three minimisers).

    Example:
        >>> round(branin_value(9.42478, 2.475), 5)
        0.39789
    """
    b = 5.1 / (4 * math.pi**2)
    c = 5 / math.pi
    t = 1 / (8 * math.pi)
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


def hartmann6_value(x: Sequence[float]) -> float:
    """The six-dimensional Hartmann function on [0, 1]^6 (minimum -3.32237 at ``HARTMANN6_MINIMIZER``).

    Example:
        >>> round(hartmann6_value(HARTMANN6_MINIMIZER), 4)
        -3.3224
    """
    if len(x) != 6:
        raise ValueError(f"hartmann6 takes 6 coordinates, got {len(x)}")
    total = 0.0
    for alpha, a_row, p_row in zip(_HARTMANN6_ALPHA, _HARTMANN6_A, _HARTMANN6_P, strict=True):
        inner = sum(a * (xi - p) ** 2 for a, xi, p in zip(a_row, x, p_row, strict=True))
        total += alpha * math.exp(-inner)
    return -total


def rosenbrock_value(x: Sequence[float]) -> float:
    """The Rosenbrock valley in any dimension >= 2 (minimum 0 at (1, ..., 1)).

    Example:
        >>> rosenbrock_value([0.0, 0.0])
        1.0
    """
    if len(x) < 2:
        raise ValueError(f"rosenbrock takes at least 2 coordinates, got {len(x)}")
    return sum(100 * (b - a * a) ** 2 + (1 - a) ** 2 for a, b in itertools.pairwise(x))


def ackley_value(x: Sequence[float]) -> float:
    """The Ackley function in any dimension >= 1 (minimum 0 at the origin; many local minima).

    Example:
        >>> abs(ackley_value([0.0, 0.0])) < 1e-12
        True
    """
    if not x:
        raise ValueError("ackley takes at least 1 coordinate, got 0")
    n = len(x)
    sq = math.sqrt(sum(xi * xi for xi in x) / n)
    cos = sum(math.cos(2 * math.pi * xi) for xi in x) / n
    return -20 * math.exp(-0.2 * sq) - math.exp(cos) + 20 + math.e


def currin_value(x1: float, x2: float) -> float:
    """Currin's exponential function on [0, 1]^2 (the second objective of Branin-Currin)."""
    # The factor tends to 1 as x2 -> 0; evaluate the limit instead of dividing by zero.
    factor = 1.0 if x2 <= 0 else 1 - math.exp(-1 / (2 * x2))
    numerator = 2300 * x1**3 + 1900 * x1**2 + 2092 * x1 + 60
    denominator = 100 * x1**3 + 500 * x1**2 + 4 * x1 + 20
    return factor * numerator / denominator


def multifidelity_branin_value(x1: float, x2: float, step: int) -> float:
    """Branin seen after ``step`` steps of "training": the true value plus a gap that halves each step.

    The gap does not depend on (x1, x2), so configs rank the same at every step as at the end: a pruner
    that keeps the best configs at an early step keeps exactly the best configs.

    Example:
        >>> multifidelity_branin_value(1.0, 2.0, 1) - branin_value(1.0, 2.0)
        10.0
    """
    if step < 1:
        raise ValueError(f"step must be >= 1, got {step}")
    return branin_value(x1, x2) + FIDELITY_GAP * 0.5 ** (step - 1)


MODEL_FAMILY_MINIMUM = 0.1
# Each family's parameters (nested under its name) and which families take class_weight.
MODEL_FAMILIES: dict[str, tuple[str, ...]] = {
    "svm": ("C", "gamma"),
    "forest": ("n_estimators", "max_depth"),
    "boosting": ("learning_rate", "max_depth", "subsample"),
}
_CLASS_WEIGHTED = ("svm", "forest")


def model_family_value(config: Mapping[str, Any]) -> float:
    """The conditional test problem's loss (minimum 0.1: boosting at lr 0.05, depth 4, subsample 0.75).

    Example:
        >>> model_family_value({"model": "boosting", "boosting": {"learning_rate": 10**-1.3,
        ...     "max_depth": 4, "subsample": 0.75}})
        0.1
    """
    model = config.get("model")
    if model not in MODEL_FAMILIES:
        raise ValueError(f"model must be one of {sorted(MODEL_FAMILIES)}, got {model!r}")
    expected = {"model", model} | ({"class_weight"} if model in _CLASS_WEIGHTED else set())
    if set(config) != expected:
        raise ValueError(f"a {model} config holds exactly {sorted(expected)}, got {sorted(config)}")
    settings = config[model]
    if set(settings) != set(MODEL_FAMILIES[model]):
        raise ValueError(f"{model} takes {sorted(MODEL_FAMILIES[model])}, got {sorted(settings)}")
    if model == "svm":
        c, gamma = math.log10(settings["C"]), math.log10(settings["gamma"])
        loss = 0.3 + 0.04 * ((c - 1.5) ** 2 + (gamma + 2.5) ** 2)
    elif model == "forest":
        n, depth = settings["n_estimators"], settings["max_depth"]
        loss = 0.2 + 0.3 * ((n - 320) / 490) ** 2 + 0.2 * ((depth - 14) / 22) ** 2
    else:
        rate, depth = math.log10(settings["learning_rate"]), settings["max_depth"]
        loss = (
            0.1
            + 0.08 * (rate + 1.3) ** 2
            + 0.01 * (depth - 4) ** 2
            + 0.6 * (settings["subsample"] - 0.75) ** 2
        )
    if model in _CLASS_WEIGHTED and config["class_weight"] == "balanced":
        loss += 0.01 if model == "svm" else -0.01
    return round(loss, 12)


def model_family(config: Mapping[str, Any], trial: Trial | None = None) -> dict[str, float]:
    """Trainer: ``{"loss": model_family_value(config)}`` (see :func:`model_family_value`)."""
    return {"loss": model_family_value(config)}


def _coordinates(config: Mapping[str, Any], dim: int | None = None) -> list[float]:
    """``x1``, ``x2``, ... from the config, in order: exactly ``dim`` of them, or all that are there."""
    names = [name for name in config if name[:1] == "x" and name[1:].isdigit()]
    count = len(names) if dim is None else dim
    expected = [f"x{i}" for i in range(1, count + 1)]
    if sorted(names, key=lambda n: int(n[1:])) != expected:
        want = ", ".join(expected) if expected else "x1, x2, ..."
        raise ValueError(f"config must hold exactly {want}; got {sorted(names) or 'none'}")
    return [float(config[name]) for name in expected]


def branin(config: Mapping[str, Any], trial: Trial | None = None) -> dict[str, float]:
    """Trainer: ``{"value": branin(x1, x2)}``."""
    x1, x2 = _coordinates(config, 2)
    return {"value": branin_value(x1, x2)}


def hartmann6(config: Mapping[str, Any], trial: Trial | None = None) -> dict[str, float]:
    """Trainer: ``{"value": hartmann6(x1..x6)}``."""
    return {"value": hartmann6_value(_coordinates(config, 6))}


def rosenbrock(config: Mapping[str, Any], trial: Trial | None = None) -> dict[str, float]:
    """Trainer: ``{"value": rosenbrock(x1..xn)}`` for however many ``x<i>`` the config holds (n >= 2)."""
    return {"value": rosenbrock_value(_coordinates(config))}


def ackley(config: Mapping[str, Any], trial: Trial | None = None) -> dict[str, float]:
    """Trainer: ``{"value": ackley(x1..xn)}`` for however many ``x<i>`` the config holds."""
    return {"value": ackley_value(_coordinates(config))}


def branin_currin(config: Mapping[str, Any], trial: Trial | None = None) -> dict[str, float]:
    """Trainer with two conflicting objectives on [0, 1]^2, both minimised (BoTorch's BraninCurrin).

    Returns ``{"branin": ..., "currin": ...}``; Branin is evaluated on the inputs rescaled to its domain.
    """
    x1, x2 = _coordinates(config, 2)
    return {"branin": branin_value(15 * x1 - 5, 15 * x2), "currin": currin_value(x1, x2)}


def multifidelity_branin(config: Mapping[str, Any], trial: Trial) -> None:
    """Trainer: logs ``value`` = Branin plus a shrinking gap at steps 1..``steps``, so it can be pruned.

    Config: ``x1``, ``x2``; ``steps`` (the fidelity, default 27); ``sleep`` (seconds per step, default 0,
    to make trials overlap in time like real training does).
    """
    steps = int(config.get("steps", 27))
    sleep = float(config.get("sleep", 0.0))
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    x1, x2 = _coordinates({k: v for k, v in config.items() if k not in ("steps", "sleep")}, 2)
    for step in range(1, steps + 1):
        if sleep > 0:
            time.sleep(sleep)
        # Raises sweeper.TrialPruned when the pruner stops this trial: let it propagate.
        trial.log({"value": multifidelity_branin_value(x1, x2, step)}, step=step)
