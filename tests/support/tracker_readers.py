"""Read what each tracker wrote back through the tool's own reader, into one comparable shape.

Each reader returns ``{run name: Recorded}`` for the trials of one sweep.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Recorded:
    """One trial's run as a tracker stored it."""

    name: str
    state: str
    params: dict[str, Any]
    history: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


def plain(value: Any) -> Any:
    """Params compared across trackers: numbers as floats, everything else as given."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def read_jsonl(refs: dict[str, str]) -> dict[str, Recorded]:
    from sweeper.trackers.jsonl import read_events

    out = {}
    for path in refs.values():
        events = read_events(path)
        start = events[0]
        history: dict[str, list[tuple[int, float]]] = {}
        for event in events:
            if event["event"] == "metrics":
                for key, value in event["metrics"].items():
                    history.setdefault(key, []).append((event["step"], value))
        finish = [e for e in events if e["event"] == "finish"]
        name = start["run"]["name"]
        out[name] = Recorded(
            name=name,
            state=finish[-1]["state"] if finish else "running",
            params={k: plain(v) for k, v in flatten(start["config"]).items()},
            history=history,
            extra={"events": events, "environment": start["environment"]},
        )
    return out


def read_mlflow(tracking_uri: str, experiment: str) -> dict[str, Recorded]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no MLflow experiment {experiment!r}"
    runs = client.search_runs([found.experiment_id])
    parents = [r for r in runs if r.data.tags.get("sweeper.role") == "sweep"]
    out = {}
    for run in runs:
        if run.data.tags.get("sweeper.role") != "trial":
            continue
        history = {
            key: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)]
            for key in run.data.metrics
        }
        out[run.info.run_name] = Recorded(
            name=run.info.run_name,
            state=run.data.tags["sweeper.state"],
            params={k: plain(v) for k, v in run.data.params.items()},
            history=history,
            extra={
                "status": run.info.status,
                "parent": run.data.tags.get("mlflow.parentRunId"),
                "parents": [p.info.run_id for p in parents],
                "run_id": run.info.run_id,
                "artifacts": sorted(a.path for a in client.list_artifacts(run.info.run_id)),
                "tags": dict(run.data.tags),
            },
        )
    return out


def read_tensorboard(refs: dict[str, str]) -> dict[str, Recorded]:
    from tensorboard.backend.event_processing import event_accumulator as ea
    from tensorboard.plugins.hparams import api_pb2, metadata

    out = {}
    for path in refs.values():
        acc = ea.EventAccumulator(path, size_guidance={ea.SCALARS: 0, ea.TENSORS: 0})
        acc.Reload()
        start = metadata.parse_session_start_info_plugin_data(
            acc.SummaryMetadata(metadata.SESSION_START_INFO_TAG).plugin_data.content
        )
        end = metadata.parse_session_end_info_plugin_data(
            acc.SummaryMetadata(metadata.SESSION_END_INFO_TAG).plugin_data.content
        )
        params: dict[str, Any] = {}
        for key, value in start.hparams.items():
            kind = value.WhichOneof("kind")
            params[key] = plain(getattr(value, kind))
        state = params.pop("sweeper/state")
        name = Path(path).name
        out[name] = Recorded(
            name=name,
            state=state,
            params=params,
            history={tag: [(s.step, s.value) for s in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]},
            extra={
                "status": api_pb2.Status.Name(end.status),
                "group": start.group_name,
                "tags": acc.Tags(),
                "hparams_plugin": acc.PluginTagToContent("hparams"),
            },
        )
    return out


def await_closed_by_wandb(path: Path, timeout: float = 60.0) -> None:
    """Wait until no wandb-core process holds ``path`` open.

    ``run.finish()`` returns before wandb-core has closed the run's transaction log: it flushes its
    last block (the newest history rows, the summary, the exit record) when the run's stream
    closes, a moment later. Linux; elsewhere this returns at once.
    """
    target = str(path.resolve())
    deadline = time.monotonic() + timeout
    while any(target in _open_files(pid) for pid in _wandb_core_pids()):
        assert time.monotonic() < deadline, f"wandb-core still holds {path} open after {timeout} s"
        time.sleep(0.05)


def _wandb_core_pids() -> list[str]:
    pids = []
    for comm in Path("/proc").glob("[0-9]*/comm"):
        with contextlib.suppress(OSError):
            if comm.read_text().strip() == "wandb-core":
                pids.append(comm.parent.name)
    return pids


def _open_files(pid: str) -> set[str]:
    files = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                files.add(os.readlink(fd))
    return files


def wandb_records(path: Path) -> list[Any]:
    """The run's records, once wandb-core has closed its log (read with sweeper's decoder of W&B's
    transaction-log format: wandb ships no Python reader of its own since the Go core)."""
    from sweeper.analysis.wandb_runs import records

    await_closed_by_wandb(path)
    return list(records(path))


def read_wandb(refs: dict[str, str]) -> dict[str, Recorded]:
    out = {}
    for run_dir in map(Path, refs.values()):
        (log,) = run_dir.glob("*.wandb")
        config: dict[str, Any] = {}
        history: dict[str, list[tuple[int, float]]] = {}
        summary: dict[str, Any] = {}
        exit_code = None
        name = group = None
        tags: list[str] = []
        for record in wandb_records(log):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                name, group = record.run.display_name, record.run.run_group
                tags = list(record.run.tags)
                for item in record.run.config.update:
                    config[item.key] = json.loads(item.value_json)
            elif kind == "config":
                for item in record.config.update:
                    config[item.key] = json.loads(item.value_json)
            elif kind == "history":
                row = {
                    item.key or ".".join(item.nested_key): json.loads(item.value_json)
                    for item in record.history.item
                }
                step = int(row.get("_step", record.history.step.num))
                for key, value in row.items():
                    if not key.startswith("_") and isinstance(value, int | float):
                        history.setdefault(key, []).append((step, float(value)))
            elif kind == "summary":
                for item in record.summary.update:
                    summary[item.key or ".".join(item.nested_key)] = json.loads(item.value_json)
            elif kind == "exit":
                exit_code = record.exit.exit_code
        assert name is not None, f"no run record in {log}"
        params = {k: plain(v) for k, v in flatten({k: v for k, v in config.items() if k != "_wandb"}).items()}
        out[name] = Recorded(
            name=name,
            state=summary.get("sweeper/state", "running"),
            params=params,
            history=history,
            extra={"exit_code": exit_code, "group": group, "summary": summary, "tags": tags, "dir": run_dir},
        )
    return out


def read_notebook(refs: dict[str, str]) -> dict[str, Recorded]:
    out = {}
    for path in refs.values():
        data = json.loads(Path(path).read_text())
        history: dict[str, list[tuple[int, float]]] = {}
        for step, metrics in data["history"]:
            for key, value in metrics.items():
                history.setdefault(key, []).append((step, value))
        out[data["name"]] = Recorded(
            name=data["name"],
            state=data["state"],
            params={k: plain(v) for k, v in flatten(data["config"]).items()},
            history=history,
            extra={"summary": data.get("summary")},
        )
    return out
