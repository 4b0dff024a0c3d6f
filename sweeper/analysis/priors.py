"""Warm starts: earlier results, checked against a new sweep's space, become its priors.

A source (``sweeper.warm_start`` or ``--warm-start``; read by :mod:`sweeper.analysis.prior_sources`)
gives :class:`Row` s: a config, metrics, a state. Each row is checked against the new sweep's space
and objectives, and becomes a prior (a finished trial with the sweep's own distributions, see
:mod:`sweeper.storage.priors`) or is skipped for a reason that the :class:`SourceReport` counts and
shows with examples. Nothing is dropped without a word:

- *outside the space*: a parameter's value is not one the space can give (out of range, off the
  step, not among the choices), or a constant differs from the sweep's;
- *missing params*: an active parameter of the space has no value in the row;
- *no value for M*: the row lacks the objective metric M (or it is not a finite number);
- *not finished*: the row failed, is still running or waits;
- *sweep parent runs*: an MLflow run that groups a sweep's runs (sweeper's tracker makes one);
- *priors of their source*: a source sweep's own priors (name their source instead: no double counts);
- *duplicates*: the same config with the same values as a prior loaded before (the same result
  read twice, from two sources, would weigh double).

Config keys that are no parameter of the space (or one its choices leave inactive) are listed as
ignored keys. Values given as text (MLflow params, CSV cells) are read as the parameter's type.
A prior keeps the learning curve of the new sweep's first objective when its source recorded one
(sweeps and JSON exports): the pruner learns from it too.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from sweeper.plain import flatten, strict_json_dict
from sweeper.spec.laws import value_key
from sweeper.spec.model import SweepSpec, WarmStart
from sweeper.storage import attrs as keys
from sweeper.storage.priors import Priors
from sweeper.storage.urls import mask_url

_logger = logging.getLogger(__name__)

_EXAMPLES = 3  # examples kept per reason
OUTSIDE = "outside the space"
MISSING = "missing params"
UNFINISHED = "not finished"
OWN_PRIOR = "priors of their source"
DUPLICATE = "duplicates"
PARENT = "parent"  # a row that is no result: an MLflow sweep's parent run


@dataclass(frozen=True)
class Row:
    """One earlier result as its source gives it.

    Attributes:
        ref: Which result of the source it is (``trial 12``, ``run 3f2a9c1d``, ``row 7``).
        config: Its config: nested, or flat with dotted keys; values natural or as text.
        metrics: Metric name -> value (its objective values and final metrics).
        state: ``complete``, ``pruned`` (stopped, with the value it reached), or anything else.
        intermediate: Step -> value of its learning curve, and the metric the curve is of.
        started: When it started (naive local time, as Optuna keeps it), if known.
        completed: When it ended, if known.
        duration_s: Seconds it ran, if known.
        is_prior: Whether it is a prior of its own source (skipped).
    """

    ref: str
    config: Mapping[str, Any]
    metrics: Mapping[str, Any]
    state: str = "complete"
    intermediate: Mapping[int, float] = field(default_factory=dict)
    curve_metric: str | None = None
    started: datetime | None = None
    completed: datetime | None = None
    duration_s: float | None = None
    is_prior: bool = False


@dataclass
class SourceReport:
    """What one source gave: rows read, priors loaded, and why the others were skipped."""

    source: str
    read: int = 0
    loaded: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    ignored_keys: set[str] = field(default_factory=set)

    def skip(self, reason: str, example: str) -> None:
        self.skipped[reason] += 1
        kept = self.examples.setdefault(reason, [])
        if len(kept) < _EXAMPLES:
            kept.append(example)

    def line(self) -> str:
        """One line: ``50 priors loaded from sweep k3v9x2ab (52 read); 2 outside the space: ...``."""
        parts = [f"{self.loaded} priors loaded from {self.source} ({self.read} read)"]
        for reason, count in self.skipped.most_common():
            shown = "; ".join(self.examples.get(reason, ()))
            more = ", ..." if count > len(self.examples.get(reason, ())) else ""
            parts.append(f"{count} {reason}: {shown}{more}")
        if self.ignored_keys:
            parts.append(f"keys not in the space, ignored: {', '.join(sorted(self.ignored_keys))}")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, as stored with the sweep (study user attr ``sweeper:priors``)."""
        return strict_json_dict(
            {
                "source": self.source,
                "read": self.read,
                "loaded": self.loaded,
                "skipped": dict(self.skipped.most_common()),
                "examples": {reason: list(items) for reason, items in self.examples.items()},
                "ignored_keys": sorted(self.ignored_keys),
            }
        )


def describe(source: WarmStart) -> str:
    """The source in words, as reports name it (a storage URL's password masked)."""
    if source.kind == "mlflow":
        where = f" at {mask_url(source.tracking_uri)}" if source.tracking_uri else ""
        return f"mlflow experiment {source.target!r}{where}"
    if source.kind == "sweep" and source.storage:
        return f"sweep {source.target} in {mask_url(source.storage)}"
    return f"{source.kind} {source.target}"


def load_priors(
    sources: Sequence[WarmStart], spec: SweepSpec, storage: BaseStorage, project: str | Path | None = None
) -> tuple[Priors, list[SourceReport]]:
    """Read every source, check each row against ``spec``; the priors and a report per source.

    Each report's :meth:`~SourceReport.line` is logged (the CLI prints it on stderr).

    Args:
        sources: Where the earlier results are.
        spec: The new sweep's spec (its space and objectives).
        storage: The new sweep's storage (a ``sweep`` source without ``storage`` is read there).
        project: The project directory (default: the current one). A relative path is looked for
            next to the spec file first, then there (as a custom scheduler's ``source`` is).

    Raises:
        UsageError: a source cannot be read (no such file, experiment or run folder).
        SweepNotFoundError: a source sweep does not exist.
    """
    from sweeper.analysis.prior_sources import read_rows

    roots = search_roots(spec, project)
    trials: list[FrozenTrial] = []
    reports: list[SourceReport] = []
    seen: set[tuple[str, tuple[float, ...]]] = set()
    for source in sources:
        report = SourceReport(describe(source))
        for row in read_rows(source, storage, roots):
            report.read += 1
            prior = to_prior(row, spec, report)
            if prior is None:
                continue
            identity = (spec.space.config_key(prior.params), tuple(prior.values or ()))
            if identity in seen:
                report.skip(DUPLICATE, row.ref)
                continue
            seen.add(identity)
            trials.append(prior)
            report.loaded += 1
        _logger.info("%s", report.line())
        reports.append(report)
    return Priors(tuple(trials), tuple(r.to_dict() for r in reports)), reports


def search_roots(spec: SweepSpec, project: str | Path | None = None) -> list[Path]:
    """Where a source's relative path is looked for: next to the spec file, then in ``project``."""
    roots = [Path(project or Path.cwd())]
    if Path(spec.source).is_file():
        roots.insert(0, Path(spec.source).resolve().parent)
    return roots


def to_prior(row: Row, spec: SweepSpec, report: SourceReport) -> FrozenTrial | None:
    """The prior of ``row`` under ``spec``, or None (the reason counted in ``report``)."""
    if row.is_prior:
        report.skip(OWN_PRIOR, row.ref)
        return None
    state = {"complete": TrialState.COMPLETE, "pruned": TrialState.PRUNED}.get(row.state)
    if row.state == PARENT:
        report.skip("sweep parent runs", row.ref)
        return None
    if state is None:
        report.skip(UNFINISHED, f"{row.ref} ({row.state})")
        return None
    params = _params(row, spec, report)
    if params is None:
        return None
    values = []
    for metric in spec.objectives:
        value = _number(_find(row.metrics, metric.name)[1])
        if value is None:
            report.skip(f"no value for {metric.name}", row.ref)
            return None
        values.append(value)
    space = spec.space
    distributions = space.distributions()
    attrs: dict[str, Any] = {
        keys.PRIOR: {"source": report.source, "ref": row.ref},
        keys.CONFIG: space.to_config(params),
    }
    metrics = {k: v for k, v in flatten(row.metrics).items() if _number(v) is not None}
    if metrics:
        attrs[keys.METRICS] = metrics
    if row.duration_s is not None:
        attrs[keys.DURATION_S] = round(row.duration_s, 3)
    curve: dict[int, float] = {}
    if row.curve_metric is not None and row.curve_metric == spec.objectives[0].name:
        curve = {int(step): float(v) for step, v in row.intermediate.items() if _number(v) is not None}
    trial = optuna.trial.create_trial(
        state=state,
        values=values,
        params=params,
        distributions={name: distributions[name] for name in params},
        user_attrs=attrs,
        intermediate_values=curve,
    )
    if row.started is not None:
        trial.datetime_start = row.started
        trial.datetime_complete = row.completed or row.started
    return trial


def _params(row: Row, spec: SweepSpec, report: SourceReport) -> dict[str, Any] | None:
    """The row's Optuna params under the space (its active parameters), or None once skipped."""
    space = spec.space
    distributions = space.distributions()
    converted: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for parameter in space.parameters:
        found, raw = _find(row.config, parameter.name)
        distribution = distributions.get(parameter.name)
        # An empty cell is no value; None is one only where it can be a choice.
        if not found or (
            _blank(raw) and not (raw is None and isinstance(distribution, CategoricalDistribution))
        ):
            continue
        if distribution is None:  # a constant: it must agree with the sweep's
            if not _same(raw, parameter.value):
                problems[parameter.name] = (
                    f"{parameter.name}={_show(raw)}, the sweep fixes {_show(parameter.value)}"
                )
            continue
        try:
            converted[parameter.name] = param_value(space, parameter.name, distribution, raw)
        except ValueError as exc:
            problems[parameter.name] = str(exc)
    active = set(space.active(converted))
    # A table's bare column is offered as config and metric: a metric is no ignored config key.
    report.ignored_keys.update(_unknown_keys(row.config, spec, active) - set(flatten(row.metrics)))
    bad = [problems[name] for name in space.active(converted) if name in problems]
    if bad:
        report.skip(OUTSIDE, f"{row.ref}: {'; '.join(bad)}")
        return None
    missing = [name for name in space.active(converted) if name in distributions and name not in converted]
    if missing:
        report.skip(MISSING, f"{row.ref}: no {', '.join(missing)}")
        return None
    return {name: converted[name] for name in space.active_params(converted)}


def param_value(space: Any, name: str, distribution: BaseDistribution, raw: Any) -> Any:
    """The Optuna param value of parameter ``name`` for a source's value ``raw`` (natural, or text).

    Raises:
        ValueError: the value is not one the parameter can take, said in words.
    """
    if isinstance(distribution, CategoricalDistribution):
        by_key = {value_key(space.natural(name, c)): c for c in distribution.choices}
        for candidate in _readings(raw):
            if value_key(candidate) in by_key:
                return by_key[value_key(candidate)]
        shown = ", ".join(_show(space.natural(name, c)) for c in distribution.choices)
        raise ValueError(f"{name}={_show(raw)} is not one of {shown}")
    number = _number(raw)
    if number is None:
        raise ValueError(f"{name}={_show(raw)} is not a number")
    value: Any = number
    if not isinstance(distribution, FloatDistribution):
        if not number.is_integer():
            raise ValueError(f"{name}={_show(raw)} is not an integer")
        value = int(number)
    if not distribution._contains(distribution.to_internal_repr(value)):
        step = getattr(distribution, "step", None)
        steps = f" in steps of {step:g}" if step not in (None, 1) else ""
        low, high = getattr(distribution, "low", None), getattr(distribution, "high", None)
        raise ValueError(f"{name}={_show(raw)} is outside [{low:g}, {high:g}]{steps}")
    return value


def _readings(raw: Any) -> Iterable[Any]:
    """What a source's value may stand for: itself, and for text its JSON reading (``"4"`` -> 4,
    ``"True"`` -> true, ``"None"`` -> null)."""
    yield raw
    if isinstance(raw, str):
        text = {"True": "true", "False": "false", "None": "null"}.get(raw.strip(), raw)
        with contextlib.suppress(ValueError):
            yield json.loads(text)


def _same(raw: Any, constant: Any) -> bool:
    return any(value_key(candidate) == value_key(constant) for candidate in _readings(raw))


def _unknown_keys(config: Mapping[str, Any], spec: SweepSpec, active: set[str]) -> set[str]:
    """Flat keys of ``config`` that are no active parameter (nor part of a constant's value)."""
    names = {p.name for p in spec.space.parameters}
    unknown = set()
    for key in flatten(config):
        owner = next((n for n in names if key == n or key.startswith(n + ".")), None)
        if owner is None or owner not in active:
            unknown.add(key)
    return unknown


def _find(mapping: Mapping[str, Any], dotted: str) -> tuple[bool, Any]:
    """Whether ``mapping`` holds ``dotted`` (a flat key, or a path through nested mappings), and its value."""
    if dotted in mapping:
        return True, mapping[dotted]
    node: Any = mapping
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _blank(raw: Any) -> bool:
    return raw is None or (isinstance(raw, str) and not raw.strip())


def _number(value: Any) -> float | None:
    """A finite float from a number or its text, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def _show(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= 40 else text[:37] + "..."
