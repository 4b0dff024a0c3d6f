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
from collections.abc import Callable, Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any

import numpy as np
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from sweeper.spec.laws import Parameter, law_bounds, value_key


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


_type_key = value_key


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

    def finite_count(self) -> int | None:
        """How many distinct values W&B's law can give (None for a continuous law)."""
        if self.grid_values is not None:
            return len(self.grid_values)
        if self.parameter.q is None:
            return None
        low, high = self._k_range()
        return high - low + 1

    def finite_values(self) -> list[Any]:
        """Every value W&B's law can give, as Optuna param values (for a discrete law)."""
        if self.grid_values is not None:
            return list(self.grid_values)
        low, high = self._k_range()
        q = _num(self.parameter.q)
        if self.integer:
            return [k * int(q) for k in range(low, high + 1)]
        assert self.step is not None
        return [float(self.step * k) for k in range(low, high + 1)]

    def _k_range(self) -> tuple[int, int]:
        assert self.clip is not None
        q = _num(self.parameter.q)
        return round(self.clip[0] / q), round(self.clip[1] / q)

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

    Conditional parameters (``sweeper_if``) are *active* only when their conditions hold; an inactive
    parameter has no Optuna param and is absent from the trainer's config. Everything that walks the
    parameters (draws, define-by-run suggestions, the grid) goes in *dependency order*: W&B's order,
    except that a parameter whose parent sorts after it comes right after its last parent.

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
        self._order = _dependency_order(self.parameters)
        self._parents = {c.parent for p in self.parameters for c in p.when}

    @property
    def names(self) -> tuple[str, ...]:
        """Dotted names of the non-constant parameters, in W&B's order (active or not)."""
        return tuple(name for name, law in self._laws.items() if law.distribution is not None)

    @property
    def is_conditional(self) -> bool:
        """Whether any parameter is active only under conditions (``sweeper_if``)."""
        return bool(self._parents)

    def distributions(self) -> dict[str, BaseDistribution]:
        """Optuna distributions of every non-constant parameter (active or not), by dotted name."""
        return {name: law.distribution for name, law in self._laws.items() if law.distribution is not None}

    def define_by_run(self, suggest: Callable[[str, BaseDistribution], Any]) -> dict[str, Any]:
        """Ask ``suggest(name, distribution)`` for each active parameter, parents first.

        Which parameters are active follows from the values suggested so far, so only those get a
        value: this is how a trial is given its params (see :func:`sweeper.storage.queue.ask_trial`).
        Returns the flat Optuna params.
        """
        params: dict[str, Any] = {}
        known: dict[str, Any] = {}  # natural values of the active parameters so far (parents' values)
        for name in self._order:
            law = self._laws[name]
            if not self._holds(law, known):
                continue
            if law.distribution is None:
                known[name] = law.parameter.value
                continue
            params[name] = suggest(name, law.distribution)
            if name in self._parents:
                known[name] = law.natural(params[name])
        return params

    def active(self, params: Mapping[str, Any]) -> list[str]:
        """Dotted names of the parameters (constants included) active under flat params ``params``."""
        known: dict[str, Any] = {}
        names = []
        for name in self._order:
            law = self._laws[name]
            if not self._holds(law, known):
                continue
            names.append(name)
            if name in self._parents and law.distribution is None:
                known[name] = law.parameter.value
            elif name in self._parents and name in params:  # (a parent not given: its children wait)
                known[name] = law.natural(params[name])
        return names

    def active_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """``params`` restricted to the active non-constant parameters."""
        names = self.active(params)
        return {name: params[name] for name in names if self._laws[name].distribution is not None}

    def _holds(self, law: _Law, known: Mapping[str, Any]) -> bool:
        return all(c.parent in known and c.holds(known[c.parent]) for c in law.parameter.when)

    def grid(self) -> list[dict[str, Any]]:
        """Every grid point (flat Optuna params) in W&B's order, duplicates collapsed.

        The product runs over names sorted alphabetically (nested leaves at their parent's place),
        the last name varying fastest, each list in its written order. With conditional parameters
        it runs in dependency order and a parameter takes no value where it is inactive, so only
        valid combinations appear, each once.

        Raises:
            ValueError: if a parameter has no finite grid (a continuous distribution).
        """
        return list(self.iter_grid())

    def iter_grid(self, start: int = 0) -> Iterator[dict[str, Any]]:
        """The points of :meth:`grid` from index ``start`` on, one at a time.

        Skipping to ``start`` costs a few counts per parameter, not ``start`` points: agents take a
        large grid block by block (see :mod:`sweeper.storage.queue`), never building it whole.

        >>> from sweeper.spec.reader import load_spec
        >>> space = load_spec({"method": "grid", "parameters": {"a": {"values": [1, 2, 3]},
        ...     "b": {"values": ["x", "y"]}}}).space
        >>> list(space.iter_grid(start=3))
        [{'a': 2, 'b': 'y'}, {'a': 3, 'b': 'x'}, {'a': 3, 'b': 'y'}]
        """
        for name in self.names:
            if self._laws[name].grid_values is None:
                raise ValueError(f"parameter {name!r} ({self._laws[name].kind}) has no grid")
        if not self.is_conditional and start == 0:
            names = self.names
            axes = [self._laws[name].grid_values or [] for name in names]
            for point in itertools.product(*axes):
                yield dict(zip(names, point, strict=True))
            return
        yield from self._grid_from(0, {}, {}, skip=start)

    def _grid_from(
        self, i: int, point: dict[str, Any], known: dict[str, Any], finite: bool = False, skip: int = 0
    ) -> Iterator[dict[str, Any]]:
        """The points below parameter ``i`` given the values chosen so far, the first ``skip`` left out
        (whole branches are skipped by their counts)."""
        if i == len(self._order):
            if skip == 0:
                yield dict(point)
            return
        name = self._order[i]
        law = self._laws[name]
        if not self._holds(law, known):
            yield from self._grid_from(i + 1, point, known, finite, skip)
            return
        if law.distribution is None:
            yield from self._grid_from(i + 1, point, {**known, name: law.parameter.value}, finite, skip)
            return
        values = law.finite_values() if finite else law.grid_values or []
        count = self._counter(finite)
        if skip and name not in self._parents:
            # Every value has the same number of points below it: skip whole values at once.
            below = self._count_from(i + 1, known, count)
            if below == 0:
                return
            first, skip = divmod(skip, below)
            values = values[first:]
        for value in values:
            branch = {**known, name: law.natural(value)}
            if skip:
                below = self._count_from(i + 1, branch, count)
                if skip >= below:
                    skip -= below
                    continue
            point[name] = value
            yield from self._grid_from(i + 1, point, branch, finite, skip)
            skip = 0
            del point[name]

    @staticmethod
    def _counter(finite: bool) -> Callable[[_Law], int]:
        if finite:
            return lambda law: law.finite_count() or 0
        return lambda law: len(law.grid_values or ())

    def grid_size(self) -> int:
        """The number of grid points, without building them."""
        if not self.is_conditional:
            return math.prod(len(self._laws[name].grid_values or ()) for name in self.names)
        return self._count_from(0, {}, self._counter(finite=False))

    def finite_size(self) -> int | None:
        """How many distinct configs W&B's laws can give, or None when a parameter is continuous.

        Every parameter discrete (values, value, int_uniform, a quantized law): the number of
        valid combinations (conditional parameters included), which random and bayes sweeps run
        at most once each (see :attr:`sweeper.spec.model.SweepSpec.distinct`).
        """
        counts = {name: self._laws[name].finite_count() for name in self.names}
        if any(count is None for count in counts.values()):
            return None
        return self._count_from(0, {}, self._counter(finite=True))

    def iter_finite(self) -> Iterator[dict[str, Any]]:
        """Every distinct config of a finite space (flat Optuna params), in dependency order."""
        yield from self._grid_from(0, {}, {}, finite=True)

    def config_key(self, params: Mapping[str, Any]) -> str:
        """A config's identity, as text: its active params, numbers compared as W&B's grid does."""
        active = self.active_params(params)
        return json.dumps(sorted((name, value_key(value)) for name, value in active.items()))

    def _count_from(self, i: int, known: dict[str, Any], count: Callable[[_Law], int]) -> int:
        # Only parents branch: the other active parameters multiply the count.
        if i == len(self._order):
            return 1
        name = self._order[i]
        law = self._laws[name]
        if not self._holds(law, known):
            return self._count_from(i + 1, known, count)
        if law.distribution is None:
            return self._count_from(i + 1, {**known, name: law.parameter.value}, count)
        if name not in self._parents:
            return count(law) * self._count_from(i + 1, known, count)
        values = law.finite_values() if law.grid_values is None else law.grid_values
        return sum(self._count_from(i + 1, {**known, name: law.natural(v)}, count) for v in values)

    def natural(self, name: str, value: Any) -> Any:
        """The value the trainer receives for Optuna param value ``value`` of parameter ``name``."""
        return self._laws[name].natural(value)

    def sample(self, name: str, rng: np.random.Generator) -> Any:
        """One draw of parameter ``name`` from W&B's law, as the Optuna param value."""
        return self._laws[name].draw(rng)

    def sample_params(self, rng: np.random.Generator) -> dict[str, Any]:
        """One draw of every active parameter, in dependency order, as flat Optuna params."""
        return self.define_by_run(lambda name, _: self._laws[name].draw(rng))

    def to_config(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The nested config the trainer receives: the active parameters (constants added), in
        natural types, real objects; an inactive parameter is absent (not None).

        Raises:
            KeyError: if ``params`` lacks an active non-constant parameter.
        """
        active = set(self.active(params))
        config: dict[str, Any] = {}
        for name, law in self._laws.items():
            if name not in active:
                continue
            value = law.parameter.value if law.distribution is None else law.natural(params[name])
            node = config
            for key in law.parameter.path[:-1]:
                node = node.setdefault(key, {})
            # Constants may be lists or mappings: each trainer gets its own copy.
            node[law.parameter.path[-1]] = copy.deepcopy(value)
        return config


def _dependency_order(parameters: Sequence[Parameter]) -> tuple[str, ...]:
    """W&B's order with parents first: a parameter whose parent sorts after it comes right after its
    last parent (the conditions are acyclic: the reader checks)."""
    parents = {p.name: {c.parent for c in p.when} for p in parameters}
    placed: list[str] = []
    done: set[str] = set()
    waiting = [p.name for p in parameters]  # W&B's order
    while waiting:
        for name in waiting:
            if parents[name] <= done or not parents[name] <= set(parents):
                placed.append(name)
                done.add(name)
                waiting.remove(name)
                break
        else:  # a cycle (only in a space built without the reader): keep W&B's order for the rest
            placed.extend(waiting)
            break
    return tuple(placed)
