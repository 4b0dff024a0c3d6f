"""The ``sweeper`` command group. Each command group lives in its own module and registers on ``main``.

User mistakes (:class:`~sweeper.errors.SweeperError`) print one located line on stderr and exit
with the error's code; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from sweeper.errors import SweeperError


class _SweeperGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SweeperError as exc:
            if ctx.meta.get("sweeper.debug"):
                raise
            for line in str(exc).splitlines() or [type(exc).__name__]:
                click.echo(f"error: {line}", err=True)
            sys.exit(exc.exit_code)


@click.group(cls=_SweeperGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sweeper")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Run W&B-style hyperparameter sweeps on your own machines: Optuna studies, Ray tasks."""
    ctx.meta["sweeper.debug"] = debug
