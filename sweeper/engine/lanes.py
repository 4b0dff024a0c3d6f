"""Lanes: Ray tasks that each hold one trial's resources and run trials one after another.

A Ray task per trial paid, for each trial, a submit, the raylet's dispatch, a return through Ray's
object store and a ``ray.wait``: several milliseconds of CPU across the agent, the raylet and the
worker, more than a no-op trial itself, and a Ray leg each way in every hand-over of a slot
(BENCHMARKS.md, sections 1 and 3). A lane pays that once. Its first trial travels as the task's
argument; the lane then joins the agent run's :class:`~sweeper.engine.report_server.ReportServer`,
and each later trial goes to it over that connection, each outcome back the same way.

The pool keeps a lane's state: the trial it runs, whether it has joined, whether it is leaving.
A lane with no trial offers to leave after :data:`~sweeper.engine.ray_task.LANE_IDLE_S` (a paused
or drained sweep frees the cluster's GPUs); the pool answers from the report server's thread, so
a trial is never sent to a lane that went. Ray still says how a lane ended: a crash, a lost node or
a kill fails the trial it held, as it failed that trial's own task before; a lane that could not
reach the agent returns its trial's outcome through Ray.
"""

from __future__ import annotations

import contextlib
import itertools
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from sweeper.worker.task import Failure, TrialOutcome, TrialTask

_RAY_POLL_S = 0.05
"""How often, while waiting, the pool asks Ray which lanes ended (a crash, a kill, a lost node)."""

Ended = tuple[TrialTask, TrialOutcome | BaseException]
"""A trial that ended: its outcome, or the error its lane's Ray task raised."""


@dataclass
class _Lane:
    ref: Any  # the lane's Ray task
    trial: TrialTask | None  # the trial it runs now
    connection: Connection | None = None  # once it joined the report server
    leaving: bool = False  # told to go (idle, or killed): no trial is sent to it


class LanePool:
    """The lanes of one agent run.

    Args:
        submit: Starts a lane: ``submit(first_task, lane_id)`` returns its Ray task's ref.
    """

    def __init__(self, submit: Callable[[TrialTask, int], Any]) -> None:
        self._submit = submit
        self._lanes: dict[int, _Lane] = {}
        self._ids = itertools.count()
        self._lock = threading.Lock()  # the report server's thread changes lanes too
        self._ended: queue.SimpleQueue[Ended] = queue.SimpleQueue()
        self._polled = 0.0

    def start(self, task: TrialTask) -> None:
        """Run ``task`` on an idle lane that joined, else on a new lane."""
        import ray

        payload: bytes = ray.cloudpickle.dumps(task)  # type: ignore[no-untyped-call]  # as Ray pickles a task's argument: functions by value
        with self._lock:
            for lane in self._lanes.values():
                if lane.trial is None and lane.connection is not None and not lane.leaving:
                    try:
                        lane.connection.send(("run", (task.trial_id, payload)))
                    except (OSError, ValueError):  # its connection broke: its task ends by itself
                        lane.leaving = True
                        continue
                    lane.trial = task
                    return
            lane_id = next(self._ids)
            self._lanes[lane_id] = _Lane(self._submit(task, lane_id), task)

    def kill(self, trial_id: int) -> bool:
        """Kill the lane running ``trial_id`` (its worker process with it); False if none runs it."""
        import ray

        with self._lock:
            for lane in self._lanes.values():
                if lane.trial is not None and lane.trial.trial_id == trial_id:
                    lane.leaving = True  # it ends with the kill, whatever it ran by then
                    ray.cancel(lane.ref, force=True)
                    return True
        return False

    def wait(self, timeout: float) -> list[Ended]:
        """The trials that ended, waiting up to ``timeout`` seconds for at least one."""
        deadline = time.monotonic() + timeout
        ended: list[Ended] = []
        while True:
            with contextlib.suppress(queue.Empty):
                while True:
                    ended.append(self._ended.get_nowait())
            if time.monotonic() - self._polled >= _RAY_POLL_S or not ended:
                ended += self._lanes_ended()
            left = deadline - time.monotonic()
            if ended or left <= 0:
                return ended
            with contextlib.suppress(queue.Empty):
                ended.append(self._ended.get(timeout=min(left, _RAY_POLL_S)))

    def _lanes_ended(self) -> list[Ended]:
        """The trials of lanes whose Ray task ended: with what it returned, or the error it raised."""
        import ray

        self._polled = time.monotonic()
        with self._lock:
            refs = {lane.ref: lane_id for lane_id, lane in self._lanes.items()}
        if not refs:
            return []
        ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=0)
        ended: list[Ended] = []
        for ref in ready:
            result: Any
            try:
                result = ray.get(ref)
            except Exception as exc:
                result = exc
            with self._lock:
                lane = self._lanes.pop(refs[ref])
                if lane.trial is None:
                    continue
                if isinstance(result, BaseException):
                    ended.append((lane.trial, result))
                elif result is not None and result[0] == lane.trial.trial_id:
                    ended.append((lane.trial, result[1]))
                else:  # sent, but the lane ended before it read it: the trial never ran
                    reason = f"{Failure.WORKER_DIED.value}: its lane ended before the trial could start"
                    ended.append((lane.trial, TrialOutcome.failed(Failure.WORKER_DIED, reason)))
        return ended

    # -- what the report server's thread tells the pool ---------------------------------------------

    def joined(self, lane_id: int, connection: Connection) -> None:
        """Lane ``lane_id`` connected: trials can be sent to it once its first one ends."""
        with self._lock:
            lane = self._lanes.get(lane_id)
            if lane is not None:
                lane.connection = connection

    def handed_back(self, lane_id: int, trial_id: int, outcome: TrialOutcome) -> None:
        """Lane ``lane_id`` ran ``trial_id`` to ``outcome``; it waits for its next trial."""
        with self._lock:
            lane = self._lanes.get(lane_id)
            if lane is None or lane.trial is None or lane.trial.trial_id != trial_id:
                return  # not the trial it holds: nothing of ours
            task, lane.trial = lane.trial, None
        self._ended.put((task, outcome))

    def leaving(self, lane_id: int, connection: Connection) -> None:
        """Lane ``lane_id`` has been idle a while and offers to leave: let it go unless a trial is on
        its way to it (it then runs that one)."""
        with self._lock:
            lane = self._lanes.get(lane_id)
            if lane is not None and lane.trial is not None:
                return
            if lane is not None:
                lane.leaving = True
            with contextlib.suppress(OSError, ValueError):
                connection.send(("exit", None))

    @property
    def size(self) -> int:
        """How many lanes there are (joined or not, leaving or not)."""
        with self._lock:
            return len(self._lanes)
