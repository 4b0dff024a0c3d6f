"""Live progress of an agent: a rich status line on a terminal, JSON lines for machines, else quiet.

Every view receives the same events from the agent loop; none of them affects what the agent does.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

from sweeper.plain import printable


@dataclass
class Tally:
    """What one agent has seen so far."""

    total: int | None = None
    started: int = 0
    running: int = 0
    complete: int = 0
    pruned: int = 0
    failed: int = 0
    best_value: float | None = None
    best_trial: int | None = None
    # First line of each fail reason -> how many trials failed so.
    reasons: Counter[str] = field(default_factory=Counter)

    @property
    def done(self) -> int:
        """Trials that ended, whatever their state."""
        return self.complete + self.pruned + self.failed


class Progress(Protocol):
    """Receives the agent's events."""

    def start(self, sweep_id: str, sweep_name: str, metric: str | None, tally: Tally) -> None:
        """The agent begins working on the sweep (``metric``: the first objective's name)."""
        ...

    def trial_started(self, number: int, config: dict[str, Any], tally: Tally) -> None:
        """A trial was handed to the executor."""
        ...

    def trial_ended(self, number: int, state: str, values: Any, reason: str | None, tally: Tally) -> None:
        """A trial ended (complete, pruned or failed)."""
        ...

    def finish(self, summary_line: str, summary: dict[str, Any]) -> None:
        """The agent is done; ``summary_line`` is its one-line summary."""
        ...


class QuietProgress:
    """Shows nothing but the final summary line (stdout is not a terminal)."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._stream = stream

    def start(self, sweep_id: str, sweep_name: str, metric: str | None, tally: Tally) -> None:
        pass

    def trial_started(self, number: int, config: dict[str, Any], tally: Tally) -> None:
        pass

    def trial_ended(self, number: int, state: str, values: Any, reason: str | None, tally: Tally) -> None:
        pass

    def finish(self, summary_line: str, summary: dict[str, Any]) -> None:
        print(printable(summary_line), file=self._stream or sys.stdout, flush=True)


class SilentProgress(QuietProgress):
    """Shows nothing at all (the Python API)."""

    def finish(self, summary_line: str, summary: dict[str, Any]) -> None:
        pass


class JsonProgress:
    """One JSON object per event on stdout (``--json``)."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._stream = stream

    def _emit(self, event: str, **fields: Any) -> None:
        print(
            json.dumps({"event": event, **fields}, default=str), file=self._stream or sys.stdout, flush=True
        )

    def start(self, sweep_id: str, sweep_name: str, metric: str | None, tally: Tally) -> None:
        self._emit(
            "agent_started", sweep_id=sweep_id, sweep_name=sweep_name, metric=metric, total=tally.total
        )

    def trial_started(self, number: int, config: dict[str, Any], tally: Tally) -> None:
        self._emit("trial_started", trial=number, config=config, running=tally.running)

    def trial_ended(self, number: int, state: str, values: Any, reason: str | None, tally: Tally) -> None:
        self._emit(
            "trial_ended",
            trial=number,
            state=state,
            values=values,
            fail_reason=reason.splitlines()[0] if reason else None,
            done=tally.done,
            running=tally.running,
            best_value=tally.best_value,
        )

    def finish(self, summary_line: str, summary: dict[str, Any]) -> None:
        self._emit("agent_finished", summary=summary_line, **summary)


class RichProgress:
    """A live status line on the terminal: done of total, running, pruned, failed, best so far."""

    def __init__(self) -> None:
        from rich.console import Console

        self._console = Console()
        self._metric = "value"
        self._live: Any = None

    def _line(self, tally: Tally) -> str:
        total = f"/{tally.total}" if tally.total is not None else ""
        best = f"{tally.best_value:.6g} (trial {tally.best_trial})" if tally.best_value is not None else "-"
        return (
            f"[bold]{tally.done}{total}[/] done  [cyan]{tally.running}[/] running  "
            f"[yellow]{tally.pruned}[/] pruned  [red]{tally.failed}[/] failed  best {self._metric}: {best}"
        )

    def start(self, sweep_id: str, sweep_name: str, metric: str | None, tally: Tally) -> None:
        from rich.live import Live
        from rich.markup import escape

        self._metric = escape(printable(metric or "value"))
        self._console.print(
            f"agent on sweep [bold]{escape(printable(sweep_id))}[/] ({escape(printable(sweep_name))})"
        )
        self._live = Live(self._line(tally), console=self._console, refresh_per_second=4, transient=True)
        self._live.start()

    def trial_started(self, number: int, config: dict[str, Any], tally: Tally) -> None:
        if self._live is not None:
            self._live.update(self._line(tally))

    def trial_ended(self, number: int, state: str, values: Any, reason: str | None, tally: Tally) -> None:
        if self._live is None:
            return
        if state == "failed" and reason:
            from rich.markup import escape

            self._console.print(f"[red]trial {number} failed[/]: {escape(printable(reason.splitlines()[0]))}")
        self._live.update(self._line(tally))

    def finish(self, summary_line: str, summary: dict[str, Any]) -> None:
        if self._live is not None:
            self._live.stop()
        self._console.print(printable(summary_line), markup=False, highlight=False, soft_wrap=True)


def make_progress(*, json_lines: bool = False) -> Progress:
    """The view for the CLI: JSON lines if asked, rich on a terminal, otherwise quiet."""
    if json_lines:
        return JsonProgress()
    if sys.stdout.isatty():
        return RichProgress()
    return QuietProgress()
