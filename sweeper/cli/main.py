"""The ``sweeper`` command group. Each command group lives in its own module and registers on ``main``.

User mistakes (:class:`~sweeper.errors.SweeperError`) print one located line on stderr and exit
with the error's code; ``--debug`` shows the traceback instead.

What sweeper's modules log reaches the user on stderr as one line each, in our words: ``note:``
(info), ``warning:``, ``error:``; ``--verbose`` adds the ``debug:`` lines. stdout stays for results.
"""

from __future__ import annotations

import atexit
import gc
import logging
import sys
from typing import Any

import click

from sweeper.errors import SweeperError

# When a command's process exits, Python's last collection walks every object it holds (Optuna,
# SQLAlchemy, Ray: 0.25-0.3 s at the end of every `sweeper run` here) to free memory the exit frees
# anyway. Frozen objects are left out of it. Other exit handlers (Ray's, trackers') run as before,
# in any order: a freeze only keeps the objects alive at that moment out of collections.
atexit.register(gc.freeze)

_PREFIX = {logging.DEBUG: "debug", logging.INFO: "note", logging.WARNING: "warning"}


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


class StderrLines(logging.Handler):
    """Print each record of sweeper's loggers as one ``prefix: message`` line on the current stderr.

    The same line is printed once per process (a sweep name resolved twice notes it once).
    Tracebacks of logged exceptions show with ``--debug`` only.
    """

    def __init__(self, level: int, tracebacks: bool) -> None:
        super().__init__(level)
        self.tracebacks = tracebacks
        self._said: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            prefix = _PREFIX.get(record.levelno, "error")
            line = f"{prefix}: {record.getMessage()}"
            if line in self._said:
                return
            self._said.add(line)
            if self.tracebacks and record.exc_info:
                line += "\n" + logging.Formatter().formatException(record.exc_info)
            click.echo(line, err=True)
        except Exception:  # pragma: no cover - logging must never break a command
            self.handleError(record)


def setup_logging(verbose: bool, debug: bool) -> None:
    """Route sweeper's log records to stderr (replacing the handler of an earlier call)."""
    logger = logging.getLogger("sweeper")
    for handler in [h for h in logger.handlers if isinstance(h, StderrLines)]:
        logger.removeHandler(handler)
    level = logging.DEBUG if verbose or debug else logging.INFO
    logger.addHandler(StderrLines(level, tracebacks=debug))
    logger.setLevel(level)


@click.group(cls=_SweeperGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sweeper")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.option("-v", "--verbose", is_flag=True, help="Also print sweeper's debug lines on stderr.")
@click.pass_context
def main(ctx: click.Context, debug: bool, verbose: bool) -> None:
    """Run W&B-style hyperparameter sweeps on your own machines: Optuna studies, Ray tasks."""
    ctx.meta["sweeper.debug"] = debug
    setup_logging(verbose, debug)
