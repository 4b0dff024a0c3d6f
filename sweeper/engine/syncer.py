"""The loop's journal writes made durable on a thread of their own, so that no slot waits on a disk.

The loop appends its writes to the journal file unsynced (every process reads them at once) and
asks a :class:`Syncer` to ``fsync`` the file: one ``fsync`` then covers every append made before
it, and the appends made while it runs are covered by the next. An ``fsync`` takes about a
millisecond here, now and then tens of milliseconds on a busy disk (79 ms seen): the loop refills
the slots freed meanwhile instead of waiting. An agent that crashes loses nothing by it (the
appends are in the kernel's cache); only a power cut could lose the last milliseconds of ends,
whose trials their leases then hand back to be run again. The loop's last appends are synced
before it returns.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class Syncer:
    """Runs ``sync`` on a thread of its own after each :meth:`request`, coalescing the requests that
    arrive while it runs; :meth:`close` syncs what is left. An error of ``sync`` is raised by the
    next :meth:`request` or by :meth:`close`.

    Example:
        >>> calls = []
        >>> syncer = Syncer(lambda: calls.append(1))
        >>> syncer.request()
        >>> syncer.close()
        >>> len(calls) >= 1
        True
    """

    def __init__(self, sync: Callable[[], None]) -> None:
        self._sync = sync
        self._wanted = threading.Event()
        self._closing = False
        self._requested = False
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def request(self) -> None:
        """Make every append made so far durable, soon."""
        self._raise()
        self._requested = True
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="sweeper-sync", daemon=True)
            self._thread.start()
        self._wanted.set()

    def close(self) -> None:
        """Stop the thread, then make what is left durable here."""
        self._closing = True
        self._wanted.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._raise()
        if self._requested:
            self._requested = False
            self._sync()

    def _run(self) -> None:
        while True:
            self._wanted.wait()
            if self._closing:
                return
            # Cleared before the sync: an append requested from here on is after it, for the next.
            self._wanted.clear()
            try:
                self._sync()
            except BaseException as exc:
                self._error = exc
                return

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error
