"""Watching a sweep from an agent: its state every second, the agent's heartbeat every few seconds,
and the journal's snapshot kept fresh (:mod:`sweeper.storage.snapshot_keeper`).

The watch runs in a background thread, so a pause, stop or cancel reaches the agent within a second
even while its loop is busy.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from optuna.storages import BaseStorage

from sweeper.storage import sweeps
from sweeper.storage.snapshot_keeper import SnapshotKeeper
from sweeper.storage.sweeps import HEARTBEAT_S, SweepState

STATE_POLL_S = 1.0


class SweepWatch:
    """Polls the sweep's state and beats the agent's heartbeat until :meth:`stop`.

    Args:
        storage: The sweep's storage.
        study_id: The sweep's study.
        agent_id: The agent whose heartbeat this is.
        state: The state the agent knows now; ``on_change`` is called when the stored one differs.
        on_change: Called from the watch thread with each new state.
        snapshots: Polled every round: it refreshes the journal's snapshot once enough was appended.
    """

    def __init__(
        self,
        storage: BaseStorage,
        study_id: int,
        agent_id: str,
        state: SweepState,
        on_change: Callable[[SweepState], None],
        *,
        snapshots: SnapshotKeeper | None = None,
    ) -> None:
        self._storage = storage
        self._study_id = study_id
        self._agent_id = agent_id
        self._state = state
        self._on_change = on_change
        self._snapshots = snapshots
        self._record: dict[str, Any] = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started_at": now(),
            "last_seen": now(),
        }
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sweeper-agent-watch", daemon=True)

    def start(self) -> None:
        """Start polling and beating in a daemon thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread; a last beat with ``stopped_at`` says the agent left."""
        self._stop.set()
        self._thread.join(timeout=5.0)

    def _run(self) -> None:
        last_beat = -math.inf
        while not self._stop.is_set():
            # A storage hiccup must not kill the agent; the next round retries.
            with contextlib.suppress(Exception):
                state = sweeps.read_state(self._storage, self._study_id)
                if state != self._state:
                    self._state = state
                    self._on_change(state)
            if self._snapshots is not None:
                with contextlib.suppress(Exception):  # only ever a faster read for others
                    self._snapshots.poll()
            if time.monotonic() - last_beat >= HEARTBEAT_S:
                last_beat = time.monotonic()
                self._beat()
            self._stop.wait(STATE_POLL_S)
        # A last beat says the agent left, so `sweeper status` stops counting it as active at once.
        self._beat(stopped=True)

    def _beat(self, *, stopped: bool = False) -> None:
        self._record["last_seen"] = now()
        if stopped:
            self._record["stopped_at"] = self._record["last_seen"]
        with contextlib.suppress(Exception):
            sweeps.heartbeat(self._storage, self._study_id, self._agent_id, dict(self._record))


def now() -> str:
    """The current UTC time, ISO 8601 to the second (heartbeat timestamps)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
