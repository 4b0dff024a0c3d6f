"""A storage wrapper that counts the calls (round trips) made through it, by name."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import TypeVar

from optuna.storages import BaseStorage

from sweeper.storage.retry import RetryingStorage

_T = TypeVar("_T")

WRITES = ("create_", "set_", "delete_", "write_trials", "pop a waiting trial", "queue more work")


class CountingStorage(RetryingStorage):
    """Every storage call, and every batched write (:func:`sweeper.storage.batch.write_trials`), counted.

    A :class:`RetryingStorage` routes each call through ``_call`` once, whatever the storage: that
    is where one call to the storage, one round trip, is counted. Reads served from a cache
    (Optuna's RDB trial cache) are still counted; none are missed.
    """

    def __init__(self, inner: BaseStorage) -> None:
        super().__init__(inner)
        self.calls: Counter[str] = Counter()
        self._count_lock = threading.Lock()

    def _call(self, what: str, call: Callable[[], _T], on_retry: Callable[[], _T | None] | None = None) -> _T:
        with self._count_lock:
            self.calls[what] += 1
        return super()._call(what, call, on_retry)

    def writes(self) -> int:
        """How many calls wrote."""
        return sum(n for name, n in self.calls.items() if name.startswith(WRITES))

    def reads(self) -> int:
        """How many calls read."""
        return sum(n for name, n in self.calls.items() if not name.startswith(WRITES))

    def reset(self) -> None:
        with self._count_lock:
            self.calls.clear()
