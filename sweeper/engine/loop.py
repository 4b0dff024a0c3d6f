"""The agent's fill-and-record loop: keep every slot of the executor busy, record each trial that ends.

A freed slot is refilled before the trial that freed it is recorded, and the trials that ended
together are recorded in one storage write, which also writes the start of the last trial of the
refill (its params, attrs and lease), or of every trial of it when the sampler draws each trial
alone (then the first wave's starts are one write too). A trial is launched as soon as it is
prepared, ahead of its start write: the hand-over of a slot does not wait on the storage. Where
the next asks need not see that write (a sampler that draws each trial alone) and the storage lets
them through while it commits (PostgreSQL), it commits on a thread of its own while the loop
refills the slots freed meanwhile. On the journal file the loop's appends are made durable on a
thread of their own (:mod:`sweeper.engine.syncer`). The loop ends for one of the reasons in :class:`End`.
"""

from __future__ import annotations

import contextlib
import enum
import threading
import time
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import optuna
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from sweeper.engine import leases
from sweeper.engine.executor import Executor
from sweeper.engine.flapping import FlapGuard
from sweeper.engine.outcomes import Ended, OutcomeRecorder
from sweeper.engine.progress import Progress, Tally
from sweeper.engine.setup import Engine
from sweeper.engine.syncer import Syncer
from sweeper.engine.tasks import TaskFactory
from sweeper.engine.watch import STATE_POLL_S
from sweeper.errors import UsageError
from sweeper.search.samplers import draws_alone
from sweeper.storage import attrs as keys
from sweeper.storage import batch, journal_read, queue, work
from sweeper.storage.sweeps import SweepState
from sweeper.worker.task import Failure, TrialOutcome, TrialTask

_BESIDE_POLL_S = 0.001
"""While a write runs beside the loop, how often it looks whether the write is done (it refills as
soon as a trial ends either way)."""

_REFILL_ROUNDS = 16
"""At most this many refills (of the slots freed since the last) before the trials that freed them are
recorded: the write waits a few milliseconds at most, the slots none."""


class End(str, enum.Enum):
    """Why an agent stopped (:attr:`AgentSummary.ended` says it in words, with the details)."""

    SWEEP_CANCELLED = "sweep cancelled"
    SWEEP_STOPPED = "sweep stopped"
    SWEEP_EXHAUSTED = "sweep exhausted"
    TARGET_REACHED = "metric target reached"
    TARGETED_DONE = "targeted trials done"
    COUNT_REACHED = "count reached"
    DRAINED = "interrupted"
    FLAPPING = "stopped"  # its trials kept failing fast: the machine looks broken


@dataclass
class Signals:
    """What the agent's watch thread and ``drain`` tell its loop."""

    state: SweepState
    changed: threading.Event = field(default_factory=threading.Event)
    draining: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True)
class _Starting:
    """A trial prepared to start: its task and its start write (params, attrs, lease), not written yet."""

    trial: optuna.Trial
    task: TrialTask
    write: batch.TrialWrite

    @property
    def trial_id(self) -> int:
        return self.trial._trial_id


@dataclass
class _Meanwhile:
    """Trials that ended while a write ran, their slots refilled already, and the starts of those
    refills left to write: the next write records them."""

    ended: list[Ended] = field(default_factory=list)
    last: list[_Starting] = field(default_factory=list)
    error: BaseException | None = None  # what a refill raised meanwhile


class FillLoop:
    """The fill-and-record loop of one agent run: keep every slot busy, record what ends.

    Args:
        engine: The study, executor and task factory the agent set up.
        keeper: The agent's lease keeper (a trial's lease is taken as it starts).
        recorder: Records each ended trial.
        signals: The sweep's state and the drain request, as the watch thread and ``drain`` set them.
        inflight: The agent's running trials by trial id (kept here; the agent abandons what is left).
        flaps: The agent's fast-failure guard.
        tally: The agent's counts.
        progress: Where started trials are shown.
        storage: The sweep's storage.
        study_id: The sweep's study.
        count: Start at most this many trials.
        targets: A targeted run's lineages, else None.
    """

    def __init__(
        self,
        engine: Engine,
        keeper: leases.LeaseKeeper,
        recorder: OutcomeRecorder,
        signals: Signals,
        *,
        inflight: dict[int, optuna.Trial],
        flaps: FlapGuard,
        tally: Tally,
        progress: Progress,
        storage: BaseStorage,
        study_id: int,
        count: int | None,
        targets: frozenset[int] | None,
    ) -> None:
        self._study = engine.study
        self._spec = engine.make_task.spec
        self._executor: Executor = engine.executor
        self._make_task: TaskFactory = engine.make_task
        self._keeper = keeper
        self._recorder = recorder
        self._signals = signals
        self._inflight = inflight
        self._flaps = flaps
        self._tally = tally
        self._progress = progress
        self._storage = storage
        self._study_id = study_id
        self._count = count
        self._targets = targets
        self._asks = engine.search.asks
        # Trials the sampler draws alone need not be written one by one for the next ask to see them.
        self._together = draws_alone(engine.study.sampler)
        # And its writes may run beside the next asks (see _write_starts).
        self._beside = self._together and batch.writes_beside_asks(storage)
        self._writer: ThreadPoolExecutor | None = None
        # On the journal file the loop's appends are made durable on a thread of their own.
        sync = batch.durable_later(storage)
        self._syncer = Syncer(sync) if sync is not None else None
        self._launched = 0
        self._exhausted = False
        self._target_hit = False
        self._cancelling = False

    def run(self) -> tuple[End, str]:
        try:
            ended = self._run()
        except BaseException:
            if self._syncer is not None:
                with contextlib.suppress(Exception):  # the error that stopped the loop is the one told
                    self._syncer.close()
            raise
        finally:
            if self._writer is not None:
                self._writer.shutdown()
                self._writer = None
        if self._syncer is not None:
            self._syncer.close()  # the loop's last appends, durable before it returns
        return ended

    def _run(self) -> tuple[End, str]:
        signals, inflight = self._signals, self._inflight
        while True:
            state = signals.state
            if state == "cancelled":
                self._cancel_all()
                return End.SWEEP_CANCELLED, End.SWEEP_CANCELLED.value
            self._fill(state)
            count_left = self._count is None or self._launched < self._count
            if not inflight:
                verdict = self._flaps.verdict()
                if verdict is not None:
                    return End.FLAPPING, verdict
                if signals.draining.is_set():
                    return End.DRAINED, "interrupted: started no new trials, the running ones ended"
                if state == "finished" and self._targets is None:
                    return End.SWEEP_STOPPED, End.SWEEP_STOPPED.value
                if self._target_hit:
                    return End.TARGET_REACHED, End.TARGET_REACHED.value
                if self._exhausted and self._targets is not None:
                    # Targeted trials another agent runs (or a retry it queues) are waited for.
                    if not work.has_open_lineages(self._storage, self._study_id, self._targets):
                        return End.TARGETED_DONE, End.TARGETED_DONE.value
                    self._exhausted = False
                elif self._exhausted:
                    # Other agents' trials still run: if one is lost or fails, its re-queue is ours.
                    # Checked in this order: a lost trial is RUNNING until its reaper has queued
                    # its retry (see LeaseKeeper.others_running), which the second check then sees.
                    if not self._keeper.others_running() and not work.has_open_trials(
                        self._storage, self._study_id
                    ):
                        return End.SWEEP_EXHAUSTED, End.SWEEP_EXHAUSTED.value
                    self._exhausted = False
                if not count_left:
                    return End.COUNT_REACHED, f"count {self._count} reached"
                # Paused, or no slot on the cluster yet: idle until the state changes.
                signals.changed.wait(STATE_POLL_S)
                signals.changed.clear()
                continue
            ended = self._ended(STATE_POLL_S / 2)
            last: list[_Starting] = []
            refilled = False
            while ended or last:  # the starts of refills are written whatever ended
                # Refill the freed slots first, then record the trials that freed them. The last trials
                # the refill launches have their starts written with those ends (one round trip for
                # both); a refill that raises (a broken search space) must not lose what already ended.
                # Trials that end while the write runs are refilled meanwhile, and recorded next.
                try:
                    self._refill(ended, last, refilled=refilled)
                except BaseException:
                    self._record(ended, last, None)
                    raise
                ended, last = self._record(ended, last, self._meanwhile())
                refilled = True

    def _ended(self, timeout: float) -> list[Ended]:
        """The trials that ended, waiting up to ``timeout`` seconds for one; out of the running."""
        return [
            (self._inflight.pop(task.trial_id), task, outcome)
            for task, outcome in self._executor.wait(timeout)
        ]

    def _meanwhile(self) -> _Meanwhile | None:
        """Where a write beside the loop gathers what ends meanwhile, or None: write on this thread.

        With one slot there is no other to refill meanwhile: its next trial starts once the last is
        recorded, as before.
        """
        return _Meanwhile() if self._beside and self._executor.slots() > 1 else None

    def _record(
        self, ended: list[Ended], last: list[_Starting], meanwhile: _Meanwhile | None
    ) -> tuple[list[Ended], list[_Starting]]:
        """Record ``ended`` with the starts in ``last``, in one write; with ``meanwhile``, the write runs
        on the writer thread while this one refills the slots of the trials that end meanwhile, which
        it returns, with their starts, for the next write."""
        try:
            ends = self._recorder.prepare(ended)
        except BaseException:
            self._write_starts(last)
            raise
        refused = self._write_starts(last, with_ends=ends.writes, meanwhile=meanwhile)
        for recorded in self._recorder.finish(
            ends, refused, running=len(self._inflight), requeue=not self._cancelling
        ):
            self._exhausted = self._exhausted and not recorded.retried
        if meanwhile is None:
            return [], []
        if meanwhile.error is not None:
            self._record(meanwhile.ended, meanwhile.last, None)
            raise meanwhile.error
        return meanwhile.ended, meanwhile.last

    def _refill(self, ended: list[Ended], last: list[_Starting], *, refilled: bool = False) -> None:
        """Refill the slots ``ended`` freed (``refilled``: done already), and those of the trials that
        end meanwhile, which join ``ended``; the starts left to write with their ends are added to
        ``last``.

        Trials that end together seldom end at the same instant: those that end while the loop
        refills would otherwise wait for the write (a millisecond or two, its ``fsync`` included)
        before their slots are seen free. All of them are recorded in the one write after.
        """
        new = [] if refilled else list(ended)
        for round_ in range(_REFILL_ROUNDS):
            # The target ends the search, not a targeted agent's explicit trials.
            self._target_hit = (self._target_hit or self._recorder.note(new)) and self._targets is None
            if self._signals.state == "cancelled":
                return
            if last and not self._together:  # the sampler sees every trial started before its ask
                self._write_starts(last)
                last.clear()
            last += self._fill(self._signals.state, keep_last=True)
            if round_ + 1 == _REFILL_ROUNDS:
                return
            new = self._ended(0.0)
            if not new:
                return
            ended += new

    def _fill(self, state: str, *, keep_last: bool = False) -> list[_Starting]:
        """Start trials until every slot is busy or nothing may start now.

        Each trial is launched as soon as it is prepared (see :meth:`_launch`); its start write
        follows. With ``keep_last``, the last trials' start writes are returned unwritten, for the
        caller to write with its own writes. Each trial is written before the next is asked for, so
        that the sampler sees the params of every trial started before it, unless the sampler draws
        each trial alone: those are written together in one go.
        """
        # A finished sweep still runs a targeted agent's trials (see sweeper.engine.agent).
        runnable = state == "running" or (state == "finished" and self._targets is not None)
        pending: list[_Starting] = []
        try:
            while (
                runnable
                and not self._exhausted
                and not self._target_hit
                and (self._count is None or self._launched < self._count)
                and len(self._inflight) < self._executor.slots()
                and not self._flaps.paused()
                and not self._signals.draining.is_set()
            ):
                if pending and not self._together:
                    self._write_starts(pending)
                    pending = []
                if self._targets is None:
                    trial = queue.ask_trial(self._study, self._asks, self._spec)
                else:
                    trial = queue.claim_trial(self._study, self._asks, self._targets)
                if trial is None:
                    self._exhausted = True
                    break
                try:
                    task = self._make_task(trial)
                except UsageError as exc:  # a malformed config_overrides attr fails its trial, not the agent
                    queue.start_trial(trial, user_attrs={keys.FAIL_REASON: str(exc)}, state=TrialState.FAIL)
                    continue
                # Params, config, attempt, agent and the lease: one storage write.
                write = queue.start_write(trial, system_attrs=self._keeper.take(trial._trial_id))
                starting = _Starting(trial, task, write)
                self._launch(starting)
                pending.append(starting)
        except BaseException:
            self._write_starts(pending)  # launched and leased: they run, as if the error came after them
            raise
        if pending and not keep_last:
            self._write_starts(pending)
            pending = []
        return pending

    def _write_starts(
        self,
        startings: list[_Starting],
        *,
        with_ends: list[batch.TrialWrite] | None = None,
        meanwhile: _Meanwhile | None = None,
    ) -> batch.Refused:
        """Write launched trials' starts (and ``with_ends``) in one write; stop those it refused.

        With ``meanwhile``, the write runs on the writer thread, and this one refills the slots of
        the trials that end before it is done (into ``meanwhile``): a commit's round trip to the
        database server holds no slot idle. The sampler draws each trial alone (see
        :func:`~sweeper.search.samplers.draws_alone`), so those asks need not wait for it. On the
        journal file the write is appended unsynced, and the syncer makes it durable behind the loop.
        """
        writes = [each.write for each in startings] + (with_ends or [])
        if not writes:
            return {}
        if meanwhile is None and self._syncer is not None:
            with journal_read.unsynced():
                refused = batch.write_trials(self._storage, writes)
            self._syncer.request()
        elif meanwhile is None:
            refused = batch.write_trials(self._storage, writes)
        else:
            refused = self._write_beside(writes, meanwhile)
        self._withdraw([each for each in startings if each.trial_id in refused])
        return refused

    def _write_beside(self, writes: list[batch.TrialWrite], meanwhile: _Meanwhile) -> batch.Refused:
        if self._writer is None:
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="sweeper-write")
        done = self._writer.submit(batch.write_trials, self._storage, writes)
        try:
            while not done.done():
                new = self._ended(_BESIDE_POLL_S)
                if not new:
                    continue
                try:
                    self._refill(new, meanwhile.last)  # ``new`` gains what ends as it refills
                finally:
                    meanwhile.ended += new
        except BaseException as exc:  # a refill raised: this write is recorded first (see _record)
            meanwhile.error = exc
            futures.wait([done])
        try:
            return done.result()
        except BaseException:
            # Launched and leased: their starts are written as if the error came after them (their
            # ends, as the failed write's, are left to their leases: those trials are retried).
            with contextlib.suppress(Exception):
                self._write_starts(meanwhile.last)
            raise

    def _launch(self, starting: _Starting) -> None:
        """Hand a prepared trial to the executor, ahead of its start write.

        A trial is RUNNING in the storage from its ask (the pop or the create), and nothing in a
        trial reads the storage, so its trainer need not wait for the write of its params, attrs
        and lease: a freed slot's next trial starts a write earlier (a commit's round trip on a
        database, an append on the journal), on every hand-over. :meth:`_withdraw` stops the rare
        trial whose start the write refused.
        """
        trial, task = starting.trial, starting.task
        self._executor.start(task)
        self._inflight[trial._trial_id] = trial
        self._launched += 1
        self._tally.started += 1
        self._tally.running = len(self._inflight)
        self._progress.trial_started(trial.number, dict(task.config), self._tally)

    def _withdraw(self, refused: list[_Starting]) -> None:
        """Stop launched trials whose start write was refused: someone ended them between their ask
        and that write (``sweeper cancel``). The storage keeps the end they were given; the kill's
        outcome is then refused too, when it is recorded."""
        for each in refused:
            self._executor.cancel(each.trial_id, Failure.CANCELLED, "ended by another process as it started")

    def _cancel_all(self) -> None:
        self._cancelling = True
        for trial_id in list(self._inflight):
            self._executor.cancel(trial_id, Failure.CANCELLED, "sweep cancelled")
        deadline = time.monotonic() + 30.0
        while self._inflight and time.monotonic() < deadline:
            for task, ended in self._executor.wait(0.5):
                outcome = ended
                if ended.state != "failed":
                    outcome = TrialOutcome.failed(
                        Failure.CANCELLED, "sweep cancelled", duration_s=ended.duration_s, host=ended.host
                    )
                trial = self._inflight.pop(task.trial_id)
                self._recorder.record(trial, task, outcome, running=len(self._inflight), requeue=False)
