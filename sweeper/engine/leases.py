"""Trial leases: a trial whose agent died is found, failed as "agent lost" and re-queued, once.

Every agent holds a lease on each trial it runs: the trial system attr ``sweeper:lease`` =
``{"agent", "seq", "grace_s", "renewed_at"}``, rewritten every ``renew_s`` seconds by the agent's
:class:`LeaseKeeper` thread with ``seq`` counting up. The same thread watches every RUNNING trial
of the sweep: a lease whose ``seq`` has not moved for ``grace_s`` seconds *of the watcher's own
clock* (so clock skew between machines does not matter), or a RUNNING trial with no lease at all
for as long, belongs to a dead agent. The watcher then fails it with the reason ``agent lost`` and
enqueues the same params again. The leases live in storage attrs, so this works on every Optuna
storage (journal files included), unlike Optuna's RDB-only heartbeat.

Only one watcher can win: ending a trial is Optuna's conditional state update, which raises
:class:`~optuna.exceptions.UpdateFinishedTrialError` for every caller but the first (PostgreSQL
locks the row, SQLite transactions begin with the write lock, the journal orders the writes).

The re-queue rule (:func:`should_requeue`): a trial *lost* to the infrastructure (agent lost, node
lost, agent interrupted or stopped) is re-queued whatever ``sweeper.retries`` says, up to
:data:`MAX_LOST` times per point, and does not use up ``retries``; a trial that failed by itself
(exception, NaN, timeout, crashed worker) is re-queued while its own failures stay below
``retries``. So a grid point or ``run_cap`` token is never dropped because a machine went away.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from sweeper.errors import UsageError
from sweeper.storage import attrs as keys
from sweeper.worker.task import Failure

_logger = logging.getLogger(__name__)

LEASE = "sweeper:lease"
"""Trial system attr: ``{"agent": id, "seq": int, "grace_s": float, "renewed_at": ISO8601}``."""
LOST = "lost"
"""Trial user attr: how many attempts of this point were lost to the infrastructure before it."""

MAX_LOST = 3
"""At most this many lost attempts of one point are re-queued (a trial that kills its machine
every time must not loop forever)."""

DEFAULT_GRACE_S = 60.0
DEFAULT_RENEW_S = 10.0


@dataclass(frozen=True)
class LeasePolicy:
    """How often an agent renews its leases, and how long a silent lease lives.

    Args:
        grace_s: A lease not renewed for this long (seconds) is stale: its trial is lost.
        renew_s: Seconds between renewals; must be well below ``grace_s``.

    Example:
        >>> LeasePolicy(grace_s=2.0, renew_s=0.5).grace_s
        2.0
        >>> LeasePolicy(grace_s=1.0, renew_s=1.0)
        Traceback (most recent call last):
        ...
        sweeper.errors.UsageError: lease renew interval must be < the grace period, got renew 1 s, grace 1 s
    """

    grace_s: float = DEFAULT_GRACE_S
    renew_s: float = DEFAULT_RENEW_S

    def __post_init__(self) -> None:
        if not self.grace_s > 0 or not self.renew_s > 0:
            raise UsageError(
                f"lease grace period and renew interval must be > 0, got grace {self.grace_s:g} s, "
                f"renew {self.renew_s:g} s"
            )
        if self.renew_s >= self.grace_s:
            raise UsageError(
                f"lease renew interval must be < the grace period, got renew {self.renew_s:g} s, "
                f"grace {self.grace_s:g} s"
            )


def should_requeue(trial: FrozenTrial, failure: Failure | None, retries: int) -> bool:
    """Whether a failed trial gets another attempt (the rule in the module docstring).

    Example:
        >>> from optuna.trial import create_trial
        >>> lost_twice = create_trial(state=TrialState.FAIL, user_attrs={"attempt": 2, "lost": 2})
        >>> should_requeue(lost_twice, Failure.NODE_LOST, retries=0)
        True
        >>> should_requeue(lost_twice, Failure.TRAINER, retries=0)
        False
    """
    attempt = int(trial.user_attrs.get(keys.ATTEMPT, 0))
    lost = int(trial.user_attrs.get(LOST, 0))
    if failure is not None and failure.infrastructure:
        return lost < MAX_LOST
    return attempt - lost < retries


def requeue(study: optuna.Study, trial: FrozenTrial, failure: Failure | None) -> None:
    """Enqueue the next attempt of ``trial``: same params, same original (so the same checkpoint dir)."""
    attempt = int(trial.user_attrs.get(keys.ATTEMPT, 0)) + 1
    original = int(trial.user_attrs.get(keys.RETRY_OF, trial.number))
    lost = int(trial.user_attrs.get(LOST, 0)) + (1 if failure is not None and failure.infrastructure else 0)
    # A repeat's retry is still that repeat, with the same config overrides (its seed).
    attrs: dict[str, Any] = {**keys.retry_attrs(trial), keys.ATTEMPT: attempt, keys.RETRY_OF: original}
    if lost:
        attrs[LOST] = lost
    # An agent lost between a trial's ask and its start write left no params: the point it was
    # given (a grid point's, a retry's) is still in the fixed params its queue entry carried.
    params = dict(trial.params) or dict(trial.system_attrs.get("fixed_params") or {})
    study.enqueue_trial(params, user_attrs=attrs, skip_if_exists=False)


def fail_and_requeue(study: optuna.Study, trial_id: int, failure: Failure, reason: str, retries: int) -> bool:
    """End a RUNNING trial as failed with ``reason`` and re-queue it per :func:`should_requeue`.

    Atomic across agents: only the caller whose state update ends the trial re-queues it.
    Returns whether this call ended the trial.
    """
    storage = study._storage
    try:
        frozen = storage.get_trial(trial_id)
        if frozen.state != TrialState.RUNNING:
            return False
        storage.set_trial_user_attr(trial_id, keys.FAIL_REASON, reason)
        if not storage.set_trial_state_values(trial_id, TrialState.FAIL):
            return False
    except (optuna.exceptions.UpdateFinishedTrialError, KeyError):
        return False  # another agent (or the owner) ended it first
    if should_requeue(frozen, failure, retries):
        requeue(study, frozen, failure)
    return True


class LeaseKeeper:
    """An agent's lease thread: renews the leases it holds, reaps the stale leases of others.

    Args:
        study: The sweep's study (the keeper loads its own copy on the same storage).
        agent_id: The holding agent's id.
        policy: Grace period and renewal interval.
        retries: The sweep's ``sweeper.retries`` (for re-queueing what it reaps).
        on_reaped: Called with ``(trial number, reason)`` for each trial this keeper reaped.
    """

    def __init__(
        self,
        study: optuna.Study,
        agent_id: str,
        policy: LeasePolicy,
        retries: int,
        on_reaped: Callable[[int, str], None] | None = None,
    ) -> None:
        self._storage = study._storage
        self._study = optuna.load_study(
            study_name=study.study_name, storage=self._storage, sampler=optuna.samplers.RandomSampler()
        )
        self._study_id = study._study_id
        self.agent_id = agent_id
        self.policy = policy
        self._retries = retries
        self._on_reaped = on_reaped
        self._held: dict[int, int] = {}  # trial id -> seq of its last renewal
        self._seen: dict[int, tuple[Any, float]] = {}  # trial id -> (lease token, first seen)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._reaping = threading.Event()  # set while a lost trial is failed and re-queued
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start renewing and watching in a daemon thread."""
        self._thread = threading.Thread(target=self._run, name="sweeper-leases", daemon=True)
        self._thread.start()

    def hold(self, trial_id: int) -> None:
        """Take the lease of a trial this agent starts (written at once)."""
        with self._lock:
            self._held[trial_id] = 0
        self._write(trial_id, 0)

    def take(self, trial_id: int) -> dict[str, Any]:
        """Take the lease of a trial this agent starts; returns the system attrs that carry it.

        The caller writes them with the trial's start (one storage round trip for both).
        """
        with self._lock:
            self._held[trial_id] = 0
        return {LEASE: self._record(0)}

    def release(self, trial_id: int) -> None:
        """Drop the lease of a trial this agent has ended (told Optuna about)."""
        with self._lock:
            self._held.pop(trial_id, None)

    def held(self) -> list[int]:
        """Trial ids whose leases this agent holds."""
        with self._lock:
            return list(self._held)

    def others_running(self) -> bool:
        """Whether trials this agent does not hold still run (live, or lost and not yet reaped).

        A trial this keeper is reaping counts as running until its retry is queued: between the
        two writes the sweep would look done to an agent about to leave.
        """
        if self._reaping.is_set():
            return True
        running = self._storage.get_all_trials(self._study_id, deepcopy=False, states=(TrialState.RUNNING,))
        mine = set(self.held())
        return any(t._trial_id not in mine for t in running)

    def renew(self) -> None:
        """Renew every held lease once."""
        with self._lock:
            held = list(self._held.items())
        for trial_id, seq in held:
            with self._lock:
                if trial_id not in self._held:
                    continue
                self._held[trial_id] = seq + 1
            self._write(trial_id, seq + 1)

    def reap(self) -> list[int]:
        """Fail and re-queue the RUNNING trials of others whose leases went stale; returns their numbers."""
        now = time.monotonic()
        running = self._storage.get_all_trials(self._study_id, deepcopy=False, states=(TrialState.RUNNING,))
        mine = set(self.held())
        alive: set[int] = set()
        reaped: list[int] = []
        for trial in running:
            alive.add(trial._trial_id)
            if trial._trial_id in mine:
                continue
            lease = trial.system_attrs.get(LEASE)
            token = (lease.get("agent"), lease.get("seq")) if isinstance(lease, dict) else None
            seen = self._seen.get(trial._trial_id)
            if seen is None or seen[0] != token:
                self._seen[trial._trial_id] = (token, now)
                continue
            grace = _grace(lease, self.policy.grace_s)
            if now - seen[1] < grace:
                continue
            holder = lease.get("agent") if isinstance(lease, dict) else "unknown"
            reason = f"{Failure.AGENT_LOST.value}: agent {holder} renewed no lease for {grace:g} s"
            self._reaping.set()
            try:
                reaped_it = fail_and_requeue(
                    self._study, trial._trial_id, Failure.AGENT_LOST, reason, self._retries
                )
            finally:
                self._reaping.clear()
            if reaped_it:
                reaped.append(trial.number)
                _logger.warning("trial %d: %s; re-queued per the retry rule", trial.number, reason)
                if self._on_reaped is not None:
                    self._on_reaped(trial.number, reason)
        for trial_id in set(self._seen) - alive:
            del self._seen[trial_id]
        return reaped

    def close(self, failure: Failure | None = None) -> list[int]:
        """Stop the thread; with ``failure``, fail and re-queue the trials still held.

        Returns the ids of the trials it ended, so that nothing this agent ran stays RUNNING.
        """
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10.0)
        ended: list[int] = []
        if failure is None:
            return ended
        for trial_id in self.held():
            with contextlib.suppress(Exception):  # a dead storage: the reapers of others take over
                if fail_and_requeue(self._study, trial_id, failure, failure.value, self._retries):
                    ended.append(trial_id)
            self.release(trial_id)
        return ended

    def _record(self, seq: int) -> dict[str, Any]:
        return {
            "agent": self.agent_id,
            "seq": seq,
            "grace_s": self.policy.grace_s,
            "renewed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }

    def _write(self, trial_id: int, seq: int) -> None:
        try:
            self._storage.set_trial_system_attr(trial_id, LEASE, self._record(seq))
        except (optuna.exceptions.UpdateFinishedTrialError, KeyError):
            self.release(trial_id)  # ended already (by us, or reaped while we stalled)
        except Exception:
            _logger.warning("could not renew the lease of trial id %d; retrying", trial_id, exc_info=True)

    def _run(self) -> None:
        while not self._stop.wait(self.policy.renew_s):
            try:
                self.renew()
                self.reap()
            except Exception:  # a storage hiccup must not kill the agent; the next round retries
                _logger.warning("lease round failed; retrying", exc_info=True)


def _grace(lease: Any, default: float) -> float:
    """The holder's declared grace period (a short-grace watcher never reaps a long-grace holder)."""
    if isinstance(lease, dict):
        with contextlib.suppress(TypeError, ValueError):
            declared = float(lease.get("grace_s", default))
            if declared > 0:
                return declared
    return default
