"""`sweeper` commands of the read side: ls, status, trials, best, importance, compare (report,
export and dashboard are in :mod:`sweeper.cli.share_commands`).

Every command prints a rich table on a terminal and, with ``--json``, strict JSON for scripts: an
array of records (``status`` alone prints one object).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.text import Text

from sweeper.analysis.states import FINISHED_STATES, TRIAL_STATES
from sweeper.cli.format import (
    add_row,
    cell,
    config_text,
    describe_extension,
    duration_text,
    echo_json,
    goals,
    make_console,
    num_text,
    prior_source_text,
    running_dict,
    safe_table,
    sparkline,
    state_text,
    trial_table,
    trials_json,
    value_text,
)
from sweeper.cli.main import main
from sweeper.cli.options import evaluator_option, json_option, storage_option
from sweeper.errors import UsageError
from sweeper.extras import require
from sweeper.plain import first_line, flatten, printable

if TYPE_CHECKING:  # they import Optuna: every command here imports them when it runs
    from sweeper.analysis import records
    from sweeper.analysis import results as res

DEFAULT_LIMIT = 100


_LATEST_FAILURES = 5  # failures `status` lists


@main.command("ls")
@storage_option
@json_option
def ls_command(storage: str | None, as_json: bool) -> None:
    """List the sweeps of a storage with their state, trial counts and best value."""
    from sweeper.analysis import results as res

    summaries = res.summarize(storage)
    if as_json:
        echo_json([s.to_dict() for s in summaries])
        return
    table = safe_table("Sweeps")
    for column in (
        "id",
        "name",
        "state",
        "method",
        "trials",
        "priors",
        "complete",
        "running",
        "failed",
        "best",
        "created",
    ):
        table.add_column(
            column,
            justify="right" if column in ("trials", "priors", "complete", "running", "failed") else "left",
        )
    for s in summaries:
        best = ", ".join(num_text(v) for v in s.best_values) if s.best_values else "-"
        add_row(
            table,
            s.id,
            s.name,
            s.state,
            s.method,
            str(s.n_trials),
            str(s.priors),
            str(s.counts["complete"]),
            str(s.counts["running"]),
            str(s.counts["fail"]),
            f"{best} ({', '.join(s.objectives)})" if s.best_values else best,
            s.created_at,
        )
    make_console().print(table if summaries else "No sweeps in this storage.")


@main.command("status")
@click.argument("sweep")
@storage_option
@json_option
def status_command(sweep: str, storage: str | None, as_json: bool) -> None:
    """Progress of SWEEP: trials by state, running trials, best so far, agents seen recently."""
    from sweeper.analysis import results as res

    results = res.load(sweep, storage)
    now = datetime.now(timezone.utc)
    counts = results.counts()
    budget = results.budget()
    finished = sum(counts[s] for s in FINISHED_STATES)
    running = results.with_state("running")
    priors = results.priors()
    best = results.best(None if results.is_multi_objective else 1)
    failures = sorted(results.with_state("fail"), key=lambda t: t.number, reverse=True)
    if as_json:
        echo_json(
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
                "history": list(results.info.history),
                "counts": counts,
                "priors": {"count": len(priors), "sources": list(results.prior_sources)},
                "running": [running_dict(t, results) for t in running],
                "best": [t.to_dict() for t in best],
                "agents": [a.to_dict(now) for a in results.agents],
                "latest_failures": [
                    t.to_dict()
                    for t in sorted(results.with_state("fail"), key=lambda t: -t.number)[:_LATEST_FAILURES]
                ],
            }
        )
        return
    console = make_console()
    total = f"/{budget}" if budget is not None else ""
    header = Text(printable(results.name), style="bold")
    header.append(
        printable(
            f" ({results.id}) · {results.state} · {results.spec.method} · "
            f"{goals(results)} · {finished}{total} trials finished"
        )
    )
    console.print(header)
    console.print(cell("  ".join(f"{state}: {n}" for state, n in counts.items())))
    for entry in results.info.history:
        console.print(cell(describe_extension(entry)))
    if priors or results.prior_sources:
        console.print(cell(f"priors: {len(priors)} (earlier results: they teach the sampler, use no budget)"))
        for source in results.prior_sources:
            console.print(cell(f"  {prior_source_text(source)}"))
    if best:
        head = "Pareto front" if results.is_multi_objective else "Best so far"
        console.print(trial_table(results, best, title=head))
    else:
        console.print("No complete trial yet.")
    if running:
        table = safe_table("Running")
        for column in ("trial", "elapsed", f"last {results.objective_names[0]}", "agent", "config"):
            table.add_column(cell(column))
        for t in running:
            last = t.last_intermediate
            add_row(
                table,
                str(t.number),
                duration_text(t.duration_s),
                f"{num_text(last[1])} @ step {last[0]}" if last else "-",
                t.agent or "-",
                config_text(t.config),
            )
        console.print(table)
    if failures:
        # The latest failures, newest first, with why: nobody should need --json to learn it.
        latest = failures[:_LATEST_FAILURES]
        table = safe_table(f"Latest failures ({len(latest)} of {len(failures)})")
        for column in ("trial", "attempt", "host"):
            table.add_column(column)
        table.add_column("reason", overflow="fold")
        for t in latest:
            add_row(table, str(t.number), str(t.attempt), t.host or "-", first_line(t.fail_reason))
        console.print(table)
    if results.agents:
        table = safe_table("Agents")
        for column in ("agent", "host", "pid", "last seen", "active"):
            table.add_column(column)
        for a in results.agents:
            age = a.seconds_since_seen(now)
            add_row(
                table,
                a.id,
                a.host or "-",
                str(a.pid) if a.pid is not None else "-",
                f"{duration_text(age)} ago" if age is not None else "never",
                "yes" if a.is_active(now) else "no",
            )
        console.print(table)


@main.command("trials")
@click.argument("sweep")
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice(TRIAL_STATES, case_sensitive=False),
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
    from sweeper.analysis import results as res

    results = res.load(sweep, storage)
    wanted = [s.lower() for s in states]
    cap = limit if limit is not None else (0 if as_json else DEFAULT_LIMIT)
    shown = results.select(wanted, sort_key, reverse=reverse, limit=cap or None)
    counts = results.counts(include_priors=True)
    total = sum(n for state, n in counts.items() if not wanted or state in wanted)
    if as_json:
        click.echo(trials_json(shown), nl=False)
        return
    console = make_console()
    console.print(trial_table(results, shown, title=f"Trials of {results.name} ({results.id})", reasons=True))
    if len(shown) < total:
        console.print(f"Showing {len(shown)} of {total} trials; --limit 0 shows all.")


@main.command("best")
@click.argument("sweep")
@click.option("--top", "top", type=click.IntRange(min=1), default=None, help="How many trials (default 1).")
@storage_option
@click.option(
    "--include-stopped",
    is_flag=True,
    help="Rank trials the pruner stopped too, by the best value they logged (state: pruned).",
)
@click.option(
    "--priors/--no-priors",
    default=True,
    show_default=True,
    help="Rank the priors (earlier results a warm start loaded) too, or only the sweep's own trials.",
)
@json_option
def best_command(
    *, sweep: str, top: int | None, include_stopped: bool, priors: bool, storage: str | None, as_json: bool
) -> None:
    """The best trials of SWEEP; the Pareto front for a multi-objective sweep."""
    from sweeper.analysis import results as res

    results = res.load(sweep, storage)
    k = top if top is not None else (None if results.is_multi_objective else 1)
    best = results.best(k, include_stopped=include_stopped, priors=priors)
    if as_json:
        click.echo(trials_json(best), nl=False)
        return
    if not best:
        make_console().print(cell(f"Sweep {results.id} has no complete trial yet."))
        return
    title = "Pareto front" if results.is_multi_objective else f"Best trials of {results.name}"
    make_console().print(trial_table(results, best, title=title))


@main.command("importance")
@click.argument("sweep")
@evaluator_option
@storage_option
@json_option
def importance_command(sweep: str, evaluator: str, storage: str | None, as_json: bool) -> None:
    """Parameter importances of SWEEP, per objective (Optuna's evaluators)."""
    from sweeper.analysis import results as res
    from sweeper.analysis.report import importances

    results = res.load(sweep, storage)
    scores = importances(results, evaluator)
    if as_json:
        echo_json(
            [
                {"objective": objective, "param": param, "importance": value}
                for objective, by_param in scores.items()
                for param, value in by_param.items()
            ]
        )
        return
    table = safe_table(f"Parameter importances of {results.name} ({evaluator})")
    table.add_column("param")
    for objective in scores:
        table.add_column(cell(objective), justify="right")
    params = list(next(iter(scores.values())))
    for param in params:
        add_row(table, param, *(f"{scores[o].get(param, 0.0):.3f}" for o in scores))
    make_console().print(table)


@main.command("compare")
@click.argument("sweep")
@click.argument("numbers", nargs=-1, type=int, required=True)
@click.option(
    "--plot",
    "plot",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the learning curves to this file (.html, or .png drawn with matplotlib).",
)
@storage_option
@json_option
def compare_command(
    sweep: str, numbers: Sequence[int], plot: Path | None, storage: str | None, as_json: bool
) -> None:
    """Trials of SWEEP side by side: the config keys that differ, final metrics, learning curves."""
    from sweeper.analysis import results as res

    results = res.load(sweep, storage)
    if len(numbers) < 2:
        raise UsageError(f"compare needs at least 2 trial numbers, got {len(numbers)}")
    trials = [results.trial(n) for n in numbers]
    flat = [flatten(t.config) for t in trials]
    keys = sorted({k for f in flat for k in f})
    differ = [k for k in keys if len({json.dumps(f.get(k), sort_keys=True, default=str) for f in flat}) > 1]
    metric_keys = sorted({k for t in trials for k in flatten(t.metrics)})
    if plot is not None:
        _write_plot(results, trials, plot)
    if as_json:
        records = []
        for t in trials:
            record = t.to_dict()
            record["differing_config"] = {k: flatten(t.config).get(k) for k in differ}
            records.append(record)
        echo_json(records)
        return
    table = safe_table(f"Trials of {results.name} compared")
    table.add_column("")
    for t in trials:
        table.add_column(f"trial {t.number}", justify="right")
    add_row(table, "state", *(state_text(t.state) for t in trials))
    for i, name in enumerate(results.objective_names):
        values = (num_text(t.values[i]) if t.values else "-" for t in trials)
        add_row(table, Text(printable(name), style="bold"), *values)
    add_row(table, "duration", *(duration_text(t.duration_s) for t in trials))
    for key in differ:
        add_row(table, f"config.{key}", *(value_text(f.get(key)) for f in flat))
    for key in metric_keys:
        add_row(table, f"metric.{key}", *(value_text(flatten(t.metrics).get(key)) for t in trials))
    add_row(table, "curve", *(sparkline(t.intermediate_values) for t in trials))
    make_console().print(table)
    if not differ:
        make_console().print("The configs are identical.")


def _write_plot(results: res.SweepResults, trials: Sequence[records.TrialRecord], path: Path) -> None:
    require("plotly", "dashboard", "sweeper compare --plot")
    from sweeper.analysis.report import learning_curves, png_unavailable, write_png

    curves = learning_curves(trials, results.objective_names[0], key="compare")
    figure = curves.figure
    if figure is None or curves.draw_png is None:
        raise UsageError(
            f"none of trials {', '.join(str(t.number) for t in trials)} reported a learning curve"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".png":
        note = png_unavailable()
        if note:
            click.echo(f"note: no plot written: {note}; an .html plot needs only plotly", err=True)
            return
        write_png(curves.draw_png, path)
    else:
        figure.write_html(str(path), include_plotlyjs=True)
    click.echo(f"plot: {path}", err=True)


__all__ = ["main"]
