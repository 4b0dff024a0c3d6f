"""The queue of a sweep's trials: enqueue work, claim a waiting trial atomically, ask for the next one.

A trial is prepared without a write: its params are suggested and its attrs set on a
:class:`~sweeper.storage.batch.DeferredWrites` that keeps them, and :func:`start_trial` writes them
with its lease in one round trip (on top of the one that took or created it).

This module, :mod:`sweeper.storage.batch` and :mod:`sweeper.storage.fast_read` are the only ones
that touch Optuna's internals (its RDB models, its trial cache, ``Study`` and ``Trial`` private
fields); the versions they are tested with are bounded in ``pyproject.toml``.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import threading
import weakref
from collections.abc import Callable, Collection, Mapping
from typing import Any, TypeAlias, TypeVar, cast

import optuna
from optuna.distributions import BaseDistribution
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import FrozenTrial, TrialState

from sweeper.spec.model import SweepSpec
from sweeper.spec.space import SearchSpace
from sweeper.storage.attrs import ATTEMPT, FAIL_REASON, QUEUED, lineage
from sweeper.storage.batch import DeferredWrites, TrialWrite, write_trials
from sweeper.storage.fast_read import cache_of, database_of, layer_of
from sweeper.storage.journal_lock import FlockJournalLock

Space: TypeAlias = SearchSpace | Mapping[str, BaseDistribution]
# What an ask suggests on the new trial: the sweep's space (define-by-run over its active
# parameters), plain distributions by flat name, or a define-by-run function of the live trial (the
# user's `scheduler.search_space`, which keeps the config itself).
Asks: TypeAlias = Space | Callable[[optuna.Trial], object]

OPEN_STATES = (TrialState.WAITING, TrialState.RUNNING)


_T = TypeVar("_T")


# -- the work of a budgeted sweep, queued block by block ------------------------------------------

QUEUE_BLOCK = 64
"""How many work items (grid points, budget tokens) an agent queues at once when none waits."""
_queue_lock = threading.Lock()


def start_queue(storage: BaseStorage, study_id: int) -> None:
    """Give a new sweep its queue cursor: no work item queued yet.

    A budgeted sweep's work (its grid points in W&B's order, or ``run_cap`` empty tokens the sampler
    fills) is a list that is never built: agents queue it :data:`QUEUE_BLOCK` items at a time as
    WAITING trials, each block with the cursor's advance in one atomic write (:func:`_top_up`), so
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
        value = _retried(storage, "read the queue cursor", lambda: _cursor_rdb(rdb, study_id))
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


def _top_up(study: optuna.Study, spec: SweepSpec, budget: int) -> int | None:
    """Queue the next block of the sweep's work and take its first item (RUNNING now): its trial id,
    or None when all of the work is queued already."""
    trial_id = _queue_block(study._storage, study._study_id, spec, budget, take=True)
    if trial_id is not None:
        _remember(study, trial_id)
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
        return _retried(
            storage, "queue more work", lambda: _queue_block_rdb(rdb, study_id, spec, budget, take)
        )
    journal = _journal(storage)
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
        head = {"op_code": JournalOperation.CREATE_TRIAL, "worker_id": replay.worker_id, "study_id": study_id}
        logs: list[dict[str, Any]] = [
            {
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
            for params in _work_items(spec, int(done), count)
        ]
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


def _pop_waiting(study: optuna.Study) -> int | None:
    """Claim the oldest WAITING trial (RUNNING now), or None when none is left.

    On a database this is one transaction: the oldest WAITING row is locked (PostgreSQL skips the
    rows other agents hold locked; a SQLite transaction holds the write lock from its start) and
    set RUNNING with its start time, the update Optuna's ``set_trial_state_values`` makes. Optuna's
    own pop reads every WAITING trial in full, which costs seconds per trial with thousands of grid
    points enqueued, then makes the update in a transaction of its own.
    """
    rdb = database_of(study._storage)
    if rdb is None:
        return study._pop_waiting_trial_id()
    import datetime

    import sqlalchemy as sa
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    trials = models.TrialModel.__table__

    def claim() -> int | None:
        with _create_scoped_session(rdb.scoped_session) as session:
            row = session.execute(
                sa.select(trials.c.trial_id)
                .where(trials.c.study_id == study._study_id, trials.c.state == TrialState.WAITING)
                .order_by(trials.c.trial_id)
                .limit(1)
                .with_for_update(skip_locked=True)
            ).first()
            if row is None:
                return None
            session.execute(
                trials.update()
                .where(trials.c.trial_id == row.trial_id, trials.c.state == TrialState.WAITING)
                .values(state=TrialState.RUNNING, datetime_start=datetime.datetime.now())
            )
            return int(row.trial_id)

    trial_id = _retried(study._storage, "pop a waiting trial", claim)
    if trial_id is not None:
        _remember(study, trial_id)
    return trial_id


def _remember(study: optuna.Study, trial_id: int) -> None:
    """Tell Optuna's trial cache of a trial claimed behind its back: its next read fetches it anew.

    (The cache serves only finished trials from memory; an unfinished one it knows of is read again
    from the database by ``get_all_trials``, so there is nothing to read here.)
    """
    from optuna.storages._cached_storage import _StudyInfo

    cached = cache_of(study._storage)
    if cached is None:
        return
    with cached._lock:
        info = cached._studies.setdefault(study._study_id, _StudyInfo())
        info.unfinished_trial_ids.add(trial_id)


def suggest_params(trial: optuna.Trial, space: Space) -> dict[str, Any]:
    """Suggest a trial's params: define-by-run over a :class:`SearchSpace` (only the parameters its
    own choices make active, parents first), or every distribution of a plain mapping."""
    if isinstance(space, SearchSpace):
        return space.define_by_run(trial._suggest)
    return {name: trial._suggest(name, distribution) for name, distribution in space.items()}


def _suggest(study: optuna.Study, trial: optuna.Trial, asks: Asks) -> None:
    """Suggest every param of a claimed trial; a define-by-run function that raises fails the trial."""
    if not callable(asks):
        suggest_params(trial, asks)
        return
    try:
        asks(trial)
    except BaseException as exc:
        # Nothing is left RUNNING behind the error: the trial fails with it as its reason.
        with contextlib.suppress(Exception):
            study._storage.set_trial_user_attr(trial._trial_id, FAIL_REASON, str(exc))
            study.tell(trial, state=TrialState.FAIL)
        raise


def ask_trial(study: optuna.Study, distributions: Asks, spec: SweepSpec) -> optuna.Trial | None:
    """The next trial to run with all params suggested, or None when a budgeted sweep has none left.

    Queued trials (grid points, budget tokens, retries) come first; their fixed params win over
    the sampler (a define-by-run function gets them back from ``suggest_*``, so a retry replays
    the same config). When none waits, a budgeted sweep queues its next block of work and takes its
    first item (:func:`_top_up`); only an unbudgeted sweep creates new trials. Given the sweep's
    :class:`SearchSpace`, only the active parameters are suggested (conditional parameters).
    """
    study._thread_local.cached_all_trials = None
    trial_id = _pop_waiting(study)
    if trial_id is None:
        budget = spec.budget
        if budget is None:
            trial_id = study._storage.create_new_trial(study._study_id)
        else:
            trial_id = _top_up(study, spec, budget)
            if trial_id is None:
                return None
    return _prepared(study, trial_id, distributions)


def _prepared(study: optuna.Study, trial_id: int, distributions: Asks) -> optuna.Trial:
    """The trial with every param suggested; its writes wait for :func:`start_trial`."""
    trial = optuna.Trial(study, trial_id)
    trial.storage = cast(BaseStorage, DeferredWrites(study._storage, trial_id))
    _suggest(study, trial, distributions)
    return trial


def start_trial(
    trial: optuna.Trial,
    *,
    user_attrs: dict[str, Any] | None = None,
    system_attrs: dict[str, Any] | None = None,
    state: TrialState | None = None,
) -> bool:
    """Write a prepared trial's params and attrs, with ``user_attrs`` and ``system_attrs``, at once.

    With ``state`` (a finished state) the same write ends the trial. Returns False when the trial
    was ended meanwhile by someone else (a reaper, ``sweeper cancel``): nothing was written.
    """
    deferred = trial.storage
    storage = trial.study._storage
    trial.storage = storage
    pending = deferred.pending if isinstance(deferred, DeferredWrites) else TrialWrite(trial._trial_id)
    pending.user_attrs.update(user_attrs or {})
    pending.system_attrs.update(system_attrs or {})
    pending.state = state
    trial._cached_frozen_trial.system_attrs.update(pending.system_attrs)
    return trial._trial_id not in write_trials(storage, [pending])


def ended_view(
    trial: optuna.Trial,
    state: TrialState,
    values: list[float] | None,
    user_attrs: dict[str, Any],
    intermediate: dict[int, float],
) -> FrozenTrial:
    """The trial as it is once ended with these, from memory (for the sampler and the retry rule)."""
    import copy
    import datetime

    frozen = copy.copy(trial._cached_frozen_trial)
    frozen.params = dict(frozen.params)
    frozen.distributions = dict(frozen.distributions)
    frozen.user_attrs = {**frozen.user_attrs, **user_attrs}
    frozen.system_attrs = dict(frozen.system_attrs)
    frozen.intermediate_values = {**frozen.intermediate_values, **intermediate}
    frozen.state = state
    frozen.values = values
    frozen.datetime_complete = datetime.datetime.now()
    return frozen


def enqueue(study: optuna.Study, params: dict[str, Any], user_attrs: dict[str, Any]) -> int:
    """Enqueue a WAITING trial with fixed ``params``, as ``study.enqueue_trial`` does; returns its number."""
    template = optuna.trial.create_trial(
        state=TrialState.WAITING, system_attrs={"fixed_params": params}, user_attrs=user_attrs
    )
    trial_id = study._storage.create_new_trial(study._study_id, template_trial=template)
    return study._storage.get_trial_number_from_id(trial_id)


def claim_trial(study: optuna.Study, distributions: Asks, lineages: Collection[int]) -> optuna.Trial | None:
    """Claim a WAITING trial of the given lineages (see :func:`lineage`), or None when none waits.

    A targeted agent's :func:`ask_trial`: the rest of the queue is left alone. The claim is the
    conditional WAITING -> RUNNING update Optuna's ask uses, so each trial runs once however many
    agents race for it.
    """
    study._thread_local.cached_all_trials = None
    waiting = study._storage.get_all_trials(study._study_id, deepcopy=False, states=(TrialState.WAITING,))
    for frozen in waiting:
        if lineage(frozen) not in lineages:
            continue
        try:
            if not study._storage.set_trial_state_values(frozen._trial_id, state=TrialState.RUNNING):
                continue  # another agent took it first
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
        _remember(study, frozen._trial_id)
        return _prepared(study, frozen._trial_id, distributions)
    return None


def has_open_lineages(storage: BaseStorage, study_id: int, lineages: Collection[int]) -> bool:
    """Whether a trial of the given lineages still waits or runs (anywhere, in any agent)."""
    open_trials = storage.get_all_trials(study_id, deepcopy=False, states=OPEN_STATES)
    return any(lineage(t) in lineages for t in open_trials)


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

    return _retried(storage, "find open trials", first_open) is not None


def _retried(storage: BaseStorage, what: str, call: Callable[[], _T]) -> _T:
    """Run a direct database query under the storage's retry policy when it has one."""
    retry = getattr(storage, "_call", None)
    return retry(what, call) if retry is not None else call()


# -- distinct configs: one claim per config, atomic on every storage --------------------------------

CLAIM_PREFIX = "sweeper:config:"
_memory_lock = threading.Lock()
# Per journal backend: how far its log has been read, and the first claimant of each config key.
_journal_claims: weakref.WeakKeyDictionary[Any, tuple[int, dict[tuple[int, str], Any]]] = (
    weakref.WeakKeyDictionary()
)
_journal_lock = threading.Lock()
# Per in-memory storage: the holder of each (study, claim).
_memory_claims: weakref.WeakKeyDictionary[Any, dict[tuple[int, str], int]] = weakref.WeakKeyDictionary()


def claim_config(study: optuna.Study, key: str, trial_number: int) -> bool:
    """Claim config ``key`` (:meth:`SearchSpace.config_key`) for trial ``trial_number``: True if
    this trial holds it now (it claimed it first, or already had), False if another trial does.

    The claim is a study system attr ``sweeper:config:<digest>`` and the first writer wins, which
    each storage decides atomically in its own way:

    - RDB (SQLite, PostgreSQL): an INSERT into study system attributes, unique per (study, key):
      a second INSERT fails with an integrity error (PostgreSQL blocks it until the first commits).
    - Journal: appends are totally ordered in the log; the first op that wrote the key wins
      (Optuna's replay keeps the last value, so the log itself is read).
    - In memory (one process): a lock around a dict of holders.
    - Any other storage: read-then-write under a lock, atomic among one process's threads only.

    Claims are made with the trial's number as value, so a retried claim (a lost connection after
    the commit) recognises its own.
    """
    attr = CLAIM_PREFIX + hashlib.sha256(key.encode("utf-8")).hexdigest()
    storage = study._storage
    rdb = database_of(storage)
    if rdb is not None:
        holder = _retried(
            storage, "claim a config", lambda: _claim_rdb(rdb, study._study_id, attr, trial_number)
        )
        return bool(holder == trial_number)
    journal = _journal(storage)
    if journal is not None:
        return bool(_claim_journal(journal, study._study_id, attr, trial_number) == trial_number)
    memory = layer_of(storage, optuna.storages.InMemoryStorage)
    with _memory_lock:
        if memory is not None:
            # One process holds the whole storage: a dict beside it answers without copying attrs.
            holders = _memory_claims.setdefault(memory, {})
            holder = holders.setdefault((study._study_id, attr), trial_number)
            if holder == trial_number:
                storage.set_study_system_attr(study._study_id, attr, trial_number)
            return bool(holder == trial_number)
        # Another kind of storage: read-then-write, atomic among this process's threads only.
        holder = storage.get_study_system_attrs(study._study_id).get(attr)
        if holder is None:
            storage.set_study_system_attr(study._study_id, attr, trial_number)
            return True
        return bool(holder == trial_number)


def _claim_rdb(rdb: RDBStorage, study_id: int, attr: str, trial_number: int) -> Any:
    """Insert the claim; return the number of the trial that holds it (ours when the insert won)."""
    from optuna.storages._rdb import models
    from sqlalchemy import exc

    session = rdb.scoped_session()
    try:
        session.add(
            models.StudySystemAttributeModel(study_id=study_id, key=attr, value_json=json.dumps(trial_number))
        )
        session.commit()
        return trial_number
    except exc.IntegrityError:
        session.rollback()
        row = (
            session.query(models.StudySystemAttributeModel.value_json)
            .filter(models.StudySystemAttributeModel.study_id == study_id)
            .filter(models.StudySystemAttributeModel.key == attr)
            .one()
        )
        return json.loads(row[0])
    finally:
        session.close()


def _journal(storage: BaseStorage) -> Any:
    from optuna.storages.journal import JournalStorage

    return layer_of(storage, JournalStorage)


def _claim_journal(journal: Any, study_id: int, attr: str, trial_number: int) -> Any:
    """Append the claim, then read the log: the first op that set ``attr`` names its holder."""
    from optuna.storages.journal._storage import JournalOperation

    journal.set_study_system_attr(study_id, attr, trial_number)
    backend = journal._backend
    # The storage's own lock too: its replay reads the same backend from other threads.
    with journal._thread_lock, _journal_lock:
        read, first = _journal_claims.get(backend, (0, {}))
        for log in backend.read_logs(read):
            read += 1
            if log.get("op_code") != JournalOperation.SET_STUDY_SYSTEM_ATTR:
                continue
            for key, value in log.get("system_attr", {}).items():
                if key.startswith(CLAIM_PREFIX):
                    first.setdefault((int(log["study_id"]), key), value)
        _journal_claims[backend] = (read, first)
        return first.get((study_id, attr))
