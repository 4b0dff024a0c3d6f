"""Where trials run: the narrow seam between the agent loop and Ray.

An :class:`Executor` says how many trials can run now, starts one, hands back those that ended,
and kills one. :class:`RayExecutor` runs trials on lanes, Ray tasks with the spec's resources that
each run one trial after another (:mod:`sweeper.engine.lanes`);
:class:`~sweeper.engine.local.LocalExecutor` runs them one at a time, each in a process forked
from the agent.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sweeper.engine import ray_start, ray_task
from sweeper.engine.judge import PruningJudge
from sweeper.engine.lanes import LanePool
from sweeper.engine.ray_start import RayStart
from sweeper.engine.report_server import ReportServer
from sweeper.errors import UsageError
from sweeper.spec.model import Resources
from sweeper.worker import program
from sweeper.worker.task import Failure, TrialOutcome, TrialTask

_logger = logging.getLogger(__name__)

_CAPACITY_RECHECK_S = 10.0
# A program trial stops itself at its timeout (SIGTERM, then SIGKILL after the grace: its W&B run
# and trackers finish, its last values arrive); the executor's kill of its worker is the backstop.
_PROGRAM_BACKSTOP_S = program.KILL_GRACE_S + 5.0
START_NOTICE_WAIT_S = 60.0
"""A trial's timeout counts from its trainer's start, which it tells the agent; one that said nothing
this long after its submission (its reports cannot reach the agent) has it counted from then."""


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

    def close(self) -> None:
        """Release what the executor holds (Ray connection, threads)."""
        ...


@dataclass
class _Running:
    task: TrialTask
    started: float
    deadline: float | None


class RayExecutor:
    """Trials run on lanes (:mod:`sweeper.engine.lanes`), Ray tasks with the spec's resources; their
    reports and the lanes' trials go through this process's
    :class:`~sweeper.engine.report_server.ReportServer`.

    Which Ray it uses, and whether the project directory (``ship_dir``) travels to the workers, is
    :mod:`sweeper.engine.ray_start`'s rule; ``start`` is a :class:`RayStart` begun earlier, so that
    Ray starts while the agent sets up. ``count`` bounds the lanes started ahead of the first trials
    (an agent run of that many trials).
    """

    def __init__(
        self,
        resources: Resources,
        judge: PruningJudge,
        *,
        address: str | None = None,
        ship_dir: Path | None = None,
        max_concurrent: int | None = None,
        start: RayStart | None = None,
        count: int | None = None,
    ) -> None:
        import ray

        # Which Ray, and whether the project is shipped: sweeper.engine.ray_start's rule. A start
        # begun earlier (while the sweep was created) is waited for here.
        connection = (start or RayStart.begin(address, ship_dir)).wait()
        self._owns_ray = connection.owned
        self.shipped = connection.shipped
        self._resources = resources
        self._max_concurrent = max_concurrent
        self._options = _task_options(resources)
        self._remote: Any = ray.remote(ray_task.run_lane).options(**self._options)
        self._fresh_workers = False  # see _collect: once a worker's CUDA is bound, a fresh one per lane
        self._wants_decisions = judge.prunes
        self._started_at: dict[int, float] = {}
        self._started_lock = threading.Lock()
        self._running: dict[int, _Running] = {}  # by trial id
        self._cancelled: dict[int, tuple[Failure, str]] = {}
        self._slots = 0
        self._slots_checked = -math.inf
        self._lanes = LanePool(self._submit_lane)
        try:
            if self.slots() == 0:
                needs, has = _describe_needs(self._options), _describe_needs(_cluster_resources())
                raise UsageError(
                    f"no node of the Ray cluster can run a trial: each needs {needs}, the cluster has {has}"
                )
            # On the address Ray knows this node by: the one the cluster's other nodes reach it at.
            host = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]
            self._server = ReportServer(judge, self._note_started, host=host, lanes=self._lanes)
        except BaseException:  # a Ray started for this run goes with it
            if self._owns_ray:
                ray_start.shutdown()
            raise
        # A lane for each slot (no more than the run's ``count`` of trials) joins while the agent
        # sets up: the first wave starts together.
        self._lanes.prestart(self.slots() if count is None else min(count, self.slots()))
        self._channel_warned = False

    def slots(self) -> int:
        now = time.monotonic()
        if now - self._slots_checked >= _CAPACITY_RECHECK_S:
            self._slots = capacity(_cluster_resources(), self._resources)
            if self._max_concurrent is not None:
                self._slots = min(self._slots, self._max_concurrent)
            self._slots_checked = now
        return self._slots

    def start(self, task: TrialTask) -> None:
        self._running[task.trial_id] = _Running(task, time.monotonic(), None)
        self._lanes.start(task)

    def _submit_lane(self, first: TrialTask | None, lane: int, join: bool) -> Any:
        return self._remote.remote(first, lane, self._server.address, self._wants_decisions, join)

    def _note_started(self, trial_ids: list[int]) -> None:
        # Called from the report server's thread: the timeout counts from the trainer's start, not from
        # submission (a trial may queue, or its worker may take seconds to start).
        now = time.monotonic()
        with self._started_lock:
            for trial_id in trial_ids:
                self._started_at.setdefault(trial_id, now)

    def _deadlines(self) -> None:
        now = time.monotonic()
        with self._started_lock:
            for running in self._running.values():
                timeout = running.task.timeout
                started = self._started_at.get(running.task.trial_id)
                if started is None and now - running.started >= START_NOTICE_WAIT_S:
                    # Its start notice never came (its reports cannot reach this agent): counted from
                    # its submission, so that a trainer that hangs there still ends.
                    started = running.started
                if timeout is not None and running.deadline is None and started is not None:
                    backstop = _PROGRAM_BACKSTOP_S if running.task.runs_program else 0.0
                    running.deadline = started + timeout + backstop

    def wait(self, timeout: float) -> list[tuple[TrialTask, TrialOutcome]]:
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
        return [self._collect(task, result) for task, result in self._lanes.wait(wait_s)]

    def _collect(
        self, task: TrialTask, result: TrialOutcome | BaseException
    ) -> tuple[TrialTask, TrialOutcome]:
        running = self._running.pop(task.trial_id)
        with self._started_lock:
            started = self._started_at.pop(task.trial_id, running.started)
        elapsed = time.monotonic() - started
        cancelled = self._cancelled.pop(task.trial_id, None)
        if isinstance(result, BaseException):
            failure, reason = cancelled or _ray_failure(result)
            outcome = TrialOutcome.failed(failure, reason, duration_s=elapsed)
        else:
            outcome = result
            if cancelled is not None and outcome.state == "complete":
                cancelled = None  # it finished before the kill landed: keep its result
        if cancelled is not None and outcome.state != "failed":
            outcome = TrialOutcome.failed(*cancelled, duration_s=elapsed, host=outcome.host)
        if outcome.channel_error is not None and self._wants_decisions and not self._channel_warned:
            self._channel_warned = True
            address = self._server.address
            _logger.warning(
                "trial %d could not report to this agent at %s:%d while it ran (%s): its values were "
                "stored when it ended, too late for the pruner to stop it. The cluster's nodes must "
                "reach this node on its port, as Ray's own processes do (SWEEPER_AGENT_PORTS chooses it)",
                task.number,
                address.host,
                address.port,
                outcome.channel_error,
            )
        if (outcome.gpu_bound or outcome.failure is Failure.MISPLACED) and not self._fresh_workers:
            self._start_fresh_workers()
        return task, outcome

    def _start_fresh_workers(self) -> None:
        """From now on each lane gets a fresh worker, as Ray gives GPU tasks by default: a trial's
        CUDA bound the worker that ran it to its GPUs (:mod:`sweeper.worker.gpu_binding`), so reusing
        workers would put trials on GPUs Ray did not give them. A lane ends after a trial that starts
        CUDA in it, and a bound worker refuses a trial given other GPUs; handed a lane of this
        function's, it exits after it, as every worker now does."""
        import ray

        _logger.info("a trial started CUDA in its Ray worker: each later lane runs in a fresh worker")
        self._fresh_workers = True
        self._remote = ray.remote(max_calls=1, **self._options)(ray_task.run_lane_in_fresh_worker)

    def cancel(self, trial_id: int, failure: Failure, reason: str) -> None:
        if trial_id in self._running and self._lanes.kill(trial_id):
            self._cancelled[trial_id] = (failure, reason)

    def close(self) -> None:
        self._server.close()
        for running in list(self._running.values()):
            self.cancel(running.task.trial_id, Failure.AGENT_STOPPED, "agent stopped")
        if self._owns_ray:
            ray_start.shutdown()


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
