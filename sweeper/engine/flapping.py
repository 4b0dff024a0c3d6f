"""A flapping machine: trials that fail as soon as they start, again and again, stop their agent.

A broken GPU, a full disk or a missing driver makes every trial fail within seconds; an agent on
such a machine would burn through the sweep's configs, marking each one failed. The
:class:`FlapGuard` watches one agent's trials: after ``streak`` failures in a row, each within
``quick_s`` seconds of its start, the agent starts nothing for ``backoff_s`` seconds; if the next
trial fails fast too, it backs off again, twice as long; after ``max_backoffs`` back-offs it stops
with a message saying why. Any trial that completes or is pruned clears the record.

Failures that say nothing about the machine are ignored: timeouts, cancels, and trials lost with
their agent or node (those are re-queued, see :mod:`sweeper.engine.leases`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from sweeper.errors import UsageError
from sweeper.worker.task import TrialOutcome


@dataclass(frozen=True)
class FlapPolicy:
    """When an agent decides its machine is broken.

    Args:
        streak: Fast failures in a row that make the agent back off (0: never).
        quick_s: A failure within this many seconds of the trial's start is fast.
        backoff_s: The first back-off; each next one is twice as long.
        max_backoffs: Back-offs before the agent stops.
    """

    streak: int = 5
    quick_s: float = 10.0
    backoff_s: float = 30.0
    max_backoffs: int = 2

    def __post_init__(self) -> None:
        if self.streak < 0 or self.quick_s <= 0 or self.backoff_s < 0 or self.max_backoffs < 0:
            raise UsageError(
                "flap policy needs streak >= 0, quick_s > 0, backoff_s >= 0 and max_backoffs >= 0, "
                f"got {self}"
            )


class FlapGuard:
    """One agent's record of fast failures; the agent asks :meth:`paused` and :meth:`verdict`.

    Example:
        >>> from sweeper.worker.task import Failure, TrialOutcome
        >>> guard = FlapGuard(FlapPolicy(streak=2, backoff_s=0, max_backoffs=0))
        >>> guard.record(TrialOutcome.failed(Failure.TRAINER, "CUDA error: no device", duration_s=0.5))
        >>> guard.verdict() is None
        True
        >>> guard.record(TrialOutcome.failed(Failure.TRAINER, "CUDA error: no device", duration_s=0.4))
        >>> guard.verdict()[:62]
        'stopped: 2 trials in a row failed within 10 s of starting on t'
        >>> "(last: CUDA error: no device)" in guard.verdict()
        True
    """

    def __init__(self, policy: FlapPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self._clock = clock
        self._streak = 0
        self._failed_fast = 0
        self._backoffs = 0
        self._paused_until = -float("inf")
        self._last_reason = ""
        self._stopped = False

    def record(self, outcome: TrialOutcome) -> None:
        """Note how one of this agent's trials ended."""
        if outcome.state != "failed":
            self._streak = self._failed_fast = self._backoffs = 0
            return
        # A timeout, a cancel or a lost node says nothing about this machine.
        if not self.policy.streak or outcome.failure is None or not outcome.failure.may_blame_machine:
            return
        reason = outcome.fail_reason
        if outcome.duration_s > self.policy.quick_s:
            self._streak = 0
            return
        self._streak += 1
        self._failed_fast += 1
        self._last_reason = (reason or "no reason given").strip().splitlines()[0][:200]
        # Once backed off, one more fast failure is enough: the machine has had its chance.
        if self._streak >= (1 if self._backoffs else self.policy.streak):
            self._streak = 0
            if self._backoffs >= self.policy.max_backoffs:
                self._stopped = True
                return
            self._paused_until = self._clock() + self.policy.backoff_s * 2**self._backoffs
            self._backoffs += 1

    def paused(self) -> bool:
        """Whether the agent should start nothing now."""
        return self._stopped or self._clock() < self._paused_until

    def verdict(self) -> str | None:
        """Why the agent must stop, or None while it may go on."""
        if not self._stopped:
            return None
        return (
            f"stopped: {self._failed_fast} trials in a row failed within {self.policy.quick_s:g} s of "
            f"starting on this machine (last: {self._last_reason}); check the machine, then start "
            "the agent again"
        )
