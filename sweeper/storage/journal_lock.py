"""The journal file's write lock: held by a live process only, never broken by a waiter.

Optuna's file locks are lock *files*: a waiter that sees one older than a grace period deletes it
("Forcibly releasing the lock file"), so on a slow disk, or under load, two writers can interleave
their appends. :class:`FlockJournalLock` uses ``flock(2)`` on ``JOURNAL.flock`` instead: the kernel
releases it when its holder's file is closed, so when the holder dies; it is never taken from a
live holder and never stale. Every sweeper process writing a journal takes it (a plain Optuna
process writing the same journal with its own lock is not excluded).
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from optuna.storages.journal._file import BaseJournalFileLock

from sweeper.errors import StorageError

LOCK_SUFFIX = ".flock"


class FlockJournalLock(BaseJournalFileLock):
    """An exclusive ``flock`` on ``filepath + ".flock"``, waited for as long as its holder lives.

    Each acquire opens the lock file anew, so two storages of the same journal in one process (or
    two threads) exclude each other as two processes do. Within one thread it is reentrant, so a
    read-then-append can hold it across both (:meth:`held`) while the append takes it again.
    """

    def __init__(self, filepath: str) -> None:
        self.path = filepath + LOCK_SUFFIX
        self._held = threading.local()

    def acquire(self) -> bool:
        """Wait for the lock and take it (at once if this thread holds it already).

        Raises:
            StorageError: the lock file cannot be opened (a read-only directory, say).
        """
        if getattr(self._held, "fd", None) is not None:
            self._held.depth += 1
            return True
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise StorageError(
                f"cannot write the journal: its lock file {self.path} cannot be opened ({reason}); "
                "a journal is written by every agent and state change, so its directory must be writable"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # blocks while a live process holds it
        except BaseException:
            os.close(fd)
            raise
        self._held.fd = fd
        self._held.depth = 1
        return True

    def release(self) -> None:
        fd = getattr(self._held, "fd", None)
        if fd is None:
            raise RuntimeError(f"the journal lock {self.path} is not held by this thread")
        self._held.depth -= 1
        if self._held.depth:
            return
        self._held.fd = None
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    @contextmanager
    def held(self) -> Iterator[None]:
        """Hold the lock for a block: no other writer appends between what it reads and appends."""
        self.acquire()
        try:
            yield
        finally:
            self.release()
