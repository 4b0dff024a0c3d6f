"""The sweep spec: a W&B sweep config plus our ``sweeper:`` block, parsed once into frozen dataclasses.

The dataclasses below are the contract the engine, trackers and inspect code build on; parsing
(``load_spec``) collects every error with its dotted path.

Every spec W&B's engine accepts loads, with these deliberate differences:

- Unknown keys are errors (W&B warns); our settings live in the ``sweeper:`` block.
- Keys only W&B's servers use (``controller``, ``job``, ``image_uri``, ``apiVersion``, ``kind``,
  ``scheduler``) are accepted and listed in :attr:`SweepSpec.ignored_keys`.
- Degenerate laws W&B lets through and then fails or misbehaves on are rejected up front:
  ``sigma``, ``a``, ``b`` and ``q`` must be > 0; hyperband ``max_iter`` needs ``s`` and at least
  one band; ``probabilities`` in a grid; bounds whose law leaves float64 (``exp`` overflow,
  more than 2**53 quantization steps).
- ``metric`` and ``metrics`` are exclusive; a trainer excludes ``program`` and ``command``.
- YAML: ``1e-5`` is a number, duplicate keys are errors, values must be JSON-compatible (the
  raw spec is stored with the study).
"""

from __future__ import annotations

import copy
import difflib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from sweeper.errors import SpecError, SpecIssue
from sweeper.spec.loader import read_yaml

if TYPE_CHECKING:
    from sweeper.spec.space import SearchSpace

Method = Literal["grid", "random", "bayes", "custom"]
Goal = Literal["minimize", "maximize"]


@dataclass(frozen=True)
class Metric:
    """An objective: the metric's name, its goal and an optional target that ends the sweep."""

    name: str
    goal: Goal = "minimize"
    target: float | None = None
    impute: Literal["latest", "best", "worst"] = "worst"
    impute_while_running: Literal["latest", "best", "worst", "false"] | None = None


@dataclass(frozen=True)
class Parameter:
    """One leaf of the parameter tree, after W&B's inference rules.

    ``path`` is the chain of names from the top (nested ``parameters`` blocks); ``name`` joins it
    with dots, which is how Optuna sees the parameter.
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

    @property
    def name(self) -> str:
        return ".".join(self.path)


@dataclass(frozen=True)
class EarlyTerminate:
    """``early_terminate``: W&B's hyperband stopping rule, or our ``asha`` / ``median`` extensions."""

    type: Literal["hyperband", "asha", "median"]
    min_iter: int | None = None
    max_iter: int | None = None
    s: int | None = None
    eta: float = 3.0
    strict: bool = True
    # Keyword arguments for Optuna's SuccessiveHalvingPruner (asha) or MedianPruner (median).
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Resources:
    """What one trial asks of the cluster; ``gpus`` may be fractional (two 0.5 trials share a GPU)."""

    gpus: float = 0.0
    cpus: float = 1.0
    memory: int | None = None  # bytes
    custom: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class TrackerSpec:
    """One tracker the trials report to: its registered name and its options."""

    type: str
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SweeperSettings:
    """Our own settings, from the spec's top-level ``sweeper:`` block."""

    trainer: str | None = None  # "module:function"
    resources: Resources = field(default_factory=Resources)
    max_concurrent: int | None = None
    trackers: tuple[TrackerSpec, ...] = ()
    seed: int | None = None
    retries: int = 0
    timeout: float | None = None  # seconds per trial
    sampler: Literal["auto", "tpe", "gp"] = "auto"
    storage: str | None = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep spec. Build it with :func:`load_spec`."""

    method: Method
    parameters: tuple[Parameter, ...]
    metric: Metric | None = None
    metrics: tuple[Metric, ...] = ()
    early_terminate: EarlyTerminate | None = None
    program: str | None = None
    command: tuple[str, ...] | None = None
    name: str | None = None
    description: str | None = None
    project: str | None = None
    entity: str | None = None
    run_cap: int | None = None
    sweeper: SweeperSettings = field(default_factory=SweeperSettings)
    # The mapping as the user wrote it (numbers already numbers): what a study records.
    raw: Mapping[str, Any] = field(default_factory=dict)
    # Where the spec came from, for messages: a file path or "<mapping>".
    source: str = "<mapping>"
    # W&B keys we accept but do not act on (controller, job, image_uri, ...), as dotted paths.
    ignored_keys: tuple[str, ...] = ()

    @property
    def objectives(self) -> tuple[Metric, ...]:
        """The objectives in order: the ``metrics`` list, else the single ``metric``, else none."""
        if self.metrics:
            return self.metrics
        return (self.metric,) if self.metric is not None else ()

    @cached_property
    def space(self) -> SearchSpace:
        """The search space of this spec's parameters (built once per spec)."""
        from sweeper.spec.space import SearchSpace

        return SearchSpace(self.parameters, method=self.method)


# --------------------------------------------------------------------------------------------
# Parsing. One pass over the mapping; every problem becomes a SpecIssue, raised together.
# --------------------------------------------------------------------------------------------

METHODS = ("grid", "random", "bayes", "custom")
GOALS = ("minimize", "maximize")
IMPUTES = ("latest", "best", "worst")
SAMPLERS = ("auto", "tpe", "gp")
EARLY_TERMINATE_TYPES = ("hyperband", "asha", "median")

# Top-level W&B keys that only W&B's servers act on: accepted, reported in `ignored_keys`.
IGNORED_KEYS = ("controller", "job", "image_uri", "apiVersion", "kind", "scheduler")
TOP_LEVEL_KEYS = (
    "method",
    "parameters",
    "metric",
    "metrics",
    "early_terminate",
    "program",
    "command",
    "name",
    "description",
    "project",
    "entity",
    "run_cap",
    "sweeper",
    *IGNORED_KEYS,
)
SWEEPER_KEYS = (
    "trainer",
    "resources",
    "max_concurrent",
    "trackers",
    "seed",
    "retries",
    "timeout",
    "sampler",
    "storage",
    "tags",
)
RESOURCE_KEYS = ("gpus", "cpus", "memory", "custom")
METRIC_KEYS = ("name", "goal", "target", "impute", "impute_while_running")

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


_PLAIN_KEY = re.compile(r"^[^\s.'\"]+$")
_PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_TRAINER_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_MEMORY = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgtp]?i?b?)\s*$", re.IGNORECASE)
_MEMORY_UNITS: dict[str, int] = {"": 1, "b": 1}
for _power, _prefix in enumerate("kmgtp", start=1):
    _MEMORY_UNITS[_prefix] = _MEMORY_UNITS[f"{_prefix}b"] = 1000**_power
    _MEMORY_UNITS[f"{_prefix}i"] = _MEMORY_UNITS[f"{_prefix}ib"] = 1024**_power

HYPERBAND_KEYS = ("type", "min_iter", "max_iter", "s", "eta", "strict")
ASHA_OPTIONS = ("min_resource", "reduction_factor", "min_early_stopping_rate", "bootstrap_count")
MEDIAN_OPTIONS = ("n_startup_trials", "n_warmup_steps", "interval_steps", "n_min_trials")


def _show(value: Any) -> str:
    """A value as the user would recognise it in a message, kept short."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _is_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond float range
        return False


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _join(path: str, key: Any) -> str:
    # Keys that would blur the dotted path (empty, spaces, dots, non-strings) are shown quoted.
    segment = key if isinstance(key, str) and _PLAIN_KEY.match(key) else repr(key)
    return f"{path}.{segment}" if path else segment


def _is_plain_data(value: Any) -> bool:
    """Whether ``value`` survives a JSON round trip (what categorical choices are stored as)."""
    if value is None or isinstance(value, bool | int | str):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list | tuple):
        return all(_is_plain_data(item) for item in value)
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and _is_plain_data(v) for k, v in value.items())
    return False


class _Reader:
    """Walks the raw mapping, builds the dataclasses and collects located issues."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.issues: list[SpecIssue] = []

    def error(self, path: str, message: str) -> None:
        self.issues.append(SpecIssue(self.source, path or "<root>", message))

    # -- typed getters: each records an issue and returns None when the value is wrong --

    def mapping(self, value: Any, path: str, what: str = "a mapping") -> Mapping[Any, Any] | None:
        if isinstance(value, Mapping):
            return value
        self.error(path, f"must be {what}, got {_show(value)}")
        return None

    def known_keys(self, block: Mapping[Any, Any], path: str, known: Sequence[str]) -> None:
        for key in block:
            if key in known:
                continue
            close = difflib.get_close_matches(str(key), list(known), n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}?" if close else f"expected one of: {', '.join(known)}"
            self.error(_join(path, key), f"unknown key; {hint}")

    def choice(self, value: Any, path: str, choices: Sequence[str]) -> Any:
        if value in choices and isinstance(value, str):
            return value
        close = difflib.get_close_matches(value, list(choices), n=1) if isinstance(value, str) else []
        hint = f"; did you mean {close[0]!r}?" if close else ""
        self.error(path, f"must be one of {', '.join(choices)}, got {_show(value)}{hint}")
        return None

    def string(self, value: Any, path: str) -> str | None:
        if isinstance(value, str) and value:
            return value
        self.error(path, f"must be a non-empty string, got {_show(value)}")
        return None

    def number(
        self, value: Any, path: str, *, above: float | None = None, at_least: float | None = None
    ) -> Any:
        if not _is_number(value):
            self.error(path, f"must be a finite number, got {_show(value)}")
            return None
        return self._bounded(value, path, "a number", above, at_least)

    def integer(
        self, value: Any, path: str, *, above: float | None = None, at_least: float | None = None
    ) -> Any:
        if not _is_int(value):
            self.error(path, f"must be an integer, got {_show(value)}")
            return None
        return self._bounded(value, path, "an integer", above, at_least)

    def boolean(self, value: Any, path: str) -> bool | None:
        if isinstance(value, bool):
            return value
        self.error(path, f"must be true or false, got {_show(value)}")
        return None

    def _bounded(self, value: Any, path: str, kind: str, above: float | None, at_least: float | None) -> Any:
        if above is not None and not value > above:
            self.error(path, f"must be {kind} > {above:g}, got {_show(value)}")
            return None
        if at_least is not None and not value >= at_least:
            self.error(path, f"must be {kind} >= {at_least:g}, got {_show(value)}")
            return None
        return value

    # -- the spec ----------------------------------------------------------------------------

    def spec(self, data: Any) -> SweepSpec | None:
        top = self.mapping(data, "", "a mapping of sweep settings (method, parameters, ...)")
        if top is None:
            return None
        self.known_keys(top, "", TOP_LEVEL_KEYS)

        method = self.choice(top["method"], "method", METHODS) if "method" in top else None
        if "method" not in top:
            self.error("method", f"is required: one of {', '.join(METHODS)}")

        parameters: tuple[Parameter, ...] = ()
        if "parameters" not in top:
            self.error("parameters", "is required: a mapping of parameter names to their settings")
        else:
            parameters = self.parameters(top["parameters"], "parameters", ())
            self._check_flat_names(parameters)
            if method == "grid":
                self._check_grid(parameters)

        metric = self.metric(top["metric"], "metric") if top.get("metric") is not None else None
        metrics: tuple[Metric, ...] = ()
        if top.get("metrics") is not None:
            metrics = self.metrics(top["metrics"], "metrics")
            if "metric" in top and top["metric"] is not None:
                self.error("metrics", "cannot be combined with metric: give one objective or a list of them")
        has_objective = top.get("metric") is not None or top.get("metrics") is not None

        early = None
        if top.get("early_terminate") is not None:
            early = self.early_terminate(top["early_terminate"], "early_terminate")
            if not has_objective:
                self.error("early_terminate", "needs a metric to compare runs by; add a `metric:` block")
            if len(metrics) >= 2:
                self.error(
                    "early_terminate",
                    f"cannot be used with several objectives (metrics has {len(metrics)}); "
                    "stopping rules need a single metric",
                )
        if method == "bayes" and not has_objective:
            self.error("metric", "is required when method is bayes: the metric to optimize")

        program = self.string(top["program"], "program") if top.get("program") is not None else None
        command = self.command(top["command"], "command") if top.get("command") is not None else None
        texts = {
            key: self.string(top[key], key) if top.get(key) is not None else None
            for key in ("name", "description", "project", "entity")
        }
        run_cap = (
            self.integer(top["run_cap"], "run_cap", at_least=1) if top.get("run_cap") is not None else None
        )
        ignored = self.ignored(top)

        settings = SweeperSettings()
        if top.get("sweeper") is not None:
            settings = self.settings(top["sweeper"], "sweeper") or settings
            for key in ("program", "command"):
                if settings.trainer is not None and top.get(key) is not None:
                    self.error(
                        "sweeper.trainer",
                        f"cannot be combined with {key}: give either a trainer function or a W&B program, "
                        f"got trainer {settings.trainer!r} and {key} {_show(top[key])}",
                    )
                    break

        if not self.issues:
            # The raw mapping is stored with the study (JSON): every value must survive that.
            self.json_compatible(top, "")
        if self.issues or method is None:
            return None
        return SweepSpec(
            method=method,
            parameters=parameters,
            metric=metric,
            metrics=metrics,
            early_terminate=early,
            program=program,
            command=command,
            name=texts["name"],
            description=texts["description"],
            project=texts["project"],
            entity=texts["entity"],
            run_cap=run_cap,
            sweeper=settings,
            raw=copy.deepcopy(dict(top)),
            source=self.source,
            ignored_keys=ignored,
        )

    def json_compatible(self, value: Any, path: str) -> None:
        if isinstance(value, Mapping):
            for key, item in value.items():
                if not isinstance(key, str | int | float | bool) and key is not None:
                    self.error(_join(path, key), f"keys must be strings or numbers, got {_show(key)}")
                else:
                    self.json_compatible(item, _join(path, key))
        elif isinstance(value, list | tuple):
            for i, item in enumerate(value):
                self.json_compatible(item, _join(path, i))
        elif value is not None and not isinstance(value, str | int | float | bool):
            self.error(
                path, f"must be plain data (null, bool, number, string, list or mapping), got {_show(value)}"
            )

    def ignored(self, top: Mapping[Any, Any]) -> tuple[str, ...]:
        for key in ("controller", "scheduler"):
            if key in top and top[key] is not None:
                self.mapping(top[key], key)
        if isinstance(top.get("controller"), Mapping) and "type" in top["controller"]:
            self.choice(top["controller"]["type"], "controller.type", ("local", "cloud"))
        if "kind" in top and top["kind"] != "sweep":
            self.error("kind", f"must be sweep, got {_show(top['kind'])}")
        for key in ("job", "image_uri", "apiVersion"):
            if top.get(key) is not None:
                self.string(top[key], key)
        return tuple(key for key in IGNORED_KEYS if key in top)

    def command(self, value: Any, path: str) -> tuple[str, ...] | None:
        if not isinstance(value, list) or not value:
            self.error(path, f"must be a non-empty list of command tokens, got {_show(value)}")
            return None
        tokens = []
        for i, token in enumerate(value):
            if isinstance(token, bool) or not isinstance(token, str | int | float):
                self.error(f"{path}.{i}", f"must be a string token, got {_show(token)}")
            else:
                tokens.append(str(token))
        return tuple(tokens)

    # -- metrics -------------------------------------------------------------------------------

    def metric(self, value: Any, path: str) -> Metric | None:
        block = self.mapping(value, path, "a mapping with name, goal, target, impute")
        if block is None:
            return None
        self.known_keys(block, path, METRIC_KEYS)
        if "name" not in block:
            self.error(f"{path}.name", "is required: the name of the logged metric")
        name = self.string(block["name"], f"{path}.name") if "name" in block else None
        goal: Any = self.choice(block["goal"], f"{path}.goal", GOALS) if "goal" in block else "minimize"
        target = self.number(block["target"], f"{path}.target") if block.get("target") is not None else None
        impute: Any = (
            self.choice(block["impute"], f"{path}.impute", IMPUTES) if "impute" in block else "worst"
        )
        while_running = None
        if block.get("impute_while_running") is not None:
            raw = block["impute_while_running"]
            raw = "false" if raw is False else raw
            while_running = self.choice(raw, f"{path}.impute_while_running", (*IMPUTES, "false"))
        if name is None or goal is None or impute is None:
            return None
        return Metric(name=name, goal=goal, target=target, impute=impute, impute_while_running=while_running)

    def metrics(self, value: Any, path: str) -> tuple[Metric, ...]:
        if not isinstance(value, list) or len(value) < 2:
            shown = f"{len(value)} item(s)" if isinstance(value, list) else _show(value)
            self.error(
                path, f"must be a list of at least 2 metric mappings (use `metric:` for one), got {shown}"
            )
            return ()
        found = [self.metric(item, f"{path}.{i}") for i, item in enumerate(value)]
        names = [m.name for m in found if m is not None]
        for i, metric in enumerate(found):
            if metric is not None and names.count(metric.name) > 1:
                self.error(f"{path}.{i}.name", f"must be unique among metrics, got {metric.name!r} twice")
        return tuple(m for m in found if m is not None)

    # -- early termination ---------------------------------------------------------------------

    def early_terminate(self, value: Any, path: str) -> EarlyTerminate | None:
        block = self.mapping(value, path, "a mapping with a type (hyperband, asha or median)")
        if block is None:
            return None
        if "type" not in block:
            self.error(f"{path}.type", f"is required: one of {', '.join(EARLY_TERMINATE_TYPES)}")
            return None
        kind = self.choice(block["type"], f"{path}.type", EARLY_TERMINATE_TYPES)
        if kind == "hyperband":
            return self.hyperband(block, path)
        if kind == "asha":
            self.known_keys(block, path, ("type", *ASHA_OPTIONS))
            options: dict[str, Any] = {}
            if "min_resource" in block:
                raw = block["min_resource"]
                if raw == "auto":
                    options["min_resource"] = "auto"
                elif self.integer(raw, f"{path}.min_resource", at_least=1) is not None:
                    options["min_resource"] = raw
            for key, least in (
                ("reduction_factor", 2),
                ("min_early_stopping_rate", 0),
                ("bootstrap_count", 0),
            ):
                if key in block and self.integer(block[key], f"{path}.{key}", at_least=least) is not None:
                    options[key] = block[key]
            return EarlyTerminate(type="asha", options=options)
        if kind == "median":
            self.known_keys(block, path, ("type", *MEDIAN_OPTIONS))
            options = {}
            for key, least in (
                ("n_startup_trials", 0),
                ("n_warmup_steps", 0),
                ("interval_steps", 1),
                ("n_min_trials", 1),
            ):
                if key in block and self.integer(block[key], f"{path}.{key}", at_least=least) is not None:
                    options[key] = block[key]
            return EarlyTerminate(type="median", options=options)
        return None

    def hyperband(self, block: Mapping[Any, Any], path: str) -> EarlyTerminate | None:
        self.known_keys(block, path, HYPERBAND_KEYS)
        issues_before = len(self.issues)
        got = {key: block[key] for key in ("min_iter", "max_iter", "s") if block.get(key) is not None}
        min_iter = (
            self.integer(got["min_iter"], f"{path}.min_iter", at_least=1) if "min_iter" in got else None
        )
        max_iter = (
            self.integer(got["max_iter"], f"{path}.max_iter", at_least=1) if "max_iter" in got else None
        )
        s = self.integer(got["s"], f"{path}.s", at_least=1) if "s" in got else None
        # W&B uses max_iter whenever it is given (then s is needed), else min_iter.
        if "max_iter" in got and "s" not in got:
            self.error(f"{path}.s", "is required with max_iter: the number of bands below max_iter")
        elif "min_iter" not in got and "max_iter" not in got:
            self.error(path, f"must give min_iter, or max_iter and s, got keys {sorted(map(str, block))}")
        eta = self.number(block["eta"], f"{path}.eta", above=1) if block.get("eta") is not None else 3.0
        strict = self.boolean(block["strict"], f"{path}.strict") if block.get("strict") is not None else True
        if max_iter is not None and s is not None and eta is not None and max_iter / eta < 1:
            self.error(
                f"{path}.max_iter",
                f"must be >= eta ({eta:g}) so that at least one band (max_iter / eta) exists, got {max_iter}",
            )
        if len(self.issues) > issues_before or eta is None or strict is None:
            return None
        return EarlyTerminate(
            type="hyperband", min_iter=min_iter, max_iter=max_iter, s=s, eta=float(eta), strict=strict
        )

    # -- parameters ----------------------------------------------------------------------------

    def parameters(self, value: Any, path: str, prefix: tuple[str, ...]) -> tuple[Parameter, ...]:
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
            found.extend(self.parameter(block[key], where, (*prefix, key)))
        return tuple(found)

    def parameter(self, value: Any, path: str, names: tuple[str, ...]) -> tuple[Parameter, ...]:
        block = self.mapping(
            value, path, "a mapping such as {values: [...]}, {min: .., max: ..} or {value: ..}"
        )
        if block is None:
            return ()
        if "parameters" in block:
            for key in block:
                if key != "parameters":
                    self.error(_join(path, key), "cannot sit next to a nested `parameters` block")
            return self.parameters(block["parameters"], f"{path}.parameters", names)

        distribution = self.infer_distribution(block, path)
        if distribution is None:
            return ()
        allowed = DISTRIBUTIONS[distribution]
        self.known_keys(block, path, ("distribution", *allowed))
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
        return (Parameter(path=names, distribution=distribution, **checked),)

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

    # -- our `sweeper:` block ------------------------------------------------------------------

    def settings(self, value: Any, path: str) -> SweeperSettings | None:
        block = self.mapping(value, path, "a mapping of sweeper settings")
        if block is None:
            return None
        self.known_keys(block, path, SWEEPER_KEYS)
        got: dict[str, Any] = {}
        if block.get("trainer") is not None:
            trainer = block["trainer"]
            if isinstance(trainer, str) and _TRAINER_PATH.match(trainer):
                got["trainer"] = trainer
            else:
                self.error(
                    f"{path}.trainer", f"must be a 'package.module:function' path, got {_show(trainer)}"
                )
        if block.get("resources") is not None:
            resources = self.resources(block["resources"], f"{path}.resources")
            if resources is not None:
                got["resources"] = resources
        for key, least in (("max_concurrent", 1), ("retries", 0)):
            if (
                block.get(key) is not None
                and self.integer(block[key], f"{path}.{key}", at_least=least) is not None
            ):
                got[key] = block[key]
        if (
            block.get("seed") is not None
            and self.integer(block["seed"], f"{path}.seed", at_least=0) is not None
        ):
            got["seed"] = block["seed"]
        if block.get("timeout") is not None and self.number(block["timeout"], f"{path}.timeout", above=0):
            got["timeout"] = float(block["timeout"])
        if block.get("sampler") is not None and self.choice(block["sampler"], f"{path}.sampler", SAMPLERS):
            got["sampler"] = block["sampler"]
        if block.get("storage") is not None and self.string(block["storage"], f"{path}.storage"):
            got["storage"] = block["storage"]
        if block.get("trackers") is not None:
            got["trackers"] = self.trackers(block["trackers"], f"{path}.trackers")
        if block.get("tags") is not None:
            tags = block["tags"]
            tags = [tags] if isinstance(tags, str) else tags
            if not isinstance(tags, list):
                self.error(f"{path}.tags", f"must be a string or a list of strings, got {_show(tags)}")
            else:
                got["tags"] = tuple(t for i, t in enumerate(tags) if self.string(t, f"{path}.tags.{i}"))
        return SweeperSettings(**got)

    def resources(self, value: Any, path: str) -> Resources | None:
        block = self.mapping(value, path, "a mapping with gpus, cpus, memory, custom")
        if block is None:
            return None
        self.known_keys(block, path, RESOURCE_KEYS)
        got: dict[str, Any] = {}
        if (
            block.get("gpus") is not None
            and self.number(block["gpus"], f"{path}.gpus", at_least=0) is not None
        ):
            got["gpus"] = float(block["gpus"])
        if (
            block.get("cpus") is not None
            and self.number(block["cpus"], f"{path}.cpus", at_least=0) is not None
        ):
            got["cpus"] = float(block["cpus"])
        if block.get("memory") is not None:
            memory = self.memory(block["memory"], f"{path}.memory")
            if memory is not None:
                got["memory"] = memory
        if block.get("custom") is not None:
            custom = self.mapping(
                block["custom"], f"{path}.custom", "a mapping of Ray resource names to amounts"
            )
            if custom is not None:
                got["custom"] = {
                    str(k): float(v)
                    for k, v in custom.items()
                    if self.number(v, _join(f"{path}.custom", k), at_least=0) is not None
                }
        return Resources(**got)

    def memory(self, value: Any, path: str) -> int | None:
        if _is_int(value) and value > 0:
            return int(value)
        match = _MEMORY.match(value) if isinstance(value, str) else None
        if match is None or float(match.group(1)) <= 0:
            self.error(
                path,
                f"must be a positive number of bytes or a size such as '4GB' or '512MiB', got {_show(value)}",
            )
            return None
        return int(float(match.group(1)) * _MEMORY_UNITS[match.group(2).lower()])

    def trackers(self, value: Any, path: str) -> tuple[TrackerSpec, ...]:
        items = [value] if isinstance(value, str | Mapping) else value
        if not isinstance(items, list):
            self.error(
                path, f"must be a tracker name or a list of names or {{type: name, ...}}, got {_show(value)}"
            )
            return ()
        found = []
        for i, item in enumerate(items):
            where = path if items is not value else f"{path}.{i}"
            if isinstance(item, str) and item:
                found.append(TrackerSpec(type=item))
            elif isinstance(item, Mapping) and isinstance(item.get("type"), str) and item["type"]:
                options = {str(k): v for k, v in item.items() if k != "type"}
                found.append(TrackerSpec(type=item["type"], options=options))
            else:
                self.error(
                    where,
                    f"must be a tracker name or a mapping {{type: name, ...options}}, got {_show(item)}",
                )
        return tuple(found)


def load_spec(source: str | Path | Mapping[str, Any]) -> SweepSpec:
    """Read and validate a sweep spec from a YAML file path or a mapping.

    Every problem is collected before raising, each located by its dotted path.

    Raises:
        SpecError: with every problem found, each located by a dotted path.

    >>> spec = load_spec({"method": "random", "parameters": {"lr": {"min": 1e-5, "max": 0.1}}})
    >>> spec.parameters[0].distribution
    'uniform'
    """
    if isinstance(source, str | PathLike):
        origin, data = str(source), read_yaml(source)
    else:  # a mapping (anything else is reported as not being one)
        origin, data = "<mapping>", source
    reader = _Reader(origin)
    spec = reader.spec(data)
    if reader.issues or spec is None:
        raise SpecError(reader.issues or [SpecIssue(origin, "<root>", "is not a valid sweep spec")])
    return spec
