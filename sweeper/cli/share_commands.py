"""`sweeper` commands that share a sweep: report (HTML and PNGs), export (CSV, JSON), dashboard."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.text import Text

from sweeper.cli.format import csv_text, export_record, json_text
from sweeper.cli.main import main
from sweeper.cli.options import evaluator_option, storage_option
from sweeper.extras import require
from sweeper.plain import printable


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
@click.option(
    "--png/--no-png", default=True, show_default=True, help="Also write PNGs (drawn with matplotlib)."
)
@evaluator_option
@storage_option
def report_command(
    *, sweep: str, out_dir: Path, top: int, png: bool, evaluator: str, storage: str | None
) -> None:
    """Write an HTML report of SWEEP (history, parallel coordinates, importances, slices, curves)."""
    require("plotly", "dashboard", "sweeper report")
    from sweeper.analysis import results as res
    from sweeper.analysis.report import write_report

    results = res.load(sweep, storage)
    report = write_report(results, out_dir, top=top, png=png, evaluator=evaluator)
    click.echo(f"report: {report.html}")
    for path in report.pngs:
        click.echo(f"png: {path}")
    for f in report.figures:
        if f.figure is None:
            click.echo(f"skipped {f.key}: {f.note}", err=True)
    for note in report.png_notes:
        click.echo(f"note: {note}", err=True)


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
    from sweeper.analysis import results as res

    results = res.load(sweep, storage)
    if fmt == "json":
        # Each record names its objective values, so the file can warm-start another sweep.
        text = json_text([export_record(t, results.objective_names) for t in results.trials])
    else:
        from sweeper.analysis.records import flat_record

        text = csv_text([flat_record(t, results.objective_names) for t in results.trials])
    if out_file is None:
        click.echo(text, nl=False)
    else:
        out_file.parent.mkdir(parents=True, exist_ok=True)
        out_file.write_text(text, encoding="utf-8")
        click.echo(f"wrote {len(results.trials)} trials to {out_file}", err=True)


@main.command("dashboard")
@storage_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind (loopback is safe).")
@click.option("--port", type=int, default=8080, show_default=True)
@click.option(
    "--allow-writes",
    is_flag=True,
    help="Let visitors change the storage (delete sweeps, tell trials, edit notes); read-only without it.",
)
def dashboard_command(storage: str | None, host: str, port: int, allow_writes: bool) -> None:
    """Serve optuna-dashboard, read-only, on the sweeps of a storage."""
    require("optuna_dashboard", "dashboard", "sweeper dashboard")
    from sweeper.analysis import dashboard
    from sweeper.storage.urls import mask_url, resolve_url

    warning = dashboard.exposure_warning(host, allow_writes)
    if warning:
        Console(stderr=True).print(Text(printable(warning), style="bold red"))
    click.echo(f"dashboard of {mask_url(resolve_url(storage))} on http://{host}:{port}/", err=True)
    dashboard.serve(storage, host=host, port=port, allow_writes=allow_writes)


__all__ = ["main"]
