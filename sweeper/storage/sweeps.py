"""A sweep is one Optuna study: its id is the study name, its spec and state live in study user attrs."""

from __future__ import annotations

import json
import secrets
import string
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, Literal, TypeVar, cast, get_args

import optuna
from optuna.distributions import BaseDistribution
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import TrialState

from sweeper.errors import SpecError, SweepNotFoundError, UsageError
from sweeper.spec.model import SweepSpec
from sweeper.spec.reader import load_spec

SweepState = Literal["running", "paused", "finished", "cancelled"]
SWEEP_STATES: tuple[SweepState, ...] = get_args(SweepState)

NAME = "sweeper:name"
SPEC = "sweeper:spec"
SOURCE = "sweeper:source"
VERSION = "sweeper:version"
STATE = "sweeper:state"
CREATED_AT = "sweeper:created_at"
AGENT_PREFIX = "sweeper:agent:"

# Trial user attrs.
CONFIG = "config"
FAIL_REASON = "fail_reason"
ATTEMPT = "attempt"
RETRY_OF = "retry_of"
REPEAT_OF = "repeat_of"
# {dotted config key: value}: the agent sets these in the trial's config after building it from the
# params (see sweeper.spec.overrides), so the trainer, the trackers and the stored ``config`` agree.
CONFIG_OVERRIDES = "config_overrides"
TRACKER_RUNS = "tracker_runs"
TRACKER_ERRORS = "tracker_errors"
METRICS = "metrics"
AGENT = "agent"
HOST = "host"
DURATION_S = "duration_s"

OPEN_STATES = (TrialState.WAITING, TrialState.RUNNING)
_POP_BATCH = 16
_T = TypeVar("_T")

_ID_ALPHABET = string.ascii_lowercase + string.digits
_ID_LENGTH = 8


@dataclass(frozen=True)
class SweepInfo:
    """What the storage knows of one sweep."""

    id: str
    name: str
    state: SweepState
    spec: SweepSpec
    created_at: str
    version: str
    study_id: int


def new_sweep_id() -> str:
    """A short random id, starting with a letter so it never reads as a number."""
    head = secrets.choice(string.ascii_lowercase)
    return head + "".join(secrets.choice(_ID_ALPHABET) for _ in range(_ID_LENGTH - 1))


def directions(spec: SweepSpec) -> list[str]:
    """Optuna directions of the spec's objectives (one "minimize" when it names no metric)."""
    return [metric.goal for metric in spec.objectives] or ["minimize"]


def create_sweep(storage: BaseStorage, spec: SweepSpec, name: str | None = None) -> SweepInfo:
    """Create the study of a new sweep and record its spec, name, version and state."""
    from sweeper import __version__

    for _ in range(10):
        sweep_id = new_sweep_id()
        try:
            study_id = storage.create_new_study(
                [_direction(goal) for goal in directions(spec)], study_name=sweep_id
            )
            break
        except optuna.exceptions.DuplicatedStudyError:
            continue
    else:  # pragma: no cover - 36**8 ids; ten collisions in a row means a broken RNG
        raise RuntimeError("could not allocate a unique sweep id")
    sweep_name = name or spec.name or sweep_id
    created_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    attrs: dict[str, Any] = {
        NAME: sweep_name,
        SPEC: dict(spec.raw),
        SOURCE: spec.source,
        VERSION: __version__,
        CREATED_AT: created_at,
        STATE: "running",
    }
    for key, value in attrs.items():
        storage.set_study_user_attr(study_id, key, value)
    _enqueue_work(load_study(storage, sweep_id), spec)
    return SweepInfo(sweep_id, sweep_name, "running", spec, created_at, __version__, study_id)


def is_budgeted(spec: SweepSpec) -> bool:
    """Whether the sweep's trials were enqueued at creation (grid points or ``run_cap`` tokens).

    A budgeted sweep never creates a trial beyond what is enqueued, so its size is exact however
    many agents race; retries add trials with fixed params on top.
    """
    return spec.method == "grid" or spec.run_cap is not None


def _enqueue_work(study: optuna.Study, spec: SweepSpec) -> None:
    """Enqueue every grid point, or ``run_cap`` empty budget tokens the sampler fills when asked.

    Optuna's ask pops a WAITING trial atomically on every storage (a conditional update), which is
    what makes "each point exactly once" and "exactly run_cap trials" hold under concurrency.
    """
    if spec.method == "grid":
        points = spec.space.grid()
        if spec.run_cap is not None:
            points = points[: spec.run_cap]
    elif spec.run_cap is not None:
        points = [{} for _ in range(spec.run_cap)]
    else:
        return
    rdb = _rdb(study._storage)
    if rdb is not None:
        _enqueue_rdb(rdb, study._study_id, points, {ATTEMPT: 0})
        return
    for params in points:
        study.enqueue_trial(params, user_attrs={ATTEMPT: 0}, skip_if_exists=False)


def _rdb(storage: BaseStorage) -> RDBStorage | None:
    """The RDB storage behind ``storage`` (Optuna wraps it in a cache), or None for other kinds."""
    backend = getattr(storage, "_backend", storage)
    return backend if isinstance(backend, RDBStorage) else None


def _enqueue_rdb(
    rdb: RDBStorage, study_id: int, points: list[dict[str, Any]], user_attrs: dict[str, Any]
) -> None:
    """Insert WAITING trials in one transaction: what ``enqueue_trial`` stores, point by point.

    Enqueuing trial by trial costs a transaction each (minutes for a large grid on PostgreSQL).
    The study row lock serializes trial numbering with Optuna's own trial creation.
    """
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session
    from sqlalchemy import func

    with _create_scoped_session(rdb.scoped_session) as session:
        models.StudyModel.find_or_raise_by_id(study_id, session, for_update=True)
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


def _pop_waiting(study: optuna.Study) -> int | None:
    """Claim the oldest WAITING trial (RUNNING now), or None when none is left.

    On an RDB this asks for a few WAITING ids only; Optuna's own pop reads every WAITING trial
    in full, which costs seconds per trial with thousands of grid points enqueued.
    """
    rdb = _rdb(study._storage)
    if rdb is None:
        return study._pop_waiting_trial_id()
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    def waiting_ids() -> list[int]:
        with _create_scoped_session(rdb.scoped_session) as session:
            return [
                int(row[0])
                for row in session.query(models.TrialModel.trial_id)
                .filter(models.TrialModel.study_id == study._study_id)
                .filter(models.TrialModel.state == TrialState.WAITING)
                .order_by(models.TrialModel.trial_id)
                .limit(_POP_BATCH)
            ]

    while True:
        ids = _retried(study._storage, "pop a waiting trial", waiting_ids)
        if not ids:
            return None
        for trial_id in ids:
            try:
                # A conditional update: False (or an error) when another agent took it first.
                if study._storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
                    _remember(study, int(trial_id))
                    return int(trial_id)
            except optuna.exceptions.UpdateFinishedTrialError:
                continue


def _remember(study: optuna.Study, trial_id: int) -> None:
    """Put a trial claimed behind the cache's back into Optuna's trial cache, as its pop would."""
    from optuna.storages._cached_storage import _CachedStorage, _StudyInfo

    cached: Any = study._storage
    while not isinstance(cached, _CachedStorage) and hasattr(cached, "inner"):
        cached = cached.inner
    if not isinstance(cached, _CachedStorage):
        return
    frozen = study._storage.get_trial(trial_id)
    with cached._lock:
        info = cached._studies.setdefault(study._study_id, _StudyInfo())
        cached._add_trials_to_cache(study._study_id, [frozen])
        info.unfinished_trial_ids.add(trial_id)


def ask_trial(
    study: optuna.Study, distributions: dict[str, BaseDistribution], *, budgeted: bool
) -> optuna.Trial | None:
    """The next trial to run with all params suggested, or None when a budgeted sweep has none left.

    Enqueued trials (grid points, budget tokens, retries) come first; their fixed params win over
    the sampler. Only an unbudgeted sweep creates new trials.
    """
    study._thread_local.cached_all_trials = None
    trial_id = _pop_waiting(study)
    if trial_id is None:
        if budgeted:
            return None
        trial_id = study._storage.create_new_trial(study._study_id)
    trial = optuna.Trial(study, trial_id)
    for name, distribution in distributions.items():
        trial._suggest(name, distribution)
    return trial


def enqueue(study: optuna.Study, params: dict[str, Any], user_attrs: dict[str, Any]) -> int:
    """Enqueue a WAITING trial with fixed ``params``, as ``study.enqueue_trial`` does; returns its number."""
    template = optuna.trial.create_trial(
        state=TrialState.WAITING, system_attrs={"fixed_params": params}, user_attrs=user_attrs
    )
    trial_id = study._storage.create_new_trial(study._study_id, template_trial=template)
    return study._storage.get_trial_number_from_id(trial_id)


def lineage(trial: optuna.trial.FrozenTrial) -> int:
    """The number of a trial's first attempt: its ``retry_of``, else its own number."""
    return int(trial.user_attrs.get(RETRY_OF, trial.number))


def retry_attrs(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """The user attrs a new attempt of ``trial`` inherits: what it repeats and its config overrides."""
    return {key: trial.user_attrs[key] for key in (REPEAT_OF, CONFIG_OVERRIDES) if key in trial.user_attrs}


def claim_trial(
    study: optuna.Study, distributions: dict[str, BaseDistribution], lineages: Collection[int]
) -> optuna.Trial | None:
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
        trial = optuna.Trial(study, frozen._trial_id)
        for name, distribution in distributions.items():
            trial._suggest(name, distribution)
        return trial
    return None


def has_open_lineages(storage: BaseStorage, study_id: int, lineages: Collection[int]) -> bool:
    """Whether a trial of the given lineages still waits or runs (anywhere, in any agent)."""
    open_trials = storage.get_all_trials(study_id, deepcopy=False, states=OPEN_STATES)
    return any(lineage(t) in lineages for t in open_trials)


def enqueue_retry(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Enqueue another attempt of a failed trial: same params, same original (checkpoint dir)."""
    attempt = int(trial.user_attrs.get(ATTEMPT, 0)) + 1
    original = int(trial.user_attrs.get(RETRY_OF, trial.number))
    study.enqueue_trial(
        dict(trial.params),
        user_attrs={**retry_attrs(trial), ATTEMPT: attempt, RETRY_OF: original},
        skip_if_exists=False,
    )


def read_state(storage: BaseStorage, study_id: int) -> SweepState:
    """The sweep's state, read cheaply (one study-user-attrs read) for polling."""
    state = storage.get_study_user_attrs(study_id).get(STATE, "running")
    return cast(SweepState, state if state in SWEEP_STATES else "running")


def has_open_trials(storage: BaseStorage, study_id: int) -> bool:
    """Whether any trial still waits to run or runs (the sweep is not done yet)."""
    rdb = _rdb(storage)
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


def heartbeat(storage: BaseStorage, study_id: int, agent_id: str, record: dict[str, Any]) -> None:
    """Record that an agent is alive: ``sweeper:agent:<agent_id>`` -> {host, pid, started_at, last_seen}."""
    storage.set_study_user_attr(study_id, AGENT_PREFIX + agent_id, record)


def get_sweep(storage: BaseStorage, id_or_name: str) -> SweepInfo:
    """The sweep with this id, else the one sweep with this name.

    Raises:
        SweepNotFoundError: no sweep matches, or the name is ambiguous.
    """
    try:
        study_id = storage.get_study_id_from_name(id_or_name)
    except KeyError:
        matches = [s for s in list_sweeps(storage) if s.name == id_or_name]
        if len(matches) == 1:
            return matches[0]
        if matches:
            ids = ", ".join(s.id for s in matches)
            raise SweepNotFoundError(f"sweep name {id_or_name!r} is ambiguous; use an id: {ids}") from None
        raise SweepNotFoundError(f"no sweep {id_or_name!r} in this storage") from None
    return _info(id_or_name, study_id, storage.get_study_user_attrs(study_id))


def list_sweeps(storage: BaseStorage) -> list[SweepInfo]:
    """Every sweep in the storage, oldest first; studies not made by sweeper are left out."""
    sweeps = [
        _info(study.study_name, study._study_id, study.user_attrs)
        for study in storage.get_all_studies()
        if SPEC in study.user_attrs
    ]
    return sorted(sweeps, key=lambda s: s.created_at)


def set_state(storage: BaseStorage, sweep_id: str, state: str) -> SweepInfo:
    """Change a sweep's state; agents poll it and obey within seconds.

    Raises:
        UsageError: ``state`` is not a sweep state, or the sweep has already ended.
    """
    if state not in SWEEP_STATES:
        raise UsageError(f"sweep state must be one of {', '.join(SWEEP_STATES)}, got {state!r}")
    info = get_sweep(storage, sweep_id)
    if info.state in ("finished", "cancelled") and state != info.state:
        raise UsageError(f"sweep {info.id} is {info.state}; it cannot become {state}")
    storage.set_study_user_attr(info.study_id, STATE, state)
    return get_sweep(storage, info.id)


def load_study(storage: BaseStorage, sweep_id: str, **kwargs: Any) -> optuna.Study:
    """The Optuna study of a sweep (kwargs go to :func:`optuna.load_study`: sampler, pruner)."""
    return optuna.load_study(study_name=sweep_id, storage=storage, **kwargs)


def _direction(goal: str) -> optuna.study.StudyDirection:
    direction = optuna.study.StudyDirection
    return direction.MAXIMIZE if goal == "maximize" else direction.MINIMIZE


def _info(sweep_id: str, study_id: int, attrs: dict[str, Any]) -> SweepInfo:
    raw = attrs.get(SPEC)
    if not isinstance(raw, dict):
        raise SweepNotFoundError(f"study {sweep_id!r} exists but was not created by sweeper")
    try:
        spec = load_spec(raw)
    except SpecError as exc:  # a spec recorded by an older version that this one rejects
        raise SweepNotFoundError(f"sweep {sweep_id} holds a spec this version cannot read: {exc}") from exc
    spec = _with_source(spec, str(attrs.get(SOURCE, "<stored>")))
    state = attrs.get(STATE, "running")
    return SweepInfo(
        id=sweep_id,
        name=str(attrs.get(NAME, sweep_id)),
        state=cast(SweepState, state if state in SWEEP_STATES else "running"),
        spec=spec,
        created_at=str(attrs.get(CREATED_AT, "")),
        version=str(attrs.get(VERSION, "")),
        study_id=study_id,
    )


def _with_source(spec: SweepSpec, source: str) -> SweepSpec:
    return replace(spec, source=source)
