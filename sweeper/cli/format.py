"""How the commands show things: rich tables, JSON, CSV, short numbers, durations, sparklines."""

from __future__ import annotations

import csv
import io
import json
import socket
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from sweeper.heap import collection_paused
from sweeper.plain import first_line, printable, strict_json, strict_json_dict

if TYPE_CHECKING:  # the records' modules import Optuna: `sweeper run` imports it after Ray's start
    from sweeper.analysis import records
    from sweeper.analysis import results as res

STATE_STYLES = {
    "complete": "green",
    "running": "cyan",
    "waiting": "dim",
    "pruned": "yellow",
    "fail": "red",
}


SPARK = "▁▂▃▄▅▆▇█"


def cell(value: Any) -> Text:
    r"""A table cell, title or line from data: shown as is (no rich markup), control characters escaped.

    >>> cell("[red]x\x1b[2J").plain
    '[red]x\\x1b[2J'
    """
    if isinstance(value, Text):
        return value
    return Text(printable(str(value)))


def add_row(table: Table, *cells: Any) -> None:
    """``table.add_row`` with every cell passed through :func:`cell`."""
    table.add_row(*(cell(c) for c in cells))


def safe_table(title: str, **options: Any) -> Table:
    """A rich table whose title is shown as is, control characters escaped."""
    return Table(title=cell(title), **options)


def trial_table(
    results: res.SweepResults, trials: Iterable[records.TrialRecord], title: str, *, reasons: bool = False
) -> Table:
    """Trials as a table; with ``reasons``, a column with the head of each fail reason."""
    table = safe_table(title)
    table.add_column("trial", justify="right")
    table.add_column("state")
    for name in results.objective_names:
        table.add_column(cell(name), justify="right")
    table.add_column("duration", justify="right")
    table.add_column("config", overflow="fold")
    if reasons:
        table.add_column("reason", overflow="fold")
    table.add_column("tracker runs", overflow="fold")
    table.add_column("outputs", overflow="fold")
    for t in trials:
        values = [num_text(v) for v in t.values] if t.values else ["-"] * len(results.objective_names)
        reason = [first_line(t.fail_reason) if t.fail_reason else "-"] if reasons else []
        add_row(
            table,
            str(t.number),
            state_text(t.state, prior=t.is_prior),
            *values,
            duration_text(t.duration_s),
            config_text(t.config),
            *reason,
            " ".join(f"{k}:{v}" for k, v in t.tracker_runs.items()) or "-",
            _where(t),
        )
    return table


def _where(t: records.TrialRecord) -> str:
    """The trial's directory, with its host when that is not this machine."""
    if not t.trial_dir:
        return "-"
    return t.trial_dir if not t.host or t.host == socket.gethostname() else f"{t.host}:{t.trial_dir}"


def running_dict(t: records.TrialRecord, results: res.SweepResults) -> dict[str, Any]:
    record = t.to_dict()
    last = t.last_intermediate
    record["elapsed_s"] = t.duration_s
    record["last_metric"] = (
        {"name": results.objective_names[0], "step": last[0], "value": last[1]} if last else None
    )
    return strict_json_dict(record)


def csv_text(rows: Sequence[Mapping[str, Any]]) -> str:
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: csv_cell(v) for k, v in row.items()})
    return buffer.getvalue()


def csv_cell(value: Any) -> Any:
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return "" if value is None else value


def echo_json(data: Any) -> None:
    click.echo(json_text(data), nl=False)


_COMPACT = (",", ":")


def json_text(data: Any) -> str:
    """Strict JSON: an object indented, an array one compact record per line (fast on 10k records)."""
    if isinstance(data, list):
        # Records come from to_dict(), already JSON-ready; written as trials_json writes them.
        return _json_array([json.dumps(i, allow_nan=False, default=str, separators=_COMPACT) for i in data])
    return json.dumps(strict_json(data), indent=2, allow_nan=False, default=str) + "\n"


def trials_json(trials: Iterable[records.TrialRecord]) -> str:
    """``json_text([t.to_dict() for t in trials])``: the same values, one record a line, each encoded
    by :meth:`~sweeper.analysis.records.TrialRecord.to_json` (a float may be spelled otherwise)."""
    with collection_paused():  # one string a record, all kept until joined
        return _json_array([t.to_json() for t in trials])


def _json_array(lines: list[str]) -> str:
    return "[\n" + ",\n".join(lines) + "\n]\n" if lines else "[]\n"


def make_console() -> Console:
    # Off a terminal (pipes, CliRunner) use a wide fixed width so tables are not squeezed to 80 columns.
    terminal = sys.stdout.isatty()
    return Console(width=None if terminal else 200, soft_wrap=False)


def goals(results: res.SweepResults) -> str:
    return ", ".join(
        f"{'max' if d == 'maximize' else 'min'} {n}"
        for n, d in zip(results.objective_names, results.directions, strict=True)
    )


def state_text(state: str, *, prior: bool = False) -> Text:
    text = Text(printable(state), style=STATE_STYLES.get(state, ""))
    if prior:  # an earlier result a warm start loaded, not a run of this sweep
        text.append(" (prior)", style="magenta")
    return text


def prior_source_text(source: Mapping[str, Any]) -> str:
    """What one warm-start source gave, from the sweep's ``sweeper:priors`` record, in one line."""
    skipped = source.get("skipped")
    skipped = skipped if isinstance(skipped, Mapping) else {}
    line = f"{source.get('loaded', 0)} from {source.get('source', '?')} ({source.get('read', 0)} read)"
    if skipped:
        line += "; skipped: " + ", ".join(f"{n} {reason}" for reason, n in skipped.items())
    return line


def export_record(t: records.TrialRecord, objective_names: Sequence[str]) -> dict[str, Any]:
    """A trial's ``export --format json`` record: its JSON record, its values by objective name."""
    record = t.to_dict()
    record["objectives"] = dict(zip(objective_names, t.values, strict=True)) if t.values else {}
    return strict_json_dict(record)


def config_text(config: Mapping[str, Any]) -> str:
    # A queued trial (run_cap budget token) has no config until an agent picks it up.
    return json.dumps(config, separators=(", ", ": "), default=str) if config else "-"


def value_text(value: Any) -> str:
    if isinstance(value, float):
        return num_text(value)
    return "-" if value is None else json.dumps(value, default=str) if not isinstance(value, str) else value


def num_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def sparkline(curve: Sequence[tuple[int, float]]) -> str:
    if not curve:
        return "-"
    values = [v for _, v in curve][-30:]
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    return "".join(SPARK[int((v - low) / span * (len(SPARK) - 1))] for v in values)


def describe_extension(entry: Mapping[str, Any]) -> str:
    """One line of a sweep's history (see ``sweeper extend``).

    >>> describe_extension({"at": "2026-12-02T09:00:00+00:00", "values": {"lr": [0.001]},
    ...     "budget": [24, 30], "queued": 6})
    'extended 2026-12-02T09:00:00+00:00: lr += [0.001]; budget 24 -> 30 (6 new grid points)'
    """
    parts = []
    if "run_cap" in entry:
        parts.append(f"run_cap {entry['run_cap']}")
    if "trials" in entry:
        parts.append(f"{entry['trials']} more trials")
    for name, values in dict(entry.get("values") or {}).items():
        parts.append(f"{name} += {values}")
    before, after = [*list(entry.get("budget") or []), None, None][:2]
    line = f"extended {entry.get('at', '?')}: {', '.join(parts)}"
    line += f"; budget {before or 'none'} -> {after or 'none'}"
    if entry.get("queued"):
        line += f" ({entry['queued']} new grid points)"
    return line
