"""The middle of the report channel: the Ray actor that holds trials' batches until the agent takes them.

A module of its own, importing neither Optuna nor NumPy: every Ray worker that runs a trial
deserializes the actor's handle, and with it imports the module that defines the actor's class
(the agent's :mod:`sweeper.engine.broker` imports Optuna: a quarter of a second of a fresh worker's
first trial). The protocol is described in :mod:`sweeper.engine.broker`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

DRAIN_WAIT_S = 0.2
"""How long a drain waits for the first call or start notice before it returns empty-handed."""


@dataclass(frozen=True)
class Batch:
    """A trial's values reported since its previous batch, in the order reported."""

    trial_id: int
    steps: list[int]
    values: list[float]
    wants_decision: bool = True


class ReportBroker:
    """Ray actor (async): holds the trials' batches until the agent drains them, and their answers.

    A call of :meth:`report` is answered once the agent took its batches and decided on them: with
    one call in flight per trial, the broker holds at most one batch per running trial.
    """

    def __init__(self) -> None:
        import asyncio

        self._pending: list[tuple[int, list[Batch]]] = []
        self._started: list[int] = []
        self._futures: dict[int, asyncio.Future[list[int]]] = {}
        self._next_key = 0
        self._arrived = asyncio.Event()
        self._woken = False
        self._epoch = 0

    async def reset(self) -> int:
        """Serve a new agent run: forget the last one's calls (answered: nothing stops) and notices.

        Returns the run's epoch: its trials send it with each call, and a call or notice of an earlier
        epoch (a trial of a run that ended, still sending) is answered at once and never drained.
        """
        for future in self._futures.values():
            if not future.done():
                future.set_result([])
        self._pending, self._started = [], []
        self._woken = False
        self._arrived.clear()
        self._epoch += 1
        return self._epoch

    async def report(self, batches: list[Batch], epoch: int = 0) -> list[int]:
        """Queue a call's batches; once the agent decided on them, answer the trials it stops."""
        import asyncio

        if epoch != self._epoch:
            return []  # a trial of an agent run that ended: nobody decides on it any more
        key = self._next_key
        self._next_key += 1
        future: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self._futures[key] = future
        self._pending.append((key, batches))
        self._arrived.set()
        try:
            return await future
        finally:
            self._futures.pop(key, None)

    async def started(self, trial_id: int, epoch: int = 0) -> None:
        """Note that a trial's trainer starts now (fire and forget)."""
        if epoch != self._epoch:
            return
        self._started.append(trial_id)
        self._arrived.set()

    async def drain(self, max_wait: float = DRAIN_WAIT_S) -> tuple[list[tuple[int, list[Batch]]], list[int]]:
        """Every pending call and start notice, waiting up to ``max_wait`` s for the first one."""
        import asyncio

        if not self._pending and not self._started and not self._woken:
            self._arrived.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), max_wait)
        pending, self._pending = self._pending, []
        started, self._started = self._started, []
        return pending, started

    async def wake(self) -> None:
        """End a drain's wait now, and every later drain's (the agent is closing: its last drains
        need not sit out the wait)."""
        self._woken = True
        self._arrived.set()

    async def resolve(self, stops: dict[int, list[int]]) -> None:
        """Answer the calls drained: ``{call key: the trials it stops}``."""
        for key, trial_ids in stops.items():
            future = self._futures.get(key)
            if future is not None and not future.done():
                future.set_result(trial_ids)
