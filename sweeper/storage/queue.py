"""The queue of a sweep's trials: enqueue work, claim a waiting trial atomically, ask for the next one.

A trial is prepared without a write: its params are suggested and its attrs set on a
:class:`~sweeper.storage.batch.DeferredWrites` that keeps them, and :func:`start_trial` writes them
with its lease in one round trip (on top of the one that took or created it), or
:func:`start_write` hands them over to be written with other trials' writes.

This module, :mod:`~sweeper.storage.work`, :mod:`~sweeper.storage.claims`, :mod:`~sweeper.storage.batch`
and :mod:`~sweeper.storage.fast_read` are the only ones that touch Optuna's internals (its RDB models,
its journal records, its trial cache, ``Study`` and ``Trial`` private fields); the versions they are
tested with are bounded in ``pyproject.toml``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Mapping
from typing import Any, TypeAlias, cast

import optuna
from optuna.distributions import BaseDistribution
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from sweeper.spec.model import SweepSpec
from sweeper.spec.space import SearchSpace
from sweeper.storage import journal_read, work
from sweeper.storage._access import remember, retried
from sweeper.storage.attrs import FAIL_REASON, lineage
from sweeper.storage.batch import DeferredWrites, TrialWrite, write_trials
from sweeper.storage.fast_read import database_of

Space: TypeAlias = SearchSpace | Mapping[str, BaseDistribution]
# What an ask suggests on the new trial: the sweep's space (define-by-run over its active
# parameters), plain distributions by flat name, or a define-by-run function of the live trial (the
# user's `scheduler.search_space`, which keeps the config itself).
Asks: TypeAlias = Space | Callable[[optuna.Trial], object]


def _pop_waiting(study: optuna.Study) -> int | None:
    """Claim the oldest WAITING trial (RUNNING now), or None when none is left.

    On a database this is one transaction: the oldest WAITING row is locked (PostgreSQL skips the
    rows other agents hold locked; a SQLite transaction holds the write lock from its start) and
    set RUNNING with its start time, the update Optuna's ``set_trial_state_values`` makes. Optuna's
    own pop reads every WAITING trial in full, which costs seconds per trial with thousands of grid
    points enqueued, then makes the update in a transaction of its own. On the journal, Optuna's pop,
    whose read of the WAITING trials the replay serves from an index
    (:mod:`sweeper.storage.journal_replay`).
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

    trial_id = retried(study._storage, "pop a waiting trial", claim)
    if trial_id is not None:
        remember(study, trial_id)
    return trial_id


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
    first item (:func:`sweeper.storage.work.take_block`); only an unbudgeted sweep creates new
    trials. Given the sweep's :class:`SearchSpace`, only the active parameters are suggested.
    """
    study._thread_local.cached_all_trials = None
    # The trial's start write (start_trial, start_write) makes this one durable with it.
    with journal_read.unsynced():
        trial_id = _pop_waiting(study)
        if trial_id is None:
            budget = spec.budget
            if budget is None:
                trial_id = study._storage.create_new_trial(study._study_id)
            else:
                trial_id = work.take_block(study, spec, budget)
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
    write = start_write(trial, user_attrs=user_attrs, system_attrs=system_attrs, state=state)
    return trial._trial_id not in write_trials(trial.study._storage, [write])


def start_write(
    trial: optuna.Trial,
    *,
    user_attrs: dict[str, Any] | None = None,
    system_attrs: dict[str, Any] | None = None,
    state: TrialState | None = None,
) -> TrialWrite:
    """What :func:`start_trial` writes, for the caller to write with others in one round trip
    (:func:`~sweeper.storage.batch.write_trials`); the trial writes to its storage again from here."""
    deferred = trial.storage
    trial.storage = trial.study._storage
    pending = deferred.pending if isinstance(deferred, DeferredWrites) else TrialWrite(trial._trial_id)
    pending.user_attrs.update(user_attrs or {})
    pending.system_attrs.update(system_attrs or {})
    pending.state = state
    trial._cached_frozen_trial.system_attrs.update(pending.system_attrs)
    return pending


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
        remember(study, frozen._trial_id)
        return _prepared(study, frozen._trial_id, distributions)
    return None
