"""The worker side of the report channel: a trial's values go to the broker in batches, in order.

``report`` only buffers the value and returns: a sender thread keeps one call in flight to the
:class:`~sweeper.engine.report_broker.ReportBroker`, carrying every value buffered since the previous call,
and takes the pruner's answer back (:meth:`BrokerReporter.stopped`, which the trial checks at each
report). The buffer is bounded: when it is full, ``report`` waits for the call in flight, so a
trainer that logs faster than the agent takes its values runs at the agent's pace, with flat
memory, however many times it logs. :meth:`BrokerReporter.close` flushes what is buffered at the
trial's end and hands back whatever the channel could not deliver, to ride in the trial's outcome.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from sweeper.engine.report_broker import Batch

_logger = logging.getLogger(__name__)

MAX_BUFFERED = 10_000
"""Values a trial may have buffered while a call is in flight; beyond, ``report`` waits for it."""
CLOSE_TIMEOUT_S = 30.0
"""How long a trial's end waits for the agent to take its last values (the rest ride in its outcome)."""
_SLOW_AGENT_S = 30.0


class BrokerReporter:
    """What a trial running in a Ray task reports through: buffered, batched, one call in flight.

    Args:
        broker: The :class:`~sweeper.engine.report_broker.ReportBroker` actor handle.
        wants_decisions: Whether the pruner can stop a trial (if not, the agent only stores values).
        epoch: The agent run's epoch on the broker (:meth:`ReportBroker.reset`).
        max_buffered: The bound on buffered values (see :data:`MAX_BUFFERED`).
        close_timeout: See :data:`CLOSE_TIMEOUT_S`.
    """

    def __init__(
        self,
        broker: Any,
        wants_decisions: bool,
        *,
        epoch: int = 0,
        max_buffered: int = MAX_BUFFERED,
        close_timeout: float = CLOSE_TIMEOUT_S,
    ) -> None:
        self._broker = broker
        self._epoch = epoch
        self._wants = wants_decisions
        self._max = max_buffered
        self._close_timeout = close_timeout
        self._cond = threading.Condition(threading.Lock())
        self._buffer: dict[int, tuple[list[int], list[float]]] = {}  # trial id -> steps, values
        self._buffered = 0
        self._sending: dict[int, tuple[list[int], list[float]]] = {}  # the call in flight
        self._stops: dict[int, tuple[int, float]] = {}  # trial id -> the report the pruner stopped it at
        self._broken: str | None = None  # why the channel failed: values then stay here
        self._closing = False
        self._gave_up = False  # the trial ended without the agent taking its last call
        self._idle = False  # the sender waits for values
        self._thread: threading.Thread | None = None

    def report(self, trial_id: int, step: int, value: float) -> bool:
        """Buffer the value for the next call; wait for the call in flight if the buffer is full.

        Returns False: a decision arrives later, through :meth:`stopped`.
        """
        with self._cond:
            if self._buffered >= self._max and self._broken is None:
                self._wait_for_room()
            steps, values = self._buffer.get(trial_id) or self._buffer.setdefault(trial_id, ([], []))
            steps.append(step)
            values.append(value)
            self._buffered += 1
            if self._thread is None and self._broken is None:
                self._thread = threading.Thread(target=self._send, name="sweeper-reports", daemon=True)
                self._thread.start()
            elif self._idle:
                self._cond.notify_all()
        return False

    def stopped(self, trial_id: int) -> tuple[int, float] | None:
        """``(step, value)`` of the report the pruner stopped the trial at, once its answer arrived."""
        return self._stops.get(trial_id)

    def started(self, trial_id: int) -> None:
        self._broker.started.remote(trial_id, self._epoch)

    def close(self, trial_id: int) -> list[tuple[int, float]]:
        """The trial ends: send what is buffered, wait (bounded) for the agent to take it, and return
        the ``(step, value)`` pairs it did not take, in order (they ride in the trial's outcome).

        The reporter serves one run of a trial: nothing is reported after this.
        """
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            deadline = time.monotonic() + self._close_timeout
            while (self._buffered or self._sending) and self._broken is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    self._gave_up = True
                    _logger.warning(
                        "trial %d: the agent took none of its last reports for %g s; they go with its end",
                        trial_id,
                        self._close_timeout,
                    )
                    break
                self._cond.wait(left)
            kept: list[tuple[int, float]] = []
            for held in (self._sending, self._buffer):  # the call in flight holds the older values
                steps, values = held.get(trial_id, ([], []))
                kept.extend(zip(steps, values, strict=True))
            self._buffer, self._buffered = {}, 0
            thread = self._thread
        if thread is not None and not self._gave_up:
            thread.join(timeout=1.0)
        return kept

    def _wait_for_room(self) -> None:
        """Backpressure: wait until the sender takes the buffer (when the call in flight returns)."""
        waited = 0.0
        while self._buffered >= self._max and self._broken is None:
            if not self._cond.wait(_SLOW_AGENT_S):
                waited += _SLOW_AGENT_S
                _logger.warning("the agent took none of this trial's reports for %g s; waiting", waited)

    def _send(self) -> None:
        """Sender thread: one call at a time, each with everything buffered since the last one."""
        import ray

        while True:
            with self._cond:
                while not self._buffered and not self._closing:
                    self._idle = True
                    self._cond.wait()
                self._idle = False
                if not self._buffered:
                    return  # closing, and everything was taken
                sending, self._buffer, self._buffered = self._buffer, {}, 0
                self._sending = sending
                self._cond.notify_all()  # room in the buffer again
            batches = [Batch(tid, steps, values, self._wants) for tid, (steps, values) in sending.items()]
            try:
                stopped = self._call(ray, batches)
            except Exception as exc:  # the broker is gone (the agent stops): keep the values here
                with self._cond:
                    self._broken = f"{type(exc).__name__}: {exc}"
                    for tid, (steps, values) in self._buffer.items():  # after the call's, in order
                        sending.setdefault(tid, ([], []))
                        sending[tid][0].extend(steps)
                        sending[tid][1].extend(values)
                    self._buffer, self._sending = sending, {}
                    self._buffered = sum(len(steps) for steps, _ in sending.values())
                    self._cond.notify_all()
                _logger.warning("reports could not reach the agent (%s); they go with the trial's end", exc)
                return
            with self._cond:
                for tid in stopped:
                    steps, values = sending[tid]
                    self._stops.setdefault(tid, (steps[-1], values[-1]))
                self._sending = {}
                self._cond.notify_all()

    def _call(self, ray: Any, batches: list[Batch]) -> list[int]:
        """One call to the broker: the trials it stops. Waits as long as the agent takes, unless
        the trial ended meanwhile (its values then went with its end)."""
        ref = self._broker.report.remote(batches, self._epoch)
        began = time.monotonic()
        warned = began
        while True:
            try:
                return list(ray.get(ref, timeout=1.0))
            except ray.exceptions.GetTimeoutError:
                if self._gave_up:
                    return []
                if time.monotonic() - warned >= _SLOW_AGENT_S:
                    warned = time.monotonic()
                    _logger.warning(
                        "the agent has not taken this trial's reports for %.0f s; waiting", warned - began
                    )
