"""A journal's replayed state, saved beside it, so that the next process replays only what came after.

Opening a journal storage replays every record ever appended: on a sweep of 10,000 trials as the
agent writes them (about 22 records a trial, 39 MB) that is decoding the whole file and a quarter
of a million records applied, about a second of CPU for every ``sweeper trials``, ``best`` or
``status``. The journal's opener saves what it replayed as ``<journal>.snapshot`` once the records it
replayed are worth it (:func:`worth_saving`); the next opener restores that state and replays only
the records after it, as Optuna's own snapshots of a Redis journal do.

The snapshot is plain JSON, not a pickle: a journal often lives in a shared directory, and a file
there must not run code in every process that reads the sweep. It holds Optuna's replay result as
it is (studies, trials and their numbering, field for field), the number of records it covers,
their length in bytes and those bytes' SHA-256 digest. It stands only for those very bytes: a
journal truncated, rewritten or replaced, a snapshot of another Optuna version or format, or one
that does not parse, is ignored and the journal replayed in full. Writers replace it whole
(``os.replace``), so a reader sees an old snapshot or a new one, never half of one; processes that
save at once leave the last one, and any of them is valid for the journal it names.

Optuna's replay result is a private class: this module (with :mod:`sweeper.storage.journal_read`)
is where sweeper depends on its fields, and the tests compare a restored state with Optuna's own
replay of the same journal.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    distribution_to_json,
    json_to_distribution,
)
from optuna.storages.journal._storage import JournalStorageReplayResult
from optuna.study._frozen import FrozenStudy
from optuna.study._study_direction import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from sweeper.storage import exact_json
from sweeper.storage.journal_replay import LinearReplay

_log = logging.getLogger(__name__)

FORMAT = 1
SUFFIX = ".snapshot"

# A new snapshot once the records replayed from the log (not restored) reach this many, or a tenth
# of all records: replaying them costs about what saving the state costs (0.1-0.2 s at 10,000
# trials), so a snapshot is rewritten no more often than its replay would be paid.
MIN_RECORDS = 20_000


@dataclass(frozen=True)
class Snapshot:
    """A restored replay: Optuna's state after the first ``log_number`` records (``offset`` bytes)."""

    replay: LinearReplay
    log_number: int
    offset: int
    distributions: dict[str, BaseDistribution]  # each distinct one's JSON text -> the decoded object
    finite: bool = False  # no NaN, infinity or long integer in it (:func:`exact_json.read`)


def path_of(journal: str) -> Path:
    return Path(journal + SUFFIX)


def covered(journal: str) -> int:
    """How many of the journal's bytes its snapshot stands for, as it says (0: none, or unreadable)."""
    try:
        with path_of(journal).open("rb") as f:
            offset = json.loads(f.readline()).get("offset", 0)
    except (OSError, ValueError, AttributeError):
        return 0
    return offset if isinstance(offset, int) else 0


def worth_saving(replayed: int, log_number: int) -> bool:
    """Whether ``replayed`` records read from the log (of ``log_number`` in all) deserve a new snapshot."""
    return replayed >= max(MIN_RECORDS, log_number // 10)


def load(journal: str, data: bytes, worker_id_prefix: str) -> Snapshot | None:
    """The snapshot beside ``journal``, if it was taken of a prefix of ``data`` (the journal's bytes)."""
    try:
        raw = path_of(journal).read_bytes()
    except OSError:  # none yet, or unreadable: the full replay
        return None
    try:
        head, _, body = raw.partition(b"\n")
        header = json.loads(head)
        if header.get("format") != FORMAT or header.get("optuna") != optuna.__version__:
            return None
        offset = header["offset"]
        if not (isinstance(offset, int) and 0 < offset <= len(data)) or data[offset - 1] != ord("\n"):
            return None
        if hashlib.sha256(memoryview(data)[:offset]).hexdigest() != header["sha256"]:
            return None  # not this journal's bytes any more
        log_number = header["log_number"]
        if log_number != data.count(b"\n", 0, offset):  # a record a line: the two must agree
            return None
        state, finite = exact_json.read(body)
        return _decode(state, log_number, offset, worker_id_prefix, finite)
    except Exception as exc:  # a snapshot we cannot use is only a slower open, never an error
        _log.debug("journal snapshot %s ignored: %r", path_of(journal), exc)
        return None


def save(
    journal: str, replay: JournalStorageReplayResult, prefix: bytes | memoryview, *, finite: bool = False
) -> None:
    """Save ``replay``, the state after the records in ``prefix`` (the journal's first bytes), beside it.

    ``finite``: every text the state was read from was finite (:func:`exact_json.read`); it is
    then written by orjson, unless a categorical param's choices hold a ``NaN`` or an infinity (a
    param's value is computed from its distribution, whose text Optuna decodes by itself). A
    directory that cannot be written to (a read-only share) only means no snapshot.
    """
    target = path_of(journal)
    try:
        header = {
            "format": FORMAT,
            "optuna": optuna.__version__,
            "log_number": replay.log_number_read,
            "offset": len(prefix),
            "sha256": hashlib.sha256(prefix).hexdigest(),
        }
        state, distributions = _encode(replay)
        finite = finite and all(map(_finite_choices, distributions))
        text = json.dumps(header).encode() + b"\n" + exact_json.dumps(state, finite=finite)
        fd, temporary = tempfile.mkstemp(prefix=target.name + ".", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(text)
            os.chmod(temporary, os.stat(journal).st_mode & 0o777)  # readable by whoever reads the journal
            os.replace(temporary, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
    except Exception as exc:  # unwritable, a value JSON cannot hold: only a slower next open
        _log.debug("journal snapshot %s not saved: %r", target, exc)


def _finite_choices(distribution: BaseDistribution) -> bool:
    """False for a categorical distribution with a ``NaN`` or an infinity among its choices."""
    if not isinstance(distribution, CategoricalDistribution):
        return True
    return all(math.isfinite(choice) for choice in distribution.choices if isinstance(choice, float))


def _encode(replay: JournalStorageReplayResult) -> tuple[dict[str, Any], list[BaseDistribution]]:
    """The state to write, and each distinct distribution in it."""
    distributions: dict[int, int] = {}  # id(object) -> its index in texts
    texts: list[str] = []
    objects: list[BaseDistribution] = []

    def index(distribution: BaseDistribution) -> int:
        found = distributions.get(id(distribution))
        if found is None:
            found = distributions[id(distribution)] = len(texts)
            texts.append(distribution_to_json(distribution))
            objects.append(distribution)
        return found

    trial_study = replay._trial_id_to_study_id
    state = {
        "next_study_id": replay._next_study_id,
        "studies": [
            [s._study_id, s.study_name, [d.value for d in s._directions], s.user_attrs, s.system_attrs]
            for s in replay._studies.values()
        ],
        "study_trials": [[study_id, ids] for study_id, ids in replay._study_id_to_trial_ids.items()],
        "trials": [
            [
                t._trial_id,
                trial_study[t._trial_id],
                t.number,
                t.state.value,
                t._values,
                _when(t._datetime_start),
                _when(t.datetime_complete),
                t._params,
                {name: index(d) for name, d in t._distributions.items()},
                t._user_attrs,
                t._system_attrs,
                list(t.intermediate_values.items()),
            ]
            for t in replay._trials.values()
        ],
        "distributions": texts,
    }
    return state, objects


def _decode(
    state: dict[str, Any], log_number: int, offset: int, worker_id_prefix: str, finite: bool
) -> Snapshot:
    texts: list[str] = state["distributions"]
    decoded = [json_to_distribution(text) for text in texts]
    replay = LinearReplay(worker_id_prefix)
    replay.log_number_read = log_number
    replay._next_study_id = state["next_study_id"]
    for study_id, name, directions, user_attrs, system_attrs in state["studies"]:
        replay._studies[study_id] = FrozenStudy(
            study_name=name,
            direction=None,
            user_attrs=user_attrs,
            system_attrs=system_attrs,
            study_id=study_id,
            directions=[StudyDirection(d) for d in directions],
        )
    replay._study_id_to_trial_ids = {study_id: ids for study_id, ids in state["study_trials"]}
    states = {s.value: s for s in TrialState}
    moment = datetime.fromisoformat
    for row in state["trials"]:
        trial_id, study_id, number, trial_state, values, start, complete = row[:7]
        params, distributions, user_attrs, system_attrs, intermediate = row[7:]
        replay._trials[trial_id] = FrozenTrial(
            number=number,
            state=states[trial_state],
            value=None,
            datetime_start=None if start is None else moment(start),
            datetime_complete=None if complete is None else moment(complete),
            params=params,
            distributions={name: decoded[i] for name, i in distributions.items()},
            user_attrs=user_attrs,
            system_attrs=system_attrs,
            intermediate_values={step: value for step, value in intermediate},
            trial_id=trial_id,
            values=values,
        )
        replay._trial_id_to_study_id[trial_id] = study_id
    return Snapshot(replay, log_number, offset, dict(zip(texts, decoded, strict=True)), finite)


def _when(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()
