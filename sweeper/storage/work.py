"""The work of a budgeted sweep (its grid points in W&B's order, or ``run_cap`` tokens the sampler
fills), queued block by block as WAITING trials, and whether any is left.

The work is a list that is never built: a cursor (study system attr ``sweeper:queued``) says how
much of it is queued, and agents queue :data:`QUEUE_BLOCK` items at a time, each block with the
cursor's advance in one atomic write, so creating a sweep costs the same for 10 points as for 10^9
and each point is queued once.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, distribution_to_json
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import FrozenTrial, TrialState

from sweeper.spec.model import SweepSpec
from sweeper.storage._access import journal_of, remember, retried
from sweeper.storage.attrs import ATTEMPT, QUEUED, SPEC, lineage
from sweeper.storage.fast_read import database_of
from sweeper.storage.journal_lock import FlockJournalLock

OPEN_STATES = (TrialState.WAITING, TrialState.RUNNING)

QUEUE_BLOCK = 64
"""How many work items (grid points, budget tokens) an agent queues at once when none waits."""
_queue_lock = threading.Lock()


def start_queue(storage: BaseStorage, study_id: int) -> None:
    """Give a new sweep its queue cursor: no work item queued yet.

    A budgeted sweep's work (its grid points in W&B's order, or ``run_cap`` empty tokens the sampler
    fills) is a list that is never built: agents queue it :data:`QUEUE_BLOCK` items at a time as
    WAITING trials, each block with the cursor's advance in one atomic write (:func:`_queue_block`), so
    creating a sweep costs the same for 10 points as for 10^9, and each point is queued once.
    """
    storage.set_study_system_attr(study_id, QUEUED, 0)


def queued(storage: BaseStorage, study_id: int, budget: int | None) -> int:
    """How many of the sweep's work items are queued (all of them for a sweep made before the
    cursor existed: those queued everything at creation)."""
    if budget is None:
        return 0
    rdb = database_of(storage)
    if rdb is not None:
        value = retried(storage, "read the queue cursor", lambda: _cursor_rdb(rdb, study_id))
    else:
        value = storage.get_study_system_attrs(study_id).get(QUEUED)
    return budget if value is None else int(value)


def work_left(storage: BaseStorage, study_id: int, budget: int | None) -> bool:
    """Whether the sweep still has work: a trial waits or runs, or part of its budget is not queued."""
    if budget is not None and queued(storage, study_id, budget) < budget:
        return True
    return has_open_trials(storage, study_id)


def _work_items(spec: SweepSpec, start: int, count: int) -> list[dict[str, Any]]:
    """Items ``start`` to ``start + count`` of the sweep's work: grid points, or empty tokens."""
    if spec.method == "grid":
        return list(itertools.islice(spec.space.iter_grid(start), count))
    return [{} for _ in range(count)]


def take_block(study: optuna.Study, spec: SweepSpec, budget: int) -> int | None:
    """Queue the next block of the sweep's work and take its first item (RUNNING now): its trial id,
    or None when all of the work is queued already."""
    trial_id = _queue_block(study._storage, study._study_id, spec, budget, take=True)
    if trial_id is not None:
        remember(study, trial_id)
    return trial_id


def queue_through(storage: BaseStorage, study_id: int, spec: SweepSpec, number: int) -> None:
    """Queue the sweep's work until trial ``number`` exists or all of it is queued (``agent --trial``
    may name a grid point no agent has queued yet)."""
    budget = spec.budget
    while budget is not None and storage.get_n_trials(study_id) <= number:
        if _queue_block(storage, study_id, spec, budget, take=False) is None:
            return


def _queue_block(
    storage: BaseStorage, study_id: int, spec: SweepSpec, budget: int, *, take: bool
) -> int | None:
    """Queue the next block of the sweep's work as WAITING trials (the first RUNNING with ``take``);
    the id of its first trial, or None when all of the work is queued already.

    The cursor's read, the block's trials and the cursor's advance are one atomic write on every
    storage, so racing agents queue each item exactly once and a killed agent queues none or all
    of its block.
    """
    rdb = database_of(storage)
    if rdb is not None:
        return retried(
            storage, "queue more work", lambda: _queue_block_rdb(rdb, study_id, spec, budget, take)
        )
    journal = journal_of(storage)
    if journal is not None and isinstance(getattr(journal._backend, "_lock", None), FlockJournalLock):
        return _queue_block_journal(journal, study_id, spec, budget, take)
    # In memory, or a storage of another kind: atomic among this process's threads only.
    with _queue_lock:
        cursor = storage.get_study_system_attrs(study_id).get(QUEUED)
        if cursor is None:
            return None  # made before the cursor: everything was queued at creation
        done = int(cursor)
        count = min(QUEUE_BLOCK, budget - done)
        if count <= 0:
            return None
        ids = [
            storage.create_new_trial(study_id, template_trial=_queued(params, running=take and i == 0))
            for i, params in enumerate(_work_items(spec, done, count))
        ]
        storage.set_study_system_attr(study_id, QUEUED, done + count)
        return ids[0]


def _queued(params: dict[str, Any], *, running: bool) -> FrozenTrial:
    """A queued work item as ``enqueue_trial`` makes it (RUNNING from now when taken at once)."""
    import datetime

    state = TrialState.RUNNING if running else TrialState.WAITING
    trial = optuna.trial.create_trial(
        state=state, system_attrs={"fixed_params": params}, user_attrs={ATTEMPT: 0}
    )
    if running:
        trial.datetime_start = datetime.datetime.now()
    return trial


def _cursor_rdb(rdb: RDBStorage, study_id: int) -> Any:
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    with _create_scoped_session(rdb.scoped_session) as session:
        row = (
            session.query(models.StudySystemAttributeModel.value_json)
            .filter(models.StudySystemAttributeModel.study_id == study_id)
            .filter(models.StudySystemAttributeModel.key == QUEUED)
            .one_or_none()
        )
        return None if row is None else json.loads(row[0])


def _queue_block_rdb(rdb: RDBStorage, study_id: int, spec: SweepSpec, budget: int, take: bool) -> int | None:
    """One transaction: the study row locked (``BEGIN IMMEDIATE`` on SQLite), the cursor read, the
    block inserted as WAITING trials (its first RUNNING with ``take``), the cursor advanced."""
    import datetime

    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    with _create_scoped_session(rdb.scoped_session) as session:
        models.StudyModel.find_or_raise_by_id(study_id, session, for_update=True)
        cursor = (
            session.query(models.StudySystemAttributeModel)
            .filter(models.StudySystemAttributeModel.study_id == study_id)
            .filter(models.StudySystemAttributeModel.key == QUEUED)
            .one_or_none()
        )
        if cursor is None:
            return None  # made before the cursor: everything was queued at creation
        done = int(json.loads(str(cursor.value_json)))
        count = min(QUEUE_BLOCK, budget - done)
        if count <= 0:
            return None
        trials = _insert_waiting(session, study_id, _work_items(spec, done, count), {ATTEMPT: 0})
        if take:  # taken as Optuna's pop takes a WAITING trial: RUNNING from now
            trials[0].state = TrialState.RUNNING
            trials[0].datetime_start = datetime.datetime.now()
        cursor.value_json = json.dumps(done + count)
        return int(trials[0].trial_id)


def _insert_waiting(
    session: Any, study_id: int, points: list[dict[str, Any]], user_attrs: dict[str, Any]
) -> list[Any]:
    """Insert WAITING trials in the session's transaction: what ``enqueue_trial`` stores, point by point.

    The caller holds the study row lock, which serializes trial numbering with Optuna's own trial
    creation.
    """
    from optuna.storages._rdb import models
    from sqlalchemy import func

    base = (
        session.query(func.count(models.TrialModel.trial_id))
        .filter(models.TrialModel.study_id == study_id)
        .scalar()
    )
    trials = [
        models.TrialModel(study_id=study_id, number=int(base) + i, state=TrialState.WAITING)
        for i in range(len(points))
    ]
    session.add_all(trials)
    session.flush()  # assigns the trial ids
    attrs: list[Any] = []
    for trial, params in zip(trials, points, strict=True):
        attrs.append(
            models.TrialSystemAttributeModel(
                trial_id=trial.trial_id, key="fixed_params", value_json=json.dumps(params)
            )
        )
        attrs.extend(
            models.TrialUserAttributeModel(trial_id=trial.trial_id, key=key, value_json=json.dumps(value))
            for key, value in user_attrs.items()
        )
    session.add_all(attrs)
    return trials


def _waiting_log(head: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """The journal record ``enqueue_trial(params, user_attrs={"attempt": 0})`` appends."""
    from optuna.storages.journal._storage import JournalOperation

    return {
        "op_code": JournalOperation.CREATE_TRIAL,
        **head,
        "datetime_start": None,
        "state": TrialState.WAITING,
        "value": None,
        "values": None,
        "distributions": {},
        "params": {},
        "user_attrs": {ATTEMPT: 0},
        "system_attrs": {"fixed_params": params},
        "intermediate_values": {},
    }


def _queue_block_journal(journal: Any, study_id: int, spec: SweepSpec, budget: int, take: bool) -> int | None:
    """Under the journal's file lock, held across the read and the append: the log read to its end,
    the cursor taken from it, the block's trials (with ``take``, the first RUNNING) and the
    cursor's advance appended in one batch: the records ``enqueue_trial``, ``create_new_trial`` and
    ``set_study_system_attr`` append."""
    import datetime

    from optuna.storages.journal._storage import JournalOperation

    backend = journal._backend
    with journal._thread_lock, backend._lock.held():
        journal._sync_with_backend()
        replay = journal._replay_result
        done = replay.get_study(study_id).system_attrs.get(QUEUED)
        count = 0 if done is None else min(QUEUE_BLOCK, budget - int(done))
        if count <= 0:
            return None
        now = datetime.datetime.now(tz=datetime.timezone.utc).isoformat(timespec="microseconds")
        head = {"worker_id": replay.worker_id, "study_id": study_id}
        logs = [_waiting_log(head, params) for params in _work_items(spec, int(done), count)]
        if take:
            logs[0].update(state=TrialState.RUNNING, datetime_start=now)
        logs.append(
            {
                "op_code": JournalOperation.SET_STUDY_SYSTEM_ATTR,
                "worker_id": replay.worker_id,
                "study_id": study_id,
                "system_attr": {QUEUED: int(done) + count},
            }
        )
        # Trial ids are given in log order, and nobody appends while the lock is held.
        first = len(replay._trials)
        backend.append_logs(logs)
        journal._sync_with_backend()
        return first


def has_open_lineages(storage: BaseStorage, study_id: int, lineages: Collection[int]) -> bool:
    """Whether a trial of the given lineages still waits or runs (anywhere, in any agent)."""
    open_trials = storage.get_all_trials(study_id, deepcopy=False, states=OPEN_STATES)
    return any(lineage(t) in lineages for t in open_trials)


def has_running_trials(storage: BaseStorage, study_id: int) -> bool:
    """Whether a trial of the study runs now (in any agent)."""
    return bool(storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)))


def has_open_trials(storage: BaseStorage, study_id: int) -> bool:
    """Whether any trial still waits to run or runs (the sweep is not done yet)."""
    rdb = database_of(storage)
    if rdb is None:
        return bool(storage.get_all_trials(study_id, deepcopy=False, states=OPEN_STATES))
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    def first_open() -> Any:
        with _create_scoped_session(rdb.scoped_session) as session:
            return (
                session.query(models.TrialModel.trial_id)
                .filter(models.TrialModel.study_id == study_id)
                .filter(models.TrialModel.state.in_(OPEN_STATES))
                .first()
            )

    return retried(storage, "find open trials", first_open) is not None


# -- extending a sweep: its new spec, history, cursor and new points in one write ------------------


class SweepChangedError(Exception):
    """The sweep's spec changed between reading it and writing its extension."""


@dataclass(frozen=True)
class ExtensionWrite:
    """What an extension writes, if the stored spec is still ``expected_spec``: study ``user_attrs``
    (the new spec, its state and history), the queue ``cursor``, and ``points`` queued as WAITING
    trials."""

    expected_spec: dict[str, Any]
    user_attrs: dict[str, Any]
    cursor: int
    points: list[dict[str, Any]]
    # Parameters whose choices grew (new values appended, so old indices keep their values): the
    # past trials' params take the new distribution, or Optuna refuses the new trials' params.
    distributions: dict[str, BaseDistribution] = field(default_factory=dict)


def can_grow_choices(storage: BaseStorage, study_id: int, names: Collection[str]) -> bool:
    """Whether the past trials of the study can take grown choices for ``names``: on a database
    (their rows are rewritten), or where no trial holds one of them yet. A journal's records of past
    trials cannot be rewritten, and Optuna's replay refuses a categorical whose choices change."""
    if database_of(storage) is not None:
        return True
    return not any(set(names) & set(t.params) for t in storage.get_all_trials(study_id, deepcopy=False))


def apply_extension(storage: BaseStorage, study_id: int, write: ExtensionWrite) -> None:
    """Write an extension atomically, only if the stored spec is still the one it extends (two
    extensions racing: the second is refused, not merged).

    Raises:
        SweepChangedError: the spec changed meanwhile (nothing was written).
    """
    rdb = database_of(storage)
    if rdb is not None:
        retried(storage, "extend the sweep", lambda: _extend_rdb(rdb, study_id, write))
        return
    journal = journal_of(storage)
    if journal is not None and isinstance(getattr(journal._backend, "_lock", None), FlockJournalLock):
        _extend_journal(journal, study_id, write)
        return
    with _queue_lock:  # in memory, or another kind of storage: atomic among this process's threads
        if storage.get_study_user_attrs(study_id).get(SPEC) != write.expected_spec:
            raise SweepChangedError()
        for params in write.points:
            storage.create_new_trial(study_id, template_trial=_queued(params, running=False))
        storage.set_study_system_attr(study_id, QUEUED, write.cursor)
        for key, value in write.user_attrs.items():
            storage.set_study_user_attr(study_id, key, value)


def _extend_rdb(rdb: RDBStorage, study_id: int, write: ExtensionWrite) -> None:
    """One transaction, the study row locked as a block's queueing locks it."""
    import sqlalchemy as sa
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    with _create_scoped_session(rdb.scoped_session) as session:
        models.StudyModel.find_or_raise_by_id(study_id, session, for_update=True)
        users = models.StudyUserAttributeModel
        rows = {str(row.key): row for row in session.query(users).filter(users.study_id == study_id)}
        if SPEC not in rows or json.loads(str(rows[SPEC].value_json)) != write.expected_spec:
            raise SweepChangedError()
        for key, value in write.user_attrs.items():
            if key in rows:
                rows[key].value_json = json.dumps(value)
            else:
                session.add(users(study_id=study_id, key=key, value_json=json.dumps(value)))
        systems = models.StudySystemAttributeModel
        row = session.query(systems).filter(systems.study_id == study_id, systems.key == QUEUED).one_or_none()
        if row is None:
            session.add(systems(study_id=study_id, key=QUEUED, value_json=json.dumps(write.cursor)))
        else:
            row.value_json = json.dumps(write.cursor)
        if write.points:
            _insert_waiting(session, study_id, write.points, {ATTEMPT: 0})
        params = models.TrialParamModel.__table__
        trials = sa.select(models.TrialModel.trial_id).where(models.TrialModel.study_id == study_id)
        for name, distribution in write.distributions.items():
            session.execute(
                params.update()
                .where(params.c.param_name == name, params.c.trial_id.in_(trials))
                .values(distribution_json=distribution_to_json(distribution))
            )


def _extend_journal(journal: Any, study_id: int, write: ExtensionWrite) -> None:
    """One append under the journal's held lock: the records Optuna's own calls would append."""
    from optuna.storages.journal._storage import JournalOperation

    backend = journal._backend
    with journal._thread_lock, backend._lock.held():
        journal._sync_with_backend()
        replay = journal._replay_result
        if replay.get_study(study_id).user_attrs.get(SPEC) != write.expected_spec:
            raise SweepChangedError()
        head = {"worker_id": replay.worker_id, "study_id": study_id}
        logs: list[dict[str, Any]] = [_waiting_log(head, params) for params in write.points]
        op = JournalOperation
        logs.append({"op_code": op.SET_STUDY_SYSTEM_ATTR, **head, "system_attr": {QUEUED: write.cursor}})
        logs.extend(
            {"op_code": op.SET_STUDY_USER_ATTR, **head, "user_attr": {key: value}}
            for key, value in write.user_attrs.items()
        )
        backend.append_logs(logs)
        journal._sync_with_backend()
