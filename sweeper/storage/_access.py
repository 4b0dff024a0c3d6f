"""The few handles on Optuna's internals that the storage writers share (see :mod:`sweeper.storage.queue`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import optuna
from optuna.storages import BaseStorage

from sweeper.storage.fast_read import cache_of, layer_of

_T = TypeVar("_T")


def retried(storage: BaseStorage, what: str, call: Callable[[], _T]) -> _T:
    """Run a direct database query under the storage's retry policy when it has one."""
    retry = getattr(storage, "_call", None)
    return retry(what, call) if retry is not None else call()


def journal_of(storage: BaseStorage) -> Any:
    """The journal storage under ``storage`` (retry or cache layers aside), or None."""
    from optuna.storages.journal import JournalStorage

    return layer_of(storage, JournalStorage)


def remember(study: optuna.Study, trial_id: int) -> None:
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
