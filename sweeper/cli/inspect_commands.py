"""`sweeper` commands of the inspect layer: ls, status, trials, best, importance, compare, report,
export, dashboard, repeat.

Every command prints a rich table on a terminal and, with ``--json``, strict JSON for scripts: an
array of records (``status`` alone prints one object).
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from sweeper.analysis import results as res
from sweeper.cli import main
from sweeper.errors import UsageError
from sweeper.extras import require

F = TypeVar("F", bound=Callable[..., Any])

_STATE_STYLES = {
    "complete": "green",
    "running": "cyan",
    "waiting": "dim",
    "pruned": "yellow",
    "fail": "red",
}
_SPARK = "▁▂▃▄▅▆▇█"
DEFAULT_LIMIT = 100


def storage_option(func: F) -> F:
    """``--storage URL``, defaulting to $SWEEPER_STORAGE then the embedded journal."""
    return click.option(
        "--storage",
        "storage",
        metavar="URL",
        default=None,
        help="Storage URL (default: $SWEEPER_STORAGE, else journal://.sweeper/journal.log).",
    )(func)


def json_option(func: F) -> F:
    """``--json``: machine-readable output."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(func)


def evaluator_option(func: F) -> F:
    """``--evaluator``: which of Optuna's importance evaluators to use."""
    return click.option(
        "--evaluator",
        type=click.Choice(["fanova", "ped-anova", "mdi"]),
        default="fanova",
        show_default=True,
        help="Optuna importance evaluator.",
    )(func)


@main.command("ls")
@storage_option
@json_option
def ls_command(storage: str | None, as_json: bool) -> None:
    """List the sweeps of a storage with their state, trial counts and best value."""
    summaries = res.summarize(storage)
    if as_json:
        _echo_json([s.to_dict() for s in summaries])
        return
    table = Table(title="Sweeps")
    for column in (
        "id",
        "name",
        "state",
        "method",
        "trials",
        "complete",
        "running",
        "failed",
        "best",
        "created",
    ):
        table.add_column(
            column, justify="right" if column in ("trials", "complete", "running", "failed") else "left"
        )
    for s in summaries:
        best = ", ".join(_num(v) for v in s.best_values) if s.best_values else "-"
        table.add_row(
            s.id,
            s.name,
            s.state,
            s.method,
            str(s.n_trials),
            str(s.counts["complete"]),
            str(s.counts["running"]),
            str(s.counts["fail"]),
            f"{best} ({', '.join(s.objectives)})" if s.best_values else best,
            s.created_at,
        )
    _console().print(table if summaries else "No sweeps in this storage.")


@main.command("status")
@click.argument("sweep")
@storage_option
@json_option
def status_command(sweep: str, storage: str | None, as_json: bool) -> None:
    """Progress of SWEEP: trials by state, running trials, best so far, agents seen recently."""
    results = res.load(sweep, storage)
    now = datetime.now(timezone.utc)
    counts = results.counts()
    budget = results.budget()
    finished = sum(counts[s] for s in res.FINISHED_STATES)
    running = results.with_state("running")
    best = results.best(None if results.is_multi_objective else 1)
    if as_json:
        _echo_json(
            {
                "id": results.id,
                "name": results.name,
                "state": results.state,
                "method": results.spec.method,
                "created_at": results.info.created_at,
                "objectives": [
                    {"name": n, "goal": d}
                    for n, d in zip(results.objective_names, results.directions, strict=True)
                ],
                "progress": {"finished": finished, "total": budget},
                "counts": counts,
                "running": [_running_dict(t, results) for t in running],
                "best": [t.to_dict() for t in best],
                "agents": [a.to_dict(now) for a in results.agents],
            }
        )
        return
    console = _console()
    total = f"/{budget}" if budget is not None else ""
    console.print(
        f"[bold]{results.name}[/] ({results.id}) · {results.state} · {results.spec.method} · "
        f"{_goals(results)} · {finished}{total} trials finished"
    )
    console.print("  ".join(f"{state}: {n}" for state, n in counts.items()))
    if best:
        head = "Pareto front" if results.is_multi_objective else "Best so far"
        console.print(_trial_table(results, best, title=head))
    else:
        console.print("No complete trial yet.")
    if running:
        table = Table(title="Running")
        for column in ("trial", "elapsed", f"last {results.objective_names[0]}", "agent", "config"):
            table.add_column(column)
        for t in running:
            last = t.last_intermediate
            table.add_row(
                str(t.number),
                _duration(t.duration_s),
                f"{_num(last[1])} @ step {last[0]}" if last else "-",
                t.agent or "-",
                _config(t.config),
            )
        console.print(table)
    if results.agents:
        table = Table(title="Agents")
        for column in ("agent", "host", "pid", "last seen", "active"):
            table.add_column(column)
        for a in results.agents:
            age = a.seconds_since_seen(now)
            table.add_row(
                a.id,
                a.host or "-",
                str(a.pid) if a.pid is not None else "-",
                f"{_duration(age)} ago" if age is not None else "never",
                "yes" if a.is_active(now) else "no",
            )
        console.print(table)


@main.command("trials")
@click.argument("sweep")
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice(res.TRIAL_STATES, case_sensitive=False),
    help="Only trials in this state (repeatable).",
)
@click.option(
    "--sort",
    "sort_key",
    default="number",
    show_default=True,
    metavar="KEY",
    help="number, value, duration, an objective or metric name (best first), or a dotted config key.",
)
@click.option("--reverse", is_flag=True, help="Reverse the order.")
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=None,
    help=f"Show at most this many trials (table default {DEFAULT_LIMIT}, JSON default all; 0 = all).",
)
@storage_option
@json_option
def trials_command(
    *,
    sweep: str,
    states: Sequence[str],
    sort_key: str,
    reverse: bool,
    limit: int | None,
    storage: str | None,
    as_json: bool,
) -> None:
    """The trials of SWEEP: config as the trainer saw it, objective, state, duration, tracker runs."""
    results = res.load(sweep, storage)
    wanted = [s.lower() for s in states]
    cap = limit if limit is not None else (0 if as_json else DEFAULT_LIMIT)
    shown = results.select(wanted, sort_key, reverse=reverse, limit=cap or None)
    total = sum(n for state, n in results.counts().items() if not wanted or state in wanted)
    if as_json:
        _echo_json([t.to_dict() for t in shown])
        return
    console = _console()
    console.print(_trial_table(results, shown, title=f"Trials of {results.name} ({results.id})"))
    if len(shown) < total:
        console.print(f"Showing {len(shown)} of {total} trials; --limit 0 shows all.")


@main.command("best")
@click.argument("sweep")
@click.option("--top", "top", type=click.IntRange(min=1), default=None, help="How many trials (default 1).")
@storage_option
@json_option
def best_command(sweep: str, top: int | None, storage: str | None, as_json: bool) -> None:
    """The best trials of SWEEP; the Pareto front for a multi-objective sweep."""
    results = res.load(sweep, storage)
    k = top if top is not None else (None if results.is_multi_objective else 1)
    best = results.best(k)
    if as_json:
        _echo_json([t.to_dict() for t in best])
        return
    if not best:
        _console().print(f"Sweep {results.id} has no complete trial yet.")
        return
    title = "Pareto front" if results.is_multi_objective else f"Best trials of {results.name}"
    _console().print(_trial_table(results, best, title=title))


@main.command("importance")
@click.argument("sweep")
@evaluator_option
@storage_option
@json_option
def importance_command(sweep: str, evaluator: str, storage: str | None, as_json: bool) -> None:
    """Parameter importances of SWEEP, per objective (Optuna's evaluators)."""
    from sweeper.analysis.report import importances

    results = res.load(sweep, storage)
    scores = importances(results, evaluator)
    if as_json:
        _echo_json(
            [
                {"objective": objective, "param": param, "importance": value}
                for objective, by_param in scores.items()
                for param, value in by_param.items()
            ]
        )
        return
    table = Table(title=f"Parameter importances of {results.name} ({evaluator})")
    table.add_column("param")
    for objective in scores:
        table.add_column(objective, justify="right")
    params = list(next(iter(scores.values())))
    for param in params:
        table.add_row(param, *(f"{scores[o].get(param, 0.0):.3f}" for o in scores))
    _console().print(table)


@main.command("compare")
@click.argument("sweep")
@click.argument("numbers", nargs=-1, type=int, required=True)
@click.option(
    "--plot",
    "plot",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the learning curves to this file (.html, or .png with Chromium).",
)
@storage_option
@json_option
def compare_command(
    sweep: str, numbers: Sequence[int], plot: Path | None, storage: str | None, as_json: bool
) -> None:
    """Trials of SWEEP side by side: the config keys that differ, final metrics, learning curves."""
    results = res.load(sweep, storage)
    if len(numbers) < 2:
        raise UsageError(f"compare needs at least 2 trial numbers, got {len(numbers)}")
    trials = [results.trial(n) for n in numbers]
    flat = [res.flatten(t.config) for t in trials]
    keys = sorted({k for f in flat for k in f})
    differ = [k for k in keys if len({json.dumps(f.get(k), sort_keys=True, default=str) for f in flat}) > 1]
    metric_keys = sorted({k for t in trials for k in res.flatten(t.metrics)})
    if plot is not None:
        _write_plot(results, trials, plot)
    if as_json:
        records = []
        for t in trials:
            record = t.to_dict()
            record["differing_config"] = {k: res.flatten(t.config).get(k) for k in differ}
            records.append(record)
        _echo_json(records)
        return
    table = Table(title=f"Trials of {results.name} compared")
    table.add_column("")
    for t in trials:
        table.add_column(f"trial {t.number}", justify="right")
    table.add_row("state", *(_state(t.state) for t in trials))
    for i, name in enumerate(results.objective_names):
        table.add_row(Text(name, style="bold"), *(_num(t.values[i]) if t.values else "-" for t in trials))
    table.add_row("duration", *(_duration(t.duration_s) for t in trials))
    for key in differ:
        table.add_row(f"config.{key}", *(_value(f.get(key)) for f in flat))
    for key in metric_keys:
        table.add_row(f"metric.{key}", *(_value(res.flatten(t.metrics).get(key)) for t in trials))
    table.add_row("curve", *(_sparkline(t.intermediate_values) for t in trials))
    _console().print(table)
    if not differ:
        _console().print("The configs are identical.")


@main.command("report")
@click.argument("sweep")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Directory to write index.html and the PNGs into.",
)
@click.option(
    "--top",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Trials in the table and the learning-curve plot.",
)
@click.option("--png/--no-png", default=True, show_default=True, help="Also write PNGs (needs Chromium).")
@evaluator_option
@storage_option
def report_command(
    *, sweep: str, out_dir: Path, top: int, png: bool, evaluator: str, storage: str | None
) -> None:
    """Write an HTML report of SWEEP (history, parallel coordinates, importances, slices, curves)."""
    require("plotly", "dashboard", "sweeper report")
    from sweeper.analysis.report import write_report

    results = res.load(sweep, storage)
    report = write_report(results, out_dir, top=top, png=png, evaluator=evaluator)
    click.echo(f"report: {report.html}")
    for path in report.pngs:
        click.echo(f"png: {path}")
    for f in report.figures:
        if f.figure is None:
            click.echo(f"skipped {f.key}: {f.note}", err=True)


@main.command("export")
@click.argument("sweep")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True)
@click.option(
    "--out",
    "out_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File to write (default: stdout).",
)
@storage_option
def export_command(sweep: str, fmt: str, out_file: Path | None, storage: str | None) -> None:
    """Every trial of SWEEP with its config (flattened for CSV), state, values and timings."""
    results = res.load(sweep, storage)
    if fmt == "json":
        text = _json_text([t.to_dict() for t in results.trials])
    else:
        text = _csv([res.flat_record(t, results.objective_names) for t in results.trials])
    if out_file is None:
        click.echo(text, nl=False)
    else:
        out_file.parent.mkdir(parents=True, exist_ok=True)
        out_file.write_text(text, encoding="utf-8")
        click.echo(f"wrote {len(results.trials)} trials to {out_file}", err=True)


@main.command("repeat")
@click.argument("sweep")
@click.option(
    "--trial", "trial_number", type=click.IntRange(min=0), required=True, help="The trial to repeat."
)
@click.option(
    "--seeds",
    type=click.IntRange(min=0),
    required=True,
    help="How many seeds to run (the original's seed + 1, + 2, ...); 0 only summarizes past repeats.",
)
@click.option(
    "--executor",
    type=click.Choice(["ray", "local"]),
    default="ray",
    show_default=True,
    help="Ray tasks, or one trial at a time in this process.",
)
@click.option("--trainer", metavar="MODULE:FUNCTION", default=None, help="Trainer (overrides the spec).")
@click.option("--max-concurrent", type=click.IntRange(min=1), default=None, help="At most K repeats at once.")
@click.option("--ray-address", metavar="ADDR", default=None, help="Ray cluster to use.")
@storage_option
@json_option
def repeat_command(
    *,
    sweep: str,
    trial_number: int,
    seeds: int,
    executor: str,
    trainer: str | None,
    max_concurrent: int | None,
    ray_address: str | None,
    storage: str | None,
    as_json: bool,
) -> None:
    """Re-run trial N of SWEEP with K other seeds; show mean, std, range and a 95% t-interval.

    Each repeat is a new trial marked as a repeat of N, with N's params and the config's `seed`
    key overridden, so function and program trainers alike get the new seed. Only the repeats
    run: other queued trials stay queued, and a finished sweep stays finished.
    """
    from sweeper.analysis import repeats

    if seeds == 0:
        summary = repeats.summarize(res.load(sweep, storage), trial_number)
    else:
        summary = repeats.repeat(
            sweep,
            trial_number,
            seeds,
            storage=storage,
            trainer=trainer,
            executor=executor,
            max_concurrent=max_concurrent,
            ray_address=ray_address,
        )
    if as_json:
        _echo_json(summary.to_dict())
        return
    console = _console()
    table = Table(title=f"Trial {trial_number} of {summary.sweep_id} and its repeats")
    for column in ("trial", "seed", "state", summary.metric, "duration"):
        table.add_column(column, justify="right")
    for t in (summary.original, *summary.repeats):
        table.add_row(
            str(t.number),
            _value(t.config.get("seed")),
            _state(t.state),
            _num(t.value),
            _duration(t.duration_s),
        )
    console.print(table)
    stats = summary.stats
    if stats is None:
        console.print("No repeat completed.")
        return
    line = (
        f"{summary.metric} over {stats.n} repeats: mean {_num(stats.mean)}, std {_num(stats.std)}, "
        f"min {_num(stats.min)}, max {_num(stats.max)}"
    )
    if stats.ci_low is not None and stats.ci_high is not None:
        line += (
            f", {stats.confidence:.0%} t-interval of the mean [{_num(stats.ci_low)}, {_num(stats.ci_high)}]"
        )
    console.print(line)
    inside = stats.contains(summary.original.value) if summary.original.value is not None else None
    if inside is not None:
        verdict = "inside" if inside else "outside"
        console.print(
            f"Trial {trial_number}'s {summary.metric} {_num(summary.original.value)} lies {verdict} it."
        )


@main.command("dashboard")
@storage_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind (loopback is safe).")
@click.option("--port", type=int, default=8080, show_default=True)
def dashboard_command(storage: str | None, host: str, port: int) -> None:
    """Serve optuna-dashboard on the sweeps of a storage."""
    require("optuna_dashboard", "dashboard", "sweeper dashboard")
    from sweeper.analysis import dashboard
    from sweeper.storage.urls import mask_url, resolve_url

    warning = dashboard.exposure_warning(host)
    if warning:
        Console(stderr=True).print(f"[bold red]{warning}[/]")
    click.echo(f"dashboard of {mask_url(resolve_url(storage))} on http://{host}:{port}/", err=True)
    dashboard.serve(storage, host=host, port=port)


def _trial_table(results: res.SweepResults, trials: Iterable[res.TrialRecord], title: str) -> Table:
    table = Table(title=title)
    table.add_column("trial", justify="right")
    table.add_column("state")
    for name in results.objective_names:
        table.add_column(name, justify="right")
    table.add_column("duration", justify="right")
    table.add_column("config", overflow="fold")
    table.add_column("tracker runs", overflow="fold")
    for t in trials:
        values = [_num(v) for v in t.values] if t.values else ["-"] * len(results.objective_names)
        table.add_row(
            str(t.number),
            _state(t.state),
            *values,
            _duration(t.duration_s),
            _config(t.config),
            " ".join(f"{k}:{v}" for k, v in t.tracker_runs.items()) or "-",
        )
    return table


def _running_dict(t: res.TrialRecord, results: res.SweepResults) -> dict[str, Any]:
    record = t.to_dict()
    last = t.last_intermediate
    record["elapsed_s"] = t.duration_s
    record["last_metric"] = (
        {"name": results.objective_names[0], "step": last[0], "value": last[1]} if last else None
    )
    return res.jsonable_dict(record)


def _write_plot(results: res.SweepResults, trials: Sequence[res.TrialRecord], path: Path) -> None:
    require("plotly", "dashboard", "sweeper compare --plot")
    from sweeper.analysis.report import learning_curves, write_pngs

    figure = learning_curves(trials, results.objective_names[0], key="compare").figure
    if figure is None:
        raise UsageError(
            f"none of trials {', '.join(str(t.number) for t in trials)} reported a learning curve"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".png":
        write_pngs([figure], [path])
    else:
        figure.write_html(str(path), include_plotlyjs=True)
    click.echo(f"plot: {path}", err=True)


def _csv(rows: Sequence[Mapping[str, Any]]) -> str:
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(v) for k, v in row.items()})
    return buffer.getvalue()


def _cell(value: Any) -> Any:
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return "" if value is None else value


def _echo_json(data: Any) -> None:
    click.echo(_json_text(data), nl=False)


def _json_text(data: Any) -> str:
    """Strict JSON: an object indented, an array one compact record per line (fast on 10k records)."""
    if isinstance(data, list):
        # Records come from to_dict(), already JSON-ready.
        lines = [json.dumps(item, allow_nan=False, default=str) for item in data]
        return "[\n" + ",\n".join(lines) + "\n]\n" if lines else "[]\n"
    return json.dumps(res.jsonable(data), indent=2, allow_nan=False, default=str) + "\n"


def _console() -> Console:
    # Off a terminal (pipes, CliRunner) use a wide fixed width so tables are not squeezed to 80 columns.
    terminal = sys.stdout.isatty()
    return Console(width=None if terminal else 200, soft_wrap=False)


def _goals(results: res.SweepResults) -> str:
    return ", ".join(
        f"{'max' if d == 'maximize' else 'min'} {n}"
        for n, d in zip(results.objective_names, results.directions, strict=True)
    )


def _state(state: str) -> Text:
    return Text(state, style=_STATE_STYLES.get(state, ""))


def _config(config: Mapping[str, Any]) -> str:
    # A queued trial (run_cap budget token) has no config until an agent picks it up.
    return json.dumps(config, separators=(", ", ": "), default=str) if config else "-"


def _value(value: Any) -> str:
    if isinstance(value, float):
        return _num(value)
    return "-" if value is None else json.dumps(value, default=str) if not isinstance(value, str) else value


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _sparkline(curve: Sequence[tuple[int, float]]) -> str:
    if not curve:
        return "-"
    values = [v for _, v in curve][-30:]
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    return "".join(_SPARK[int((v - low) / span * (len(_SPARK) - 1))] for v in values)


__all__ = ["main"]
