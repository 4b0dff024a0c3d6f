"""W&B's parameter laws: the distributions, their settings and defaults, and their numeric bounds.

The space (:mod:`sweeper.spec.space`) turns these into Optuna distributions and draws; the reader
(:mod:`sweeper.spec.reader`) checks a spec against them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

# Our extension of W&B's parameter format: a parameter (or a nested block) with this key is active
# only when other parameters take given values (see :class:`Condition`).
CONDITION_KEY = "sweeper_if"


@dataclass(frozen=True)
class Condition:
    """``sweeper_if: {parent: [values...]}``: active only while ``parent`` is active and takes one of
    ``values`` (compared as W&B's grid compares values: ``1`` and ``1.0`` alike, ``True`` apart)."""

    parent: str
    values: tuple[Any, ...]

    def holds(self, value: Any) -> bool:
        return value_key(value) in {value_key(v) for v in self.values}


def value_key(value: Any) -> tuple[str, str]:
    """A key under which values count as the same choice: 1 and 1.0 collapse, True stays apart."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return (type(value).__name__, json.dumps(value))
    if isinstance(value, int | float):
        number = float(value)
        return ("number", str(int(number)) if number.is_integer() else repr(number))
    return ("json", json.dumps(value, sort_keys=True))


@dataclass(frozen=True)
class Parameter:
    """One leaf of the parameter tree, after W&B's inference rules.

    ``path`` is the chain of names from the top (nested ``parameters`` blocks); ``name`` joins it
    with dots, which is how Optuna sees the parameter. ``when`` holds its conditions (its own
    ``sweeper_if`` and those of the blocks around it): it is active only when all of them hold.
    """

    path: tuple[str, ...]
    distribution: str
    value: Any = None
    values: tuple[Any, ...] = ()
    probabilities: tuple[float, ...] | None = None
    min: float | None = None
    max: float | None = None
    q: float | None = None
    mu: float | None = None
    sigma: float | None = None
    a: float | None = None
    b: float | None = None
    when: tuple[Condition, ...] = ()

    @property
    def name(self) -> str:
        return ".".join(self.path)


# distribution -> the keys it takes besides `distribution`, with W&B's defaults (_REQUIRED: none).
_REQUIRED: Any = object()
DISTRIBUTIONS: dict[str, dict[str, Any]] = {
    "constant": {"value": _REQUIRED},
    "categorical": {"values": _REQUIRED, "probabilities": None},
    "int_uniform": {"min": _REQUIRED, "max": _REQUIRED},
    "uniform": {"min": _REQUIRED, "max": _REQUIRED},
    "q_uniform": {"min": _REQUIRED, "max": _REQUIRED, "q": 1.0},
    "log_uniform": {"min": _REQUIRED, "max": _REQUIRED},
    "log_uniform_values": {"min": _REQUIRED, "max": _REQUIRED},
    "q_log_uniform": {"min": _REQUIRED, "max": _REQUIRED, "q": 1.0},
    "q_log_uniform_values": {"min": _REQUIRED, "max": _REQUIRED, "q": 1.0},
    "inv_log_uniform": {"min": _REQUIRED, "max": _REQUIRED},
    "inv_log_uniform_values": {"min": _REQUIRED, "max": _REQUIRED},
    "normal": {"mu": 0.0, "sigma": 1.0},
    "q_normal": {"mu": 0.0, "sigma": 1.0, "q": 1.0},
    "log_normal": {"mu": 0.0, "sigma": 1.0},
    "q_log_normal": {"mu": 0.0, "sigma": 1.0, "q": 1.0},
    "beta": {"a": 1.0, "b": 1.0},
    "q_beta": {"a": 1.0, "b": 1.0, "q": 1.0},
}
# W&B's schema also names the weighted categorical on its own.
_DISTRIBUTION_ALIASES = {"categorical_w_probabilities": "categorical"}
# Distributions a grid can enumerate (W&B's rule): anything else would be an endless grid.
GRID_DISTRIBUTIONS = ("constant", "categorical", "int_uniform", "q_uniform")
# Unbounded laws are cut at mu +- this many sigmas (P(beyond) ~ 1e-15) so Optuna gets finite bounds.
SIGMA_SPAN = 8.0
# exp() overflows float64 past ~709.8; log-scale laws must keep their exponents below this.
MAX_EXPONENT = 700.0

MAX_INT = 2**62  # int_uniform bounds: numpy draws int64
MAX_STEPS = 2.0**53  # quantized laws: k = value / q must stay an exact integer in a float


def law_bounds(parameter: Parameter) -> tuple[float, float]:
    """The bounds of a parameter's unquantized law, as Optuna sees them.

    Exponent forms are turned into values, ``inv_log_uniform`` is ``exp(-max)..exp(-min)``, and
    unbounded laws are cut at ``mu +- SIGMA_SPAN * sigma`` (in log space for ``log_normal``).

    Raises:
        ValueError: for a distribution without numeric bounds (constant, categorical).
    """
    p = parameter
    kind = p.distribution.removeprefix("q_")
    if kind in ("uniform", "int_uniform", "log_uniform_values", "inv_log_uniform_values"):
        return float(_given(p.min)), float(_given(p.max))
    if kind == "log_uniform":
        return math.exp(_given(p.min)), math.exp(_given(p.max))
    if kind == "inv_log_uniform":
        return math.exp(-_given(p.max)), math.exp(-_given(p.min))
    if kind == "normal":
        mu, sigma = _given(p.mu), _given(p.sigma)
        return mu - SIGMA_SPAN * sigma, mu + SIGMA_SPAN * sigma
    if kind == "log_normal":
        mu, sigma = _given(p.mu), _given(p.sigma)
        return math.exp(mu - SIGMA_SPAN * sigma), math.exp(mu + SIGMA_SPAN * sigma)
    if kind == "beta":
        return 0.0, 1.0
    raise ValueError(f"distribution {p.distribution!r} has no numeric bounds")


def _given(value: float | None) -> float:
    if value is None:
        raise ValueError("a validated parameter lacks a numeric setting")
    return value
