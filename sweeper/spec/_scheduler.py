"""Reading W&B's ``scheduler`` block (2026): which engine goes with which method, its file and functions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sweeper.spec._checks import Checks
from sweeper.spec.model import Scheduler

SCHEDULER_KEYS = ("engine", "source", "optimizer", "search_space")
ENGINES = ("optuna", "ax", "wandb")
# The methods each engine runs (W&B's `_SUPPORTED_METHODS_BY_ENGINE`, with optuna and ax on custom).
# Top-level W&B keys that only W&B's servers act on: accepted, reported in `ignored_keys`
# (`scheduler` only in its Launch form, without `engine`).
IGNORED_KEYS = ("controller", "job", "image_uri", "apiVersion", "kind", "scheduler")
ENGINE_METHODS = {"optuna": ("custom",), "ax": ("custom",), "wandb": ("grid", "random", "bayes")}


class SchedulerReader(Checks):
    """Reads the scheduler block and applies W&B's rules for it."""

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
        if block is None or launch_form(top):
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


def server_keys(top: Any) -> tuple[str, ...]:
    """The keys of a spec mapping that only W&B's servers act on (what ``ignored_keys`` lists)."""
    if not isinstance(top, Mapping):
        return ()
    return tuple(key for key in IGNORED_KEYS if key in top and (key != "scheduler" or launch_form(top)))


def launch_form(top: Mapping[Any, Any]) -> bool:
    """Whether ``scheduler`` is W&B Launch's block (``job``, ``num_workers``, ...), run by W&B's servers."""
    block = top.get("scheduler")
    return isinstance(block, Mapping) and bool(block) and not set(block) & set(SCHEDULER_KEYS)
