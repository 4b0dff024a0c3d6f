"""The local executor: one trial at a time on this machine, each in a process forked from the agent.

A trainer that calls ``os._exit``, segfaults or gets a fatal signal ends its own trial (failed,
``worker died: ...`` with the exit code or the signal), never the agent; everything the trial
started, ``setsid`` daemons included, ends with it (Linux; see :mod:`sweeper.worker.forked`).
Forking keeps what the in-process executor offered: a trainer function passed through the Python
API (a closure, a lambda) runs as it is, and ``breakpoint()`` works, since the trial process
shares the agent's terminal. What it changes: what a trainer assigns in memory stays in its own
process (write to a file, or return it as a metric, to see it from the agent).

Reports reach the :class:`~sweeper.engine.judge.PruningJudge` in batches, as many as the pipe
holds at each read, and the pruner's "stop" goes back to the trial process without it waiting
(except after one of hyperband's bands, where the next report waits for the band's verdict if it
has not come yet): the trainer's next ``trial.log`` after the decision raises ``TrialPruned``.
Timeouts and cancels SIGTERM the trial (its trainer gets
:class:`~sweeper.worker.forked.TrialTerminated`, so its trackers finish), then SIGKILL it after
:data:`~sweeper.worker.forked.KILL_GRACE_S`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import time
from collections import deque
from dataclasses import dataclass

from sweeper.engine.judge import Persister, PruningJudge, Report
from sweeper.errors import UsageError
from sweeper.worker import zygote
from sweeper.worker.forked import KILL_GRACE_S, ForkedTrial
from sweeper.worker.task import Failure, TrialOutcome, TrialTask
from sweeper.worker.trial import drop_untouched_dir

_logger = logging.getLogger(__name__)

# After its trainer is done, a trial process has this long to exit (its own exit handlers).
_EXIT_GRACE_S = KILL_GRACE_S
# After a SIGTERM, its supervisor has this long to end it and what it left behind.
_SUPERVISOR_GRACE_S = 2 * KILL_GRACE_S + 5.0


@dataclass
class _Running:
    task: TrialTask
    process: ForkedTrial
    started: float
    deadline: float | None
    stop: tuple[Failure, str] | None = None
    done_at: float | None = None  # when its outcome arrived
    kill_at: float | None = None  # when the supervisor gets SIGKILL if it has not answered
    killed: bool = False

    def next_event(self) -> float:
        """When :meth:`LocalExecutor._enforce` has something to do next."""
        times = [] if self.deadline is None else [self.deadline]
        if self.kill_at is not None and not self.killed:
            times.append(self.kill_at)
        if self.done_at is not None and self.kill_at is None:
            times.append(self.done_at + _EXIT_GRACE_S)
        return min(times, default=float("inf"))


class LocalExecutor:
    """One trial at a time, each in a child process of the agent (see the module docstring).

    Raises:
        UsageError: this platform cannot fork, or CUDA is already initialized in this process
            (a forked child cannot use it).
    """

    shipped = False

    def __init__(self, judge: PruningJudge) -> None:
        _check_can_fork()
        zygote.prestart()  # its imports overlap the agent's set-up
        self._judge = judge
        self._queue: deque[TrialTask] = deque()
        self._withdrawn: list[tuple[TrialTask, TrialOutcome]] = []  # cancelled before they started
        self._running: _Running | None = None
        self._next_key = 0
        self._persister = Persister(judge)

    def slots(self) -> int:
        return 1

    def start(self, task: TrialTask) -> None:
        self._queue.append(task)

    def wait(self, timeout: float) -> list[tuple[TrialTask, TrialOutcome]]:
        if self._withdrawn:
            withdrawn, self._withdrawn = self._withdrawn, []
            return withdrawn
        if self._running is None:
            if not self._queue:
                time.sleep(timeout)
                return []
            task = self._queue.popleft()
            now = time.monotonic()
            deadline = None if task.timeout is None else now + task.timeout
            self._running = _Running(task, ForkedTrial.start(task), now, deadline)
        running = self._running
        until = time.monotonic() + timeout
        while True:
            now = time.monotonic()
            self._enforce(running, now)
            reports = running.process.pump(min(until, running.next_event()) - now)
            if reports:
                self._decide(running, reports)
                self._persister.request()  # written on its thread: the next decision waits on no write
            if running.process.ended:
                self._running = None
                # Its processes are gone: a trial directory it left untouched can go too.
                outcome = drop_untouched_dir(running.task, self._outcome(running), keep=False)
                return [(running.task, outcome)]
            if time.monotonic() >= until:
                return []

    def cancel(self, trial_id: int, failure: Failure, reason: str) -> None:
        running = self._running
        if running is not None and running.task.trial_id == trial_id:
            self._stop(running, failure, reason)
        for task in [t for t in self._queue if t.trial_id == trial_id]:
            # It never started: it ends now, with the reason, as a killed trial would.
            self._queue.remove(task)
            self._withdrawn.append((task, TrialOutcome.failed(failure, reason, host=socket.gethostname())))

    def close(self) -> None:
        """Stop the running trial (if any) and wait, within bounds, until its processes are gone."""
        self._queue.clear()
        running, self._running = self._running, None
        if running is not None:
            self._stop(running, Failure.AGENT_STOPPED, "agent stopped")
            while not running.process.ended:
                now = time.monotonic()
                self._enforce(running, now)
                running.process.pump(min(0.2, max(0.0, running.next_event() - now)))
            running.process.close()
        self._persister.close()

    def _stop(self, running: _Running, failure: Failure, reason: str) -> None:
        if running.stop is None:
            running.stop = (failure, reason)
            running.process.terminate()
            running.kill_at = time.monotonic() + _SUPERVISOR_GRACE_S

    def _enforce(self, running: _Running, now: float) -> None:
        if running.deadline is not None and now >= running.deadline:
            running.deadline = None
            timeout = running.task.timeout or 0.0
            self._stop(running, Failure.TIMEOUT, f"timeout: trial ran past sweeper.timeout ({timeout:g} s)")
        if running.done_at is None and running.process.outcome is not None:
            running.done_at = now
        if running.done_at is not None and running.kill_at is None and now >= running.done_at + _EXIT_GRACE_S:
            # Its outcome is in, but the trial process does not exit (an exit handler hangs): end it.
            running.process.terminate()
            running.kill_at = now + _SUPERVISOR_GRACE_S
        if running.kill_at is not None and now >= running.kill_at and not running.killed:
            running.killed = True
            running.process.kill()

    def _decide(self, running: _Running, values: list[tuple[int, float]]) -> None:
        trial_id, prunes = running.task.trial_id, self._judge.prunes
        reports = []
        for step, value in values:
            self._next_key += 1
            reports.append(Report(self._next_key, trial_id, step, value, prunes))
        decisions = self._judge.decide(reports)
        stopped = [report.step for report in reports if decisions.get(report.key)]
        if stopped:
            running.process.prune(stopped[0])
        running.process.judged(len(reports))  # a report waiting for a band's verdict goes on

    def _outcome(self, running: _Running) -> TrialOutcome:
        process = running.process
        elapsed = time.monotonic() - running.started
        if process.left_behind:
            _logger.debug(
                "trial %d left %d process(es) behind; they were ended",
                running.task.number,
                process.left_behind,
            )
        outcome = process.outcome
        if outcome is None:
            outcome = TrialOutcome.failed(
                Failure.WORKER_DIED, process.death(), duration_s=elapsed, host=socket.gethostname()
            )
        stop = running.stop
        if stop is not None and outcome.state != "complete":
            # Stopped by the agent: its reason, with whatever the trial recorded on its way out.
            outcome = dataclasses.replace(
                outcome, state="failed", values=None, failure=stop[0], fail_reason=stop[1]
            )
        return outcome


def _check_can_fork() -> None:
    if not hasattr(os, "fork"):
        raise UsageError(
            "--executor local runs each trial in a process forked from the agent, and this platform "
            "cannot fork; use --executor ray"
        )
