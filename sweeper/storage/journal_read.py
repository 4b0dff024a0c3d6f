"""Opening a journal file fast: its log read in one go and replayed in place.

A journal storage holds no state but its log: opening one replays every record ever appended. On
a sweep of 10,000 trials as the agent writes them (about 25 records a trial) Optuna's replay takes
seconds: it decodes the log line by line (``json.loads`` per record), decodes a param's
distribution again for every record, and copies the trial for every record it applies (copy on
write, because trials it handed out must not change under their holder).

The first replay of a freshly opened storage has handed nothing out yet, so :class:`JournalFile` and
:func:`open_journal` do the same work in place: the complete lines are decoded in one go (by
orjson, to what ``json.loads`` gives: :mod:`~sweeper.storage.exact_json`), each distinct
distribution is decoded once, trials and studies are changed where they lie, and local times are
computed once an hour (:class:`~sweeper.storage.fast_read.LocalTime`).
Every later sync, and every write, is Optuna's own. The result is Optuna's, field for field: the
same studies and trials, the same numbering, the same records ignored (an op on a finished trial,
a param whose distribution conflicts with the study's, a study created twice); no record in a log
a new process reads was written by its own worker id, so none raises. Anything unexpected (a line
that is not JSON, an op this replay does not know, any error on the way) hands the whole replay to
Optuna's ``apply_logs``, so the fast path is never a second source of truth.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Callable, Generator, Iterator
from datetime import datetime
from typing import Any, BinaryIO

from optuna.distributions import BaseDistribution, check_distribution_compatibility, json_to_distribution
from optuna.storages import BaseStorage
from optuna.storages.journal import BaseJournalBackend, JournalFileBackend, JournalStorage
from optuna.storages.journal._file import get_lock_file
from optuna.storages.journal._storage import JournalOperation, JournalStorageReplayResult
from optuna.study._frozen import FrozenStudy
from optuna.study._study_direction import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from sweeper.heap import collection_paused
from sweeper.storage import exact_json, journal_snapshot
from sweeper.storage.fast_read import LocalTime, exact_local
from sweeper.storage.journal_replay import LinearJournalStorage, LinearReplay

_log = logging.getLogger(__name__)


_unsynced = threading.local()


@contextlib.contextmanager
def unsynced() -> Iterator[None]:
    """Appends this thread makes to a :class:`JournalFile` meanwhile are not ``fsync``ed.

    For a write nothing outside the storage acts on before the next synced write of the same
    process, which makes it durable with its own: an ``fsync`` flushes every write made to the file
    before it, whoever made it. An agent's ask (the trial it creates or takes) is such a write: the
    trial's start write follows it, so a trial costs one ``fsync`` (a millisecond here), not two.
    The agent's loop makes its start and end writes this way too, and its
    :class:`~sweeper.engine.syncer.Syncer` fsyncs the file behind it. Every process reads the
    records at once either way; only a power cut before the ``fsync`` could lose them.
    """
    before = getattr(_unsynced, "active", False)
    _unsynced.active = True
    try:
        yield
    finally:
        _unsynced.active = before


class JournalFile(JournalFileBackend):
    """Optuna's journal file backend; a read of the whole log decodes it in one go (orjson, exactly
    as ``json.loads``: :mod:`~sweeper.storage.exact_json`); an append inside :func:`unsynced` is
    not ``fsync``ed.

    Optuna decodes each line on its own; what it yields for a read from the start is the same list.
    """

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        # Optuna's append: under its lock, the same encoding, one write, then an fsync (not inside
        # unsynced()). A record a killed writer left half-written is cut off first: appended to,
        # it would make one line of two records, which no reader can read (every line before the
        # last must be whole), and no reader ever took it (they read whole lines only).
        text = "\n".join([json.dumps(log, separators=(",", ":")) for log in logs]) + "\n"
        with get_lock_file(self._lock), open(self._file_path, "r+b") as f:
            end = f.seek(0, os.SEEK_END)
            whole = _whole_lines_end(f, end)
            if whole != end:
                _log.warning(
                    "%s: cut off %d bytes a killed writer left unfinished", self._file_path, end - whole
                )
                f.truncate(whole)
                f.seek(whole)
            f.write(text.encode("utf-8"))
            f.flush()
            if not getattr(_unsynced, "active", False):
                os.fsync(f.fileno())

    def sync(self) -> None:
        """``fsync`` the log: every append made to it before, by any process, is durable after."""
        with open(self._file_path, "ab") as f:
            os.fsync(f.fileno())

    def read_logs(self, log_number_from: int) -> Generator[dict[str, Any], None, None]:
        if log_number_from > 0 and self._log_number_offset.get(log_number_from) == _size(self._file_path):
            # Nothing appended since: the file is not opened (the storage reads the log before every
            # call it serves, six times a trial for an agent).
            return
        logs = self._read_all() if log_number_from == 0 else None
        yield from super().read_logs(log_number_from) if logs is None else logs

    def _read_all(self) -> list[dict[str, Any]] | None:
        """Every complete record, as Optuna's ``read_logs(0)`` yields them; None: read it Optuna's way."""
        read = self.decode(self.read_bytes(), 0, 0)
        return None if read is None else read[0]

    def read_bytes(self) -> bytes:
        """The log as written up to now: another process may be appending meanwhile."""
        with open(self._file_path, "rb") as f:
            return f.read(os.fstat(f.fileno()).st_size)

    def decode(self, data: bytes, offset: int, log_number: int) -> tuple[list[dict[str, Any]], bool] | None:
        """The complete records of ``data[offset:]``, which begins with record ``log_number``, as
        Optuna's ``read_logs(log_number)`` yields them, and whether they are finite
        (:func:`exact_json.read`); None: read them Optuna's way."""
        # The complete lines end at the last newline; after it: nothing, or a record being written.
        end = data.rfind(b"\n", offset) + 1
        if end == 0:
            if len(data) > offset:
                return None
            end = offset
        lines = data.count(b"\n", offset, end)
        try:
            # One array of the lines, their newlines made commas: two copies of the log, where a
            # split and a join made a quarter of a million objects (0.05 s against 0.14-0.19 s).
            text = b"".join((b"[", memoryview(data)[offset : end - 1], b"]")).replace(b"\n", b",")
            logs, finite = exact_json.read(text)
        except ValueError:  # a line that is not JSON: Optuna's reader says what it does with it
            return None
        if len(logs) != lines:  # a line holding two values, or none
            return None
        # Where the next read starts, as Optuna's reader records it (it notes every line's offset).
        self._log_number_offset[log_number + lines] = end
        return logs, finite


def _whole_lines_end(f: BinaryIO, end: int) -> int:
    """Where the whole lines of the open log ``f`` (``end`` bytes long) end: past its last newline."""
    if end == 0:
        return 0
    f.seek(end - 1)
    if f.read(1) == b"\n":
        return end
    at = end
    while at > 0:  # back, a block at a time, to the last newline
        start = max(0, at - 65536)
        f.seek(start)
        found = f.read(at - start).rfind(b"\n")
        if found >= 0:
            return start + found + 1
        at = start
    return 0


def _size(path: str) -> int | None:
    try:
        return os.stat(path).st_size
    except OSError:  # gone: Optuna's reader says what that means
        return None


def open_journal(backend: JournalFileBackend, *, save: bool = False) -> JournalStorage:
    """A :class:`~optuna.storages.JournalStorage` of ``backend``, its log replayed fast on open (and
    every later sync linear in a trial's values: see :mod:`sweeper.storage.journal_replay`).

    A :class:`JournalFile` starts from its snapshot when one stands for the start of its log, and
    saves a new one when the records replayed are worth it (:mod:`sweeper.storage.journal_snapshot`),
    or, with ``save``, whenever it replayed any.
    """
    storage = LinearJournalStorage(_NoLogs())  # Optuna's own set-up, replaying an empty log
    storage._backend = backend
    with collection_paused():  # hundreds of thousands of objects made, none of them garbage
        try:
            replay = _replay(backend, storage._worker_id_prefix, save=save)
        except Exception:  # anything unexpected: Optuna's replay of the whole log, raising its own errors
            replay = LinearReplay(storage._worker_id_prefix)
        storage._replay_result = replay
        with storage._thread_lock:
            storage._sync_with_backend()  # Optuna's: what was appended meanwhile (all of it, on a fallback)
    return storage


def _replay(backend: JournalFileBackend, worker_id_prefix: str, *, save: bool = False) -> LinearReplay:
    """The log replayed in place, from the snapshot on when one stands for its start."""
    # Later syncs replay a trial's values in linear time too (sweeper.storage.journal_replay).
    if not isinstance(backend, JournalFile):
        replay = LinearReplay(worker_id_prefix)
        _InPlace(replay).apply(list(backend.read_logs(0)))
        return replay
    data = backend.read_bytes()
    snapshot = journal_snapshot.load(backend._file_path, data, worker_id_prefix)
    if snapshot is None:
        replay, start, offset = LinearReplay(worker_id_prefix), 0, 0
        in_place = _InPlace(replay)
    else:
        replay, start, offset = snapshot.replay, snapshot.log_number, snapshot.offset
        in_place = _InPlace.resuming(replay, snapshot.distributions)
        backend._log_number_offset[start] = offset  # Optuna's reader starts there, not at 0
    read = backend.decode(data, offset, start)
    if read is None:  # Optuna's reader, and its errors
        in_place.apply(list(backend.read_logs(start)))
        return replay
    logs, finite = read
    in_place.apply(logs)
    if logs and (save or journal_snapshot.worth_saving(len(logs), replay.log_number_read)):
        end = backend._log_number_offset[replay.log_number_read]
        # The state is finite when every text it came from was (its params too: see save).
        finite = finite and (snapshot is None or snapshot.finite)
        journal_snapshot.save(backend._file_path, replay, memoryview(data)[:end], finite=finite)
    return replay


# Bytes appended since the snapshot (about 12,000 records as the agent writes them) that make an
# agent save a new one (sweeper.storage.snapshot_keeper, and refresh_snapshot at its run's end). A
# reader replays at most that much past it, too few records to save one itself (journal_snapshot's
# MIN_RECORDS): `sweeper trials --json` of 10,000 trials 0.66-0.80 s here, 0.86-1.20 s at 4 MB.
STALE_BYTES = 2_000_000


def refresh_snapshot(storage: BaseStorage) -> None:
    """Bring a journal storage's snapshot up to date when much was appended since it, so that the
    sweep's next reader (``sweeper best`` after ``sweeper run``) replays only what comes after.

    Read afresh from the file, not from ``storage``'s state: what this process holds may have been
    handed out and changed. Not a journal file, or too little new: nothing. Never raises.
    """
    path = journal_path(storage)
    if path is not None and stale_bytes(path) >= STALE_BYTES:
        refresh_file(path)


def journal_path(storage: BaseStorage) -> str | None:
    """The file of a journal storage whose snapshot sweeper keeps; None: any other storage."""
    backend = getattr(storage, "_backend", None)
    return backend._file_path if isinstance(backend, JournalFile) else None


def stale_bytes(path: str) -> int:
    """How many of the journal's bytes its snapshot does not stand for (0: the journal is gone)."""
    try:
        return os.stat(path).st_size - journal_snapshot.covered(path)
    except OSError:
        return 0


def refresh_file(path: str) -> None:
    """Save the snapshot of the journal at ``path`` as it stands now, from the last snapshot on.

    The read takes no lock (a record being appended is left for the next reader), so the journal's
    lock kind does not matter. Never raises: a snapshot is only ever a faster open.
    """
    try:
        if os.path.exists(path):  # Optuna's backend would create an empty one
            open_journal(JournalFile(path), save=True)
    except Exception as exc:
        _log.debug("journal snapshot of %s not refreshed: %r", path, exc)


class _NoLogs(BaseJournalBackend):
    """An empty log, for ``JournalStorage.__init__``'s replay: ours replaces it."""

    def read_logs(self, log_number_from: int) -> Iterator[dict[str, Any]]:
        return iter(())

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        raise NotImplementedError("an empty log for opening a journal; nothing is written to it")


_COMPLETE, _PRUNED, _FAIL = TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL


class _InPlace:
    """Optuna's ``JournalStorageReplayResult._apply_*`` for records of other workers, in place."""

    def __init__(self, replay: JournalStorageReplayResult) -> None:
        self.replay = replay
        self.distributions: dict[str, BaseDistribution] = {}
        self.local = LocalTime()
        self.study_names: set[str] = set()
        # (study id, param name) -> the number of the study's first trial holding that param: Optuna
        # checks a new value's distribution against that trial's.
        self.first_holder: dict[tuple[int, str], int] = {}
        op = JournalOperation
        self.handlers: dict[int, Callable[[dict[str, Any]], None]] = {
            op.CREATE_STUDY: self.create_study,
            op.DELETE_STUDY: self.delete_study,
            op.SET_STUDY_USER_ATTR: self.study_user_attr,
            op.SET_STUDY_SYSTEM_ATTR: self.study_system_attr,
            op.CREATE_TRIAL: self.create_trial,
            op.SET_TRIAL_PARAM: self.trial_param,
            op.SET_TRIAL_STATE_VALUES: self.trial_state_values,
            op.SET_TRIAL_INTERMEDIATE_VALUE: self.trial_intermediate_value,
            op.SET_TRIAL_USER_ATTR: self.trial_user_attr,
            op.SET_TRIAL_SYSTEM_ATTR: self.trial_system_attr,
            op.DISCARD_TRIALS: lambda log: None,  # Optuna skips it too
        }

    @classmethod
    def resuming(
        cls, replay: JournalStorageReplayResult, distributions: dict[str, BaseDistribution]
    ) -> _InPlace:
        """For the records after a restored ``replay``: what a replay up to it would have noted."""
        in_place = cls(replay)
        in_place.distributions.update(distributions)
        in_place.study_names.update(s.study_name for s in replay._studies.values())
        study_of = replay._trial_id_to_study_id
        for trial_id, trial in replay._trials.items():
            for name in trial.params:
                in_place.hold(study_of[trial_id], name, trial.number)
        return in_place

    def hold(self, study_id: int, name: str, number: int) -> None:
        """Note that trial ``number`` of the study holds param ``name``: the first holder is the lowest."""
        holder = self.first_holder.get((study_id, name))
        if holder is None or number < holder:
            self.first_holder[(study_id, name)] = number

    def apply(self, logs: list[dict[str, Any]]) -> None:
        handlers = self.handlers
        for log in logs:
            handlers[log["op_code"]](log)  # an unknown op: KeyError, then Optuna's replay
        self.replay.log_number_read += len(logs)

    def distribution(self, text: str) -> BaseDistribution:
        found = self.distributions.get(text)
        if found is None:
            found = self.distributions[text] = json_to_distribution(text)
        return found

    def moment(self, text: str) -> datetime:
        """``datetime.fromisoformat(text).astimezone().replace(tzinfo=None)``, as Optuna computes it."""
        parsed = datetime.fromisoformat(text)
        offset = parsed.utcoffset()
        if offset is None:  # a naive time is the local zone's: Optuna's way, value by value
            return exact_local(parsed)
        local = self.local(parsed.replace(tzinfo=None) - offset)
        assert local is not None
        return local

    # -- studies ---------------------------------------------------------------------------------

    def create_study(self, log: dict[str, Any]) -> None:
        replay = self.replay
        name = log["study_name"]
        directions = [StudyDirection(d) for d in log["directions"]]
        if name in self.study_names and any(s.study_name == name for s in replay._studies.values()):
            return
        study_id = replay._next_study_id
        replay._next_study_id += 1
        replay._studies[study_id] = FrozenStudy(
            study_name=name,
            direction=None,
            user_attrs={},
            system_attrs={},
            study_id=study_id,
            directions=directions,
        )
        replay._study_id_to_trial_ids[study_id] = []
        self.study_names.add(name)

    def delete_study(self, log: dict[str, Any]) -> None:
        self.replay._studies.pop(log["study_id"], None)

    def study_user_attr(self, log: dict[str, Any]) -> None:
        study = self.replay._studies.get(log["study_id"])
        if study is not None:
            if len(log["user_attr"]) != 1:
                raise ValueError("a study user attr record sets one attr")
            study.user_attrs.update(log["user_attr"])

    def study_system_attr(self, log: dict[str, Any]) -> None:
        study = self.replay._studies.get(log["study_id"])
        if study is not None:
            if len(log["system_attr"]) != 1:
                raise ValueError("a study system attr record sets one attr")
            study.system_attrs.update(log["system_attr"])

    # -- trials ----------------------------------------------------------------------------------

    def create_trial(self, log: dict[str, Any]) -> None:
        replay = self.replay
        study_id = log["study_id"]
        if study_id not in replay._studies:
            return
        trial_id = len(replay._trials)
        distributions = {k: self.distribution(v) for k, v in log.get("distributions", {}).items()}
        params = {k: distributions[k].to_external_repr(p) for k, p in log.get("params", {}).items()}
        started = log["datetime_start"]
        trial_ids = replay._study_id_to_trial_ids[study_id]
        number = len(trial_ids)
        replay._trials[trial_id] = FrozenTrial(
            trial_id=trial_id,
            number=number,
            state=TrialState(log.get("state", TrialState.RUNNING.value)),
            params=params,
            distributions=distributions,
            user_attrs=log.get("user_attrs", {}),
            system_attrs=log.get("system_attrs", {}),
            value=log.get("value"),
            intermediate_values={int(k): v for k, v in log.get("intermediate_values", {}).items()},
            datetime_start=None if started is None else self.moment(started),
            datetime_complete=self.moment(log["datetime_complete"]) if "datetime_complete" in log else None,
            values=log.get("values"),
        )
        trial_ids.append(trial_id)
        replay._trial_id_to_study_id[trial_id] = study_id
        for name in params:
            self.hold(study_id, name, number)

    def updatable(self, trial_id: int) -> FrozenTrial | None:
        """The trial, unless it does not exist or has finished (then Optuna ignores the record)."""
        trial = self.replay._trials.get(trial_id)
        if trial is None:
            return None
        state = trial.state  # TrialState.is_finished, without a Python call per record
        return None if state is _COMPLETE or state is _PRUNED or state is _FAIL else trial

    def trial_param(self, log: dict[str, Any]) -> None:
        trial = self.updatable(log["trial_id"])
        if trial is None:
            return
        replay = self.replay
        name = log["param_name"]
        distribution = self.distribution(log["distribution"])
        study_id = replay._trial_id_to_study_id[trial._trial_id]
        holder = self.first_holder.get((study_id, name))
        if holder is not None:
            first = replay._trials[replay._study_id_to_trial_ids[study_id][holder]].distributions[name]
            try:  # one decoded object per distinct distribution: the same one is compatible
                if first is not distribution:
                    check_distribution_compatibility(first, distribution)
            except Exception:
                return
        trial.params[name] = distribution.to_external_repr(log["param_value_internal"])
        trial.distributions[name] = distribution
        self.hold(study_id, name, trial.number)

    def trial_state_values(self, log: dict[str, Any]) -> None:
        trial = self.updatable(log["trial_id"])
        if trial is None:
            return
        state = TrialState(log["state"])
        if state == trial.state and state == TrialState.RUNNING:
            return  # the popped trial is run by another process
        if state == TrialState.RUNNING:
            trial.datetime_start = self.moment(log["datetime_start"])
        if state.is_finished():
            trial.datetime_complete = self.moment(log["datetime_complete"])
        trial.state = state
        if log["values"] is not None:
            trial.values = log["values"]

    def trial_intermediate_value(self, log: dict[str, Any]) -> None:
        trial = self.updatable(log["trial_id"])
        if trial is not None:
            trial.intermediate_values[log["step"]] = log["intermediate_value"]

    def trial_user_attr(self, log: dict[str, Any]) -> None:
        trial = self.updatable(log["trial_id"])
        if trial is not None:
            if len(log["user_attr"]) != 1:
                raise ValueError("a trial user attr record sets one attr")
            trial.user_attrs.update(log["user_attr"])

    def trial_system_attr(self, log: dict[str, Any]) -> None:
        trial = self.updatable(log["trial_id"])
        if trial is not None:
            if len(log["system_attr"]) != 1:
                raise ValueError("a trial system attr record sets one attr")
            trial.system_attrs.update(log["system_attr"])
