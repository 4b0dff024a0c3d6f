"""The journal's lock: held while its holder lives, freed when it dies, a clear error when unusable."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import sweeper
from sweeper.cli import main
from sweeper.errors import StorageError
from sweeper.storage.journal_lock import FlockJournalLock

HOLDER = """
import sys, time
from sweeper.storage.journal_lock import FlockJournalLock
FlockJournalLock(sys.argv[1]).acquire()
print("held", flush=True)
time.sleep(600)
"""


def _acquired_within(lock: FlockJournalLock, seconds: float) -> bool:
    done = threading.Event()

    def take() -> None:
        lock.acquire()
        done.set()
        lock.release()

    threading.Thread(target=take, daemon=True).start()
    return done.wait(seconds)


def test_a_live_holder_keeps_the_lock_and_a_dead_one_frees_it_at_once(tmp_path: Path) -> None:
    journal = str(tmp_path / "journal.log")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, journal], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        lock = FlockJournalLock(journal)
        # Optuna's own lock would be broken by a waiter after its grace period; this one never is.
        assert not _acquired_within(lock, 2.0)
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        started = time.monotonic()
        assert _acquired_within(lock, 5.0)
        assert time.monotonic() - started < 2.0
    finally:
        holder.kill()
        holder.wait()


def test_two_threads_of_one_process_exclude_each_other(tmp_path: Path) -> None:
    journal = str(tmp_path / "journal.log")
    first = FlockJournalLock(journal)
    first.acquire()
    try:
        assert not _acquired_within(FlockJournalLock(journal), 0.5)
        assert not _acquired_within(first, 0.5)  # the same lock object from another thread too
    finally:
        first.release()
    assert _acquired_within(FlockJournalLock(journal), 2.0)


def test_a_journal_that_cannot_be_locked_is_a_one_line_error(tmp_path: Path) -> None:
    journal = tmp_path / "journal.log"
    url = f"journal://{journal}"
    spec = {"method": "grid", "parameters": {"x": {"values": [1]}}}
    sweep_id = sweeper.sweep(spec, storage=url)
    (tmp_path / "journal.log.flock").unlink()
    (tmp_path / "journal.log.flock").mkdir()  # as unopenable as a lock in a read-only directory

    with pytest.raises(StorageError, match=r"cannot write the journal: its lock file .* cannot be opened"):
        FlockJournalLock(str(journal)).acquire()
    for command in (
        ["pause", sweep_id],
        ["agent", sweep_id, "--executor", "local", "--trainer", "os:getpid"],
    ):
        result = CliRunner().invoke(main, [*command, "--storage", url])
        assert result.exit_code != 0
        assert "Traceback" not in result.output + result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: cannot write the journal: its lock file"), (
            lines
        )
