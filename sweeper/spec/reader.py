"""The sweep spec: a W&B sweep config plus our ``sweeper:`` block, parsed once into frozen dataclasses.

The dataclasses below are the contract the engine, trackers and inspect code build on; parsing
(``load_spec``) collects every error with its dotted path.

Every spec W&B's engine accepts loads, with these deliberate differences:

- Unknown keys are errors (W&B warns); our settings live in the ``sweeper:`` block.
- Keys only W&B's servers use (``controller``, ``job``, ``image_uri``, ``apiVersion``, ``kind``, and
  a Launch ``scheduler`` block such as ``{job: ..., num_workers: 2}``) are accepted and listed in
  :attr:`SweepSpec.ignored_keys`.
- W&B's 2026 ``scheduler: {engine, source, optimizer, search_space}`` is read with W&B's rules
  (``optuna``/``ax`` with ``method: custom``, ``wandb`` with grid/random/bayes; not with
  ``early_terminate`` nor ``controller: {type: local}``; ``optimizer``/``search_space`` need
  ``source``; ``parameters`` optional when ``search_space`` gives the space). Ours on top:
  ``engine: ax`` is not supported; ``method: custom`` needs ``engine: optuna`` (W&B accepts it
  without a scheduler, with nothing to run it) and a metric; ``engine: wandb`` takes no code;
  ``parameters`` and ``search_space`` are exclusive.
- Degenerate laws W&B lets through and then fails or misbehaves on are rejected up front:
  ``sigma``, ``a``, ``b`` and ``q`` must be > 0; hyperband ``max_iter`` needs ``s`` and at least
  one band; ``probabilities`` in a grid; bounds whose law leaves float64 (``exp`` overflow,
  more than 2**53 quantization steps).
- ``metric`` and ``metrics`` are exclusive; a trainer excludes ``program`` and ``command``.
- YAML: ``1e-5`` is a number, duplicate keys are errors, values must be JSON-compatible (the
  raw spec is stored with the study).

Our extensions, which W&B's engine rejects (so no W&B spec changes meaning):

- ``sweeper_if: {parent: [values]}`` in a parameter or a nested block: a conditional parameter,
  active only when ``parent`` (a categorical or constant) takes one of the values; checked for
  unknown parents, impossible values, non-categorical parents and cycles.
- ``sweeper.distinct`` (default true): a random or bayes sweep over a finite space runs each config
  at most once (:attr:`SweepSpec.distinct`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from os import PathLike
from pathlib import Path
from typing import Any

from sweeper.errors import SpecError, SpecIssue
from sweeper.spec._checks import _join, _show
from sweeper.spec._parameters import ParameterReader
from sweeper.spec._settings import SettingsReader
from sweeper.spec.laws import Parameter
from sweeper.spec.loader import check_shape, read_yaml
from sweeper.spec.model import EarlyTerminate, Metric, Scheduler, SweeperSettings, SweepSpec

METHODS = ("grid", "random", "bayes", "custom")
GOALS = ("minimize", "maximize")
IMPUTES = ("latest", "best", "worst")
EARLY_TERMINATE_TYPES = ("hyperband", "asha", "median")

# Top-level W&B keys that only W&B's servers act on: accepted, reported in `ignored_keys`
# (`scheduler` only in its Launch form, without `engine`).
IGNORED_KEYS = ("controller", "job", "image_uri", "apiVersion", "kind", "scheduler")
SCHEDULER_KEYS = ("engine", "source", "optimizer", "search_space")
ENGINES = ("optuna", "ax", "wandb")
# The methods each engine runs (W&B's `_SUPPORTED_METHODS_BY_ENGINE`, with optuna and ax on custom).
ENGINE_METHODS = {"optuna": ("custom",), "ax": ("custom",), "wandb": ("grid", "random", "bayes")}
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
METRIC_KEYS = ("name", "goal", "target", "impute", "impute_while_running")


HYPERBAND_KEYS = ("type", "min_iter", "max_iter", "s", "eta", "strict")
ASHA_OPTIONS = ("min_resource", "reduction_factor", "min_early_stopping_rate", "bootstrap_count")
MEDIAN_OPTIONS = ("n_startup_trials", "n_warmup_steps", "interval_steps", "n_min_trials")


class _Reader(ParameterReader, SettingsReader):
    """Walks the raw mapping, builds the dataclasses and collects located issues."""

    # -- the spec ----------------------------------------------------------------------------

    def spec(self, data: Any) -> SweepSpec | None:
        top = self.mapping(data, "", "a mapping of sweep settings (method, parameters, ...)")
        if top is None:
            return None
        self.known_keys(top, "", TOP_LEVEL_KEYS)

        method = self.choice(top["method"], "method", METHODS) if "method" in top else None
        if "method" not in top:
            self.error("method", f"is required: one of {', '.join(METHODS)}")

        scheduler = self.scheduler(top, method)
        defines_space = scheduler is not None and scheduler.search_space is not None
        parameters: tuple[Parameter, ...] = ()
        if "parameters" not in top:
            if not defines_space:
                self.error(
                    "parameters",
                    "is required unless scheduler.search_space is set: "
                    "a mapping of parameter names to their settings",
                )
        elif defines_space:
            self.error(
                "parameters",
                "cannot be combined with scheduler.search_space: that function defines the whole space "
                "(put constants in what it returns), or drop search_space to search these parameters",
            )
        else:
            parameters = self.parameter_tree(top["parameters"], "parameters")
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
            if top.get("scheduler") is not None and not _launch_form(top):
                self.error(
                    "early_terminate",
                    "cannot be combined with scheduler (W&B's rule): early stopping belongs to the "
                    "scheduler (with engine: optuna, its study's pruner); drop one of them",
                )
        if method == "bayes" and not has_objective:
            self.error("metric", "is required when method is bayes: the metric to optimize")
        if method == "custom" and not has_objective:
            self.error(
                "metric",
                "is required when method is custom: the metric (or `metrics:` list) the scheduler's "
                "study optimizes",
            )

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
            if scheduler is not None and scheduler.engine == "optuna" and settings.sampler != "auto":
                self.error(
                    "sweeper.sampler",
                    f"cannot be set with scheduler.engine: optuna, got {settings.sampler!r}: the sampler "
                    "is the one of the study scheduler.optimizer returns",
                )
            if scheduler is not None and scheduler.optimizer is not None and settings.seed is not None:
                self.error(
                    "sweeper.seed",
                    f"cannot be set with scheduler.optimizer, got {settings.seed}: the sampler of the study "
                    f"{scheduler.optimizer}() returns carries its own seed (e.g. TPESampler(seed=...))",
                )

        if settings.sampler == "gp" and any(p.when for p in parameters):
            self.error(
                "sweeper.sampler",
                "cannot be gp with conditional parameters (sweeper_if): the GP models a fixed set of "
                "parameters; use tpe or auto (TPE grouped by the parameters each trial has)",
            )
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
            scheduler=scheduler,
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
        if "controller" in top and top["controller"] is not None:
            self.mapping(top["controller"], "controller")
        if isinstance(top.get("controller"), Mapping) and "type" in top["controller"]:
            self.choice(top["controller"]["type"], "controller.type", ("local", "cloud"))
        if "kind" in top and top["kind"] != "sweep":
            self.error("kind", f"must be sweep, got {_show(top['kind'])}")
        for key in ("job", "image_uri", "apiVersion"):
            if top.get(key) is not None:
                self.string(top[key], key)
        return server_keys(top)

    # -- the scheduler (W&B 2026) ----------------------------------------------------------------

    def scheduler(self, top: Mapping[Any, Any], method: str | None) -> Scheduler | None:
        """The ``scheduler:`` block with W&B's rules; None when absent or in its (ignored) Launch form."""
        path = "scheduler"
        if method == "custom" and top.get(path) is None:
            self.error(
                "method",
                "custom needs a `scheduler: {engine: optuna, source: FILE.py, optimizer: FUNC, "
                "search_space: FUNC}` block to propose its trials; for plain random search write "
                "method: random",
            )
        if path not in top or top[path] is None:
            return None
        block = self.mapping(top[path], path, "a mapping with engine, source, optimizer, search_space")
        if block is None or _launch_form(top):
            if block is not None and method == "custom":
                self.error(f"{path}.engine", "is required with method: custom: optuna")
            return None
        self.known_keys(block, path, SCHEDULER_KEYS)
        if isinstance(top.get("controller"), Mapping) and top["controller"].get("type") == "local":
            self.error(
                "controller.type",
                "cannot be local with a scheduler (W&B's rule): the scheduler replaces W&B's local "
                "controller; drop `controller`",
            )
        if "engine" not in block:
            self.error(f"{path}.engine", f"is required: one of {', '.join(ENGINES)}")
            return None
        engine = self.choice(block["engine"], f"{path}.engine", ENGINES)
        texts: dict[str, str | None] = {}
        for key in ("source", "optimizer", "search_space"):
            texts[key] = self.string(block[key], f"{path}.{key}") if block.get(key) is not None else None
            if block.get(key) is not None and texts[key] is not None and not texts[key]:
                self.error(f"{path}.{key}", "must not be empty")
                texts[key] = None
        for key in ("optimizer", "search_space"):
            name = texts[key]
            if name is not None and not name.isidentifier():
                self.error(f"{path}.{key}", f"must name a function in the source file, got {name!r}")
            if name is not None and texts["source"] is None:
                self.error(
                    f"{path}.source",
                    f"is required with {path}.{key} (W&B's rule): the Python file defining {name}()",
                )
        source = texts["source"]
        if source is not None and not source.endswith(".py"):
            self.error(f"{path}.source", f"must be a Python file (.py), got {source!r}")
        if engine is None:
            return None
        if engine == "ax":
            self.error(
                f"{path}.engine",
                "ax is not supported by sweeper: use engine: optuna with method: custom (an optimizer "
                "function returning an Optuna study, a search_space function of an optuna.Trial), "
                "or engine: wandb with method grid, random or bayes",
            )
            return None
        if method is not None and method not in ENGINE_METHODS[engine]:
            allowed = ", ".join(ENGINE_METHODS[engine])
            self.error(
                "method",
                f"must be {allowed} with scheduler.engine: {engine} (W&B's rule), got {method}"
                + ("; engine: optuna runs method: custom" if engine == "wandb" else ""),
            )
        if engine == "wandb":
            for key in ("source", "optimizer", "search_space"):
                if texts[key] is not None:
                    self.error(
                        f"{path}.{key}",
                        "is not used by engine: wandb, which runs the spec's method over `parameters`; "
                        "user code needs engine: optuna with method: custom",
                    )
        return Scheduler(
            engine=engine,
            source=source,
            optimizer=texts["optimizer"],
            search_space=texts["search_space"],
        )

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


def server_keys(top: Any) -> tuple[str, ...]:
    """The keys of a spec mapping that only W&B's servers act on (what ``ignored_keys`` lists)."""
    if not isinstance(top, Mapping):
        return ()
    return tuple(key for key in IGNORED_KEYS if key in top and (key != "scheduler" or _launch_form(top)))


def _launch_form(top: Mapping[Any, Any]) -> bool:
    """Whether ``scheduler`` is W&B Launch's block (``job``, ``num_workers``, ...), run by W&B's servers."""
    block = top.get("scheduler")
    return isinstance(block, Mapping) and bool(block) and not set(block) & set(SCHEDULER_KEYS)


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
        check_shape(data, origin)
    reader = _Reader(origin)
    spec = reader.spec(data)
    if reader.issues or spec is None:
        raise SpecError(reader.issues or [SpecIssue(origin, "<root>", "is not a valid sweep spec")])
    return spec
