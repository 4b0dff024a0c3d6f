"""Reading the objectives and early termination: ``metric``/``metrics`` and ``early_terminate``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sweeper.spec._checks import Checks, _show
from sweeper.spec.model import EarlyTerminate, Metric

GOALS = ("minimize", "maximize")
IMPUTES = ("latest", "best", "worst")
EARLY_TERMINATE_TYPES = ("hyperband", "asha", "median")
METRIC_KEYS = ("name", "goal", "target", "impute", "impute_while_running")
HYPERBAND_KEYS = ("type", "min_iter", "max_iter", "s", "eta", "strict")
ASHA_OPTIONS = ("min_resource", "reduction_factor", "min_early_stopping_rate", "bootstrap_count")
MEDIAN_OPTIONS = ("n_startup_trials", "n_warmup_steps", "interval_steps", "n_min_trials")


class ObjectiveReader(Checks):
    """Reads the objectives: metric, metrics, and early_terminate."""

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
