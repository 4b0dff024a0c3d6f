"""Extending a sweep's spec: more budget (``run_cap``), more values for its ``values`` parameters.

:func:`extend_spec` returns the extended spec, checked as any spec is, or raises with every issue
located; it says nothing of what already ran (the storage does: :func:`sweeper.storage.sweeps.extend_sweep`).
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sweeper.errors import SpecError, SpecIssue
from sweeper.spec.laws import value_key
from sweeper.spec.model import SweepSpec
from sweeper.spec.reader import load_spec


@dataclass(frozen=True)
class Extension:
    """What an extension asks: a new ``run_cap``, or extra trials on top of the budget, and new
    values for parameters (dotted names, as in ``preview`` and ``trials``)."""

    run_cap: int | None = None
    trials: int | None = None
    values: Mapping[str, Sequence[Any]] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """The extension as it is recorded in the sweep's history."""
        out: dict[str, Any] = {}
        if self.run_cap is not None:
            out["run_cap"] = self.run_cap
        if self.trials is not None:
            out["trials"] = self.trials
        if self.values:
            out["values"] = {name: list(values) for name, values in self.values.items()}
        return out


def extend_spec(spec: SweepSpec, extension: Extension, *, runs_so_far: int) -> SweepSpec:
    """The spec with ``extension`` applied.

    ``runs_so_far`` is what ``trials`` adds to when the sweep has no budget (its first attempts).

    >>> spec = load_spec({"method": "grid", "parameters": {"lr": {"values": [0.1, 0.01]}}})
    >>> extend_spec(spec, Extension(values={"lr": [0.001]}), runs_so_far=2).space.grid_size()
    3

    Raises:
        SpecError: an unknown parameter, one without ``values``, a value it already has, a
            ``run_cap`` that is not larger, nothing asked, or an extended spec that is invalid.
    """
    where = f"extension of {spec.source}"
    issues: list[SpecIssue] = []
    raw = copy.deepcopy(dict(spec.raw))
    if extension.run_cap is not None and extension.trials is not None:
        issues.append(SpecIssue(where, "run_cap", "give run_cap or trials, not both"))
    if extension.run_cap is None and extension.trials is None and not extension.values:
        issues.append(SpecIssue(where, "", "nothing to extend: give run_cap, trials or values"))
    if extension.run_cap is not None:
        if spec.run_cap is not None and extension.run_cap <= spec.run_cap:
            issues.append(
                SpecIssue(
                    where,
                    "run_cap",
                    f"must be larger than the sweep's {spec.run_cap}, got {extension.run_cap}",
                )
            )
        raw["run_cap"] = extension.run_cap
    if extension.trials is not None:
        if extension.trials < 1:
            issues.append(SpecIssue(where, "trials", f"must be at least 1, got {extension.trials}"))
        base = spec.budget if spec.budget is not None else runs_so_far
        raw["run_cap"] = base + extension.trials
    for name, values in extension.values.items():
        issues.extend(_add_values(raw, spec, name, values, where))
    if issues:
        raise SpecError(issues)
    return replace(load_spec(raw), source=spec.source)


def _add_values(
    raw: dict[str, Any], spec: SweepSpec, name: str, values: Sequence[Any], where: str
) -> list[SpecIssue]:
    path = f"parameters.{name}"
    node = _parameter(raw, name)
    if node is None:
        known = [p.name for p in spec.parameters]
        hint = difflib.get_close_matches(name, known, n=1)
        suggestion = f"; did you mean {hint[0]!r}?" if hint else f"; its parameters: {', '.join(known)}"
        return [SpecIssue(where, path, f"the sweep has no parameter {name!r}{suggestion}")]
    if not isinstance(node.get("values"), list):
        return [SpecIssue(where, path, "only a parameter given by `values` can take more values")]
    if not values:
        return [SpecIssue(where, path, "no value to add")]
    had = {value_key(v) for v in node["values"]}
    issues = []
    for value in values:
        if value_key(value) in had:
            issues.append(SpecIssue(where, f"{path}.values", f"{value!r} is already one of its values"))
        had.add(value_key(value))
    node["values"] = [*node["values"], *values]
    return issues


def _parameter(raw: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    """The raw mapping of parameter ``name`` (dotted through nested ``parameters`` blocks)."""
    node: Any = raw
    for part in name.split("."):
        block = node.get("parameters") if isinstance(node, Mapping) else None
        if not isinstance(block, dict) or not isinstance(block.get(part), dict):
            return None
        node = block[part]
    return node if isinstance(node, dict) else None
