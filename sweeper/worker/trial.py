"""One trial as the trainer sees it, and the worker-side code that runs it.

:func:`execute_trial` runs a :class:`~sweeper.worker.task.TrialTask` wherever the executor put it (a
Ray worker or a process forked from the agent) and returns a :class:`~sweeper.worker.task.TrialOutcome`.
Workers never touch the storage: reports of the first objective metric go through a
:class:`~sweeper.worker.task.Reporter` (in batches to a Ray actor on the agent's node, or a pipe to
the agent), which answers whether the pruner stops the trial.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import logging
import os
import socket
import sys
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeGuard

from sweeper.errors import AgentExit, TrainerError, TrialPruned
from sweeper.plain import finite, stored_metrics
from sweeper.redaction import without_secrets
from sweeper.worker.program import TrialTimeout
from sweeper.worker.task import (
    BufferingReporter,
    Failure,
    NullReporter,
    OutcomeState,
    Reporter,
    TrainerFunction,
    TrialOutcome,
    TrialTask,
)
from sweeper.worker.workdir import make_trial_dir, release_trial_dir, working_in

if TYPE_CHECKING:
    from sweeper.trackers.tracker_set import TrackerSet

_TRACKER_STATES: dict[OutcomeState, Literal["completed", "pruned", "failed"]] = {
    "complete": "completed",
    "pruned": "pruned",
    "failed": "failed",
}
_REASON_TAIL_LINES = 12
VERDICT_WAIT_S = 5.0
"""How long the report after one of hyperband's bands waits for the verdict on the band's report; past
it the trial goes on, and a stop decided later is raised at a later report, as anywhere else."""
_logger = logging.getLogger(__name__)


class Trial:
    """The trial a function trainer receives: its config, where to checkpoint, and ``log``.

    Example:
        >>> import tempfile
        >>> from sweeper.worker.task import Objective, TrialTask
        >>> task = TrialTask("abcdefgh", "demo", 0, 0, {"lr": 0.1}, {"lr": 0.1},
        ...                  (Objective("loss"),), tempfile.mkdtemp(), tempfile.mkdtemp())
        >>> trial = Trial(task)
        >>> trial.log({"loss": 0.5})
        >>> trial.log({"loss": 0.25})
        >>> trial.values()
        (0.25,)
    """

    def __init__(
        self, task: TrialTask, reporter: Reporter | None = None, trackers: TrackerSet | None = None
    ) -> None:
        self._task = task
        self._reporter: Reporter = reporter or NullReporter()
        self._buffering = reporter if _buffers(reporter) else None
        self._trackers = trackers
        self._best: list[float | None] = [None] * len(task.objectives)
        self._non_finite: dict[str, str] = {}  # objective -> a non-finite value it got, for the reason
        self._reports = 0
        self._stop: str | None = None  # why the pruner stopped the trial, raised at its next report
        self._unreported: list[tuple[int, float]] = []  # values logged after the stop, not reported
        self._summary: dict[str, Any] = {}
        self._taken: dict[str, dict[str, Any] | None] = {}
        self._checkpoint_dir: Path | None = None

    @property
    def checkpoint_dir(self) -> Path:
        """Where to checkpoint: it survives retries of the same trial. Created when first asked for,
        so a trial that never checkpoints leaves no directory."""
        if self._checkpoint_dir is None:
            path = Path(self._task.checkpoint_dir)
            path.mkdir(parents=True, exist_ok=True)
            self._checkpoint_dir = path
        return self._checkpoint_dir

    @property
    def number(self) -> int:
        """The Optuna trial number."""
        return self._task.number

    @property
    def sweep_id(self) -> str:
        """The sweep's id."""
        return self._task.sweep_id

    @property
    def sweep_name(self) -> str:
        """The sweep's name."""
        return self._task.sweep_name

    @property
    def config(self) -> dict[str, Any]:
        """The nested config: constants included, natural types."""
        return dict(self._task.config)

    @property
    def params(self) -> dict[str, Any]:
        """The flat Optuna params (dotted names), constants excluded."""
        return dict(self._task.params)

    @property
    def attempt(self) -> int:
        """0 for the first attempt, 1 for the first retry, ..."""
        return self._task.attempt

    @property
    def sweep_dir(self) -> str:
        """The sweep's local directory (``<agent dir>/.sweeper/sweeps/<sweep id>``)."""
        return self._task.sweep_dir

    @property
    def tags(self) -> tuple[str, ...]:
        """The sweep's tags."""
        return self._task.tags

    def take_tracker(self, name: str) -> dict[str, Any] | None:
        """The options of tracker ``name``, which stands aside for this trial: the trainer opens the
        run itself (a W&B-style trainer's ``wandb.init()``). None when the sweep does not list it
        or it has already opened its run. Later calls return the same options."""
        if name not in self._taken:
            self._taken[name] = self._trackers.take(name) if self._trackers is not None else None
        return self._taken[name]

    def note_tracker_run(self, name: str, ref: str) -> None:
        """Record where the trainer's own run for tracker ``name`` is (shown with the trial)."""
        if self._trackers is not None:
            self._trackers.note_ref(name, ref)

    def log(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Record metrics (W&B's ``wandb.log``); forwarded to the trackers.

        A stop the pruner decides at one report is raised at the trial's first report after the
        decision reached it, as W&B's agent stops a run only once the run goes on after the
        decision: a trial that reports through to the end of its budget completes, with everything
        it logged. Reports travel in the background, so ``log`` returns at once; it waits only when
        the trial is far ahead of the agent (a bounded number of values not yet taken), and at the
        report after one of hyperband's bands if the verdict on the band's report has not arrived
        yet (at most :data:`VERDICT_WAIT_S`): a trainer that steps faster than the agent decides is
        stopped there all the same, and one whose steps take longer than a decision seldom waits.

        Raises:
            TrialPruned: the pruner stopped this trial; let it propagate out of the trainer.
        """
        metrics = dict(metrics)
        if self._trackers is not None:
            self._trackers.log_metrics(metrics, step)
        self._summary.update(metrics)
        first = self._observe(metrics)
        if first is None:
            return
        self._reports += 1
        at = int(step) if step is not None else self._reports
        if self._stop is None and self._reports - 1 in self._task.verdict_at:
            # The report after a band: the verdict on the band's report is awaited if it has not
            # arrived yet, so that a trainer stepping faster than the agent decides is stopped here.
            self._reporter.settle(self._task.trial_id, VERDICT_WAIT_S)
        if self._stop is None and self._buffering is not None:
            decided = self._buffering.stopped(self._task.trial_id)
            if decided is not None:
                self._stop = self._pruned(*decided)
        if self._stop is not None:
            self._unreported.append((at, first))
            raise TrialPruned(self._stop)
        try:
            stopped = self._reporter.report(self._task.trial_id, at, first)
        except TrialPruned as exc:  # a channel that raises the stop itself (the local executor's pipe)
            self._stop = str(exc)
            self._unreported.append((at, first))  # not reported: it rides in the outcome
            raise
        if stopped:
            self._stop = self._pruned(at, first)

    def _pruned(self, step: int, value: float) -> str:
        return f"trial {self.number} pruned at step {step} ({self._task.objectives[0].name}={value})"

    def log_artifact(self, path: str | os.PathLike[str]) -> None:
        """Attach a file or directory to the trial's tracker runs."""
        if self._trackers is not None:
            self._trackers.log_artifact(str(path))

    def log_figure(self, name: str, figure: Any, step: int | None = None) -> None:
        """Record a matplotlib figure in the trial's tracker runs."""
        if self._trackers is not None:
            self._trackers.log_figure(name, figure, step)

    def log_histogram(self, name: str, values: Sequence[float], step: int | None = None) -> None:
        """Record the distribution of ``values`` in the trial's tracker runs."""
        if self._trackers is not None:
            self._trackers.log_histogram(name, values, step)

    def log_table(self, name: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Record a table (rows of column -> value) in the trial's tracker runs."""
        if self._trackers is not None:
            self._trackers.log_table(name, rows)

    def values(self) -> tuple[float | None, ...]:
        """The best finite value of each objective seen so far (None: none yet)."""
        return tuple(self._best)

    def unreported(self) -> tuple[tuple[int, float], ...]:
        """(step, value) of the reports of the first objective metric made after the pruner's stop,
        which the reporter never got (the trial's outcome carries them)."""
        return tuple(self._unreported)

    def non_finite(self) -> dict[str, str]:
        """A non-finite value each objective metric got (NaN, inf, a string), if any."""
        return dict(self._non_finite)

    def summary(self) -> dict[str, Any]:
        """The last value of every metric logged or returned (W&B's run summary)."""
        return dict(self._summary)

    def absorb_result(self, result: Any) -> None:
        """Take the trainer's return value: a number is the first objective, a mapping final metrics."""
        if result is None:
            return
        if isinstance(result, Mapping):
            metrics = dict(result)
        elif isinstance(result, (int, float)) and not isinstance(result, bool):
            if not self._task.objectives:
                return
            metrics = {self._task.objectives[0].name: float(result)}
        else:
            try:
                if isinstance(result, bool):  # True is not a loss of 1.0
                    raise TypeError
                metrics = {self._task.objectives[0].name: float(result)} if self._task.objectives else {}
            except (TypeError, ValueError):
                kind = type(result).__name__
                raise TypeError(
                    f"a trainer must return a number, a mapping of metrics or None, got {kind}"
                ) from None
        self._summary.update(metrics)
        self._observe(metrics)

    def _observe(self, metrics: Mapping[str, Any]) -> float | None:
        """Update the best values; return the first objective's finite value if present."""
        first: float | None = None
        for index, objective in enumerate(self._task.objectives):
            raw = metrics.get(objective.name)
            value = finite(raw)
            if value is None:
                if raw is not None:
                    self._non_finite.setdefault(objective.name, repr(raw)[:50])
                continue
            best = self._best[index]
            if best is None or objective.better(value, best):
                self._best[index] = value
            if index == 0:
                first = value
        return first


def load_trainer(path: str) -> TrainerFunction:
    """The function named by ``module:function`` (dotted attributes allowed after the colon).

    Raises:
        TrainerError: the path is malformed, the module cannot be imported or has no such function.
    """
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise TrainerError(f"trainer must be 'module:function', got {path!r}")
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise TrainerError(
            f"cannot import trainer module {module_name!r}: {type(exc).__name__}: {exc}"
        ) from exc
    for part in attr.split("."):
        if not hasattr(target, part):
            raise TrainerError(f"trainer module {module_name!r} has no attribute {attr!r}")
        target = getattr(target, part)
    if not callable(target):
        raise TrainerError(f"trainer {path!r} is not callable")
    return target  # type: ignore[no-any-return]


def import_trainer(path: str, project: str | os.PathLike[str]) -> TrainerFunction:
    """Load ``module:function`` as the agent and the workers do: with the project directory on
    ``sys.path``, so ``trainers.digits:train`` names a module of the project.

    Raises:
        TrainerError: as :func:`load_trainer`.
    """
    entry = str(project)
    if entry not in sys.path:
        sys.path.insert(0, entry)
    return load_trainer(path)


def execute_trial(task: TrialTask, reporter: Reporter | None = None) -> TrialOutcome:
    """Run one trial to its end and say how it ended; never raises for the trainer's sake.

    A trainer that raises, returns NaN or never reports a finite value of an objective fails,
    with the reason kept; :class:`~sweeper.errors.TrialPruned` makes a pruned trial. The trainer
    (and every process it starts) runs without the agent's secrets in its environment.
    """
    with without_secrets():
        return _execute(task, reporter)


def _execute(task: TrialTask, reporter: Reporter | None) -> TrialOutcome:
    started = time.monotonic()
    host = socket.gethostname()
    if task.workdir and task.workdir not in sys.path:
        sys.path.insert(0, task.workdir)
    trackers = _open_trackers(task)
    trial = Trial(task, reporter, trackers)
    if reporter is not None and task.timeout is not None:
        # The notice serves the timeout only (counted from here); on Ray it goes over the lane's
        # connection to the agent, which the trial's reports take too.
        reporter.started(task.trial_id)
    state: OutcomeState = "failed"
    reason: str | None = None
    failure: Failure | None = None
    values: tuple[float, ...] | None = None
    directory = _trial_dir(task)
    try:
        with working_in(directory, _project(task)) if directory else contextlib.nullcontext():
            result = _run_trainer(task, trial, directory)
        trial.absorb_result(result)
        values, reason = _final_values(task, trial)
        state = "complete" if reason is None else "failed"
        failure = None if reason is None else Failure.TRAINER
    except TrialPruned:
        state = "pruned"
        best = trial.values()
        values = tuple(v for v in best if v is not None) if all(v is not None for v in best) else None
    except AgentExit:
        raise  # the agent itself is exiting (SIGTERM): not this trial's doing
    except (Exception, SystemExit) as exc:  # a trainer's sys.exit() ends its trial, not the agent
        reason = describe_error(exc)
        failure = Failure.TIMEOUT if isinstance(exc, TrialTimeout) else Failure.TRAINER
    undelivered = _close_reporter(reporter, task.trial_id)
    summary = trial.summary()
    tracker_runs: dict[str, str] = {}
    tracker_errors: tuple[str, ...] = ()
    if trackers is not None:
        trackers.finish(_TRACKER_STATES[state], stored_metrics(summary))
        tracker_runs = trackers.refs()
        tracker_errors = tuple(trackers.errors)
    return TrialOutcome(
        state=state,
        values=values if state != "failed" else None,
        metrics=stored_metrics(summary),
        fail_reason=reason,
        failure=failure,
        duration_s=time.monotonic() - started,
        host=host,
        tracker_runs=tracker_runs,
        tracker_errors=tracker_errors,
        intermediate=(*undelivered, *trial.unreported()),
        trial_dir=str(directory) if directory else None,
    )


def drop_untouched_dir(task: TrialTask, outcome: TrialOutcome, *, keep: bool) -> TrialOutcome:
    """The outcome without its ``trial_dir`` if the trainer left nothing of its own there, which
    is then gone (kept by this process for its next trial with ``keep``, else removed).

    Called once the trial's processes have ended: one still running could write there later.
    """
    if outcome.trial_dir is None:
        return outcome
    if not release_trial_dir(Path(outcome.trial_dir), _project(task), keep=keep):
        return outcome
    return dataclasses.replace(outcome, trial_dir=None)


_BUFFERS: dict[type, bool] = {}


def _buffers(reporter: Reporter | None) -> TypeGuard[BufferingReporter]:
    """Whether ``reporter`` is a :class:`BufferingReporter`, worked out once per type: a protocol's
    ``isinstance`` looks up each of its members, twice a trial."""
    kind = type(reporter)
    known = _BUFFERS.get(kind)
    if known is None:
        known = _BUFFERS[kind] = isinstance(reporter, BufferingReporter)
    return known


def _close_reporter(reporter: Reporter | None, trial_id: int) -> list[tuple[int, float]]:
    """Flush a buffering reporter at the trial's end: the values it could not deliver."""
    if not _buffers(reporter):
        return []  # it delivered each value as it was reported
    try:
        return reporter.close(trial_id)
    except Exception:  # the values it still held are lost: say so, the trial's result stands
        _logger.exception("trial %d: the report channel failed to flush its last values", trial_id)
        return []


def _trial_dir(task: TrialTask) -> Path | None:
    """The trial's working directory on this node (created), or None to stay in the cwd."""
    if task.trial_dir is None:
        return None
    return make_trial_dir(Path(task.trial_dir), task.sweep_id, task.number, _project(task))


def _project(task: TrialTask) -> Path:
    """The project directory as this worker sees it: the agent's, or the copy Ray shipped (the cwd)."""
    return Path(task.workdir) if task.workdir else Path.cwd()


def _run_trainer(task: TrialTask, trial: Trial, directory: Path | None) -> Any:
    function = load_trainer(task.trainer) if isinstance(task.trainer, str) else task.trainer
    if callable(function):
        from sweeper.worker.wandb_bridge import run_wandb_function, takes_no_arguments

        if takes_no_arguments(function):  # W&B's form: def train(): run = wandb.init(); ...
            return run_wandb_function(function, trial)
        return function(dict(task.config), trial)
    if task.runs_program:
        from sweeper.worker.program import run_program

        # In the trial's directory (the project's files linked in), with its logs and param files.
        workdir = directory or _project(task)
        run_program(
            task.program, task.command, trial, timeout=task.timeout, workdir=workdir, files_dir=directory
        )
        return None
    raise TrainerError("the sweep names no trainer: set sweeper.trainer or program, or pass a trainer")


def _final_values(task: TrialTask, trial: Trial) -> tuple[tuple[float, ...] | None, str | None]:
    if not task.objectives:
        # A sweep without a metric still completes its trials; the value carries no meaning.
        return (0.0,), None
    best = trial.values()
    missing = [o.name for o, v in zip(task.objectives, best, strict=True) if v is None]
    if missing:
        got = trial.non_finite()
        seen = [f"{name}={got[name]}" for name in missing if name in got]
        return None, f"logged or returned no finite value of {', '.join(missing)}" + (
            f" (got {', '.join(seen)})" if seen else ""
        )
    return tuple(v for v in best if v is not None), None


def _open_trackers(task: TrialTask) -> TrackerSet | None:
    from sweeper.trackers.base import RunInfo
    from sweeper.trackers.tracker_set import open_trackers

    run = RunInfo(
        sweep_id=task.sweep_id,
        sweep_name=task.sweep_name,
        trial_number=task.number,
        attempt=task.attempt,
        config=dict(task.config),
        params=dict(task.params),
        tags=task.tags,
        sweep_dir=task.sweep_dir,
        code_dir=task.workdir,
    )
    return open_trackers(task.trackers, run)


def describe_error(exc: BaseException) -> str:
    """``Type: message`` plus the tail of the traceback, enough to find the failing line."""
    head = f"{type(exc).__name__}: {exc}".strip()
    tail = traceback.format_exception(type(exc), exc, exc.__traceback__)
    lines = "".join(tail).rstrip().splitlines()[-_REASON_TAIL_LINES:]
    return head + "\n" + "\n".join(lines)
