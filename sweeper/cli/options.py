"""Options shared by several commands, each defined once with one help text."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from sweeper.redaction import STORAGE_ENV_VAR as ENV_VAR

F = TypeVar("F", bound=Callable[..., Any])


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


STORAGE_HELP = f"Storage URL (default: ${ENV_VAR}, else the journal file under ./.sweeper/)."


def storage_option(func: F) -> F:
    """``--storage URL``: where the sweeps live."""
    return click.option("--storage", "storage", metavar="URL", default=None, help=STORAGE_HELP)(func)


def agent_options(func: F) -> F:
    """The options of every command that runs an agent (agent, run)."""
    options = [
        click.option("--count", type=click.IntRange(min=1), default=None, help="Run at most N trials here."),
        click.option(
            "--max-concurrent", type=click.IntRange(min=1), default=None, help="At most K trials at once."
        ),
        click.option(
            "--ray-address",
            metavar="ADDR",
            default=None,
            help="Ray to use: 'auto', host:port, or 'local' for a fresh one (default: the one "
            "`ray start` left running here, else a fresh one).",
        ),
        click.option(
            "--executor",
            type=click.Choice(["ray", "local"]),
            default="ray",
            show_default=True,
            help="Ray tasks, or one trial at a time in this process (debuggers work).",
        ),
        click.option(
            "--trainer",
            metavar="MODULE:FUNCTION",
            default=None,
            help="Trainer function (overrides the spec).",
        ),
        click.option("--json", "json_lines", is_flag=True, help="One JSON object per event on stdout."),
        click.option(
            "--lease-grace",
            "lease_grace_s",
            type=click.FloatRange(min=0, min_open=True),
            default=60.0,
            show_default=True,
            metavar="SECONDS",
            help="A trial whose agent renewed no lease for this long is failed and re-queued.",
        ),
        click.option(
            "--lease-renew",
            "lease_renew_s",
            type=click.FloatRange(min=0, min_open=True),
            default=10.0,
            show_default=True,
            metavar="SECONDS",
            help="How often this agent renews the leases of its running trials.",
        ),
        click.option(
            "--max-fast-failures",
            "max_fast_failures",
            type=click.IntRange(min=0),
            default=5,
            show_default=True,
            metavar="N",
            help="Back off, then stop, when N trials in a row fail within 10 s of starting (0: never).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def warm_start_option(func: F) -> F:
    """``--warm-start SOURCE``: earlier results the new sweep starts from (repeatable)."""
    return click.option(
        "--warm-start",
        "warm_start",
        multiple=True,
        metavar="SOURCE",
        help="Start from earlier results, on top of the spec's sweeper.warm_start (repeatable): "
        "sweep:ID_OR_NAME, export:FILE, mlflow:EXPERIMENT, wandb:PATH, or a YAML mapping such as "
        "'{sweep: ID, storage: URL}'.",
    )(func)
