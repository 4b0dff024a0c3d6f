"""Where priors come from: each warm-start source read into :class:`~sweeper.analysis.priors.Row` s.

- ``sweep``: every trial of a sweep (this storage, or the one named), read with :func:`sweeper.load`;
- ``export``: a file ``sweeper export`` wrote: JSON records, or CSV rows (``config.*`` columns,
  ``value.<objective>`` and ``metric.*`` columns, ``state``);
- ``mlflow``: every run of an experiment, read with MLflow's own client (params come as text);
- ``wandb``: W&B run folders (:mod:`sweeper.analysis.wandb_runs`), or a runs table exported as CSV
  (the runs page's export: a column per config key and summary metric) or as a W&B table JSON.

A table's bare column (neither ``config.`` nor ``value.``/``metric.``/``summary.``) may be a config
key or a metric: it is offered as both.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from optuna.storages import BaseStorage

from sweeper.analysis.priors import PARENT, Row
from sweeper.errors import UsageError
from sweeper.extras import require
from sweeper.plain import flatten
from sweeper.redaction import redact
from sweeper.spec.model import WarmStart
from sweeper.storage.urls import mask_url

# Columns of our export, and of W&B's runs table, that are neither config nor metrics.
_META = {
    "number",
    "state",
    "duration_s",
    "started_at",
    "completed_at",
    "attempt",
    "retry_of",
    "repeat_of",
    "fail_reason",
    "prior",
    "name",
    "id",
    "notes",
    "user",
    "tags",
    "created",
    "runtime",
    "sweep",
    "group",
    "job type",
}
# W&B run states, as ours.
_WANDB_STATES = {"finished": "complete", "killed": "pruned", "stopped": "pruned", "crashed": "crashed"}
_MLFLOW_STATES = {"FINISHED": "complete", "KILLED": "pruned"}
_MLFLOW_PAGE = 1000


def read_rows(source: WarmStart, storage: BaseStorage, roots: Sequence[Path]) -> Iterator[Row]:
    """The rows of one source (see the module docstring); a relative path is looked for under each
    of ``roots`` in turn.

    Raises:
        UsageError: the source cannot be read.
        SweepNotFoundError: a source sweep does not exist.
    """
    if source.kind == "sweep":
        yield from sweep_rows(source, storage)
    elif source.kind == "mlflow":
        yield from mlflow_rows(source)
    elif source.kind == "export":
        path = existing(roots, source.target, "export")
        yield from (records_rows(path) if path.suffix.lower() == ".json" else csv_rows(path))
    else:
        from sweeper.analysis.wandb_runs import wandb_rows

        path = existing(roots, source.target, "wandb")
        if path.is_file():
            yield from (records_rows(path) if path.suffix.lower() == ".json" else csv_rows(path))
        else:
            yield from wandb_rows(path)


def sweep_rows(source: WarmStart, storage: BaseStorage) -> Iterator[Row]:
    """Every trial of the source sweep, with its values under its objectives' names."""
    from sweeper.analysis.results import load
    from sweeper.storage.urls import open_storage

    results = load(source.target, open_storage(source.storage) if source.storage else storage)
    names = results.objective_names
    for record in results.trials:
        metrics = {**flatten(record.metrics), **dict(zip(names, record.values or (), strict=False))}
        yield Row(
            ref=f"trial {record.number}",
            config=record.config,
            metrics=metrics,
            state=record.state,
            intermediate=dict(record.intermediate_values),
            curve_metric=names[0],
            started=record.started_at,
            completed=record.completed_at,
            duration_s=record.duration_s,
            is_prior=record.prior is not None,
        )


def records_rows(path: Path) -> Iterator[Row]:
    """A JSON file: ``sweeper export --format json`` records, or a W&B table (``columns``, ``data``)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: cannot be read as JSON: {exc}") from exc
    if (
        isinstance(data, Mapping)
        and isinstance(data.get("columns"), list)
        and isinstance(data.get("data"), list)
    ):
        columns = [str(c) for c in data["columns"]]
        for i, values in enumerate(data["data"], start=1):
            yield table_row(i, dict(zip(columns, values, strict=False)))
        return
    if not isinstance(data, list) or not all(isinstance(item, Mapping) for item in data):
        raise UsageError(
            f"{path}: must hold `sweeper export --format json` records or a W&B table "
            f"({{columns, data}}), got {type(data).__name__}"
        )
    for i, item in enumerate(data, start=1):
        yield _record_row(i, item)


def _record_row(i: int, item: Mapping[str, Any]) -> Row:
    objectives = item.get("objectives")
    objectives = dict(objectives) if isinstance(objectives, Mapping) else {}
    metrics = item.get("metrics")
    curve = item.get("intermediate_values")
    config = item.get("config")
    return Row(
        ref=f"trial {item['number']}" if isinstance(item.get("number"), int) else f"record {i}",
        config=config if isinstance(config, Mapping) else {},
        metrics={**(flatten(metrics) if isinstance(metrics, Mapping) else {}), **objectives},
        state=str(item.get("state", "complete")),
        intermediate={
            int(pair[0]): pair[1]
            for pair in (curve if isinstance(curve, list) else [])
            if isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], int)
        },
        curve_metric=next(iter(objectives), None),
        started=_moment(item.get("started_at")),
        completed=_moment(item.get("completed_at")),
        duration_s=_seconds(item.get("duration_s")),
        is_prior=item.get("prior") is not None,
    )


def csv_rows(path: Path) -> Iterator[Row]:
    """A CSV table: ``sweeper export`` rows, or W&B's runs table."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            for i, row in enumerate(csv.DictReader(handle), start=1):
                yield table_row(i, row)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UsageError(f"{path}: cannot be read as CSV: {exc}") from exc


def table_row(i: int, row: Mapping[str, Any]) -> Row:
    """One row of a table (see the module docstring for its columns)."""
    config: dict[str, Any] = {}
    metrics: dict[str, Any] = {}
    meta: dict[str, Any] = {}
    cells = sorted(((str(c), v) for c, v in row.items()), key=lambda cell: not cell[0].startswith("value."))
    for column, value in cells:
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        head, _, rest = column.partition(".")
        if head == "config" and rest:
            config[rest] = value
        elif head in ("value", "metric", "summary") and rest:
            metrics.setdefault(rest, value)
        elif column.lower() in _META or head == "tracker":
            meta[column.lower()] = value
        else:  # a bare column of a W&B table: a config key or a summary metric
            config.setdefault(column, value)
            metrics.setdefault(column, value)
    state = str(meta.get("state", "complete")).strip().lower()
    number = meta.get("number")
    name = meta.get("name")
    ref = f"trial {number}" if number is not None else f"run {name}" if name is not None else f"row {i}"
    return Row(
        ref=ref,
        config=config,
        metrics=metrics,
        state=_WANDB_STATES.get(state, state),
        started=_moment(meta.get("started_at")),
        completed=_moment(meta.get("completed_at")),
        duration_s=_seconds(meta.get("duration_s")),
        is_prior=bool(meta.get("prior")),
    )


def mlflow_rows(source: WarmStart) -> Iterator[Row]:
    """Every run of the MLflow experiment (by name, else by id), read with ``MlflowClient``."""
    require("mlflow", "mlflow", "a warm start from MLflow")
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=source.tracking_uri)
    try:
        experiment = client.get_experiment_by_name(source.target)
        if experiment is None and source.target.isdigit():
            experiment = client.get_experiment(source.target)
    except MlflowException as exc:
        raise UsageError(
            f"mlflow experiment {source.target!r}: cannot be read: {redact(exc.message)}"
        ) from exc
    if experiment is None:
        where = f" at {mask_url(source.tracking_uri)}" if source.tracking_uri else ""
        raise UsageError(f"no MLflow experiment {source.target!r}{where}")
    token: str | None = None
    while True:
        page = client.search_runs(
            [experiment.experiment_id],
            max_results=_MLFLOW_PAGE,
            page_token=token,
            order_by=["start_time ASC"],
        )
        for run in page:
            yield _mlflow_row(run)
        token = page.token
        if not token:
            return


def _mlflow_row(run: Any) -> Row:
    info, data = run.info, run.data
    state = _MLFLOW_STATES.get(info.status, info.status.lower())
    if data.tags.get("sweeper.role") == "sweep":
        state = PARENT
    elif data.tags.get("sweeper.state") in ("completed", "pruned", "failed"):
        state = {"completed": "complete", "pruned": "pruned", "failed": "failed"}[data.tags["sweeper.state"]]
    started = _from_ms(info.start_time)
    completed = _from_ms(info.end_time)
    name = f" ({info.run_name})" if info.run_name else ""
    return Row(
        ref=f"run {info.run_id[:8]}{name}",
        config=dict(data.params),
        metrics=dict(data.metrics),
        state=state,
        started=started,
        completed=completed,
        duration_s=(completed - started).total_seconds() if started and completed else None,
    )


def existing(roots: Sequence[Path], target: str, kind: str) -> Path:
    """The file or folder ``target`` names, under the first of ``roots`` that holds it.

    Raises:
        UsageError: none holds it.
    """
    paths = [(root / Path(target).expanduser()).resolve() for root in roots]
    for path in paths:
        if path.exists():
            return path
    looked = ", ".join(str(path) for path in dict.fromkeys(paths))
    raise UsageError(f"warm start {kind} {target}: no such file or folder (looked for {looked})")


def _moment(value: Any) -> datetime | None:
    """A timestamp (ISO 8601 text) as the naive local time Optuna keeps."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.astimezone().replace(tzinfo=None) if parsed.tzinfo else parsed


def _from_ms(ms: Any) -> datetime | None:
    if not isinstance(ms, int | float):
        return None
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).astimezone().replace(tzinfo=None)


def _seconds(value: Any) -> float | None:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if seconds >= 0 else None
