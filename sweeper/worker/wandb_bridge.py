"""W&B's own API as a trainer's reporting channel: ``wandb.init()`` / ``wandb.log()`` reach the trial.

A trainer written for W&B's agent (a function without arguments, or a ``program:`` script) calls
``wandb.init()``, reads ``wandb.config`` and calls ``wandb.log()``. While such a trainer runs, the
bridge wraps ``wandb.init`` so that the run it returns

- is a real W&B run (offline by default, in the sweep's directory, grouped by sweep, named per trial),
- holds the trial's config, merged with the trainer's ``wandb.init(config=defaults)`` the way W&B
  merges a sweep's values (sweep values win and are locked),
- passes every row the trainer commits (``wandb.log``/``run.log``, with W&B's step/commit rules) to
  the trial as ``trial.log`` would get it, and every ``run.summary[...] = ...`` as a final metric.

In a function trainer the rows go straight to :class:`~sweeper.worker.trial.Trial` (a pruned trial
raises :class:`~sweeper.errors.TrialPruned` out of ``wandb.log``). In a program they go over the
program's channel (:mod:`sweeper.worker.program_child`); the hook that installs the bridge there is
``sweeper/worker/program_site/sitecustomize.py``, which the agent puts first on the program's
``PYTHONPATH``. wandb is imported only when a trainer uses it.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import signal
import sys
import threading
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol

from sweeper.errors import TrainerError, TrialPruned
from sweeper.worker.wandb_history import History, plain_metrics

EXTRA = "sweeper[wandb]"
DEFAULT_PROJECT = "sweeper"
# Exit status of a program stopped by SIGTERM (128 + 15), as a shell reports it.
_SIGTERM_EXIT = 128 + int(signal.SIGTERM)


def takes_no_arguments(function: Callable[..., Any]) -> bool:
    """Whether ``function`` is W&B's form, ``def train():``, rather than ``def train(config, trial):``.

    Worked out once per function (a worker runs the same trainer trial after trial).

    Example:
        >>> takes_no_arguments(lambda: None), takes_no_arguments(lambda config, trial: None)
        (True, False)
    """
    try:
        return _FORMS[function]
    except (KeyError, TypeError):  # not seen yet, or not weakly referenceable
        pass
    form = _takes_no_arguments(function)
    with contextlib.suppress(TypeError):
        _FORMS[function] = form
    return form


# Weak: a trainer closing over a dataset is not kept alive by having run.
_FORMS: weakref.WeakKeyDictionary[Callable[..., Any], bool] = weakref.WeakKeyDictionary()


def _takes_no_arguments(function: Callable[..., Any]) -> bool:
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # a builtin or C callable: call it our way
        return False
    try:
        signature.bind(None, None)
        return False
    except TypeError:
        pass
    try:
        signature.bind()
    except TypeError:
        return False
    return True


def import_wandb(what: str) -> Any:
    """The wandb module, or a :class:`TrainerError` naming the extra that installs it."""
    try:
        import wandb
    except ImportError as exc:
        raise TrainerError(
            f"{what} is written for W&B (wandb.init/wandb.log) but wandb is not installed: "
            f"pip install '{EXTRA}'"
        ) from exc
    return wandb


@dataclass(frozen=True)
class RunDefaults:
    """What a trial's W&B run gets wherever the trainer's own ``wandb.init()`` arguments are silent."""

    run_id: str
    name: str
    group: str
    project: str
    mode: str
    dir: str
    entity: str | None = None
    tags: tuple[str, ...] = ()
    config: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-able form, to send to a program."""
        return {
            "run_id": self.run_id,
            "name": self.name,
            "group": self.group,
            "project": self.project,
            "mode": self.mode,
            "dir": self.dir,
            "entity": self.entity,
            "tags": list(self.tags),
            "config": dict(self.config),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunDefaults:
        """The inverse of :meth:`to_json`."""
        return cls(**{**data, "tags": tuple(data.get("tags", ())), "config": dict(data.get("config", {}))})


def run_defaults(
    *,
    sweep_id: str,
    sweep_name: str,
    number: int,
    attempt: int,
    sweep_dir: str,
    tags: tuple[str, ...],
    config: Mapping[str, Any],
    tracker_options: Mapping[str, Any] | None,
    environ: Mapping[str, str] | None = None,
) -> RunDefaults:
    """The run a trial's ``wandb.init()`` opens.

    The options of the sweep's ``wandb`` tracker (project, entity, mode, dir) apply when it lists
    one; otherwise W&B's own environment variables (``WANDB_PROJECT``, ``WANDB_ENTITY``,
    ``WANDB_MODE``); otherwise project ``sweeper``, offline. Runs land in the sweep's directory,
    ``<sweep dir>/wandb/offline-run-*`` (or the tracker's ``dir``), as the ``wandb`` tracker's do.
    """
    env = os.environ if environ is None else environ
    options = dict(tracker_options or {})
    suffix = f"-{attempt}" if attempt else ""
    return RunDefaults(
        run_id=f"{sweep_id}-{number}{suffix}",
        name=f"{sweep_name}-{number}",
        group=sweep_name,
        project=str(options.get("project") or env.get("WANDB_PROJECT") or DEFAULT_PROJECT),
        mode=str(options.get("mode") or env.get("WANDB_MODE") or "offline"),
        dir=str(options.get("dir") or sweep_dir),
        entity=options.get("entity") or env.get("WANDB_ENTITY") or None,
        tags=(f"sweep:{sweep_id}", *tags),
        config=dict(config),
    )


class Sink(Protocol):
    """Where the bridge delivers what the trainer logs."""

    def report(self, metrics: dict[str, Any], step: int | None) -> None:
        """One committed history row; may raise :class:`TrialPruned`."""
        ...

    def summary(self, metrics: dict[str, Any]) -> None:
        """Values the trainer set in ``run.summary``."""
        ...

    def defaults(self) -> RunDefaults:
        """The run to open (asked once per ``wandb.init()``, before the run exists)."""
        ...

    def opened(self, ref: str) -> None:
        """The run is open; ``ref`` is its directory (offline) or URL (online)."""
        ...


def run_ref(run: Any) -> str:
    """Where a W&B run is: its directory offline (what ``wandb sync`` takes), its URL online."""
    from pathlib import Path

    if getattr(run, "offline", False) or getattr(run, "disabled", False):
        return str(Path(run.dir).parent)
    return str(run.url or run.path)


class _Tap:
    """One W&B run whose logging is also delivered to a sink."""

    def __init__(self, wandb: Any, run: Any, sink: Sink) -> None:
        self.run = run
        self._sink = sink
        self._history = History()
        self._lock = threading.RLock()
        self._log = run.log
        self._finish = run._finish  # what both run.finish() and `with wandb.init() as run:` call
        self._summary_update = run._summary_update_callback
        run.log = self.log
        run._finish = self.finish
        run.summary._set_update_callback(self.summary_update)
        if wandb.run is run:  # wandb.log was bound to the run's own log by wandb.init()
            wandb.log = self.log

    @property
    def finished(self) -> bool:
        return bool(getattr(self.run, "_is_finished", False))

    def log(self, data: dict[str, Any], step: int | None = None, commit: bool | None = None) -> None:
        """``wandb.log`` / ``run.log``: W&B records it, then the committed rows reach the trial."""
        self._log(data, step=step, commit=commit)
        with self._lock:
            rows = self._history.log(data, step, commit)
        self._deliver(rows)

    def finish(self, *args: Any, **kwargs: Any) -> None:
        """The run's end commits the pending row (which may prune the trial) and finishes it."""
        try:
            self.flush()
        finally:
            self._finish(*args, **kwargs)

    def flush(self) -> None:
        with self._lock:
            rows = self._history.close()
        self._deliver(rows)

    def discard(self) -> None:
        """Forget the pending row (W&B still records it): the trial already ended otherwise."""
        with self._lock:
            self._history.close()

    def summary_update(self, record: Any) -> None:
        self._summary_update(record)
        values = {".".join(item.key): item.value for item in getattr(record, "update", ())}
        metrics = plain_metrics(values)
        if metrics:
            self._sink.summary(metrics)

    def _deliver(self, rows: list[tuple[dict[str, Any], int]]) -> None:
        for row, at in rows:
            metrics = plain_metrics(row)
            if metrics:
                self._sink.report(metrics, at)


class Bridge:
    """While active, ``wandb.init()`` opens the trial's run and its logging reaches ``sink``.

    Use as a context manager around the trainer. On the way out it commits what is pending (when
    the trainer ended normally) and finishes any run the trainer left open: exit code 0, or 1 when
    the trainer failed (a pruned trial's run ends with 0, like a run W&B's agent stops).
    """

    def __init__(self, sink: Sink, *, what: str = "this trainer", in_process: bool = True) -> None:
        self._sink = sink
        self._what = what
        self._in_process = in_process
        self._wandb: Any = None  # the wandb module
        self._original: Callable[..., Any] | None = None
        self._taps: list[_Tap] = []

    def __enter__(self) -> Bridge:
        wandb = import_wandb(self._what)
        self._wandb = wandb
        self._original = wandb.init
        wandb.init = self.init
        return self

    def init(self, *args: Any, **kwargs: Any) -> Any:
        """``wandb.init`` for the trial: the trainer's arguments win, except where noted above."""
        assert self._wandb is not None and self._original is not None
        wandb = self._wandb
        try:
            arguments = dict(inspect.signature(self._original).bind_partial(*args, **kwargs).arguments)
        except TypeError:
            return self._original(*args, **kwargs)  # let W&B say what is wrong
        defaults = self._sink.defaults()
        for key, value in (
            ("project", defaults.project),
            ("entity", defaults.entity),
            ("mode", defaults.mode),
            ("dir", defaults.dir),
            ("group", defaults.group),
            ("name", defaults.name),
            # The trial's first run has the trial's id; a second one in the same trial gets W&B's.
            ("id", None if self._taps else defaults.run_id),
            ("job_type", "trial"),
            ("tags", list(defaults.tags)),
            # Trials run one after another in a worker process: a run a trainer left open is
            # finished, and the new run is the global one (wandb.config, wandb.log), as in a script.
            ("reinit", "finish_previous"),
        ):
            if arguments.get(key) is None and value is not None:
                arguments[key] = value
        if self._in_process and arguments.get("settings") is None:
            # The agent's (or the Ray worker's) console is not the trial's to capture.
            arguments["settings"] = wandb.Settings(console="off", silent=True)
        os.makedirs(str(arguments["dir"]), exist_ok=True)
        run = self._original(**arguments)
        # What W&B's Run does with a sweep's values: merged over the trainer's config, and locked.
        run.config.merge_locked(dict(defaults.config), user="sweep", _allow_val_change=True)
        self._taps.append(_Tap(wandb, run, self._sink))
        self._sink.opened(run_ref(run))
        return run

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._wandb is not None
        if self._wandb.init == self.init:
            self._wandb.init = self._original
        pruned: TrialPruned | None = None
        for tap in self._taps:
            if tap.finished:
                continue
            if exc_type is None:
                try:
                    tap.flush()
                except TrialPruned as stop:
                    pruned = pruned or stop
            else:
                tap.discard()
            failed = exc_type is not None and not issubclass(exc_type, TrialPruned)
            with contextlib.suppress(Exception):  # the trial's outcome stands whatever W&B says
                tap.run.finish(exit_code=1 if failed else 0)
        self._taps.clear()
        if pruned is not None:
            raise pruned


# -- function trainers --------------------------------------------------------------------------


class TrialSink:
    """Delivers to a :class:`~sweeper.worker.trial.Trial` in this process."""

    def __init__(self, trial: Any) -> None:
        self._trial = trial

    def report(self, metrics: dict[str, Any], step: int | None) -> None:
        self._trial.log(metrics, step=step)

    def summary(self, metrics: dict[str, Any]) -> None:
        self._trial.absorb_result(metrics)

    def defaults(self) -> RunDefaults:
        trial = self._trial
        return run_defaults(
            sweep_id=trial.sweep_id,
            sweep_name=trial.sweep_name,
            number=trial.number,
            attempt=trial.attempt,
            sweep_dir=trial.sweep_dir,
            tags=trial.tags,
            config=trial.config,
            tracker_options=trial.take_tracker("wandb"),
        )

    def opened(self, ref: str) -> None:
        self._trial.note_tracker_run("wandb", ref)


def run_wandb_function(function: Callable[[], Any], trial: Any) -> Any:
    """Run a W&B-style trainer ``function()`` for ``trial``: its W&B logging is the trial's."""
    name = getattr(function, "__qualname__", repr(function))
    with Bridge(TrialSink(trial), what=f"trainer {name}()"):
        return function()


# -- program trainers ---------------------------------------------------------------------------


class ProgramSink:
    """Delivers over a program's channel to the agent (the program's side of a trial)."""

    def __init__(self, trial: Any) -> None:
        self._trial = trial

    def report(self, metrics: dict[str, Any], step: int | None) -> None:
        if self._trial.reporting_itself:  # the script calls sweeper.init()/trial.log: not twice
            return
        with contextlib.suppress(TrialPruned):
            # As under W&B's agent, the agent stops the program (SIGTERM, then SIGKILL after a grace
            # period); the script goes on until then.
            self._trial.log(metrics, step=step)

    def summary(self, metrics: dict[str, Any]) -> None:
        if not self._trial.reporting_itself:
            self._trial.send({"summary": metrics})

    def defaults(self) -> RunDefaults:
        return RunDefaults.from_json(self._trial.send({"wandb_init": True})["wandb"])

    def opened(self, ref: str) -> None:
        self._trial.send({"wandb_run": ref})
        _exit_on_sigterm()


def _exit_on_sigterm() -> None:
    """Make the agent's SIGTERM (pruned, timed out, cancelled) a SystemExit, so that W&B finishes the
    run at exit: its offline run is whole. Left alone when the program handles SIGTERM itself."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return

    def stop(signum: int, frame: Any) -> None:
        sys.exit(_SIGTERM_EXIT)  # through sys.exit, which W&B watches for the run's exit code

    signal.signal(signal.SIGTERM, stop)


def install_in_program(wandb: Any) -> None:
    """Make this program's ``wandb.init()`` the trial's run (called when the program imports wandb).

    Does nothing unless the program runs for an agent (it holds the agent's channel).
    """
    from sweeper.worker.program_child import agent_trial

    trial = agent_trial()
    if trial is None:
        return
    bridge = Bridge(ProgramSink(trial), what="this program", in_process=False)
    bridge._wandb = wandb
    bridge._original = wandb.init
    wandb.init = bridge.init
    # The run's end: W&B finishes open runs at exit; commit what is pending before it does.
    import atexit

    atexit.register(_flush_at_exit, bridge)


def _flush_at_exit(bridge: Bridge) -> None:
    for tap in bridge._taps:
        if not tap.finished:
            with contextlib.suppress(Exception):
                tap.flush()
