"""Distinct configs: one claim per config, atomic on every storage (``sweeper.distinct``)."""

from __future__ import annotations

import hashlib
import json
import threading
import weakref
from typing import Any

import optuna
from optuna.storages import RDBStorage

from sweeper.storage._access import journal_of, retried
from sweeper.storage.fast_read import database_of, layer_of

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
        holder = retried(
            storage, "claim a config", lambda: _claim_rdb(rdb, study._study_id, attr, trial_number)
        )
        return bool(holder == trial_number)
    journal = journal_of(storage)
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
