"""The search space: spec parameters as Optuna distributions, W&B's sampling laws and grid order.

How each W&B distribution becomes an Optuna distribution (flat dotted names):

- ``categorical``: ``CategoricalDistribution`` over the distinct values. When a value is not a plain
  scalar (a list, a mapping) or when two values are equal but of different types (``1``, ``1.0``,
  ``True``), every choice is stored as its JSON text and :meth:`SearchSpace.to_config` decodes it.
- ``int_uniform``: ``IntDistribution(min, max)``. ``uniform``: ``FloatDistribution(min, max)``.
- log laws: ``FloatDistribution(low, high, log=True)`` over the values they produce
  (``exp(min)..exp(max)`` for exponent forms, ``exp(-max)..exp(-min)`` for ``inv_log_uniform``).
- ``normal`` / ``log_normal``: unbounded, so cut at ``mu +- 8 sigma`` (in log space for
  ``log_normal``): a draw lands beyond with probability ~1e-15 and is clipped to the bound.
- ``beta``: ``FloatDistribution(0, 1)``.
- quantized laws (``q_*``): values are ``k * q``, so a stepped distribution over every reachable
  ``k`` (``IntDistribution(step=q)`` when ``q`` is an int, else ``FloatDistribution(step=q)``, whose
  points are the decimal multiples ``k * q``, e.g. ``0.3`` rather than ``3 * 0.1``).
  Optuna forbids ``log`` with ``step``, so quantized log laws are stepped on a linear scale. When
  Optuna cannot take the float step exactly (it checks divisibility on decimal text, which fails
  for a ``q`` like 1.2108073776175732), the range is left unstepped and ``to_config`` snaps any
  suggestion to the nearest multiple of ``q``; W&B draws are multiples either way.
- In a grid sweep, ``q_uniform`` enumerates W&B's ``arange(min, max, q)`` points, which need not be
  multiples of ``q``: its distribution is then the ``CategoricalDistribution`` of those points.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any

import numpy as np
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from sweeper.spec.laws import Parameter, law_bounds


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


def _type_key(value: Any) -> tuple[str, str]:
    """A key under which values count as the same choice: 1 and 1.0 collapse, True stays apart."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return (type(value).__name__, json.dumps(value))
    if isinstance(value, int | float):
        number = float(value)
        return ("number", str(int(number)) if number.is_integer() else repr(number))
    return ("json", json.dumps(value, sort_keys=True))


def _needs_json(values: Sequence[Any]) -> bool:
    if not all(_scalar(v) for v in values):
        return True
    # Optuna matches choices with ==, which would turn True into 1 or 1.0 into 1; JSON keeps them apart.
    seen: dict[Any, Any] = {}
    for value in values:
        other = seen.setdefault(value, value)
        if type(other) is not type(value):
            return True
    return False


def _unique(values: Sequence[Any], key: Any) -> list[Any]:
    out, seen = [], set()
    for value in values:
        k = key(value)
        if k not in seen:
            seen.add(k)
            out.append(value)
    return out


class _Law:
    """One parameter: its Optuna distribution, its W&B draw and the decoding of its values."""

    def __init__(self, parameter: Parameter, grid: bool) -> None:
        self.parameter = parameter
        p = parameter
        self.kind = p.distribution
        self.encoded = False
        self.integer = False
        self.step: Decimal | None = None
        self.clip: tuple[float, float] | None = None
        self.grid_values: list[Any] | None = None
        self.distribution: BaseDistribution | None = None

        if self.kind == "constant":
            self.grid_values = [p.value]
            return
        if self.kind == "categorical":
            values = list(p.values)
            self.encoded = _needs_json(values)
            self.choices = [json.dumps(v, sort_keys=True) for v in values] if self.encoded else values
            distinct = _unique(self.choices, lambda c: (type(c).__name__, c))
            self.distribution = CategoricalDistribution(distinct)
            self.grid_values = _unique(
                self.choices, lambda c: _type_key(json.loads(c) if self.encoded else c)
            )
            weights = np.array(p.probabilities if p.probabilities is not None else [1.0] * len(values), float)
            self.cdf = np.cumsum(weights / weights.sum())
            return
        if self.kind == "int_uniform":
            self.integer = True
            self.distribution = IntDistribution(int(_num(p.min)), int(_num(p.max)))
            self.grid_values = list(range(int(_num(p.min)), int(_num(p.max)) + 1))
            return
        if self.kind == "q_uniform" and grid:
            points = np.arange(_num(p.min), _num(p.max), _num(p.q)).tolist()
            self.grid_values = _unique(points, _type_key)
            self.distribution = CategoricalDistribution(self.grid_values)
            return

        low, high = law_bounds(p)
        if p.q is None:
            self.clip = (low, high)
            self.distribution = FloatDistribution(low, high, log=self._log_scale())
            return
        # Quantized: values k*q for every k the clipped raw draw can round to.
        q = p.q
        k_low, k_high = round(low / q), round(high / q)
        self.integer = isinstance(q, int)
        self.clip = (low, high)
        if self.integer:
            self.distribution = IntDistribution(k_low * int(q), k_high * int(q), step=int(q))
        else:
            self.step = Decimal(repr(float(q)))
            self.distribution = _stepped_floats(float(self.step * k_low), float(self.step * k_high), float(q))

    def _log_scale(self) -> bool:
        return "log" in self.kind

    def raw_draw(self, rng: np.random.Generator) -> float:
        """A draw of the unquantized law, as W&B defines it (U ~ Uniform(0, 1))."""
        p = self.parameter
        kind = self.kind.removeprefix("q_")
        if kind == "uniform":
            return float(_num(p.min) + rng.random() * (_num(p.max) - _num(p.min)))
        if kind == "log_uniform":
            return math.exp(_num(p.min) + rng.random() * (_num(p.max) - _num(p.min)))
        if kind in ("log_uniform_values", "inv_log_uniform_values"):
            lo, hi = math.log(_num(p.min)), math.log(_num(p.max))
            return math.exp(lo + rng.random() * (hi - lo))
        if kind == "inv_log_uniform":
            return math.exp(-(_num(p.min) + rng.random() * (_num(p.max) - _num(p.min))))
        if kind == "normal":
            return float(rng.normal(_num(p.mu), _num(p.sigma)))
        if kind == "log_normal":
            return math.exp(float(rng.normal(_num(p.mu), _num(p.sigma))))
        if kind == "beta":
            return float(rng.beta(_num(p.a), _num(p.b)))
        raise ValueError(f"unknown distribution {self.kind!r}")

    def draw(self, rng: np.random.Generator) -> Any:
        """One draw of W&B's law, as the Optuna param value."""
        p = self.parameter
        if self.kind == "categorical":
            index = int(np.searchsorted(self.cdf, rng.random(), side="right"))
            return self.choices[min(index, len(self.choices) - 1)]
        if self.kind == "int_uniform":
            return int(rng.integers(int(_num(p.min)), int(_num(p.max)) + 1))
        if self.kind == "q_uniform" and self.grid_values is not None:
            return self.grid_values[int(rng.integers(len(self.grid_values)))]
        assert self.clip is not None
        value = min(max(self.raw_draw(rng), self.clip[0]), self.clip[1])
        if p.q is None:
            return value
        k = round(value / p.q)
        if self.integer:
            return k * int(p.q)
        assert self.step is not None
        return float(self.step * k)

    def natural(self, value: Any) -> Any:
        """The value the trainer receives for Optuna param value ``value``."""
        if self.encoded:
            return json.loads(value)
        if self.step is not None:
            # Snap to the decimal multiple of q: Optuna's own suggestions carry float noise, and on
            # an unstepped fallback distribution (see _stepped_floats) they are not multiples at all.
            return float(self.step * round(float(value) / float(self.step)))
        if self.integer:
            return int(value)
        if isinstance(self.distribution, FloatDistribution):
            return float(value)
        return value


def _stepped_floats(low: float, high: float, step: float) -> FloatDistribution:
    """``FloatDistribution(low, high, step=step)`` if Optuna takes it as is, else unstepped.

    Optuna checks ``high - low`` divisible by ``step`` on the decimal text of the floats and, when
    that fails (a ``q`` like 1.2108073776175732 times a large ``k``), lowers ``high`` by a step with
    a warning, which would drop the top value. The unstepped range still holds every multiple;
    :meth:`SearchSpace.to_config` snaps suggestions to the nearest multiple.
    """
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        stepped = FloatDistribution(low, high, step=step)
    return stepped if stepped.high == high else FloatDistribution(low, high)


def _num(value: float | None) -> float:
    if value is None:
        raise ValueError("a validated parameter is missing a numeric setting")
    return value


class SearchSpace:
    """The parameters of a sweep, seen by Optuna as flat dotted names.

    Args:
        parameters: the spec's parameter leaves (any order; W&B's order is restored).
        method: the sweep method; ``"grid"`` makes ``q_uniform`` a categorical over its grid points.

    >>> from sweeper.spec.reader import load_spec
    >>> space = load_spec({"method": "grid", "parameters": {"b": {"values": [1, 2]},
    ...     "a": {"parameters": {"x": {"values": ["u", "v"]}, "c": {"value": 0}}}}}).space
    >>> space.grid()
    [{'a.x': 'u', 'b': 1}, {'a.x': 'u', 'b': 2}, {'a.x': 'v', 'b': 1}, {'a.x': 'v', 'b': 2}]
    >>> space.to_config({"a.x": "v", "b": 2})
    {'a': {'c': 0, 'x': 'v'}, 'b': 2}
    """

    def __init__(self, parameters: Sequence[Parameter], method: str | None = None) -> None:
        self.parameters = tuple(sorted(parameters, key=lambda p: p.path))
        self.method = method
        self._laws = {p.name: _Law(p, grid=method == "grid") for p in self.parameters}

    @property
    def names(self) -> tuple[str, ...]:
        """Dotted names of the non-constant parameters, in W&B's order."""
        return tuple(name for name, law in self._laws.items() if law.distribution is not None)

    def distributions(self) -> dict[str, BaseDistribution]:
        """Optuna distributions of every non-constant parameter, by dotted name."""
        return {name: law.distribution for name, law in self._laws.items() if law.distribution is not None}

    def grid(self) -> list[dict[str, Any]]:
        """Every grid point (flat Optuna params) in W&B's order, duplicates collapsed.

        The product runs over names sorted alphabetically (nested leaves at their parent's place),
        the last name varying fastest, each list in its written order.

        Raises:
            ValueError: if a parameter has no finite grid (a continuous distribution).
        """
        return list(self.iter_grid())

    def iter_grid(self) -> Iterator[dict[str, Any]]:
        """The points of :meth:`grid`, one at a time (a large grid need not be built)."""
        names = self.names
        axes = []
        for name in names:
            values = self._laws[name].grid_values
            if values is None:
                raise ValueError(f"parameter {name!r} ({self._laws[name].kind}) has no grid")
            axes.append(values)
        for point in itertools.product(*axes):
            yield dict(zip(names, point, strict=True))

    def grid_size(self) -> int:
        """The number of grid points, without building them."""
        return math.prod(len(self._laws[name].grid_values or ()) for name in self.names)

    def sample(self, name: str, rng: np.random.Generator) -> Any:
        """One draw of parameter ``name`` from W&B's law, as the Optuna param value."""
        return self._laws[name].draw(rng)

    def sample_params(self, rng: np.random.Generator) -> dict[str, Any]:
        """One draw of every non-constant parameter, in W&B's order, as flat Optuna params."""
        return {name: self._laws[name].draw(rng) for name in self.names}

    def to_config(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The nested config the trainer receives: constants added, natural types, real objects.

        Raises:
            KeyError: if ``params`` lacks a non-constant parameter.
        """
        config: dict[str, Any] = {}
        for name, law in self._laws.items():
            value = law.parameter.value if law.distribution is None else law.natural(params[name])
            node = config
            for key in law.parameter.path[:-1]:
                node = node.setdefault(key, {})
            # Constants may be lists or mappings: each trainer gets its own copy.
            node[law.parameter.path[-1]] = copy.deepcopy(value)
        return config
