"""The tracker interface: what one trial tells the experiment tracker, with do-nothing defaults.

A tracker class is built once per trial, inside the Ray task that runs it. The agent calls the
class method :meth:`Tracker.prepare` once per sweep first (create an experiment, a parent run) and
ships the options it returns to the workers.
"""

from __future__ import annotations

import difflib
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from sweeper.errors import TrackerError
from sweeper.plain import flatten as _flatten

logger = logging.getLogger("sweeper.trackers")

State = Literal["completed", "pruned", "failed"]
STATES: tuple[State, ...] = ("completed", "pruned", "failed")

# (tracker name, media kind) pairs already reported as unsupported in this process: say it once.
_UNSUPPORTED_SAID: set[tuple[str, str]] = set()


@dataclass(frozen=True)
class RunInfo:
    """Everything a tracker needs to know about the trial whose run it opens.

    Attributes:
        sweep_id: The sweep's id (its Optuna study name).
        sweep_name: The sweep's human name; runs are named ``<sweep_name>-<trial_number>``.
        trial_number: The Optuna trial number.
        attempt: 0 for the first attempt, 1 for the first retry, ...
        config: The nested config the trainer receives.
        params: The flat Optuna parameters (dotted names).
        tags: The sweep's tags.
        sweep_dir: ``<agent cwd>/.sweeper/sweeps/<sweep_id>``, where embedded outputs go.
        code_dir: The trainer's source directory, whose git commit the environment records
            (``None``: the current directory).
    """

    sweep_id: str
    sweep_name: str
    trial_number: int
    attempt: int = 0
    config: Mapping[str, Any] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    sweep_dir: str = "."
    code_dir: str | None = None

    @property
    def run_name(self) -> str:
        """The trial's name in every tracker: ``<sweep_name>-<trial_number>``."""
        return f"{self.sweep_name}-{self.trial_number}"


class Tracker:
    """Base class of every tracker: override what your tool supports, the rest does nothing.

    Subclasses declare their ``name``, the ``extra`` that installs their library and the
    ``options`` a spec may give them. Rich media a tool cannot show (figures, histograms, tables,
    artifacts) fall back to :meth:`unsupported`, which logs one line per process and goes on.

    Example:
        >>> class PrintTracker(Tracker):
        ...     name = "print"
        ...     def log_metrics(self, metrics, step):
        ...         print(step, dict(metrics))
        >>> tracker = PrintTracker({})
        >>> tracker.start(RunInfo("abcdefgh", "demo", 0), {})
        >>> tracker.log_metrics({"loss": 0.5}, 1)
        1 {'loss': 0.5}
    """

    name: ClassVar[str] = ""
    # The importable module the tracker needs (checked before use) and the extra installing it.
    requires: ClassVar[str | None] = None
    extra: ClassVar[str | None] = None
    options: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, options: Mapping[str, Any]) -> None:
        self.config = dict(options)

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        """Raise :class:`TrackerError` on an option this tracker does not know.

        Keys starting with ``_`` are filled in by :meth:`prepare` and always allowed.
        """
        unknown = sorted(k for k in options if k not in cls.options and not str(k).startswith("_"))
        if unknown:
            allowed = ", ".join(sorted(cls.options)) or "none"
            close = [difflib.get_close_matches(str(k), list(cls.options), n=1) for k in unknown]
            hints = [(k, c[0]) for k, c in zip(unknown, close, strict=True) if c]
            if len(unknown) == 1 and hints:
                hint = f"; did you mean {hints[0][1]!r}?"
            else:
                hint = "".join(f"; did you mean {c!r} for {k!r}?" for k, c in hints)
            raise TrackerError(
                f"tracker {cls.name!r}: unknown option(s) {', '.join(map(repr, unknown))}; "
                f"allowed options: {allowed}{hint}"
            )

    @classmethod
    def prepare(
        cls, options: Mapping[str, Any], sweep_id: str, sweep_name: str, sweep_dir: str
    ) -> dict[str, Any]:
        """Agent side, once per agent: set up what the sweep's runs share; return the options to ship."""
        return dict(options)

    @classmethod
    def close_sweep(cls, options: Mapping[str, Any], state: str) -> None:
        """Agent side, when the sweep ends for this agent (``finished``, ``cancelled``, ...): close
        what :meth:`prepare` opened. ``options`` are the ones :meth:`prepare` returned."""

    def start(self, run: RunInfo, environment: Mapping[str, Any]) -> None:
        """Open the trial's run, recording its config and environment."""

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Record finite numeric metrics at ``step``."""

    def log_artifact(self, path: str) -> None:
        """Attach a file (or directory) to the run."""
        self.unsupported("artifacts")

    def log_figure(self, name: str, figure: Any, step: int) -> None:
        """Record a matplotlib figure."""
        self.unsupported("figures")

    def log_histogram(self, name: str, values: Sequence[float], step: int) -> None:
        """Record the distribution of ``values``."""
        self.unsupported("histograms")

    def log_table(self, name: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Record a table given as rows (mappings from column to value)."""
        self.unsupported("tables")

    def finish(self, state: State, summary: Mapping[str, Any]) -> None:
        """Close the run with its final state and summary (the trial's final metrics)."""

    def stand_aside(self) -> dict[str, Any] | None:
        """Give up this trial's run before opening it, because the trainer opens the run itself; return
        the options it would have used. None (the default) when it cannot (its run is open)."""
        return None

    def ref(self) -> str | None:
        """Where this trial's run lives (a run id, a path, ...), or ``None`` before :meth:`start`."""
        return None

    def unsupported(self, kind: str) -> None:
        """Say once per process that this tracker cannot record ``kind``, and go on."""
        key = (self.name, kind)
        if key not in _UNSUPPORTED_SAID:
            _UNSUPPORTED_SAID.add(key)
            logger.warning("tracker %r does not support %s; skipping them", self.name, kind)


def numeric_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The finite numeric entries of ``metrics`` as floats (booleans count as 0/1)."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, bool):
            out[str(key)] = float(value)
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            out[str(key)] = number
    return out


def safe_filename(name: str) -> str:
    """``name`` made safe as one path component (letters, digits, ``-_.``; others become ``_``)."""
    cleaned = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip(".")
    return cleaned or "_"


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A config as trackers take it: dotted keys, empty mappings dropped (:func:`sweeper.plain.flatten`)."""
    return _flatten(mapping, prefix, keep_empty=False)
