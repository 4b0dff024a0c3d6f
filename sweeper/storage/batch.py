"""Many trial writes in one storage round trip: one transaction on a database, one append on the journal.

Optuna's storage API writes one thing per call: each param, attribute, intermediate value and the
final state is a transaction of its own on a database and an fsync'd append on the journal file.
:func:`write_trials` takes everything the agent has to write about some trials (their params and
attributes as they start; their attributes, late intermediate values, state and values as they end)
and writes it at once, as Optuna's own calls would have written it, row for row and record for
record:

- on a database (:class:`~optuna.storages.RDBStorage`, even inside Optuna's cache or
  :class:`~sweeper.storage.retry.RetryingStorage`): one transaction, made of the same
  ``_*_without_commit`` helpers Optuna's calls use, each trial's row locked first;
- on a :class:`~optuna.storages.JournalStorage`: one ``append_logs`` batch of the very records
  Optuna's calls append (``SET_TRIAL_PARAM``, ``SET_TRIAL_USER_ATTR``, ..., ``SET_TRIAL_STATE_VALUES``);
- on any other storage: Optuna's calls, one by one.

A trial another agent (or a lease reaper, or ``sweeper cancel``) has ended already is refused as a
whole, as Optuna's calls refuse it: its writes are dropped and it is named in the result with the
error Optuna would have raised, while the other trials of the batch are written. This module,
:mod:`sweeper.storage.queue` and :mod:`sweeper.storage.fast_read` are the only ones that touch
Optuna's internals; ``pyproject.toml`` bounds Optuna to the versions they are tested with.

Example:
    >>> import optuna
    >>> from optuna.trial import TrialState
    >>> storage = optuna.storages.InMemoryStorage()
    >>> study_id = storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], "demo")
    >>> trial_id = storage.create_new_trial(study_id)
    >>> ended = TrialWrite(trial_id, user_attrs={"host": "a"}, state=TrialState.COMPLETE, values=[0.5])
    >>> write_trials(storage, [ended])
    {}
    >>> frozen = storage.get_trial(trial_id)
    >>> (frozen.state.name, frozen.values, frozen.user_attrs)
    ('COMPLETE', [0.5], {'host': 'a'})
    >>> sorted(write_trials(storage, [ended]))  # ended already: refused, as Optuna refuses it
    [0]
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, TypeVar, cast

import optuna
from optuna.distributions import BaseDistribution, distribution_to_json
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.trial import TrialState

from sweeper.storage.fast_read import cache_of, database_of
from sweeper.storage.journal_read import JournalFile
from sweeper.storage.retry import RetryingStorage

_T = TypeVar("_T")

Refused = dict[int, BaseException]
"""Trial id -> why its writes were refused (``UpdateFinishedTrialError``, or ``KeyError``: no such trial)."""


@dataclass
class TrialWrite:
    """Everything to write about one trial in one go.

    Args:
        trial_id: The trial.
        params: Param name -> (internal value, distribution), as ``set_trial_param`` takes them.
        user_attrs: User attrs to set.
        system_attrs: System attrs to set.
        intermediate: Step -> intermediate value.
        state: A finished state to end the trial with, or None to leave its state alone.
        values: The trial's values (with ``state``).
    """

    trial_id: int
    params: dict[str, tuple[float, BaseDistribution]] = field(default_factory=dict)
    user_attrs: dict[str, Any] = field(default_factory=dict)
    system_attrs: dict[str, Any] = field(default_factory=dict)
    intermediate: dict[int, float] = field(default_factory=dict)
    state: TrialState | None = None
    values: Sequence[float] | None = None

    def __post_init__(self) -> None:
        if self.state is not None and not self.state.is_finished():
            raise ValueError(f"a batched write can only end a trial, got state {self.state.name}")

    @property
    def empty(self) -> bool:
        """Whether there is nothing to write."""
        return not (self.params or self.user_attrs or self.system_attrs or self.intermediate or self.state)


def write_trials(storage: BaseStorage, writes: Sequence[TrialWrite]) -> Refused:
    """Write ``writes`` in one round trip (see the module docstring); returns the refused trials.

    Several writes of one trial are written as one, merged in their order.

    Transient database errors are retried as :class:`RetryingStorage` retries any call (the
    transaction is all or nothing, so a retry writes it once).
    """
    writes = _one_per_trial([w for w in writes if not w.empty])
    if not writes:
        return {}
    rdb = database_of(storage)
    if rdb is not None:
        return _retried(storage, "write_trials", lambda: _write_rdb(storage, rdb, writes))
    journal = _journal_of(storage)
    if journal is not None:
        return _retried(storage, "write_trials", lambda: _write_journal(journal, writes))
    return _write_each(storage, writes)


def _one_per_trial(writes: list[TrialWrite]) -> list[TrialWrite]:
    """The writes with each trial's merged into one, in order (a later value wins, as a later call
    would), where the first of them stood.

    A trial launched by a refill can end before the loop's write, which then carries its start and
    its end; the database writer keeps one row set per trial, so a second write of it would drop
    the first (its params).
    """
    merged: dict[int, TrialWrite] = {}
    for w in writes:
        into = merged.get(w.trial_id)
        if into is None:
            merged[w.trial_id] = w
            continue
        ends = w.state is not None
        merged[w.trial_id] = TrialWrite(
            w.trial_id,
            params={**into.params, **w.params},
            user_attrs={**into.user_attrs, **w.user_attrs},
            system_attrs={**into.system_attrs, **w.system_attrs},
            intermediate={**into.intermediate, **w.intermediate},
            state=w.state if ends else into.state,
            values=w.values if ends else into.values,
        )
    return list(merged.values())


def _retried(storage: BaseStorage, what: str, call: Callable[[], _T]) -> _T:
    """Run ``call`` as one call of the storage's retry wrapper (which also counts it), if any."""
    return storage._call(what, call) if isinstance(storage, RetryingStorage) else call()


def writes_beside_asks(storage: BaseStorage) -> bool:
    """Whether the agent's loop lets its writes of ends commit beside it (see ``engine/loop.py``).

    PostgreSQL: its commit waits on the server, the write's rows locked, not the WAITING ones an ask
    takes, so the asks go on meanwhile, and trials/s rose by about 40 % (BENCHMARKS.md). Not SQLite,
    whose commit holds the database's one write lock; not memory, where a write takes no time; not
    the journal file, whose appends share one lock and whose ``fsync`` takes a millisecond: there the
    second thread cost the loop more than the wait it saved (BENCHMARKS.md, section 3).
    """
    rdb = database_of(storage)
    return rdb is not None and rdb.engine.dialect.name == "postgresql"


def durable_later(storage: BaseStorage) -> Callable[[], None] | None:
    """On our journal file, the call that makes its appends durable (one ``fsync``): a write made
    inside :func:`~sweeper.storage.journal_read.unsynced` is durable once it has run. None elsewhere:
    every write there is durable as it returns."""
    journal = _journal_of(storage)
    if journal is None or not isinstance(journal._backend, JournalFile):
        return None
    return journal._backend.sync


def _journal_of(storage: BaseStorage) -> JournalStorage | None:
    current = storage
    while isinstance(current, RetryingStorage):
        current = current.inner
    return current if isinstance(current, JournalStorage) else None


# -- any storage: Optuna's calls -------------------------------------------------------------------


def _write_each(storage: BaseStorage, writes: Sequence[TrialWrite]) -> Refused:
    refused: Refused = {}
    for w in writes:
        try:
            for name, (internal, distribution) in w.params.items():
                storage.set_trial_param(w.trial_id, name, internal, distribution)
            for key, value in w.user_attrs.items():
                storage.set_trial_user_attr(w.trial_id, key, value)
            for key, value in w.system_attrs.items():
                storage.set_trial_system_attr(w.trial_id, key, value)
            for step, value in w.intermediate.items():
                storage.set_trial_intermediate_value(w.trial_id, step, value)
            if w.state is not None:
                storage.set_trial_state_values(w.trial_id, w.state, w.values)
        except (optuna.exceptions.UpdateFinishedTrialError, KeyError) as exc:
            refused[w.trial_id] = exc
    return refused


# -- a database: one transaction -------------------------------------------------------------------


def _write_rdb(storage: BaseStorage, rdb: RDBStorage, writes: Sequence[TrialWrite]) -> Refused:
    if rdb.engine.name in ("sqlite", "postgresql"):
        return _write_rdb_rows(storage, rdb, writes)
    return _write_rdb_each(storage, rdb, writes)


def _write_rdb_rows(storage: BaseStorage, rdb: RDBStorage, writes: Sequence[TrialWrite]) -> Refused:
    """The same rows ``_write_rdb_each`` writes, a handful of set-based statements for the whole batch.

    One ``SELECT ... FOR UPDATE`` locks every trial of the batch (in id order), then one statement
    per table inserts or upserts the rows of all of them; Optuna's helpers would look each trial up
    again for every row (two statements a row, each a network round trip on PostgreSQL).
    """
    import sqlalchemy as sa
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session
    from sqlalchemy.dialects import postgresql, sqlite

    insert: Any = postgresql.insert if rdb.engine.name == "postgresql" else sqlite.insert

    def upsert(
        session: Any, model: Any, rows: list[dict[str, Any]], keys: tuple[str, ...], updated: tuple[str, ...]
    ) -> None:
        # The rows as parameters of one statement (SQLAlchemy sends them in multi-row batches),
        # not inlined: a statement per row count would fill SQLAlchemy's statement cache, each
        # entry as large as its rows (tens of MB for 100,000 intermediate values).
        statement = insert(model.__table__)
        upserted = statement.on_conflict_do_update(
            index_elements=list(keys), set_={c: getattr(statement.excluded, c) for c in updated}
        )
        session.execute(upserted, rows)

    cache = cache_of(storage)
    refused: Refused = {}
    by_id = {w.trial_id: w for w in writes}
    with _create_scoped_session(rdb.scoped_session) as session:
        trials = models.TrialModel.__table__
        found = {
            row.trial_id: row
            for row in session.execute(
                sa.select(trials.c.trial_id, trials.c.study_id, trials.c.number, trials.c.state)
                .where(trials.c.trial_id.in_(sorted(by_id)))
                .order_by(trials.c.trial_id)
                .with_for_update()
            )
        }
        live: list[TrialWrite] = []
        for trial_id, w in by_id.items():
            row = found.get(trial_id)
            if row is None:
                refused[trial_id] = KeyError(f"no trial with id {trial_id}")
            elif TrialState(row.state).is_finished():
                refused[trial_id] = _finished(row.number)
            else:
                live.append(w)
        known: dict[str, BaseDistribution] = {}
        param_rows: list[dict[str, Any]] = []
        for w in live:
            for name, (internal, distribution) in w.params.items():
                previous = known.get(name) or _cached_distribution(cache, found[w.trial_id].study_id, name)
                if previous is None:
                    previous = _stored_distribution(session, found[w.trial_id].study_id, name)
                if previous is not None:
                    optuna.distributions.check_distribution_compatibility(previous, distribution)
                known[name] = distribution
                param_rows.append(
                    {
                        "trial_id": w.trial_id,
                        "param_name": name,
                        "param_value": internal,
                        "distribution_json": distribution_to_json(distribution),
                    }
                )
        if param_rows:
            session.execute(sa.insert(models.TrialParamModel.__table__), param_rows)
        for model, attr in (
            (models.TrialUserAttributeModel, "user_attrs"),
            (models.TrialSystemAttributeModel, "system_attrs"),
        ):
            rows = [
                {"trial_id": w.trial_id, "key": key, "value_json": json.dumps(value)}
                for w in live
                for key, value in getattr(w, attr).items()
            ]
            if rows:
                upsert(session, model, rows, ("trial_id", "key"), ("value_json",))
        steps = []
        for w in live:
            for step, value in w.intermediate.items():
                stored, kind = models.TrialIntermediateValueModel.intermediate_value_to_stored_repr(value)
                steps.append(
                    {
                        "trial_id": w.trial_id,
                        "step": step,
                        "intermediate_value": stored,
                        "intermediate_value_type": kind,
                    }
                )
        if steps:
            upsert(
                session,
                models.TrialIntermediateValueModel,
                steps,
                ("trial_id", "step"),
                ("intermediate_value", "intermediate_value_type"),
            )
        values = []
        for w in live:
            for objective, value in enumerate(w.values or () if w.state is not None else ()):
                stored_value, value_type = models.TrialValueModel.value_to_stored_repr(value)
                values.append(
                    {
                        "trial_id": w.trial_id,
                        "objective": objective,
                        "value": stored_value,
                        "value_type": value_type,
                    }
                )
        if values:
            keys, updated = ("trial_id", "objective"), ("value", "value_type")
            upsert(session, models.TrialValueModel, values, keys, updated)
        ended = [
            {"id": w.trial_id, "new_state": w.state, "completed": datetime.now()}
            for w in live
            if w.state is not None
        ]
        if ended:
            session.execute(
                trials.update()
                .where(trials.c.trial_id == sa.bindparam("id"))
                .values(state=sa.bindparam("new_state"), datetime_complete=sa.bindparam("completed")),
                ended,
            )
        _remember_distributions(cache, live)
    return refused


def _stored_distribution(session: Any, study_id: int, name: str) -> BaseDistribution | None:
    """The distribution of the study's first stored value of param ``name`` (what Optuna checks against)."""
    from optuna.storages._rdb import models

    record = (
        session.query(models.TrialParamModel.distribution_json)
        .join(models.TrialModel)
        .filter(models.TrialModel.study_id == study_id)
        .filter(models.TrialParamModel.param_name == name)
        .first()
    )
    return None if record is None else optuna.distributions.json_to_distribution(record[0])


def _remember_distributions(cache: Any, writes: Sequence[TrialWrite]) -> None:
    """What ``_CachedStorage.set_trial_param`` remembers: the first distribution of each param."""
    if cache is None or not any(w.params for w in writes):
        return
    with cache._lock:
        for w in writes:
            if w.params and w.trial_id in cache._trial_id_to_study_id_and_number:
                study_id, _ = cache._trial_id_to_study_id_and_number[w.trial_id]
                info = cache._studies.get(study_id)
                if info is not None:
                    for name, (_, distribution) in w.params.items():
                        info.param_distribution.setdefault(name, distribution)


def _write_rdb_each(storage: BaseStorage, rdb: RDBStorage, writes: Sequence[TrialWrite]) -> Refused:
    """Other databases: Optuna's own ``_*_without_commit`` helpers, in one transaction."""
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    cache = cache_of(storage)
    known: dict[str, BaseDistribution] = {}
    refused: Refused = {}
    with _create_scoped_session(rdb.scoped_session) as session:
        # Rows locked in id order: two agents' batches never wait on each other in a cycle.
        for w in sorted(writes, key=lambda w: w.trial_id):
            try:
                trial = models.TrialModel.find_or_raise_by_id(w.trial_id, session, for_update=True)
                rdb.check_trial_is_updatable(w.trial_id, cast(TrialState, trial.state))
            except (optuna.exceptions.UpdateFinishedTrialError, KeyError) as exc:
                refused[w.trial_id] = exc
                continue
            for name, (internal, distribution) in w.params.items():
                previous = known.get(name) or _cached_distribution(cache, cast(int, trial.study_id), name)
                rdb._set_trial_param_without_commit(
                    session, w.trial_id, name, internal, distribution, previous
                )
                known[name] = distribution
            for key, value in w.user_attrs.items():
                rdb._set_trial_attr_without_commit(
                    session, models.TrialUserAttributeModel, w.trial_id, key, value
                )
            for key, value in w.system_attrs.items():
                rdb._set_trial_attr_without_commit(
                    session, models.TrialSystemAttributeModel, w.trial_id, key, value
                )
            for step, value in w.intermediate.items():
                rdb._set_trial_intermediate_value_without_commit(session, w.trial_id, step, value)
            if w.state is not None:
                # What ``RDBStorage.set_trial_state_values`` does to a RUNNING trial it ends.
                for objective, value in enumerate(w.values or ()):
                    rdb._set_trial_value_without_commit(session, trial, objective, value)
                trial.state = w.state
                trial.datetime_complete = datetime.now()
    _remember_distributions(cache, [w for w in writes if w.trial_id not in refused])
    return refused


def _cached_distribution(cache: Any, study_id: int, name: str) -> BaseDistribution | None:
    if cache is None:
        return None
    with cache._lock:
        info = cache._studies.get(study_id)
        return None if info is None else info.param_distribution.get(name)


# -- the journal: one append -----------------------------------------------------------------------


def _write_journal(journal: JournalStorage, writes: Sequence[TrialWrite]) -> Refused:
    from optuna.storages.journal._storage import JournalOperation

    refused: Refused = {}
    logs: list[dict[str, Any]] = []
    ends: dict[int, datetime] = {}
    with journal._thread_lock:
        journal._sync_with_backend()
        replay = journal._replay_result
        worker_id = replay.worker_id
        for w in writes:
            known = replay._trials.get(w.trial_id)
            if known is None:
                refused[w.trial_id] = KeyError(f"no trial with id {w.trial_id}")
                continue
            if known.state.is_finished():
                refused[w.trial_id] = _finished(known.number)
                continue
            logs.extend(_journal_logs(w, worker_id, JournalOperation, ends))
        if not logs:
            return refused
        journal._backend.append_logs(logs)
        # Replaying our own records raises for each one another agent's record made void (the trial
        # ended between our read and our append); replay on past them, then see whose end won.
        while True:
            try:
                journal._sync_with_backend()
                break
            except (optuna.exceptions.UpdateFinishedTrialError, KeyError):
                continue
        for trial_id, ended_at in ends.items():
            trial = replay._trials[trial_id]
            if trial.datetime_complete != ended_at.astimezone().replace(tzinfo=None):
                refused[trial_id] = _finished(trial.number)
    return refused


def _journal_logs(w: TrialWrite, worker_id: str, op: Any, ends: dict[int, datetime]) -> list[dict[str, Any]]:
    """The records Optuna's ``JournalStorage`` calls append for ``w``, in the order they would."""
    head = {"worker_id": worker_id, "trial_id": w.trial_id}
    logs: list[dict[str, Any]] = [
        {
            "op_code": op.SET_TRIAL_PARAM,
            **head,
            "param_name": name,
            "param_value_internal": internal,
            "distribution": distribution_to_json(distribution),
        }
        for name, (internal, distribution) in w.params.items()
    ]
    logs.extend(
        {"op_code": op.SET_TRIAL_USER_ATTR, **head, "user_attr": {k: v}} for k, v in w.user_attrs.items()
    )
    logs.extend(
        {"op_code": op.SET_TRIAL_SYSTEM_ATTR, **head, "system_attr": {k: v}}
        for k, v in w.system_attrs.items()
    )
    logs.extend(
        {"op_code": op.SET_TRIAL_INTERMEDIATE_VALUE, **head, "step": step, "intermediate_value": value}
        for step, value in w.intermediate.items()
    )
    if w.state is not None:
        ended_at = datetime.now(tz=timezone.utc)
        ends[w.trial_id] = ended_at
        logs.append(
            {
                "op_code": op.SET_TRIAL_STATE_VALUES,
                **head,
                "state": w.state,
                "values": None if w.values is None else list(w.values),
                "datetime_complete": ended_at.isoformat(timespec="microseconds"),
            }
        )
    return logs


def _finished(number: int) -> optuna.exceptions.UpdateFinishedTrialError:
    """The error Optuna raises for a write to an ended trial."""
    return optuna.exceptions.UpdateFinishedTrialError(
        f"Trial#{number} has already finished and can not be updated."
    )


class DeferredWrites:
    """Stands in for a storage while one trial is prepared: its param and attr writes are kept.

    Put in place of an :class:`optuna.Trial`'s ``storage`` while its params are suggested and its
    attrs set, then written with the rest of the trial's start in one :func:`write_trials` call.
    Reads, and writes about other trials, go to the storage.

    Args:
        storage: The storage.
        trial_id: The trial whose writes are kept.
    """

    def __init__(self, storage: BaseStorage, trial_id: int) -> None:
        self.storage = storage
        self.pending = TrialWrite(trial_id)

    def __getattr__(self, name: str) -> Any:
        if name == "storage":  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.storage, name)

    def set_trial_param(
        self, trial_id: int, param_name: str, param_value_internal: float, distribution: BaseDistribution
    ) -> None:
        if trial_id != self.pending.trial_id:
            self.storage.set_trial_param(trial_id, param_name, param_value_internal, distribution)
            return
        previous = self.pending.params.get(param_name)
        if previous is not None:
            optuna.distributions.check_distribution_compatibility(previous[1], distribution)
        self.pending.params[param_name] = (param_value_internal, distribution)

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        if trial_id != self.pending.trial_id:
            self.storage.set_trial_user_attr(trial_id, key, value)
            return
        self.pending.user_attrs[key] = value

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        if trial_id != self.pending.trial_id:
            self.storage.set_trial_system_attr(trial_id, key, value)
            return
        self.pending.system_attrs[key] = value
