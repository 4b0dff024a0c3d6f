"""Lanes: Ray tasks that each hold one trial's resources and run trials one after another.

A Ray task per trial paid, for each trial, a submit, the raylet's dispatch, a return through Ray's
object store and a ``ray.wait``: several milliseconds of CPU across the agent, the raylet and the
worker, more than a no-op trial itself, and a Ray leg each way in every hand-over of a slot
(BENCHMARKS.md, sections 1 and 3). A lane pays that once. It joins the agent run's
:class:`~sweeper.engine.report_server.ReportServer`, and each trial goes to it over that
connection, each outcome back the same way (a lane started for a trial takes that one as its
task's argument).

The agent run starts a lane for each slot at once (no more than its count of trials), without a
trial, so that the lanes join while the agent sets up and asks its first trials: the first wave
waits for no Ray dispatch of its own. A trial given to a lane that has not joined yet goes to it
when it joins.

The pool keeps a lane's state: the trial it runs, whether it has joined, whether it is leaving.
A lane with no trial offers to leave after :data:`~sweeper.engine.ray_task.LANE_IDLE_S` (a paused
or drained sweep frees the cluster's GPUs); the pool answers from the report server's thread, so
a trial is never sent to a lane that went. Ray still says how a lane ended: a crash, a lost node or
a kill fails the trial it held, as it failed that trial's own task before; a lane that could not
reach the agent returns its trial's outcome through Ray, and the lanes after it do not try (a port
a firewall drops would cost each of them the connect's bound): each runs one trial, as a task.

The messages, pickled by :mod:`multiprocessing.connection` after its key check: a lane sends
``("lane", lane_id)`` as it joins, ``("ended", (lane_id, trial_id, outcome))`` and
``("leaving", lane_id)``; the agent sends ``("run", (trial_id, task pickled by cloudpickle))``
(a trainer function travels by value, as in a Ray task's argument) and ``("exit", None)``.
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
    sent: bool = True  # whether ``trial`` reached it (else it waits for the lane to join)


class LanePool:
    """The lanes of one agent run.

    Args:
        submit: Starts a lane: ``submit(first_task, lane_id, join)`` returns its Ray task's ref (a
            lane started with no first task joins and waits for one; one told not to join runs
            its first task only).
    """

    def __init__(self, submit: Callable[[TrialTask | None, int, bool], Any]) -> None:
        self._submit = submit
        self.joins = True  # whether lanes reach the agent: False once one could not
        self._lanes: dict[int, _Lane] = {}
        self._ids = itertools.count()
        self._lock = threading.Lock()  # the report server's thread changes lanes too
        self._ended: queue.SimpleQueue[Ended] = queue.SimpleQueue()
        self._polled = 0.0

    def prestart(self, count: int) -> None:
        """Start ``count`` lanes without a trial: they join and wait for one (or leave, idle)."""
        with self._lock:
            for _ in range(count):
                lane_id = next(self._ids)
                self._lanes[lane_id] = _Lane(self._submit(None, lane_id, True), None)

    def start(self, task: TrialTask) -> None:
        """Run ``task`` on an idle lane that joined, else on one still joining, else on a new lane."""
        with self._lock:
            joining = None
            for lane in self._lanes.values():
                if lane.trial is not None or lane.leaving:
                    continue
                if lane.connection is None:
                    if self.joins:  # else it will not join: it ends by itself
                        joining = joining or lane
                elif self._send(lane, task):
                    return
            if joining is not None:  # sent when it joins (see joined)
                joining.trial, joining.sent = task, False
                return
            self._new_lane(task)

    def _send(self, lane: _Lane, task: TrialTask) -> bool:
        """Send ``task`` to a lane that joined; False (and the lane goes) if its connection broke."""
        import ray

        assert lane.connection is not None
        # As Ray pickles a task's argument: functions by value, with cloudpickle.
        payload: bytes = ray.cloudpickle.dumps(task)  # type: ignore[no-untyped-call]
        try:
            lane.connection.send(("run", (task.trial_id, payload)))
        except (OSError, ValueError):  # its task ends by itself (it reads the end of the connection)
            lane.leaving = True
            return False
        lane.trial, lane.sent = task, True
        return True

    def _new_lane(self, task: TrialTask) -> None:
        lane_id = next(self._ids)
        self._lanes[lane_id] = _Lane(self._submit(task, lane_id, self.joins), task)

    def kill(self, trial_id: int) -> bool:
        """Kill the lane running ``trial_id`` (its worker process with it); False if none runs it."""
        import ray

        with self._lock:
            for lane in self._lanes.values():
                if lane.trial is None or lane.trial.trial_id != trial_id:
                    continue
                if not lane.sent:  # it waits for its lane to join: it never starts
                    task, lane.trial = lane.trial, None
                    self._ended.put((task, RuntimeError("cancelled before it started")))
                    return True
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
            if time.monotonic() - self._polled >= _RAY_POLL_S:
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
                if lane.connection is None and not isinstance(result, BaseException):
                    self.joins = False  # it ended well without joining: it could not reach the agent
                if lane.trial is None:
                    continue
                if not lane.sent:  # it never joined (it could not reach the agent): a lane of its own
                    self._new_lane(lane.trial)
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
        """Lane ``lane_id`` connected: the trial waiting for it goes now, the next ones once it ends."""
        with self._lock:
            lane = self._lanes.get(lane_id)
            if lane is None:
                return
            lane.connection = connection
            if lane.trial is not None and not lane.sent:
                self._send(lane, lane.trial)

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
