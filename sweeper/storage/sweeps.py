"""A sweep is one Optuna study: its id is the study name, its spec and state live in study user attrs."""

from __future__ import annotations

import logging
import secrets
import string
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, Literal, cast, get_args

import optuna
from optuna.storages import BaseStorage

from sweeper.errors import SpecError, SweepNotFoundError, UsageError
from sweeper.spec.extension import Extension, extend_spec
from sweeper.spec.laws import value_key
from sweeper.spec.model import SweepSpec
from sweeper.spec.reader import load_spec
from sweeper.storage import work
from sweeper.storage.attrs import (
    AGENT_PREFIX,
    CREATED_AT,
    HISTORY,
    NAME,
    REPEAT_OF,
    RETRY_OF,
    SOURCE,
    SPEC,
    STATE,
    VERSION,
    is_prior,
)
from sweeper.storage.priors import Priors, write_priors

SweepState = Literal["running", "paused", "finished", "cancelled"]
SWEEP_STATES: tuple[SweepState, ...] = get_args(SweepState)

HEARTBEAT_S = 5.0
"""How often a working agent records that it is alive (:func:`heartbeat`)."""
AGENT_STALE_AFTER_S = 6 * HEARTBEAT_S
"""An agent whose last heartbeat is older than this is shown as gone (six missed beats)."""


_logger = logging.getLogger(__name__)

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
    # Each extension (see extend_sweep), oldest first.
    history: tuple[dict[str, Any], ...] = ()


def new_sweep_id() -> str:
    """A short random id, starting with a letter so it never reads as a number."""
    head = secrets.choice(string.ascii_lowercase)
    return head + "".join(secrets.choice(_ID_ALPHABET) for _ in range(_ID_LENGTH - 1))


def directions(spec: SweepSpec) -> list[str]:
    """Optuna directions of the spec's objectives (one "minimize" when it names no metric)."""
    return [metric.goal for metric in spec.objectives] or ["minimize"]


def create_sweep(
    storage: BaseStorage, spec: SweepSpec, name: str | None = None, priors: Priors | None = None
) -> SweepInfo:
    """Create the study of a new sweep and record its spec, name, version and state.

    O(1) in the sweep's size: its grid points or budget tokens are queued by the agents, block by
    block (see :mod:`sweeper.storage.work`). ``priors`` (a warm start, see
    :mod:`sweeper.storage.priors`) are written first, as the study's first trials; they take no
    budget token. The sweep becomes visible when its spec is written, the last write.
    """
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
    if priors is not None:
        write_priors(storage, study_id, priors)
    sweep_name = name or spec.name or sweep_id
    created_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    attrs: dict[str, Any] = {
        NAME: sweep_name,
        SOURCE: spec.source,
        VERSION: __version__,
        CREATED_AT: created_at,
        STATE: "running",
    }
    for key, value in attrs.items():
        storage.set_study_user_attr(study_id, key, value)
    work.start_queue(storage, study_id)
    # The spec last: a study without it is no sweep to any reader or agent, so a creation killed
    # part-way leaves nothing that could be run or finished.
    storage.set_study_user_attr(study_id, SPEC, dict(spec.raw))
    return SweepInfo(sweep_id, sweep_name, "running", spec, created_at, __version__, study_id)


@dataclass(frozen=True)
class Extended:
    """A sweep after :func:`extend_sweep`: its record, and what the extension added."""

    info: SweepInfo
    budget_before: int | None
    budget_after: int | None
    new_points: int  # grid points queued by the extension (new values); budget tokens come lazily


def extend_sweep(storage: BaseStorage, id_or_name: str, extension: Extension) -> Extended:
    """Give a sweep (finished, stopped or running) more budget or more grid values.

    Only new points run: a grid's new values queue exactly the points that hold one (in W&B's order
    of the extended grid), a larger ``run_cap`` lets agents queue more of the same work; the
    sampler goes on from every trial the sweep has. The spec, the state (running again, unless
    paused), the queue and the history entry are one atomic write.

    Raises:
        SpecError: the extension is malformed (located, see :func:`extend_spec`).
        UsageError: it would run nothing new, a capped grid's order would change, or the sweep
            changed meanwhile.
    """
    info = get_sweep(storage, id_or_name)
    spec = info.spec
    trials = storage.get_all_trials(info.study_id, deepcopy=False)
    # What the sweep has run itself: first attempts, not retries, repeats or a warm start's priors.
    lineage_keys = (RETRY_OF, REPEAT_OF)
    firsts = sum(1 for t in trials if not is_prior(t) and not any(k in t.user_attrs for k in lineage_keys))
    new = extend_spec(spec, extension, runs_so_far=firsts)
    cursor = work.queued(storage, info.study_id, spec.budget) if spec.budget is not None else firsts
    points: list[dict[str, Any]] = []
    if new.method == "grid" and extension.values:
        size = spec.space.grid_size()
        if cursor < size:
            raise UsageError(
                f"sweep {info.id} has queued {cursor:,} of its {size:,} grid points (run_cap, or still "
                "running); new values would reorder the rest: raise run_cap first, or extend once they "
                "are queued"
            )
        if new.budget != new.space.grid_size():
            raise UsageError(
                f"run_cap {new.run_cap:,} would cut the extended grid of {new.space.grid_size():,} points; "
                "raise it too (--run-cap)"
            )
        points = [p for p in new.space.iter_grid() if _holds_new_value(new, p, extension)]
        cursor = new.space.grid_size()
    grown = {
        name: new.space.distributions()[name]
        for name in extension.values
        if spec.space.distributions().get(name) != new.space.distributions().get(name)
    }
    if grown and not work.can_grow_choices(storage, info.study_id, grown):
        raise UsageError(
            f"sweep {info.id} is in a journal file, whose records of its past trials cannot take new values "
            f"for {', '.join(sorted(grown))} (Optuna's journal refuses a choice list that changes); a sweep "
            "on SQLite or PostgreSQL can, or raise its run_cap instead"
        )
    if grown and work.has_running_trials(storage, info.study_id):
        raise UsageError(
            f"sweep {info.id} has running trials: their agents hold its old values; add values once they end "
            "(`sweeper stop`, or let them finish)"
        )
    if new.budget is not None and new.budget <= cursor and not points:
        raise UsageError(
            f"nothing new to run: sweep {info.id} would have a budget of {new.budget:,} trials and has "
            f"queued {cursor:,} already" + (" (every config of its finite space)" if new.distinct else "")
        )
    entry = {
        "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **extension.describe(),
        "budget": [spec.budget, new.budget],
        "queued": len(points),
    }
    state = "paused" if info.state == "paused" else "running"
    try:
        attrs = {SPEC: dict(new.raw), STATE: state, HISTORY: [*info.history, entry]}
        work.apply_extension(
            storage, info.study_id, work.ExtensionWrite(dict(spec.raw), attrs, cursor, points, grown)
        )
    except work.SweepChangedError:
        raise UsageError(
            f"sweep {info.id} changed while it was being extended (another extension?); run the command again"
        ) from None
    return Extended(get_sweep(storage, info.id), spec.budget, new.budget, len(points))


def _holds_new_value(spec: SweepSpec, point: dict[str, Any], extension: Extension) -> bool:
    """Whether a grid point of the extended spec takes one of the extension's new values."""
    config = spec.space.to_config(point)
    for name, values in extension.values.items():
        node: Any = config
        for part in name.split("."):
            node = node.get(part, _ABSENT) if isinstance(node, dict) else _ABSENT
        if node is not _ABSENT and value_key(node) in {value_key(v) for v in values}:
            return True
    return False


_ABSENT = object()


def read_state(storage: BaseStorage, study_id: int) -> SweepState:
    """The sweep's state, read cheaply (one study-user-attrs read) for polling."""
    state = storage.get_study_user_attrs(study_id).get(STATE, "running")
    return cast(SweepState, state if state in SWEEP_STATES else "running")


def finish(storage: BaseStorage, study_id: int) -> None:
    """Mark a running or paused sweep finished (its budget is used up, or its target reached);
    a sweep already stopped or cancelled keeps its state."""
    if read_state(storage, study_id) in ("running", "paused"):
        storage.set_study_user_attr(study_id, STATE, "finished")


def heartbeat(storage: BaseStorage, study_id: int, agent_id: str, record: dict[str, Any]) -> None:
    """Record that an agent is alive: ``sweeper:agent:<agent_id>`` -> {host, pid, started_at, last_seen}."""
    storage.set_study_user_attr(study_id, AGENT_PREFIX + agent_id, record)


def get_sweep(storage: BaseStorage, id_or_name: str) -> SweepInfo:
    """The sweep with this id, else the newest sweep with this name.

    Ids are exact. A name shared by several sweeps (the same spec run twice) means the newest of
    them; a note on the ``sweeper.storage.sweeps`` logger names the others (the CLI prints it on
    stderr).

    Raises:
        SweepNotFoundError: no sweep has this id or name.
    """
    try:
        study_id = storage.get_study_id_from_name(id_or_name)
    except KeyError:
        matches = [s for s in list_sweeps(storage) if s.name == id_or_name]
        if not matches:
            raise SweepNotFoundError(f"no sweep {id_or_name!r} in this storage") from None
        newest = matches[-1]
        if len(matches) > 1:
            others = ", ".join(s.id for s in reversed(matches[:-1]))
            _logger.info(
                "%d sweeps are named %r; using the newest, %s (created %s); the others: %s",
                len(matches),
                id_or_name,
                newest.id,
                newest.created_at,
                others,
            )
        return newest
    return _info(id_or_name, study_id, storage.get_study_user_attrs(study_id))


def list_sweeps(storage: BaseStorage) -> list[SweepInfo]:
    """Every sweep in the storage, oldest first (in creation order within a second); studies not
    made by sweeper are left out."""
    sweeps = [
        _info(study.study_name, study._study_id, study.user_attrs)
        for study in storage.get_all_studies()
        if SPEC in study.user_attrs
    ]
    return sorted(sweeps, key=lambda s: (s.created_at, s.study_id))


def set_state(storage: BaseStorage, sweep_id: str, state: str) -> SweepInfo:
    """Change a sweep's state; agents poll it and obey within seconds.

    Raises:
        UsageError: ``state`` is not a sweep state, or the sweep has already ended.
    """
    if state not in SWEEP_STATES:
        raise UsageError(f"sweep state must be one of {', '.join(SWEEP_STATES)}, got {state!r}")
    info = get_sweep(storage, sweep_id)
    if info.state in ("finished", "cancelled") and state != info.state:
        hint = " (`sweeper extend` gives it more budget or grid values)" if state == "running" else ""
        raise UsageError(f"sweep {info.id} is {info.state}; it cannot become {state}{hint}")
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
        raise SweepNotFoundError(
            f"study {sweep_id!r} is not a sweep: another tool made it, or its creation was interrupted "
            "before it was whole (submit again)"
        )
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
        history=tuple(h for h in attrs.get(HISTORY, []) if isinstance(h, dict)),
    )


def _with_source(spec: SweepSpec, source: str) -> SweepSpec:
    return replace(spec, source=source)
