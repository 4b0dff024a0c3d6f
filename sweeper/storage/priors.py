"""A sweep's priors: finished trials written into its study in one round trip when it is created.

A prior is an earlier result (another sweep's trial, an exported row, an MLflow or W&B run) that the
new sweep's sampler learns from: a finished trial of the study whose params use the sweep's own
distributions, marked by the ``prior`` user attr (:data:`sweeper.storage.attrs.PRIOR`). Reading and
checking them is :mod:`sweeper.analysis.priors`; this module only writes them, as Optuna's
``study.add_trials`` would, row for row and record for record, but at once:

- on a database: one transaction of ORM rows (the trials numbered after the study's last one,
  under the study row lock Optuna's own trial creation takes);
- on a journal: one ``append_logs`` batch of the ``CREATE_TRIAL`` records Optuna appends;
- on any other storage: Optuna's ``create_new_trial``, trial by trial.

With :mod:`sweeper.storage.queue`, :mod:`sweeper.storage.batch` and :mod:`sweeper.storage.fast_read`,
this is one of the modules that touch Optuna's internals (bounded in ``pyproject.toml``).

Example:
    >>> import optuna
    >>> from optuna.distributions import FloatDistribution
    >>> storage = optuna.storages.InMemoryStorage()
    >>> study_id = storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], "demo")
    >>> prior = optuna.trial.create_trial(
    ...     params={"x": 0.5}, distributions={"x": FloatDistribution(0, 1)}, value=0.25,
    ...     user_attrs={"prior": {"source": "export old.csv", "ref": "row 1"}})
    >>> add_trials(storage, study_id, [prior])
    >>> [(t.state.name, t.params, t.values) for t in storage.get_all_trials(study_id)]
    [('COMPLETE', {'x': 0.5}, [0.25])]
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, TypeVar

from optuna.distributions import BaseDistribution, check_distribution_compatibility, distribution_to_json
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.trial import FrozenTrial

from sweeper.storage.attrs import PRIORS
from sweeper.storage.fast_read import database_of, layer_of

_T = TypeVar("_T")


@dataclass(frozen=True)
class Priors:
    """What a warm start loaded: the priors as finished trials, and per source what it gave (JSON-ready,
    stored as the study user attr :data:`~sweeper.storage.attrs.PRIORS`)."""

    trials: tuple[FrozenTrial, ...]
    summary: tuple[Mapping[str, Any], ...]


def write_priors(storage: BaseStorage, study_id: int, priors: Priors) -> None:
    """Write a new sweep's priors and what each source gave (before its spec makes it visible)."""
    add_trials(storage, study_id, priors.trials)
    storage.set_study_user_attr(study_id, PRIORS, [dict(item) for item in priors.summary])


def add_trials(storage: BaseStorage, study_id: int, trials: Sequence[FrozenTrial]) -> None:
    """Create finished trials (``optuna.trial.create_trial`` templates) in the study, in order.

    Raises:
        ValueError: a trial is not finished, or two trials give one param incompatible distributions.
    """
    if not trials:
        return
    _check(trials)
    rdb = database_of(storage)
    if rdb is not None:
        # A retry after a commit whose answer was lost finds the trials there: they are not added twice.
        before = _retried(storage, "count trials", lambda: _count(rdb, study_id))
        _retried(
            storage,
            "add priors",
            lambda: _add_rdb(rdb, study_id, trials),
            lambda: True if _count(rdb, study_id) >= before + len(trials) else None,
        )
        return
    journal = layer_of(storage, JournalStorage)
    if journal is not None:
        _add_journal(journal, study_id, trials)
        return
    for trial in trials:
        storage.create_new_trial(study_id, template_trial=trial)


def _check(trials: Sequence[FrozenTrial]) -> None:
    """What Optuna checks as it writes params: one param, compatible distributions (and ends only)."""
    seen: dict[str, BaseDistribution] = {}
    for trial in trials:
        if not trial.state.is_finished():
            raise ValueError(f"a prior must be a finished trial, got state {trial.state.name}")
        for name, distribution in trial.distributions.items():
            first = seen.setdefault(name, distribution)
            check_distribution_compatibility(first, distribution)


def _retried(
    storage: BaseStorage, what: str, call: Callable[[], _T], done: Callable[[], _T | None] | None = None
) -> _T:
    """Run a direct write under the storage's retry policy when it has one (``done``: whether a
    failed try committed after all, checked before each retry)."""
    retry = getattr(storage, "_call", None)
    return retry(what, call, done) if retry is not None else call()


def _count(rdb: RDBStorage, study_id: int) -> int:
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session
    from sqlalchemy import func

    with _create_scoped_session(rdb.scoped_session) as session:
        return int(
            session.query(func.count(models.TrialModel.trial_id))
            .filter(models.TrialModel.study_id == study_id)
            .scalar()
        )


def _add_rdb(rdb: RDBStorage, study_id: int, trials: Sequence[FrozenTrial]) -> bool:
    """The rows Optuna's ``create_new_trial(template_trial=...)`` writes, all in one transaction."""
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session
    from sqlalchemy import func

    with _create_scoped_session(rdb.scoped_session) as session:
        models.StudyModel.find_or_raise_by_id(study_id, session, for_update=True)
        base = int(
            session.query(func.count(models.TrialModel.trial_id))
            .filter(models.TrialModel.study_id == study_id)
            .scalar()
        )
        rows = [
            models.TrialModel(
                study_id=study_id,
                number=base + i,
                state=trial.state,
                datetime_start=trial.datetime_start,
                datetime_complete=trial.datetime_complete,
            )
            for i, trial in enumerate(trials)
        ]
        session.add_all(rows)
        session.flush()  # assigns the trial ids
        children: list[Any] = []
        for row, trial in zip(rows, trials, strict=True):
            for objective, value in enumerate(trial.values or ()):
                stored, kind = models.TrialValueModel.value_to_stored_repr(value)
                children.append(
                    models.TrialValueModel(
                        trial_id=row.trial_id, objective=objective, value=stored, value_type=kind
                    )
                )
            for name, value in trial.params.items():
                distribution = trial.distributions[name]
                children.append(
                    models.TrialParamModel(
                        trial_id=row.trial_id,
                        param_name=name,
                        param_value=distribution.to_internal_repr(value),
                        distribution_json=distribution_to_json(distribution),
                    )
                )
            for model, attrs in (
                (models.TrialUserAttributeModel, trial.user_attrs),
                (models.TrialSystemAttributeModel, trial.system_attrs),
            ):
                children.extend(
                    model(trial_id=row.trial_id, key=key, value_json=json.dumps(value))
                    for key, value in attrs.items()
                )
            for step, value in trial.intermediate_values.items():
                step_value, step_kind = models.TrialIntermediateValueModel.intermediate_value_to_stored_repr(
                    value
                )
                children.append(
                    models.TrialIntermediateValueModel(
                        trial_id=row.trial_id,
                        step=step,
                        intermediate_value=step_value,
                        intermediate_value_type=step_kind,
                    )
                )
        session.add_all(children)
    return True


def _add_journal(journal: JournalStorage, study_id: int, trials: Sequence[FrozenTrial]) -> None:
    """One append of the ``CREATE_TRIAL`` records ``JournalStorage.create_new_trial`` writes."""
    from optuna.storages.journal._storage import JournalOperation

    logs = [{"op_code": JournalOperation.CREATE_TRIAL, **_create_log(study_id, t)} for t in trials]
    with journal._thread_lock:
        worker_id = journal._replay_result.worker_id
        journal._backend.append_logs([{**log, "worker_id": worker_id} for log in logs])
        journal._sync_with_backend()


def _create_log(study_id: int, trial: FrozenTrial) -> dict[str, Any]:
    """The fields of Optuna's ``CREATE_TRIAL`` record for a template trial (its ``create_new_trial``)."""
    values = trial.values
    log: dict[str, Any] = {
        "study_id": study_id,
        "state": trial.state,
        "value": None if values is not None and len(values) > 1 else trial.value,
        "values": values if values is not None and len(values) > 1 else None,
        "datetime_start": _utc(trial.datetime_start),
        "distributions": {k: distribution_to_json(d) for k, d in trial.distributions.items()},
        "params": {k: trial.distributions[k].to_internal_repr(v) for k, v in trial.params.items()},
        "user_attrs": trial.user_attrs,
        "system_attrs": trial.system_attrs,
        "intermediate_values": trial.intermediate_values,
    }
    if trial.datetime_complete is not None:
        log["datetime_complete"] = _utc(trial.datetime_complete)
    return log


def _utc(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")
