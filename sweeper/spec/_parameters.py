"""Reading the ``parameters`` tree: W&B's inference rules, each law's settings, grid checks."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from sweeper.spec._checks import _is_int, _is_plain_data, _join, _show
from sweeper.spec._conditions import ConditionReader
from sweeper.spec.laws import (
    _DISTRIBUTION_ALIASES,
    _REQUIRED,
    CONDITION_KEY,
    DISTRIBUTIONS,
    GRID_DISTRIBUTIONS,
    MAX_EXPONENT,
    MAX_INT,
    MAX_STEPS,
    SIGMA_SPAN,
    Condition,
    Parameter,
    law_bounds,
)

_PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
# Every key a parameter block may hold, under some distribution.
PARAMETER_KEYS: tuple[str, ...] = (
    "distribution",
    "parameters",
    *dict.fromkeys(key for settings in DISTRIBUTIONS.values() for key in settings),
)


class ParameterReader(ConditionReader):
    """Reads the parameter tree into :class:`~sweeper.spec.laws.Parameter` leaves."""

    # -- parameters ----------------------------------------------------------------------------

    def parameter_tree(self, value: Any, path: str) -> tuple[Parameter, ...]:
        """The whole ``parameters`` block: its leaves, their conditions checked against each other."""
        self._conditions = []
        found = self.parameters(value, path, ())
        self._check_conditions(found)
        return found

    def parameters(
        self, value: Any, path: str, prefix: tuple[str, ...], when: tuple[Condition, ...] = ()
    ) -> tuple[Parameter, ...]:
        block = self.mapping(value, path, "a mapping of parameter names to their settings")
        if block is None:
            return ()
        if not block:
            self.error(path, "must hold at least one parameter, got an empty mapping")
            return ()
        found: list[Parameter] = []
        # W&B's order: names sorted at every level, a nested block's leaves at its parent's place.
        for key in sorted(block, key=str):
            where = _join(path, key)
            if not isinstance(key, str) or not _PARAM_NAME.match(key):
                self.error(where, f"parameter names must match {_PARAM_NAME.pattern}, got {_show(key)}")
                continue
            found.extend(self.parameter(block[key], where, (*prefix, key), when))
        return tuple(found)

    def parameter(
        self, value: Any, path: str, names: tuple[str, ...], when: tuple[Condition, ...] = ()
    ) -> tuple[Parameter, ...]:
        block = self.mapping(
            value, path, "a mapping such as {values: [...]}, {min: .., max: ..} or {value: ..}"
        )
        if block is None:
            return ()
        if CONDITION_KEY in block:
            when = (*when, *self.condition(block[CONDITION_KEY], _join(path, CONDITION_KEY), names))
        if "parameters" in block:
            for key in block:
                if key not in ("parameters", CONDITION_KEY):
                    self.error(_join(path, key), "cannot sit next to a nested `parameters` block")
            return self.parameters(block["parameters"], f"{path}.parameters", names, when)

        distribution = self.infer_distribution(block, path)
        if distribution is None:
            return ()
        allowed = DISTRIBUTIONS[distribution]
        self.known_keys(block, path, ("distribution", *allowed, CONDITION_KEY))
        settings: dict[str, Any] = {}
        missing = False
        for key, default in allowed.items():
            if key in block:
                settings[key] = block[key]
            elif default is _REQUIRED:
                self.error(_join(path, key), f"is required for distribution {distribution}")
                missing = True
            elif default is not None:
                settings[key] = default
        if missing:
            return ()
        issues_before = len(self.issues)
        checked = self.check_settings(distribution, settings, path)
        if checked is None or len(self.issues) > issues_before:
            return ()
        return (Parameter(path=names, distribution=distribution, when=when, **checked),)

    # -- conditions (our extension: `sweeper_if`) ------------------------------------------------

    def infer_distribution(self, block: Mapping[Any, Any], path: str) -> str | None:
        if "distribution" in block:
            raw = block["distribution"]
            raw = _DISTRIBUTION_ALIASES.get(raw, raw) if isinstance(raw, str) else raw
            return self.choice(raw, f"{path}.distribution", tuple(DISTRIBUTIONS))  # type: ignore[no-any-return]
        # W&B's inference rules.
        if "value" in block:
            return "constant"
        if "values" in block:
            return "categorical"
        if "min" in block and "max" in block:
            return "int_uniform" if _is_int(block["min"]) and _is_int(block["max"]) else "uniform"
        if any(key not in PARAMETER_KEYS for key in block):  # {vales: [...]}: say which key is wrong
            self.known_keys(block, path, PARAMETER_KEYS)
            return None
        self.error(
            path,
            "must give value, values, min and max, distribution or parameters, "
            f"got keys {sorted(map(str, block))}",
        )
        return None

    def check_settings(self, distribution: str, raw: dict[str, Any], path: str) -> dict[str, Any] | None:
        issues_before = len(self.issues)
        out: dict[str, Any] = {}
        if distribution == "constant":
            out["value"] = raw.get("value")
            return out
        if distribution == "categorical":
            return self.categorical(raw, path)

        for key in ("min", "max", "mu"):
            if key in raw:
                out[key] = self.number(raw[key], f"{path}.{key}")
        for key in ("sigma", "a", "b", "q"):
            if key in raw:
                out[key] = self.number(raw[key], f"{path}.{key}", above=0)
        if any(v is None for v in out.values()):
            return None

        if distribution == "int_uniform":
            for key in ("min", "max"):
                if not _is_int(out.get(key)):
                    self.error(
                        f"{path}.{key}", f"must be an integer for int_uniform, got {_show(out.get(key))}"
                    )
        low, high = out.get("min"), out.get("max")
        if low is not None and high is not None and low >= high:
            self.error(f"{path}.min", f"must be < max ({high!r}), got {low!r}")
        if distribution.endswith("_values") and low is not None and low <= 0:
            self.error(f"{path}.min", f"must be > 0 for {distribution} (a log scale), got {low!r}")
        exponents = distribution in ("log_uniform", "q_log_uniform", "inv_log_uniform")
        if exponents and low is not None and high is not None:
            for key, bound in (("min", low), ("max", high)):
                if abs(bound) > MAX_EXPONENT:
                    self.error(
                        f"{path}.{key}",
                        f"is a natural-log exponent for {distribution} and must lie in "
                        f"[-{MAX_EXPONENT:g}, {MAX_EXPONENT:g}], got {bound!r}",
                    )
        if distribution in ("log_normal", "q_log_normal"):
            mu, sigma = out.get("mu", 0.0), out.get("sigma", 1.0)
            if abs(mu) + SIGMA_SPAN * sigma > MAX_EXPONENT:
                self.error(
                    f"{path}.sigma",
                    f"|mu| + {SIGMA_SPAN:g} * sigma must be <= {MAX_EXPONENT:g} so that "
                    f"values stay finite, got mu={mu!r}, sigma={sigma!r}",
                )
        if len(self.issues) == issues_before:
            self.check_range(Parameter(path=(), distribution=distribution, **out), path)
        return out

    def check_range(self, parameter: Parameter, path: str) -> None:
        """Reject settings whose law leaves float64 (infinite bounds, spans, or step counts)."""
        if parameter.distribution == "int_uniform":
            for key, bound in (("min", parameter.min), ("max", parameter.max)):
                if bound is not None and abs(bound) > MAX_INT:
                    self.error(f"{path}.{key}", f"must lie within +-2**62, got {bound!r}")
            return
        low, high = law_bounds(parameter)
        if not (math.isfinite(low) and math.isfinite(high) and math.isfinite(high - low)):
            self.error(path, f"must describe a law whose values are finite floats, got {low!r}..{high!r}")
            return
        q = parameter.q
        if q is not None and max(abs(low), abs(high)) / q > MAX_STEPS:
            self.error(
                f"{path}.q",
                f"must be large enough that values are at most 2**53 steps of q from 0, got {q!r} "
                f"for values up to {max(abs(low), abs(high)):g}",
            )

    def categorical(self, raw: dict[str, Any], path: str) -> dict[str, Any] | None:
        values = raw.get("values")
        if not isinstance(values, list) or not values:
            self.error(f"{path}.values", f"must be a non-empty list, got {_show(values)}")
            return None
        for i, item in enumerate(values):
            if not _is_plain_data(item):
                self.error(
                    f"{path}.values.{i}",
                    "must be plain data (null, bool, number, string, list, mapping "
                    f"with string keys; no NaN/inf), got {_show(item)}",
                )
        out: dict[str, Any] = {"values": tuple(values)}
        probabilities = raw.get("probabilities")
        if probabilities is None:
            return out
        where = f"{path}.probabilities"
        if not isinstance(probabilities, list) or len(probabilities) != len(values):
            got = f"{len(probabilities)} item(s)" if isinstance(probabilities, list) else _show(probabilities)
            self.error(where, f"must be a list as long as values ({len(values)}), got {got}")
            return None
        checked = [self.number(p, f"{where}.{i}", at_least=0) for i, p in enumerate(probabilities)]
        if any(p is None for p in checked):
            return None
        if not math.isclose(sum(checked), 1.0, rel_tol=1e-5, abs_tol=1e-8):
            self.error(where, f"must sum to 1, got {probabilities!r} (sum {sum(checked):g})")
            return None
        out["probabilities"] = tuple(float(p) for p in checked)
        return out

    def _check_flat_names(self, parameters: tuple[Parameter, ...]) -> None:
        # Optuna sees dotted names: a top-level `a.b` would collide with `b` nested under `a`.
        seen: dict[str, tuple[str, ...]] = {}
        for parameter in parameters:
            other = seen.setdefault(parameter.name, parameter.path)
            if other != parameter.path:
                self.error(
                    "parameters." + ".parameters.".join(parameter.path),
                    f"must have a unique dotted name, got {parameter.name!r} twice "
                    "(a dotted name and a nested one)",
                )

    def _check_grid(self, parameters: tuple[Parameter, ...]) -> None:
        for parameter in parameters:
            where = "parameters." + ".parameters.".join(parameter.path)
            if parameter.distribution not in GRID_DISTRIBUTIONS:
                self.error(
                    where,
                    "must be discrete for method grid (values, value, int_uniform or q_uniform), "
                    f"got the continuous distribution {parameter.distribution}",
                )
            elif parameter.probabilities is not None:
                self.error(
                    f"{where}.probabilities",
                    "must be absent for method grid (a grid tries every value), "
                    f"got {list(parameter.probabilities)}",
                )
