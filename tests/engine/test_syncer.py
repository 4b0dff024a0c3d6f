"""The loop's journal appends made durable on a thread of their own (sweeper.engine.syncer)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import engine_trainers
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from quick_executor import RANDOM, EndsAtOnce

import sweeper
from sweeper.engine import setup
from sweeper.engine.loop import FillLoop
from sweeper.engine.syncer import Syncer
from sweeper.worker.task import TrialOutcome, TrialTask


def test_requests_made_while_a_sync_runs_are_covered_by_one_more() -> None:
    started, release = threading.Event(), threading.Event()
    calls: list[str] = []

    def sync() -> None:
        calls.append(threading.current_thread().name)
        if len(calls) == 1:
            started.set()
            assert release.wait(5)

    syncer = Syncer(sync)
    syncer.request()
    assert started.wait(5)
    for _ in range(5):  # while the first runs: one more covers them all
        syncer.request()
    release.set()
    deadline = time.monotonic() + 5
    while len(calls) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)
    assert calls == ["sweeper-sync", "sweeper-sync"]
    syncer.close()  # and the closing thread's own, last
    assert calls == ["sweeper-sync", "sweeper-sync", threading.current_thread().name]


def test_a_failed_sync_is_raised_by_the_next_request_or_by_close() -> None:
    def broken() -> None:
        raise OSError("the disk is gone")

    def failed(syncer: Syncer) -> Syncer:
        syncer.request()
        assert syncer._thread is not None
        syncer._thread.join(5)  # its thread ends with the error
        return syncer

    with pytest.raises(OSError, match="the disk is gone"):
        failed(Syncer(broken)).request()
    with pytest.raises(OSError, match="the disk is gone"):
        failed(Syncer(broken)).close()


def test_a_syncer_never_asked_syncs_nothing() -> None:
    calls: list[int] = []
    Syncer(lambda: calls.append(1)).close()
    assert calls == []


Synced = list[tuple[str, int, float, float]]


def _watch_fsync(monkeypatch: pytest.MonkeyPatch) -> Synced:
    """Record each ``fsync``: its thread, the file's size, when it began and ended."""
    synced: Synced = []
    real_fsync = os.fsync

    def watched(fd: int) -> None:
        began = time.monotonic()
        real_fsync(fd)
        synced.append((threading.current_thread().name, os.fstat(fd).st_size, began, time.monotonic()))

    monkeypatch.setattr(os, "fsync", watched)
    return synced


@pytest.fixture
def journal_sweep(tmp_path: Path, project: Path) -> tuple[str, str]:
    """A journal's URL and a random sweep of 8 trials in it, run from the scratch project."""
    url = f"journal://{tmp_path / 'journal.log'}"
    return url, sweeper.sweep(RANDOM, storage=url)


def test_the_loop_waits_on_no_fsync_and_leaves_every_append_durable(
    journal_sweep: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, sweep_id = journal_sweep
    path = Path(url.removeprefix("journal://"))
    synced = _watch_fsync(monkeypatch)
    looping: list[float] = []  # when the loop began and ended
    real_loop = FillLoop._run

    def timed(self: FillLoop) -> Any:
        looping.append(time.monotonic())
        try:
            return real_loop(self)
        finally:
            looping.append(time.monotonic())

    monkeypatch.setattr(FillLoop, "_run", timed)
    summary = sweeper.agent(sweep_id, function=engine_trainers.quadratic, storage=url, executor="local")

    assert summary.complete == 8
    trials = JournalStorage(JournalFileBackend(str(path))).get_all_trials(0)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 8
    assert all(t.values is not None and "x" in t.params for t in trials)
    # While it ran, the loop's thread made no fsync: the syncer's thread made them (the lease
    # keeper makes its own writes' on its thread).
    began, ended = looping
    loop_thread = threading.current_thread().name
    assert not [each for each in synced if each[0] == loop_thread and began <= each[2] <= ended]
    assert any(thread == "sweeper-sync" for thread, *_ in synced)
    # Nothing was left unsynced: the journal as it ends was made durable.
    assert max(size for _, size, *_ in synced) == path.stat().st_size


class _EndsWhileTheDiskIsBusy(EndsAtOnce):
    """Ends no trial until the syncer's first ``fsync`` has begun (or 5 s have passed, so that a loop
    which never asks the syncer fails the test rather than hangs it): every refill then falls inside
    that ``fsync``."""

    def __init__(self, slots: int, disk_busy: threading.Event) -> None:
        super().__init__(slots)
        self._disk_busy = disk_busy
        self._give_up_at = time.monotonic() + 5

    def wait(self, timeout: float) -> list[tuple[TrialTask, TrialOutcome]]:
        waited = min(timeout, max(0.0, self._give_up_at - time.monotonic()))
        if timeout > 0 and not self._disk_busy.wait(waited) and time.monotonic() < self._give_up_at:
            return []
        return super().wait(timeout)


def test_slots_freed_while_an_fsync_stalls_are_refilled_meanwhile(
    journal_sweep: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, sweep_id = journal_sweep
    disk_busy = threading.Event()
    executor = _EndsWhileTheDiskIsBusy(2, disk_busy)
    monkeypatch.setattr(setup, "make_executor", lambda *args, **kwargs: executor)
    stall: list[float] = []  # when the syncer's first fsync began and ended, and whether it gave up
    real_fsync = os.fsync

    def busy(fd: int) -> None:
        # The syncer's first fsync lasts until all 8 trials have started (5 s at most): a loop that
        # waited for it would start none meanwhile, and this fsync would give up.
        if threading.current_thread().name == "sweeper-sync" and not stall:
            stall.append(time.monotonic())
            disk_busy.set()
            deadline = time.monotonic() + 5
            while executor.started < 8 and time.monotonic() < deadline:
                time.sleep(0.001)
            stall.extend([time.monotonic(), float(executor.started < 8)])
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", busy)
    summary = sweeper.agent(sweep_id, function=engine_trainers.quadratic, storage=url, executor="local")

    assert summary.complete == 8
    assert stall, "the syncer made no fsync"
    began, ended, gave_up = stall
    assert not gave_up, executor.started_at
    # The six refills all started while the disk was busy (the first two may have, too).
    assert sum(began < at < ended for at in executor.started_at) >= 6, (executor.started_at, stall)


def test_a_failing_fsync_stops_the_agent_with_its_error(
    journal_sweep: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, sweep_id = journal_sweep
    real_fsync = os.fsync

    def failing(fd: int) -> None:
        if threading.current_thread().name == "sweeper-sync":
            raise OSError(5, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing)
    with pytest.raises(OSError, match="Input/output error"):
        sweeper.agent(sweep_id, function=engine_trainers.quadratic, storage=url, executor="local")
