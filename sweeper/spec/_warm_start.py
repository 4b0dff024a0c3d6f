"""Reading ``sweeper.warm_start``: the sources of a sweep's priors, each a one-key mapping.

    warm_start:
      - {sweep: k3v9x2ab}                                  # a sweep of the same storage, by id or name
      - {sweep: mnist-lr, storage: sqlite:///old.db}       # ... or of another storage
      - {export: results/old.csv}                          # a file `sweeper export` wrote (.csv or .json)
      - {mlflow: {experiment: mnist, tracking_uri: sqlite:///mlflow.db}}   # or {mlflow: mnist}
      - {wandb: wandb}                                     # W&B run folders, or a runs table (.csv/.json)

On the command line (``--warm-start``) a source is ``KIND:VALUE`` (``sweep:k3v9x2ab``,
``export:old.csv``, ``mlflow:mnist``, ``wandb:./wandb``) or the same mapping in YAML's flow style.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from sweeper.spec._checks import Checks, _join, _show
from sweeper.spec.model import WarmStart, WarmStartKind

KINDS: tuple[WarmStartKind, ...] = ("sweep", "export", "mlflow", "wandb")
_EXTRA_KEYS = {"sweep": ("storage",), "mlflow": (), "export": (), "wandb": ()}
_MLFLOW_KEYS = ("experiment", "tracking_uri")
_FORMS = (
    "{sweep: ID_OR_NAME, storage: URL}, {export: FILE}, {mlflow: EXPERIMENT} or "
    "{mlflow: {experiment: NAME, tracking_uri: URI}}, {wandb: PATH}"
)


class WarmStartReader(Checks):
    """Reads the sources of ``sweeper.warm_start`` (a list of them, or one)."""

    def warm_start(self, value: Any, path: str) -> tuple[WarmStart, ...]:
        items = [value] if isinstance(value, Mapping) else value
        if not isinstance(items, list):
            self.error(path, f"must be a list of sources such as {_FORMS}; got {_show(value)}")
            return ()
        found = []
        for i, item in enumerate(items):
            source = self.warm_source(item, path if items is not value else f"{path}.{i}")
            if source is not None:
                found.append(source)
        return tuple(found)

    def warm_source(self, value: Any, path: str) -> WarmStart | None:
        block = self.mapping(value, path, f"one source: {_FORMS}")
        if block is None:
            return None
        kinds = [key for key in block if key in KINDS]
        if len(kinds) != 1:
            got = f"got {', '.join(map(str, kinds))}" if kinds else f"got keys {_show(list(block))}"
            self.error(path, f"must name exactly one of {', '.join(KINDS)}; {got}")
            return None
        kind = cast(WarmStartKind, kinds[0])
        self.known_keys(block, path, (kind, *_EXTRA_KEYS[kind]))
        where = _join(path, kind)
        if kind == "mlflow":
            return self._mlflow(block[kind], where)
        target = self._target(block[kind], where)
        storage = None
        if block.get("storage") is not None:
            storage = self.string(block["storage"], _join(path, "storage"))
        if target is None or (block.get("storage") is not None and storage is None):
            return None
        return WarmStart(kind, target, storage=storage)

    def _mlflow(self, value: Any, path: str) -> WarmStart | None:
        if not isinstance(value, Mapping):
            target = self._target(value, path)
            return None if target is None else WarmStart("mlflow", target)
        self.known_keys(value, path, _MLFLOW_KEYS)
        if value.get("experiment") is None:
            self.error(_join(path, "experiment"), "is required: the MLflow experiment's name or id")
            return None
        target = self._target(value["experiment"], _join(path, "experiment"))
        uri = None
        if value.get("tracking_uri") is not None:
            uri = self.string(value["tracking_uri"], _join(path, "tracking_uri"))
            if uri is None:
                return None
        return None if target is None else WarmStart("mlflow", target, tracking_uri=uri)

    def _target(self, value: Any, path: str) -> str | None:
        # Ids and experiment ids may be written as numbers in YAML.
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return self.string(value, path)


def refusal(method: str | None, defines_space: bool, has_objective: bool) -> str | None:
    """Why a sweep like this cannot start warm, or None when it can."""
    if method == "grid":
        return "a grid runs every point whatever ran before"
    if defines_space:
        return "priors are checked against `parameters`, and scheduler.search_space replaces them"
    if not has_objective:
        return "priors are learned from and ranked by the metric; add a `metric:` block"
    return None


def text_source(text: str) -> Any:
    """The mapping a ``--warm-start`` text stands for: YAML's flow style, or ``KIND:VALUE``.

    >>> text_source("sweep:k3v9x2ab")
    {'sweep': 'k3v9x2ab'}
    >>> text_source("{sweep: old, storage: sqlite:///x.db}")
    {'sweep': 'old', 'storage': 'sqlite:///x.db'}
    """
    stripped = text.strip()
    if stripped.startswith("{"):
        import yaml

        try:
            return yaml.safe_load(stripped)
        except yaml.YAMLError as exc:
            return f"{stripped} (not a YAML mapping: {str(exc).splitlines()[0]})"
    kind, sep, rest = stripped.partition(":")
    if sep and kind in KINDS and rest:
        return {kind: rest}
    return stripped
