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
- ``sweeper.warm_start``: earlier results (other sweeps, ``sweeper export`` files, MLflow and W&B
  runs) the sampler learns from, loaded as priors when the sweep is created (not with a grid).
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
from sweeper.spec._objectives import ObjectiveReader
from sweeper.spec._parameters import ParameterReader
from sweeper.spec._scheduler import IGNORED_KEYS, SchedulerReader, launch_form, server_keys
from sweeper.spec._settings import SettingsReader
from sweeper.spec._warm_start import WarmStartReader, refusal, text_source
from sweeper.spec.laws import Parameter
from sweeper.spec.loader import check_shape, read_yaml
from sweeper.spec.model import Metric, SweeperSettings, SweepSpec, WarmStart

METHODS = ("grid", "random", "bayes", "custom")

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


class _Reader(ParameterReader, SettingsReader, ObjectiveReader, SchedulerReader):
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
            if top.get("scheduler") is not None and not launch_form(top):
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

        why = refusal(method, defines_space, has_objective) if settings.warm_start else None
        if why is not None:
            self.error("sweeper.warm_start", f"cannot be used here: {why}")
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


def load_warm_start(
    value: Any, origin: str = "--warm-start", spec: SweepSpec | None = None
) -> tuple[WarmStart, ...]:
    """Read warm-start sources given outside a spec: ``--warm-start`` texts (``KIND:VALUE`` or a
    YAML flow mapping), mappings as in ``sweeper.warm_start``, or a list of either; with ``spec``,
    check that its sweep can start warm (as ``sweeper.warm_start`` in it would be checked).

    Raises:
        SpecError: a source is malformed, located as ``<origin>: <i>``, or ``spec`` cannot start warm.

    >>> load_warm_start(["sweep:k3v9x2ab", {"export": "old.csv"}])[1].kind
    'export'
    """
    items = value if isinstance(value, list | tuple) else [value]
    reader = WarmStartReader(origin)
    found: list[WarmStart] = []
    for i, item in enumerate(items):
        if isinstance(item, WarmStart):
            found.append(item)
            continue
        source = reader.warm_source(text_source(item) if isinstance(item, str) else item, str(i))
        if source is not None:
            found.append(source)
    why = (
        None
        if spec is None or not items
        else refusal(spec.method, spec.defines_space_by_run, bool(spec.objectives))
    )
    if why is not None:
        reader.error("", f"cannot be used with sweep spec {spec.source if spec else ''}: {why}")
    if reader.issues:
        raise SpecError(reader.issues)
    return tuple(found)
