"""Keeping a journal's snapshot fresh while an agent writes it, from a child process.

A reader of a journal replays whatever its snapshot does not stand for (:mod:`.journal_snapshot`).
Readers save one when they replayed much, and an agent saves one when its run ends; a sweep read
while its agents run would otherwise have no snapshot, or an old one: the first ``sweeper status``
on a live sweep of 10,000 trials replayed all 39 MB of it (1.2-1.8 s here). So an agent that has
appended :data:`~.journal_read.STALE_BYTES` since the snapshot starts a child process that
replays the journal from it and saves a new one, and the next reader replays at most that much.

A child process, not a thread of the agent: the replay is a second of CPU at 10,000 trials, which
in the agent's process would hold the GIL against its loop (hand-overs, pruning decisions). The
child runs at the lowest CPU priority and holds ``<journal>.snapshot.lock`` (``flock``) while it
works, so the agents of one machine start one child at a time between them, not one each. Its
failure costs nothing but speed: a reader replays more.

Run as ``python -m sweeper.storage.snapshot_keeper JOURNAL``: the child's own entry point.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import sys
from pathlib import Path
from typing import IO

from optuna.storages import BaseStorage

from sweeper.storage import journal_read, journal_snapshot


class SnapshotKeeper:
    """Starts a child that refreshes the journal's snapshot when the agent has appended enough.

    Args:
        storage: The agent's storage; anything but a journal file makes every call a no-op.
        stale_bytes: Bytes not covered by the snapshot that make :meth:`poll` start a child.
    """

    def __init__(self, storage: BaseStorage, stale_bytes: int | None = None) -> None:
        self._path = journal_read.journal_path(storage)
        self._stale = journal_read.STALE_BYTES if stale_bytes is None else stale_bytes
        self._child: subprocess.Popen[bytes] | None = None
        # The journal's size when the last child started: a child that could not save (a directory
        # it may not write) is not started again until as much more was appended.
        self._size_at_start = 0

    def poll(self) -> bool:
        """Start a child if none is running and the snapshot lags enough; whether one started."""
        if self._path is None or self.running():
            return False
        with contextlib.suppress(OSError):
            size = os.stat(self._path).st_size
            grown = size - self._size_at_start >= self._stale
            if grown and journal_read.stale_bytes(self._path) >= self._stale:
                lock = _lock(self._path)
                if lock is None:  # another agent's child is at it
                    return False
                with lock:  # the child holds it from here to its exit
                    self._child = _start(self._path, lock)
                self._size_at_start = size
                return True
        return False

    def running(self) -> bool:
        """Whether a child started by this keeper is still replaying."""
        return self._child is not None and self._child.poll() is None

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a running child; whether none is running now."""
        if self._child is None:
            return True
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._child.wait(timeout)
        return not self.running()


def lock_path(journal: str) -> str:
    """The file whose ``flock`` a refreshing child holds."""
    return str(journal_snapshot.path_of(journal)) + ".lock"


def _lock(journal: str) -> IO[bytes] | None:
    """The refresh lock of ``journal``, taken; None: another process holds it."""
    handle = open(lock_path(journal), "ab")  # noqa: SIM115 (handed to the child, then closed)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle


def _start(path: str, lock: IO[bytes]) -> subprocess.Popen[bytes]:
    # The child imports the sweeper this process runs, wherever it was imported from.
    package_root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    return subprocess.Popen(
        [sys.executable, "-m", __name__, path],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        pass_fds=(lock.fileno(),),  # the lock is the open file's: held while the child keeps it
        close_fds=True,
        start_new_session=True,  # a Ctrl-C meant for the agent does not cut a save short
    )


def main(argv: list[str]) -> int:
    """The child: lowest priority, then the journal replayed from its snapshot and saved again."""
    with contextlib.suppress(OSError):
        os.nice(19)
    journal_read.refresh_file(argv[0])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
