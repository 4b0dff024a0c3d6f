"""W&B run folders read back as priors: config, summary, state and history of each run.

A run folder (``offline-run-*`` or ``run-*``, as ``wandb.init`` writes it) holds the run's
transaction log, ``run-<id>.wandb``: W&B's record framing (LevelDB's log format: 32 KiB blocks of
records, each with a CRC32, a length and a full/first/middle/last type) around ``Record`` messages
of W&B's own protobuf schema, ``wandb.proto.wandb_internal_pb2``, which decodes them. wandb ships
no reader for it (it left with the Python backend), so the framing is read here. A synced or
downloaded run folder without a log is read from ``files/config.yaml`` and ``files/wandb-summary.json``.

The run's state: ``complete`` when it exited with code 0 (or as sweeper's tracker recorded it in
the summary's ``sweeper/state``), ``failed`` otherwise, ``running`` without an exit record.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sweeper.analysis.priors import Row
from sweeper.errors import UsageError
from sweeper.extras import require
from sweeper.plain import flatten

_BLOCK = 32 * 1024
_HEADER = 7  # CRC32 (4), length (2), type (1); the file's own header is 7 bytes too
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4
_MAGIC = b":W&B"
_STATES = {"completed": "complete", "pruned": "pruned", "failed": "failed"}


def wandb_rows(path: Path) -> Iterator[Row]:
    """One row per run folder: ``path`` itself, or the run folders under it (or its ``wandb/``).

    Raises:
        UsageError: no run folder there.
    """
    folders = [path] if _is_run(path) else _runs_under(path) or _runs_under(path / "wandb")
    if not folders:
        raise UsageError(
            f"warm start wandb {path}: no W&B run folder there (offline-run-*, run-*) and not a "
            "runs table (.csv, .json)"
        )
    for folder in folders:
        yield run_row(folder)


def run_row(folder: Path) -> Row:
    """The row of one run folder (see the module docstring)."""
    logs = sorted(folder.glob("*.wandb"))
    if logs:
        return _from_log(folder, logs[0])
    config_file, summary_file = folder / "files" / "config.yaml", folder / "files" / "wandb-summary.json"
    if config_file.is_file():
        import yaml

        raw = yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}
        config = {k: v.get("value") if isinstance(v, dict) else v for k, v in raw.items() if k != "_wandb"}
        summary = json.loads(summary_file.read_text(encoding="utf-8")) if summary_file.is_file() else {}
        state = _STATES.get(str(summary.get("sweeper/state")), "complete" if summary else "no summary")
        return Row(ref=f"run {folder.name}", config=config, metrics=flatten(summary), state=state)
    return Row(ref=f"run {folder.name}", config={}, metrics={}, state="no run log nor files/config.yaml")


def _from_log(folder: Path, log: Path) -> Row:
    require("wandb", "wandb", "a warm start from W&B run folders")
    config: dict[str, Any] = {}
    summary: dict[str, Any] = {}
    history_last: dict[str, Any] = {}
    exit_code: int | None = None
    name = folder.name
    started: datetime | None = None
    for record in records(log):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            name = record.run.run_id or name
            if record.run.start_time.seconds:
                started = _local(record.run.start_time.seconds)
            _update(config, record.run.config.update)
        elif kind == "config":
            _update(config, record.config.update)
        elif kind == "summary":
            _update(summary, record.summary.update)
        elif kind == "history":
            _update(history_last, record.history.item)
        elif kind == "exit":
            exit_code = record.exit.exit_code
    config.pop("_wandb", None)
    metrics = {**flatten(history_last), **flatten(summary)}  # the summary wins, as W&B shows it
    tracked = _STATES.get(str(summary.get("sweeper/state")))
    state = tracked or ("running" if exit_code is None else "complete" if exit_code == 0 else "failed")
    return Row(ref=f"run {name}", config=config, metrics=metrics, state=state, started=started)


def records(log: Path) -> Iterator[Any]:
    """The ``wandb_internal_pb2.Record`` messages of a run's transaction log, in order.

    Raises:
        UsageError: the file is not a W&B transaction log, or a record is corrupt.
    """
    from wandb.proto import wandb_internal_pb2

    data = log.read_bytes()
    if data[: len(_MAGIC)] != _MAGIC:
        raise UsageError(f"{log}: not a W&B transaction log")
    pending, pos = b"", _HEADER
    while pos + _HEADER <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _HEADER:  # a block's tail too short for a header is padding
            pos += left
            continue
        checksum, length, kind = struct.unpack("<IHB", data[pos : pos + _HEADER])
        chunk = data[pos + _HEADER : pos + _HEADER + length]
        pos += _HEADER + length
        if length == 0 and kind == 0:
            continue
        if zlib.crc32(chunk, zlib.crc32(bytes([kind]))) != checksum:
            raise UsageError(f"{log}: corrupt record at byte {pos - length - _HEADER}")
        pending += chunk
        if kind in (_FULL, _LAST):
            record = wandb_internal_pb2.Record()  # type: ignore[attr-defined]
            record.ParseFromString(pending)
            yield record
            pending = b""


def _update(target: dict[str, Any], items: Any) -> None:
    """Apply W&B's key/value items (``key`` or ``nested_key``, a JSON value) to ``target``."""
    for item in items:
        key = item.key or ".".join(item.nested_key)
        if not key:
            continue
        try:
            target[key] = json.loads(item.value_json)
        except ValueError:
            target[key] = item.value_json


def _is_run(path: Path) -> bool:
    return path.is_dir() and (any(path.glob("*.wandb")) or (path / "files" / "config.yaml").is_file())


def _runs_under(path: Path) -> list[Path]:
    if not path.is_dir():
        return []
    found = {p for pattern in ("offline-run-*", "run-*") for p in path.glob(pattern) if _is_run(p)}
    return sorted(found)


def _local(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc).astimezone().replace(tzinfo=None)
