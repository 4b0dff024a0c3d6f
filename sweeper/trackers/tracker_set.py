"""Opening a trial's trackers and fanning every report out to them, so that none can fail the trial."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any

from sweeper.errors import TrackerError, TrackerNotInstalledError
from sweeper.spec.model import TrackerSpec
from sweeper.trackers.base import STATES, RunInfo, State, Tracker
from sweeper.trackers.environment import collect_environment
from sweeper.trackers.registry import get_tracker_class

logger = logging.getLogger("sweeper.trackers")

DEFAULT_TRACKERS: tuple[TrackerSpec, ...] = (TrackerSpec("jsonl"),)

# After this many failed calls a tracker is left alone for the rest of the trial (finish still runs).
MAX_ERRORS_PER_TRACKER = 5


def check_tracker_specs(specs: Sequence[TrackerSpec]) -> None:
    """Check that every tracker exists, is installed and knows its options.

    Raises:
        TrackerError: naming the tracker and what is wrong (available names, extra, allowed options).
    """
    for spec in specs:
        get_tracker_class(spec.type).check_options(spec.options)


def tracker_problems(specs: Sequence[TrackerSpec]) -> tuple[list[str], list[str]]:
    """What is wrong with a spec's trackers, without setting any up: ``(errors, notes)``.

    Unknown trackers and options they do not take are errors; a tracker whose library is not
    installed on this machine is only a note, since the agents that run the trials may have it.
    """
    errors: list[str] = []
    notes: list[str] = []
    for spec in specs:
        try:
            get_tracker_class(spec.type).check_options(spec.options)
        except TrackerNotInstalledError as exc:
            notes.append(str(exc))
        except TrackerError as exc:
            errors.append(str(exc))
    return errors, notes


def prepare_trackers(
    specs: Sequence[TrackerSpec], sweep_id: str, sweep_name: str, sweep_dir: str
) -> tuple[TrackerSpec, ...]:
    """Agent side, once per agent: validate the trackers and set up what the sweep's runs share.

    Args:
        specs: The spec's ``sweeper.trackers``; empty means the default ``jsonl`` tracker.
        sweep_id: The sweep's id.
        sweep_name: The sweep's name (MLflow experiment, W&B group, TensorBoard directory).
        sweep_dir: ``<agent cwd>/.sweeper/sweeps/<sweep_id>``.

    Returns:
        The specs with their options filled in, to ship to the workers' :func:`open_trackers`.

    Raises:
        TrackerError: a tracker is unknown, not installed, misconfigured or cannot be set up.
    """
    prepared = []
    for spec in specs or DEFAULT_TRACKERS:
        cls = get_tracker_class(spec.type)
        cls.check_options(spec.options)
        try:
            options = cls.prepare(spec.options, sweep_id, sweep_name, sweep_dir)
        except TrackerError:
            raise
        except Exception as exc:
            raise TrackerError(
                f"tracker {spec.type!r} cannot be set up: {type(exc).__name__}: {exc}"
            ) from exc
        prepared.append(TrackerSpec(spec.type, options))
    return tuple(prepared)


def close_trackers(specs: Sequence[TrackerSpec], state: str) -> list[str]:
    """Agent side, when the sweep ends for this agent: close what :func:`prepare_trackers` opened
    (the MLflow parent run, ...). Never raises.

    Args:
        specs: The specs :func:`prepare_trackers` returned.
        state: The sweep's state (``finished``, ``cancelled``, ``paused``, ...).

    Returns:
        One message per tracker that failed to close (each is also logged).
    """
    errors = []
    for spec in specs:
        try:
            get_tracker_class(spec.type).close_sweep(spec.options, state)
        except Exception as exc:
            errors.append(f"{spec.type}: close the sweep: {type(exc).__name__}: {exc}")
            logger.error("tracker %s failed to close the sweep: %s", spec.type, exc)
    return errors


def open_trackers(specs: Sequence[TrackerSpec], run: RunInfo) -> TrackerSet:
    """Worker side, before the trainer starts: open each tracker's run and record the environment.

    Never raises for a tracker's sake: a tracker that cannot start is left out, its error in
    :attr:`TrackerSet.errors`.

    Example:
        >>> import tempfile
        >>> run = RunInfo("abcdefgh", "demo", 0, sweep_dir=tempfile.mkdtemp())
        >>> with open_trackers([], run) as trackers:
        ...     trackers.log_metrics({"loss": 0.5})
        >>> sorted(trackers.refs())
        ['jsonl']
    """
    trackers = TrackerSet(run)
    try:
        environment = collect_environment(run.code_dir)
    except Exception as exc:  # the environment is nice to have, never a reason to lose the run
        trackers.record_error("environment", "collect", exc)
        environment = {}
    for spec in specs or DEFAULT_TRACKERS:
        try:
            tracker = get_tracker_class(spec.type)(spec.options)
            tracker.start(run, environment)
        except Exception as exc:
            trackers.record_error(spec.type, "start", exc)
            continue
        trackers.add(spec.type, tracker)
    return trackers


class TrackerSet:
    """The trial's open trackers: each call goes to all of them, and a failing one never raises.

    Steps left out (``None``) continue from the last step logged, like W&B's ``_step``.
    Use it as a context manager to guarantee :meth:`finish` (``failed`` on an exception,
    ``pruned`` on :class:`sweeper.TrialPruned`).
    """

    def __init__(self, run: RunInfo) -> None:
        self.run = run
        self.errors: list[str] = []
        self._trackers: list[tuple[str, Tracker]] = []
        self._error_counts: dict[str, int] = {}
        self._next_step = 0
        self._finished = False
        self._noted: dict[str, str] = {}
        # A program's report-forwarding thread and the trainer may log at the same time.
        self._lock = threading.RLock()

    def add(self, name: str, tracker: Tracker) -> None:
        """Add an already started tracker under ``name``."""
        self._trackers.append((name, tracker))

    @property
    def names(self) -> list[str]:
        """The names of the trackers that started."""
        return [name for name, _ in self._trackers]

    def take(self, name: str) -> dict[str, Any] | None:
        """Remove tracker ``name`` before it opened its run and return its options: the trainer
        opens that run itself. None when there is no such tracker or its run is already open."""
        with self._lock:
            for index, (other, tracker) in enumerate(self._trackers):
                if other == name:
                    options = tracker.stand_aside()
                    if options is None:
                        return None
                    del self._trackers[index]
                    return options
        return None

    def note_ref(self, name: str, ref: str) -> None:
        """Record where a run the trainer opened itself is (reported by :meth:`refs`)."""
        with self._lock:
            self._noted[name] = ref

    def record_error(self, name: str, action: str, exc: BaseException) -> None:
        """Record and log a tracker's failure; the trial goes on."""
        message = f"{name}: {action}: {type(exc).__name__}: {exc}"
        self.errors.append(message)
        self._error_counts[name] = self._error_counts.get(name, 0) + 1
        logger.error("tracker %s failed to %s for trial %s: %s", name, action, self.run.run_name, exc)

    def _each(self, action: str, call: Callable[[Tracker], Any], *, finishing: bool = False) -> None:
        with self._lock:
            if self._finished:
                return
            for name, tracker in self._trackers:
                if not finishing and self._error_counts.get(name, 0) >= MAX_ERRORS_PER_TRACKER:
                    continue
                try:
                    call(tracker)
                except Exception as exc:
                    self.record_error(name, action, exc)

    def _step(self, step: int | None) -> int:
        if step is None:
            step = self._next_step
        self._next_step = max(self._next_step, int(step) + 1)
        return int(step)

    def _media_step(self, step: int | None) -> int:
        # Media without a step belong to the last metrics step: they do not advance the count.
        return int(step) if step is not None else max(self._next_step - 1, 0)

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Record metrics at ``step`` (default: the step after the last one)."""
        with self._lock:
            at = self._step(step)
            self._each("log metrics", lambda t: t.log_metrics(metrics, at))

    def log_artifact(self, path: str) -> None:
        """Attach a file or directory to the run."""
        self._each("log an artifact", lambda t: t.log_artifact(str(path)))

    def log_figure(self, name: str, figure: Any, step: int | None = None) -> None:
        """Record a matplotlib figure."""
        with self._lock:
            at = self._media_step(step)
            self._each("log a figure", lambda t: t.log_figure(name, figure, at))

    def log_histogram(self, name: str, values: Sequence[float], step: int | None = None) -> None:
        """Record the distribution of ``values``."""
        with self._lock:
            at = self._media_step(step)
            self._each("log a histogram", lambda t: t.log_histogram(name, values, at))

    def log_table(self, name: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Record a table given as rows (mappings from column to value)."""
        rows = [dict(row) for row in rows]
        self._each("log a table", lambda t: t.log_table(name, rows))

    def finish(self, state: State, summary: Mapping[str, Any] | None = None) -> None:
        """Close every run with the trial's state and final metrics; later calls do nothing."""
        if state not in STATES:
            raise ValueError(f"state must be one of {', '.join(STATES)}, got {state!r}")
        summary = dict(summary or {})
        with self._lock:
            self._each("finish", lambda t: t.finish(state, summary), finishing=True)
            self._finished = True

    def refs(self) -> dict[str, str]:
        """Where each tracker keeps this trial's run: ``{tracker name: run id, path or URL}``."""
        out: dict[str, str] = dict(self._noted)
        for name, tracker in self._trackers:
            try:
                ref = tracker.ref()
            except Exception as exc:
                self.record_error(name, "tell its run", exc)
                continue
            if ref is not None:
                out[name] = ref
        return out

    def __enter__(self) -> TrackerSet:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        from sweeper.errors import TrialPruned

        if exc_type is None:
            self.finish("completed")
        elif issubclass(exc_type, TrialPruned):
            self.finish("pruned")
        else:
            self.finish("failed", {"error": f"{exc_type.__name__}: {exc}"})
