"""Where trials run: the narrow seam between the agent loop and Ray.

An :class:`Executor` says how many trials can run now, starts one, hands back those that ended,
and kills one. :class:`RayExecutor` runs each trial as a Ray task with the spec's resources;
:class:`LocalExecutor` runs them one at a time in the agent's process, so debuggers work.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

from sweeper.engine.broker import BrokerDrain, DirectReporter, PruningJudge, start_broker
from sweeper.engine.broker_reporter import BrokerReporter
from sweeper.errors import UsageError
from sweeper.spec.model import Resources
from sweeper.worker.task import Failure, TrialOutcome, TrialTask
from sweeper.worker.trial import execute_trial

_logger = logging.getLogger(__name__)

# What never travels to the workers with the project directory.
SHIP_EXCLUDES = (
    ".venv",
    "venv",
    ".git",
    ".sweeper",
    "mlruns",
    "wandb",
    "__pycache__",
    "*.pyc",
    ".mypy_cache",
)
SHIP_MAX_FILE_BYTES = 16 * 1024 * 1024
_CAPACITY_RECHECK_S = 10.0


class Executor(Protocol):
    """Runs trial tasks; the agent keeps :meth:`slots` of them in flight."""

    #: Whether the project directory travels with each task (the workers' cwd) rather than being
    #: put on their ``sys.path`` by the trial.
    shipped: bool

    def slots(self) -> int:
        """How many trials can run at once right now (re-checked as the cluster changes)."""
        ...

    def start(self, task: TrialTask) -> None:
        """Start a trial; it runs until it ends, times out or is cancelled."""
        ...

    def wait(self, timeout: float) -> list[tuple[TrialTask, TrialOutcome]]:
        """Trials that ended, waiting up to ``timeout`` seconds for at least one."""
        ...

    def cancel(self, trial_id: int, failure: Failure, reason: str) -> None:
        """Kill a running trial; the next :meth:`wait` hands it back as failed with ``reason``."""
        ...

    def interrupt(self, failure: Failure, reason: str) -> None:
        """Stop, from another thread, a trial that runs inside :meth:`wait` (in-process executors);
        executors whose trials run elsewhere do nothing: their :meth:`cancel` reaches them."""
        ...

    def close(self) -> None:
        """Release what the executor holds (Ray connection, threads)."""
        ...


class TrialInterruptedError(Exception):
    """Raised inside an in-process trainer that runs past its timeout or whose sweep is cancelled."""


class LocalExecutor:
    """One trial at a time in the agent's own process: the trainer runs when :meth:`wait` is called.

    Timeouts and cancels interrupt the trainer with a SIGALRM raised in the main thread, so they
    work when the agent runs in the main thread (the CLI); elsewhere the trial runs to its end.
    """

    def __init__(self, judge: PruningJudge) -> None:
        self._reporter = DirectReporter(judge)
        self._queue: list[TrialTask] = []
        # Reentrant: the SIGALRM handler runs in the main thread, possibly while it holds the lock.
        self._lock = threading.RLock()
        self._armed = False
        self._stop: tuple[Failure, str] | None = None
        self.shipped = False

    def slots(self) -> int:
        return 1

    def start(self, task: TrialTask) -> None:
        self._queue.append(task)

    def wait(self, timeout: float) -> list[tuple[TrialTask, TrialOutcome]]:
        if not self._queue:
            time.sleep(timeout)
            return []
        task = self._queue.pop(0)
        self._stop = None
        started = time.monotonic()
        try:
            with self._interruptible(task.timeout):
                outcome = execute_trial(task, self._reporter)
        except TrialInterruptedError:  # landed outside the trainer (tracker code): same result
            outcome = TrialOutcome.failed(
                Failure.INTERRUPTED, "interrupted", duration_s=time.monotonic() - started
            )
        if self._stop is not None:
            failure, reason = self._stop
            outcome = TrialOutcome.failed(failure, reason, duration_s=outcome.duration_s, host=outcome.host)
        return [(task, outcome)]

    def interrupt(self, failure: Failure, reason: str) -> None:
        """Stop the trial running now (from another thread); it ends as failed with ``reason``."""
        with self._lock:
            if self._armed and self._stop is None:
                self._stop = (failure, reason)
                signal.setitimer(signal.ITIMER_REAL, 0.001)

    def cancel(self, trial_id: int, failure: Failure, reason: str) -> None:
        # A trial only runs inside wait(); a queued one is simply dropped.
        self._queue = [t for t in self._queue if t.trial_id != trial_id]

    def close(self) -> None:
        self._queue.clear()

    @contextmanager
    def _interruptible(self, seconds: float | None) -> Iterator[None]:
        if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
            yield
            return

        def _expire(signum: int, frame: FrameType | None) -> None:
            with self._lock:
                if not self._armed:
                    return  # the trial already ended
                if self._stop is None:
                    self._stop = (Failure.TIMEOUT, f"timeout: trial ran past sweeper.timeout ({seconds:g} s)")
                reason = self._stop[1]
            raise TrialInterruptedError(reason)

        previous = signal.signal(signal.SIGALRM, _expire)
        with self._lock:
            self._armed = True
            if seconds is not None:
                signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            yield
        finally:
            disarmed = False
            while not disarmed:
                # An alarm landing here, before the disarm, would escape the finally: go again.
                with contextlib.suppress(TrialInterruptedError), self._lock:
                    self._armed = False
                    disarmed = True
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


@dataclass
class _Running:
    task: TrialTask
    started: float
    deadline: float | None


class RayExecutor:
    """Each trial is a Ray task with the spec's resources; reports go through a broker actor.

    Connects to Ray unless it is already initialized (then it is reused as configured): a local
    instance by default, ``auto`` or an address for a cluster. When it connects, the project
    directory (``ship_dir``) travels to every worker as the task's working directory.
    """

    def __init__(
        self,
        resources: Resources,
        judge: PruningJudge,
        *,
        address: str | None = None,
        ship_dir: Path | None = None,
        max_concurrent: int | None = None,
    ) -> None:
        import ray

        self._owns_ray = False
        self.shipped = False
        if not ray.is_initialized():
            runtime_env: dict[str, Any] = {}
            if ship_dir is not None:
                runtime_env = {"working_dir": str(ship_dir), "excludes": ship_excludes(ship_dir)}
                self.shipped = True
            # "local" starts a fresh instance, never a cluster some other process made "current".
            quiet_ray_notices()
            ray.init(
                address=address or "local",
                runtime_env=runtime_env or None,
                include_dashboard=False,
                # Ray's INFO lines (packaging, start-up) drown the agent's own progress.
                logging_level=logging.WARNING,
            )
            forward_only_task_output()
            self._owns_ray = True
        self._resources = resources
        self._max_concurrent = max_concurrent
        self._options = _task_options(resources)
        self._remote = ray.remote(_run_in_ray).options(**self._options)
        self._broker = start_broker()
        self._wants_decisions = judge.prunes
        self._drain = BrokerDrain(self._broker, judge, self._note_started)
        self._started_at: dict[int, float] = {}
        self._started_lock = threading.Lock()
        self._running: dict[Any, _Running] = {}
        self._cancelled: dict[int, tuple[Failure, str]] = {}
        self._slots = 0
        self._slots_checked = -math.inf
        if self.slots() == 0:
            raise UsageError(
                f"no node of the Ray cluster can run a trial: each needs {_describe_needs(self._options)}, "
                f"the cluster has {_describe_needs(_cluster_resources())}"
            )

    def slots(self) -> int:
        now = time.monotonic()
        if now - self._slots_checked >= _CAPACITY_RECHECK_S:
            self._slots = capacity(_cluster_resources(), self._resources)
            if self._max_concurrent is not None:
                self._slots = min(self._slots, self._max_concurrent)
            self._slots_checked = now
        return self._slots

    def start(self, task: TrialTask) -> None:
        ref = self._remote.remote(task, self._broker, self._wants_decisions)
        self._running[ref] = _Running(task, time.monotonic(), None)

    def _note_started(self, trial_ids: list[int]) -> None:
        # Called from the drain thread: the timeout counts from the trainer's start, not from
        # submission (a trial may queue, or its worker may take seconds to start).
        now = time.monotonic()
        with self._started_lock:
            for trial_id in trial_ids:
                self._started_at.setdefault(trial_id, now)

    def _deadlines(self) -> None:
        with self._started_lock:
            for running in self._running.values():
                timeout = running.task.timeout
                started = self._started_at.get(running.task.trial_id)
                if timeout is not None and running.deadline is None and started is not None:
                    running.deadline = started + timeout

    def wait(self, timeout: float) -> list[tuple[TrialTask, TrialOutcome]]:
        import ray

        if not self._running:
            time.sleep(timeout)
            return []
        self._deadlines()
        now = time.monotonic()
        for running in self._running.values():
            expired = running.deadline is not None and now >= running.deadline
            if expired and running.task.trial_id not in self._cancelled:
                reason = f"timeout: trial ran past sweeper.timeout ({running.task.timeout:g} s)"
                self.cancel(running.task.trial_id, Failure.TIMEOUT, reason)
        deadlines = [r.deadline - now for r in self._running.values() if r.deadline is not None]
        wait_s = max(0.0, min([timeout, *deadlines]))
        refs = list(self._running)
        ready, _ = ray.wait(refs, num_returns=1, timeout=wait_s)
        if ready:  # take every other trial that ended meanwhile too, without waiting
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        return [self._collect(ref) for ref in ready]

    def _collect(self, ref: Any) -> tuple[TrialTask, TrialOutcome]:
        import ray

        running = self._running.pop(ref)
        with self._started_lock:
            started = self._started_at.pop(running.task.trial_id, running.started)
        elapsed = time.monotonic() - started
        cancelled = self._cancelled.pop(running.task.trial_id, None)
        try:
            outcome: TrialOutcome = ray.get(ref)
        except Exception as exc:
            failure, reason = cancelled or _ray_failure(exc)
            outcome = TrialOutcome.failed(failure, reason, duration_s=elapsed)
        else:
            if cancelled is not None and outcome.state == "complete":
                cancelled = None  # it finished before the kill landed: keep its result
        if cancelled is not None and outcome.state != "failed":
            outcome = TrialOutcome.failed(*cancelled, duration_s=elapsed, host=outcome.host)
        return running.task, outcome

    def cancel(self, trial_id: int, failure: Failure, reason: str) -> None:
        import ray

        for ref, running in self._running.items():
            if running.task.trial_id == trial_id:
                self._cancelled[trial_id] = (failure, reason)
                ray.cancel(ref, force=True)

    def interrupt(self, failure: Failure, reason: str) -> None:
        """Nothing to do: trials run on workers, and the agent's loop cancels them."""

    def close(self) -> None:
        import ray

        self._drain.close()
        for running in list(self._running.values()):
            self.cancel(running.task.trial_id, Failure.AGENT_STOPPED, "agent stopped")
        with contextlib.suppress(Exception):  # already gone with a dead cluster
            ray.kill(self._broker)
        if self._owns_ray:
            ray.shutdown()


def capacity(cluster: Mapping[str, float], resources: Resources) -> int:
    """How many trials with ``resources`` fit in ``cluster`` (Ray resource totals) at once.

    Example:
        >>> capacity({"CPU": 16.0, "GPU": 4.0}, Resources(gpus=0.5, cpus=1))
        8
    """
    needs = _task_options(resources)
    fits = []
    for key, need in _as_ray_resources(needs).items():
        if need > 0:
            fits.append(math.floor(cluster.get(key, 0.0) / need + 1e-9))
    return max(0, min(fits)) if fits else int(cluster.get("CPU", 1.0))


def ship_excludes(root: Path) -> list[str]:
    """Ray ``excludes`` for shipping ``root``: tool and tracker directories, and files too large."""
    excludes = list(SHIP_EXCLUDES)
    skip = {name for name in SHIP_EXCLUDES if "*" not in name}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in skip]
        for name in files:
            path = Path(folder) / name
            try:
                if path.stat().st_size > SHIP_MAX_FILE_BYTES:
                    excludes.append("/" + path.relative_to(root).as_posix())
            except OSError:
                continue
    return excludes


RAY_TOKEN_AUTH_NOTE = (
    "Ray turned on token authentication for the local cluster it started (its default for a new "
    "local cluster; RAY_AUTH_MODE=disabled turns it off)"
)


def quiet_ray_notices() -> None:
    """Keep Ray's start-up notices that do not concern a sweeper user off their terminal.

    - "Directory '.git' is now ignored by default": we exclude those directories ourselves.
    - "Token authentication is enabled for this Ray cluster": Ray's default for the local
      cluster it starts; it becomes one debug line of ours (``sweeper --verbose``).
    """
    logging.getLogger("ray._private.worker").addFilter(_drop_default_excludes_notice)
    logging.getLogger("ray._private.authentication.authentication_token_setup").addFilter(
        _token_auth_enabled_as_ours
    )


def forward_only_task_output() -> None:
    """Of what Ray's workers write, pass on what tasks and actors wrote (the trainers' output) and
    the raylet's notices; drop what a worker that ran nothing wrote, such as the crash dump of an
    idle worker killed as Ray shuts down (one debug line of ours says so, ``sweeper --verbose``).

    Ray forwards worker output through a handler it names ``ray_print_logs``; if a Ray version
    names it otherwise, its own handler stays as it is.
    """
    try:
        from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher
    except ImportError:  # pragma: no cover - Ray's internals moved; keep its default
        return
    found = [handler for name, handler in dispatcher.handlers if name == _RAY_PRINT_LOGS]
    if len(found) != 1 or getattr(found[0], "sweeper_filter", False):
        return
    original = found[0]

    def forward(data: dict[str, Any]) -> None:
        if data.get("task_name") or data.get("actor_name") or data.get("pid") in ("raylet", "autoscaler"):
            original(data)
            return
        lines = [line for line in data.get("lines", []) if line.strip()]
        if lines:
            _logger.debug(
                "a Ray worker that ran no trial (pid %s) wrote %d line(s), not shown; the first: %s",
                data.get("pid"),
                len(lines),
                lines[0].strip(),
            )

    forward.sweeper_filter = True  # type: ignore[attr-defined]
    dispatcher.remove_handler(_RAY_PRINT_LOGS)
    dispatcher.add_handler(_RAY_PRINT_LOGS, forward)


_RAY_PRINT_LOGS = "ray_print_logs"


def _drop_default_excludes_notice(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("Directory %r is now ignored by default")


def _token_auth_enabled_as_ours(record: logging.LogRecord) -> bool:
    if str(record.msg).startswith("Token authentication is enabled for this Ray cluster"):
        _logger.debug(RAY_TOKEN_AUTH_NOTE)
        return False
    return True


def _cluster_resources() -> dict[str, float]:
    import ray

    return dict(ray.cluster_resources())  # type: ignore[no-untyped-call]


def _task_options(resources: Resources) -> dict[str, Any]:
    options: dict[str, Any] = {"num_cpus": resources.cpus, "num_gpus": resources.gpus, "max_retries": 0}
    if resources.memory:
        options["memory"] = resources.memory
    if resources.custom:
        options["resources"] = dict(resources.custom)
    return options


def _as_ray_resources(options: Mapping[str, Any]) -> dict[str, float]:
    out = {"CPU": float(options.get("num_cpus") or 0), "GPU": float(options.get("num_gpus") or 0)}
    if options.get("memory"):
        out["memory"] = float(options["memory"])
    out.update({k: float(v) for k, v in dict(options.get("resources") or {}).items()})
    return out


def _describe_needs(resources: Mapping[str, Any]) -> str:
    shown = _as_ray_resources(resources) if "num_cpus" in resources else dict(resources)
    return ", ".join(f"{k}={v:g}" for k, v in sorted(shown.items()) if v and not k.startswith("node:"))


def _ray_failure(exc: BaseException) -> tuple[Failure, str]:
    import ray

    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, ray.exceptions.NodeDiedError):
        # The machine went away, not the trial's fault: re-queued per sweeper.engine.leases' rule.
        return Failure.NODE_LOST, f"{Failure.NODE_LOST.value}: {type(exc).__name__}: {first}"
    if isinstance(exc, ray.exceptions.WorkerCrashedError):
        return Failure.WORKER_DIED, f"{Failure.WORKER_DIED.value}: {type(exc).__name__}: {first}"
    if isinstance(exc, ray.exceptions.TaskCancelledError):
        return Failure.CANCELLED, "cancelled"
    lines = str(exc).strip().splitlines()
    return Failure.TRAINER, f"{type(exc).__name__}: " + "\n".join(lines[-12:])


def _run_in_ray(task: TrialTask, broker: Any, wants_decisions: bool) -> TrialOutcome:
    """The body of every trial's Ray task."""
    return execute_trial(task, BrokerReporter(broker, wants_decisions))
