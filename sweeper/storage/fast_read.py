"""Reading a sweep's trials fast: a few set-based queries on Optuna's own tables.

Optuna's ``RDBStorage.get_all_trials`` loads a study through its ORM, one Python object per param,
value and attribute row; on a sweep of 10,000 trials that costs seconds of CPU. :func:`read_trials`
asks the same tables for the same rows with one SQLAlchemy Core query per table (trials, params,
objective values, intermediate values, user and system attrs; on PostgreSQL the three biggest on
connections of their own, at once, all in one snapshot) and builds the
:class:`~optuna.trial.FrozenTrial` objects exactly as Optuna does: params turned into their external
representation by each row's distribution, infinite values restored from their value type, attrs
decoded from JSON.

Other storages (the journal file) are read by their own ``get_all_trials``, and so is a database
whose tables do not look like the Optuna schema this was written against: the fast path is an
optimisation, never a second source of truth.

Example:
    >>> import optuna
    >>> storage = optuna.storages.get_storage("sqlite:///:memory:")  # RDBStorage in Optuna's cache
    >>> study_id = storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], "demo")
    >>> trial_id = storage.create_new_trial(study_id)
    >>> [(t.number, t.state.name) for t in read_trials(storage, study_id)]
    [(0, 'RUNNING')]
"""

from __future__ import annotations

import gc
import json
import logging
import math
import re
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any, NamedTuple, TypeVar

from optuna.distributions import BaseDistribution, json_to_distribution
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages._cached_storage import _CachedStorage
from optuna.trial import FrozenTrial, TrialState

from sweeper.storage.retry import RetryingStorage

_logger = logging.getLogger(__name__)

# Why the fast path was skipped, each logged once per process (a CLI loads one sweep; an agent many).
_noted: set[str] = set()


def read_trials(storage: BaseStorage, study_id: int) -> list[FrozenTrial]:
    """Every trial of a study, by number, as ``storage.get_all_trials(study_id, deepcopy=False)`` returns.

    On a database storage (even wrapped in Optuna's cache or :class:`RetryingStorage`) the trials
    are read with a handful of queries; anything else, or any error on the way (a schema this reader
    does not know, a lost connection), falls back to the storage's own ``get_all_trials``, which
    retries and raises as usual.

    Like ``get_all_trials(deepcopy=False)``, the trials may share objects (distributions): treat them
    as read-only.

    Args:
        storage: An open Optuna storage.
        study_id: The study to read.
    """
    rdb = database_of(storage)
    if rdb is None:
        _note(f"{type(storage).__name__} is not a database storage")
        return storage.get_all_trials(study_id, deepcopy=False)
    try:
        with _collector_paused():
            trials = _read(rdb, study_id)
    except Exception as exc:  # any surprise: Optuna's own reader is the reference
        _note(f"the fast read failed ({type(exc).__name__}: {exc})", key=type(exc).__name__)
        return storage.get_all_trials(study_id, deepcopy=False)
    if trials is None:  # no such study: let the storage raise its own error
        return storage.get_all_trials(study_id, deepcopy=False)
    return trials


_Layer = TypeVar("_Layer", bound=BaseStorage)


def database_of(storage: BaseStorage) -> RDBStorage | None:
    """The :class:`~optuna.storages.RDBStorage` inside ``storage``'s wrappers, ``None`` for other kinds.

    Example:
        >>> from optuna.storages import InMemoryStorage
        >>> database_of(InMemoryStorage()) is None
        True
    """
    return layer_of(storage, RDBStorage)


def cache_of(storage: BaseStorage) -> _CachedStorage | None:
    """Optuna's trial cache inside ``storage``'s wrappers (RDB storages have one), else ``None``."""
    return layer_of(storage, _CachedStorage)


def layer_of(storage: BaseStorage, kind: type[_Layer]) -> _Layer | None:
    """The storage of type ``kind`` among ``storage`` and the storages it wraps, else ``None``."""
    return next((layer for layer in _layers(storage) if isinstance(layer, kind)), None)


def _layers(storage: BaseStorage) -> Iterator[BaseStorage]:
    """``storage`` and the storages it wraps, outermost first (our retry wrapper, Optuna's cache)."""
    current: BaseStorage | None = storage
    while current is not None:
        yield current
        if isinstance(current, RetryingStorage):
            current = current.inner
        elif isinstance(current, _CachedStorage):
            current = current._backend
        else:
            current = None


@contextmanager
def _collector_paused() -> Iterator[None]:
    """No cyclic garbage collection meanwhile: the read makes hundreds of thousands of objects, all kept.

    Without this, the collector scans them again and again as they pile up, which doubles the time
    of a big read. The trials hold no reference cycles; any the database layer makes meanwhile are
    collected by the collector's next run.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _note(reason: str, key: str | None = None) -> None:
    key = key or reason
    if key not in _noted:
        _noted.add(key)
        _logger.debug("reading trials with the storage's get_all_trials: %s", reason)


class _Rows(NamedTuple):
    """A study's rows, table by table (each row a tuple led by its trial id)."""

    trials: Sequence[Any]
    params: Sequence[Any]
    values: Sequence[Any]
    steps: Sequence[Any]
    user_attrs: Sequence[Any]
    system_attrs: Sequence[Any]


def _read(rdb: RDBStorage, study_id: int) -> list[FrozenTrial] | None:
    """The study's trials as of one moment of the database; ``None`` when there is no such study."""
    from optuna.storages._rdb import models
    from sqlalchemy import select

    study_exists = select(models.StudyModel.study_id).where(models.StudyModel.study_id == study_id)
    queries = _queries(study_id)
    if rdb.engine.dialect.name == "postgresql":
        rows = _read_postgresql(rdb, study_exists, queries)
    else:
        with rdb.engine.connect() as connection, connection.begin():
            found = connection.execute(study_exists).first() is not None
            rows = _Rows(*(connection.execute(query).all() for query in queries)) if found else None
    return None if rows is None else _build(rows)


def _queries(study_id: int) -> list[Any]:
    """One query a table, in the order of :class:`_Rows`: each row led by its trial id."""
    from optuna.storages._rdb import models
    from sqlalchemy import String, select, type_coerce

    def text(column: Any) -> Any:
        # An enum column as its stored name: SQLAlchemy's enum conversion costs a call per row.
        return type_coerce(column, String)

    trial = models.TrialModel
    param = models.TrialParamModel
    value = models.TrialValueModel
    step = models.TrialIntermediateValueModel
    user = models.TrialUserAttributeModel
    system = models.TrialSystemAttributeModel
    in_study = select(trial.trial_id).where(trial.study_id == study_id).scalar_subquery()
    return [
        # The stored UTC columns (Optuna 5): an older model lacks them and falls back.
        select(
            trial.trial_id,
            trial.number,
            text(trial.state),
            trial._datetime_start_utc,
            trial._datetime_complete_utc,
        )
        .where(trial.study_id == study_id)
        .order_by(trial.number, trial.trial_id),
        select(param.trial_id, param.param_name, param.param_value, param.distribution_json)
        .where(param.trial_id.in_(in_study))
        .order_by(param.param_id),
        select(value.trial_id, value.objective, value.value, text(value.value_type))
        .where(value.trial_id.in_(in_study))
        .order_by(value.trial_id, value.objective),
        select(step.trial_id, step.step, step.intermediate_value, text(step.intermediate_value_type))
        .where(step.trial_id.in_(in_study))
        .order_by(step.trial_intermediate_value_id),
        select(user.trial_id, user.key, user.value_json)
        .where(user.trial_id.in_(in_study))
        .order_by(user.trial_user_attribute_id),
        select(system.trial_id, system.key, system.value_json)
        .where(system.trial_id.in_(in_study))
        .order_by(system.trial_system_attribute_id),
    ]


_ALONGSIDE = (1, 3, 4)
"""The queries (params, intermediate values, user attrs: most of a sweep's rows) PostgreSQL
answers on connections of their own, alongside the others."""
_SNAPSHOT_ID = re.compile(r"[0-9A-Fa-f]+(-[0-9A-Fa-f]+)+")


def _read_postgresql(rdb: RDBStorage, study_exists: Any, queries: list[Any]) -> _Rows | None:
    """The rows, the biggest tables read on connections of their own at once, in one snapshot.

    Read one after another, the queries left this process waiting on the server for a fifth of a
    second at 10,000 trials (its sorts and the rows' transfer), CPU it could have spent on the rows
    already in. The extra connections import the first one's snapshot (``pg_export_snapshot``), so
    every query sees the database as of the same moment, as in one transaction.
    """
    engine = rdb.engine
    with engine.connect().execution_options(isolation_level="REPEATABLE READ") as lead, lead.begin():
        if lead.execute(study_exists).first() is None:
            return None
        snapshot = str(lead.exec_driver_sql("SELECT pg_export_snapshot()").scalar_one())
        if not _SNAPSHOT_ID.fullmatch(snapshot):
            raise ValueError(f"unexpected snapshot id from PostgreSQL: {snapshot!r}")

        def in_snapshot(query: Any) -> Sequence[Any]:
            connection = engine.connect().execution_options(isolation_level="REPEATABLE READ")
            with connection, connection.begin():
                connection.exec_driver_sql(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
                return connection.execute(query).all()

        with ThreadPoolExecutor(len(_ALONGSIDE), thread_name_prefix="sweeper-read") as pool:
            alongside = {i: pool.submit(in_snapshot, queries[i]) for i in _ALONGSIDE}
            rows = [
                alongside[i] if i in alongside else lead.execute(query).all()
                for i, query in enumerate(queries)
            ]
            return _Rows(*(each.result() if isinstance(each, Future) else each for each in rows))


def _build(rows: _Rows) -> list[FrozenTrial]:
    """FrozenTrials from the rows, as ``RDBStorage._build_frozen_trial_from_trial_model`` makes them.

    Rows of trials not among ``rows.trials`` (created after those were read) are skipped.
    """
    from optuna.storages._rdb.models import TrialIntermediateValueModel, TrialValueModel

    ids = [row[0] for row in rows.trials]
    params: dict[int, dict[str, Any]] = {i: {} for i in ids}
    distributions: dict[int, dict[str, BaseDistribution]] = {i: {} for i in ids}
    values: dict[int, dict[int, float]] = {}
    steps: dict[int, dict[int, float]] = {i: {} for i in ids}
    user_attrs: dict[int, dict[str, Any]] = {i: {} for i in ids}
    system_attrs: dict[int, dict[str, Any]] = {i: {} for i in ids}

    # A sweep has a few distinct distributions shared by thousands of params: decode each once.
    decoded: dict[str, BaseDistribution] = {}
    for trial_id, name, internal, distribution_json in rows.params:
        trial_params = params.get(trial_id)
        if trial_params is None:
            continue
        distribution = decoded.get(distribution_json)
        if distribution is None:
            distribution = decoded[distribution_json] = json_to_distribution(distribution_json)
        trial_params[name] = distribution.to_external_repr(internal)
        distributions[trial_id][name] = distribution

    # Finite values (nearly all) skip Optuna's converters; the rest go through them, asserts included.
    value_types = TrialValueModel.TrialValueType
    to_value = TrialValueModel.stored_repr_to_value
    for trial_id, objective, stored, value_type in rows.values:
        if trial_id in params:
            values.setdefault(trial_id, {})[objective] = (
                stored
                if value_type == "FINITE" and stored is not None
                else to_value(stored, value_types[value_type])
            )

    step_types = TrialIntermediateValueModel.TrialIntermediateValueType
    to_step_value = TrialIntermediateValueModel.stored_repr_to_intermediate_value
    for trial_id, number, stored, value_type in rows.steps:
        curve = steps.get(trial_id)
        if curve is not None:
            curve[number] = (
                stored
                if value_type == "FINITE" and stored is not None
                else to_step_value(stored, step_types[value_type])
            )

    for attr_rows, attrs in ((rows.user_attrs, user_attrs), (rows.system_attrs, system_attrs)):
        for (trial_id, key, _), decoded_value in zip(attr_rows, _json_values(attr_rows), strict=True):
            trial_attrs = attrs.get(trial_id)
            if trial_attrs is not None:
                trial_attrs[key] = decoded_value

    states = TrialState.__members__
    local = LocalTime()
    return [
        FrozenTrial(
            number=number,
            state=states[state],
            value=None,
            values=_objective_values(values.get(trial_id)),
            datetime_start=local(started),
            datetime_complete=local(completed),
            params=params[trial_id],
            distributions=distributions[trial_id],
            user_attrs=user_attrs[trial_id],
            system_attrs=system_attrs[trial_id],
            intermediate_values=steps[trial_id],
            trial_id=trial_id,
        )
        for trial_id, number, state, started, completed in rows.trials
    ]


def _json_values(attr_rows: Sequence[Any]) -> list[Any]:
    """The decoded ``value_json`` (last column) of every row, in one ``json.loads`` of them all.

    Each ``json.loads`` costs microseconds of Python around the C decoder; one call for the whole
    column saves most of them. Optuna writes every value with ``json.dumps``, one JSON value each; a
    row holding several (``1, 2``) or none would change the count, which is checked.
    """
    if not attr_rows:
        return []
    decoded = json.loads("[" + ",".join([row[-1] for row in attr_rows]) + "]")
    if len(decoded) != len(attr_rows):
        raise ValueError(f"expected one JSON value per attr row ({len(attr_rows)}), got {len(decoded)}")
    return list(decoded)


def _objective_values(by_objective: dict[int, float] | None) -> list[float] | None:
    # Optuna fills a list as long as the rows by each row's objective index.
    if not by_objective:
        return None
    filled: list[float] = [math.nan] * len(by_objective)
    for objective, value in by_objective.items():
        filled[objective] = value
    return filled


class LocalTime:
    """Optuna 5 stores naive UTC and hands out naive local time (``TrialModel.datetime_start``).

    ``astimezone`` asks the C library for the zone's offset at each instant (microseconds each, two
    per trial); the offset is the same for a whole hour unless a zone change falls inside it, so it
    is asked once per hour of timestamps, and an hour whose two ends differ is converted value by
    value, exactly as Optuna does.

    Example:
        >>> LocalTime()(None) is None
        True
    """

    def __init__(self) -> None:
        self._offsets: dict[datetime, timedelta | None] = {}

    def __call__(self, stored: datetime | None) -> datetime | None:
        if stored is None:
            return None
        hour = stored.replace(minute=0, second=0, microsecond=0)
        if hour not in self._offsets:
            first, last = _offset(hour), _offset(hour + _HOUR)
            self._offsets[hour] = first if first == last else None
        offset = self._offsets[hour]
        if offset is None:  # the zone changes within this hour
            return exact_local(stored)
        return stored + offset


_HOUR = timedelta(hours=1)


def _offset(utc: datetime) -> timedelta:
    """How far local time is ahead of UTC at ``utc`` (a naive UTC time)."""
    return exact_local(utc) - utc


def exact_local(stored: datetime) -> datetime:
    """Naive UTC as naive local time, as Optuna converts it (``astimezone``, one call each)."""
    return stored.replace(tzinfo=timezone.utc).astimezone().replace(tzinfo=None)
