"""Opening a journal: the fast replay leaves exactly the state Optuna's own replay leaves.

Each log mixes what Optuna's calls append with records of other processes written as raw records
(the ones Optuna's replay ignores: an op on a finished trial, a param whose distribution conflicts
with the study's, a study created twice, a trial of a deleted study). The state after opening with
:func:`open_storage` is compared, field by field and in dict order, with a plain
``JournalStorage`` of the same file.
"""

from __future__ import annotations

import builtins
import contextlib
import fcntl
import json
import math
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import optuna
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from optuna.distributions import (
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    distribution_to_json,
)
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.storages.journal._storage import JournalOperation
from optuna.trial import TrialState, create_trial

import sweeper
from sweeper.storage import journal_read, journal_snapshot, snapshot_keeper
from sweeper.storage.snapshot_keeper import SnapshotKeeper
from sweeper.storage.urls import open_storage

OTHER = "another-process-1234"  # the worker id of records another process appended
FLOAT = FloatDistribution(0.0, 1.0)
CHOICE = CategoricalDistribution(["a", "b", None, 2.5])


def _append(path: Path, *records: dict[str, Any]) -> None:
    """Records as another process appends them (Optuna's encoding, one line each)."""
    with path.open("a") as f:
        for record in records:
            f.write(json.dumps({"worker_id": OTHER, **record}, separators=(",", ":")) + "\n")


def _now() -> str:
    return datetime.now().astimezone().isoformat(timespec="microseconds")


def _populate(path: Path) -> None:
    """A log holding every op, the ignored ones included."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = JournalStorage(JournalFileBackend(str(path)))
    study = optuna.create_study(storage=storage, study_name="one")
    study.set_user_attr("sweeper:name", "one")
    storage.set_study_system_attr(study._study_id, "sweeper:claim:x", 3)
    for i, value in enumerate([0.5, math.inf, -math.inf]):
        trial = study.ask({"x": FLOAT, "c": CHOICE, "n": IntDistribution(1, 9, log=True)})
        trial.set_user_attr("config", {"x": trial.params["x"], "nested": {"deep": [i, None]}})
        storage.set_trial_system_attr(trial._trial_id, "sweeper:lease", {"agent": "a", "seq": i})
        for step, reported in enumerate([1.0, math.nan, math.inf, 0.25 * i]):
            trial.report(reported, step)
        storage.set_trial_intermediate_value(trial._trial_id, 0, 9.0)  # a step set twice keeps its place
        study.tell(trial, value)
    pruned = study.ask({"x": FLOAT})
    study.tell(pruned, state=TrialState.PRUNED)
    study.enqueue_trial({"x": 0.25}, user_attrs={"attempt": 1, "retry_of": 0})
    popped = study.ask()  # the waiting trial, now running
    study.ask()  # running, nothing set
    other = optuna.create_study(storage=storage, study_name="two", directions=["minimize", "maximize"])
    made = create_trial(
        state=TrialState.COMPLETE,
        values=[1.0, 2.0],
        params={"x": 0.5, "c": None},
        distributions={"x": FLOAT, "c": CHOICE},
        user_attrs={"a": 1},
        system_attrs={"s": "t"},
        intermediate_values={1: 0.5, 2: 0.25},
    )
    made.datetime_start = datetime(2026, 3, 29, 0, 30, 15, 123456)  # a DST change in many zones
    made.datetime_complete = made.datetime_start + timedelta(hours=2, microseconds=7)
    other.add_trials([made, create_trial(state=TrialState.WAITING, system_attrs={"fixed_params": {"x": 1}})])
    doomed = optuna.create_study(storage=storage, study_name="doomed")
    doomed_trial = doomed.ask({"x": FLOAT})
    optuna.delete_study(study_name="doomed", storage=storage)
    one, two = study._study_id, other._study_id
    finished = study.trials[0]._trial_id
    _append(
        path,
        # Another process's records Optuna's replay ignores.
        {"op_code": JournalOperation.CREATE_STUDY, "study_name": "one", "directions": [1]},
        {"op_code": JournalOperation.SET_TRIAL_USER_ATTR, "trial_id": finished, "user_attr": {"late": 1}},
        {"op_code": JournalOperation.SET_TRIAL_STATE_VALUES, "trial_id": finished, "state": 2, "values": None,
         "datetime_complete": _now()},
        {"op_code": JournalOperation.SET_TRIAL_PARAM, "trial_id": popped._trial_id, "param_name": "x",
         "param_value_internal": 3.0, "distribution": distribution_to_json(IntDistribution(1, 5))},
        {"op_code": JournalOperation.SET_TRIAL_STATE_VALUES, "trial_id": popped._trial_id, "state": 0,
         "values": None, "datetime_start": _now()},
        {"op_code": JournalOperation.SET_TRIAL_INTERMEDIATE_VALUE, "trial_id": 999, "step": 1,
         "intermediate_value": 1.0},
        {"op_code": JournalOperation.CREATE_TRIAL, "study_id": 999, "datetime_start": _now()},
        {"op_code": JournalOperation.SET_STUDY_USER_ATTR, "study_id": 999, "user_attr": {"k": 1}},
        {"op_code": JournalOperation.DISCARD_TRIALS, "study_id": one},
        # And records it applies: a trial of a deleted study is still written to.
        {"op_code": JournalOperation.SET_TRIAL_USER_ATTR, "trial_id": doomed_trial._trial_id,
         "user_attr": {"after": "delete"}},
        {"op_code": JournalOperation.SET_TRIAL_PARAM, "trial_id": popped._trial_id, "param_name": "c",
         "param_value_internal": 2, "distribution": distribution_to_json(CHOICE)},
        {"op_code": JournalOperation.CREATE_TRIAL, "study_id": two, "datetime_start": None, "state": 3},
        {"op_code": JournalOperation.CREATE_STUDY, "study_name": "doomed", "directions": [1]},
    )  # fmt: skip


def _assert_same_state(path: Path) -> None:
    ours = open_storage(f"journal://{path}")
    reference = JournalStorage(JournalFileBackend(str(path)))
    mine, theirs = ours._replay_result, reference._replay_result  # type: ignore[attr-defined]
    assert mine.log_number_read == theirs.log_number_read
    assert mine._next_study_id == theirs._next_study_id
    assert mine._study_id_to_trial_ids == theirs._study_id_to_trial_ids
    assert mine._trial_id_to_study_id == theirs._trial_id_to_study_id
    assert list(mine._studies) == list(theirs._studies)
    for study_id, study in theirs._studies.items():
        assert repr(mine._studies[study_id].__dict__) == repr(study.__dict__)
    assert list(mine._trials) == list(theirs._trials)
    for trial_id, trial in theirs._trials.items():
        # repr: NaN equal to NaN, types and dict order compared too.
        assert repr(mine._trials[trial_id].__dict__) == repr(trial.__dict__), trial_id


def test_the_fast_replay_leaves_optunas_state(tmp_path: Path) -> None:
    path = tmp_path / "journal.log"
    _populate(path)
    _assert_same_state(path)


@pytest.mark.parametrize(
    ("zone", "start"),
    [
        ("Europe/Berlin", datetime(2026, 10, 25, 0, 10, tzinfo=timezone.utc)),  # back an hour at 01:00 UTC
        ("America/St_Johns", datetime(2026, 11, 1, 3, 10, tzinfo=timezone.utc)),  # at 04:30 UTC
    ],
)
def test_local_times_across_a_zone_change_are_optunas(
    zone: str, start: datetime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not Path("/usr/share/zoneinfo", zone).exists():
        pytest.skip("no zone database")
    path = tmp_path / "journal.log"
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        _populate(path)
        _append(
            path,
            *(
                {
                    "op_code": JournalOperation.CREATE_TRIAL,
                    "study_id": 0,
                    "datetime_start": (start + timedelta(minutes=7 * i)).isoformat(timespec="microseconds"),
                    "datetime_complete": (start + timedelta(minutes=7 * i, seconds=1)).isoformat(),
                    "state": 1,
                    "values": [float(i)],
                }
                for i in range(40)
            ),
        )
        _assert_same_state(path)
    finally:
        monkeypatch.undo()
        time.tzset()


def test_later_records_and_writes_go_through_optunas_replay(tmp_path: Path) -> None:
    path = tmp_path / "journal.log"
    _populate(path)
    ours = open_storage(f"journal://{path}")
    study = optuna.load_study(study_name="one", storage=ours)
    writer = optuna.load_study(study_name="one", storage=JournalStorage(JournalFileBackend(str(path))))
    trial = writer.ask({"x": FLOAT})
    writer.tell(trial, 0.125)
    study.tell(study.ask({"x": FLOAT}), 0.375)  # our own write, replayed back
    _assert_same_state(path)
    assert [t.value for t in study.get_trials()[-2:]] == [0.125, 0.375]


def test_a_record_still_being_written_is_left_for_later(tmp_path: Path) -> None:
    path = tmp_path / "journal.log"
    _populate(path)
    with path.open("a") as f:
        f.write('{"op_code": 4, "worker_id": "w", "study_id": 0, "datetime_st')  # no newline yet
    _assert_same_state(path)
    assert journal_read.JournalFile(str(path))._read_all() is not None  # the fast path took it


# Lines of a log, good and bad: a record, a blank line, two values on a line, a value not a record,
# text that is not JSON, a NaN, a long integer.
_LINES = st.sampled_from(
    [
        b'{"op_code": 0, "worker_id": "w", "study_name": "s", "directions": [1]}',
        b'{"op_code": 4, "x": [0.5, null, "\\u00e9"]}',
        b"",
        b"1, 2",
        b"[3]",
        b'{"a": ',
        b'{"v": NaN}',
        b'{"big": 123456789012345678901}',
    ]
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(_LINES, max_size=8), tail=st.sampled_from([b"", b'{"op_co']), start=st.integers(0, 8))
def test_the_fast_decode_yields_what_optunas_reader_yields(
    tmp_path: Path, lines: list[bytes], tail: bytes, start: int
) -> None:
    path = tmp_path / "decode.log"
    path.write_bytes(b"".join(line + b"\n" for line in lines) + tail)
    start = min(start, len(lines))
    offset = sum(len(line) + 1 for line in lines[:start])
    ours = journal_read.JournalFile(str(path))
    read = ours.decode(path.read_bytes(), offset, start)
    clean = all(line.startswith(b"{") and line.endswith(b"}") for line in lines[start:])
    clean = clean and bool(lines[start:] or not tail)  # a first record being written: Optuna's reader
    if read is None:
        assert not clean  # the fast path refuses only what Optuna's reader must judge
        return
    reference = JournalFileBackend(str(path))
    assert repr(read[0]) == repr(list(reference.read_logs(start)))
    assert ours._log_number_offset[len(lines)] == reference._log_number_offset[len(lines)]
    odd = (b"NaN", b"123456789012345678901")  # what orjson does not read as json.loads does
    assert read[1] == all(not any(text in line for text in odd) for line in lines[start:])


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ('{"op_code": 4, "worker_id": "w", "study_id": 0, "datetime_st\n', json.JSONDecodeError),
        ('{"op_code": 99, "worker_id": "w"}\n', AssertionError),  # an op Optuna does not know
        ('{"op_code": 4, "worker_id": "w", "study_id": 0}\n', KeyError),  # no datetime_start
    ],
)
def test_a_log_optuna_cannot_replay_fails_as_optuna_fails(tmp_path: Path, line: str, error: type) -> None:
    path = tmp_path / "journal.log"
    _populate(path)
    with path.open("a") as f:
        f.write(line)
    _append(path, {"op_code": JournalOperation.SET_STUDY_USER_ATTR, "study_id": 0, "user_attr": {"k": 2}})
    with pytest.raises(error):
        JournalStorage(JournalFileBackend(str(path)))
    with pytest.raises(error):
        open_storage(f"journal://{path}")


def test_a_read_with_nothing_new_in_the_log_does_not_open_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "journal.log"
    _populate(path)
    storage = open_storage(f"journal://{path}")
    opened: list[str] = []
    real_open = builtins.open

    def spy(file: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", spy)
    one = storage.get_study_id_from_name("one")
    assert storage.get_study_user_attrs(one) == {"sweeper:name": "one"}
    assert str(path) not in opened
    _append(path, {"op_code": JournalOperation.SET_STUDY_USER_ATTR, "study_id": one, "user_attr": {"k": 2}})
    assert storage.get_study_user_attrs(one) == {"sweeper:name": "one", "k": 2}  # read once it grew
    assert str(path) in opened


def test_an_empty_or_new_journal_opens(tmp_path: Path) -> None:
    storage = open_storage(f"journal://{tmp_path / 'new.log'}")
    assert storage.get_all_studies() == []
    (tmp_path / "partial.log").write_text('{"op_code": 0')
    assert open_storage(f"journal://{tmp_path / 'partial.log'}").get_all_studies() == []


# -- snapshots: the replayed state saved beside the journal ----------------------------------------


@pytest.fixture
def every_open_snapshots(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any replay is worth a snapshot (by default only tens of thousands of records are)."""
    monkeypatch.setattr(journal_snapshot, "MIN_RECORDS", 0)


def _restored(path: Path) -> bool:
    """Whether a snapshot stands for the start of the journal at ``path`` now."""
    data = journal_read.JournalFile(str(path)).read_bytes()
    return journal_snapshot.load(str(path), data, "reader-") is not None


def test_small_journals_are_not_snapshotted(tmp_path: Path) -> None:
    path = tmp_path / "journal.log"
    _populate(path)
    open_storage(f"journal://{path}")
    assert not journal_snapshot.path_of(str(path)).exists()
    assert journal_snapshot.worth_saving(20_000, 20_000) and not journal_snapshot.worth_saving(19_999, 19_999)
    assert not journal_snapshot.worth_saving(20_000, 1_000_000)  # a tenth of a long log at least


def test_a_snapshot_restores_optunas_state(tmp_path: Path, every_open_snapshots: None) -> None:
    path = tmp_path / "journal.log"
    _populate(path)
    open_storage(f"journal://{path}")  # replays the log, saves the snapshot
    snapshot = journal_snapshot.path_of(str(path))
    head, _, body = snapshot.read_bytes().partition(b"\n")
    header = json.loads(head)
    assert header["offset"] == path.stat().st_size and header["log_number"] == len(
        path.read_bytes().splitlines()
    )
    assert json.loads(body)["studies"]  # plain JSON: nothing in it runs code when read
    assert snapshot.stat().st_mode & 0o777 == path.stat().st_mode & 0o777
    assert _restored(path)
    _assert_same_state(path)  # opened from the snapshot


def test_records_after_a_snapshot_are_replayed_as_optuna_replays_them(
    tmp_path: Path, every_open_snapshots: None
) -> None:
    path = tmp_path / "journal.log"
    _populate(path)
    open_storage(f"journal://{path}")
    writer = optuna.load_study(study_name="one", storage=JournalStorage(JournalFileBackend(str(path))))
    trial = writer.ask({"x": FLOAT})  # "c": held first by a trial in the snapshot only
    trial.report(0.5, 1)
    writer.tell(trial, 0.125)
    late = writer.ask()
    _append(
        path,
        # A param whose distribution conflicts with the study's first holder's: Optuna ignores it.
        {"op_code": JournalOperation.SET_TRIAL_PARAM, "trial_id": late._trial_id, "param_name": "c",
         "param_value_internal": 1, "distribution": distribution_to_json(IntDistribution(0, 3))},
        {"op_code": JournalOperation.SET_TRIAL_PARAM, "trial_id": late._trial_id, "param_name": "x",
         "param_value_internal": 0.75, "distribution": distribution_to_json(FLOAT)},
        # A study whose name the snapshot holds already: ignored.
        {"op_code": JournalOperation.CREATE_STUDY, "study_name": "two", "directions": [1]},
    )  # fmt: skip
    before = journal_snapshot.path_of(str(path)).read_bytes()
    assert _restored(path)  # still stands for the journal's first bytes
    _assert_same_state(path)
    assert journal_snapshot.path_of(str(path)).read_bytes() != before  # the longer replay saved anew


def test_a_snapshot_of_other_bytes_is_ignored(tmp_path: Path, every_open_snapshots: None) -> None:
    path = tmp_path / "journal.log"
    _populate(path)
    open_storage(f"journal://{path}")
    snapshot = journal_snapshot.path_of(str(path))
    saved = snapshot.read_bytes()
    # The journal replaced by another one as long, that differs in one byte: a study's name.
    path.write_bytes(path.read_bytes().replace(b'"study_name":"one"', b'"study_name":"uno"', 1))
    snapshot.write_bytes(saved)
    assert not _restored(path)
    _assert_same_state(path)
    assert open_storage(f"journal://{path}").get_all_studies()[0].study_name == "uno"
    # And truncated below the snapshot's end.
    snapshot.write_bytes(saved)
    path.write_bytes(b"".join(path.read_bytes().splitlines(keepends=True)[:5]))
    assert not _restored(path)
    _assert_same_state(path)


@pytest.mark.parametrize(
    "spoil",
    [
        lambda head, body: (head.replace(b'"optuna": "', b'"optuna": "0.'), body),  # another Optuna
        lambda head, body: (head.replace(b'"format": 1', b'"format": 99'), body),
        lambda head, body: (head, body[: len(body) // 2]),  # half written
        lambda head, body: (head, b'{"studies": 1}'),  # not the shape it should have
        lambda head, body: (b"not json", body),
        lambda head, body: (head.replace(b'"log_number": ', b'"log_number": 1'), body),  # not its count
    ],
)
def test_a_snapshot_that_cannot_be_used_is_ignored(
    tmp_path: Path, every_open_snapshots: None, spoil: Callable[[bytes, bytes], tuple[bytes, bytes]]
) -> None:
    path = tmp_path / "journal.log"
    _populate(path)
    open_storage(f"journal://{path}")
    snapshot = journal_snapshot.path_of(str(path))
    head, _, body = snapshot.read_bytes().partition(b"\n")
    head, body = spoil(head, body)
    snapshot.write_bytes(head + b"\n" + body)
    assert not _restored(path)
    _assert_same_state(path)


def _finite_study(path: Path) -> optuna.Study:
    """A journal with no NaN or infinity in it (so its snapshot is written by orjson)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=JournalStorage(JournalFileBackend(str(path))), study_name="fin")
    for i in range(3):
        trial = study.ask({"x": FLOAT, "c": CHOICE})
        trial.set_user_attr("note", {"text": "naïve ☃", "seed": 10**17 + i})
        trial.report(0.5 * i, 1)
        study.tell(trial, 0.1 * i)
    return study


def test_a_finite_state_is_snapshotted_by_orjson_as_optuna_replays_it(
    tmp_path: Path, every_open_snapshots: None
) -> None:
    path = tmp_path / "journal.log"
    _finite_study(path)
    open_storage(f"journal://{path}")
    body = journal_snapshot.path_of(str(path)).read_bytes().partition(b"\n")[2]
    # orjson writes text as UTF-8 where the standard library writes \u escapes.
    assert "naïve ☃".encode() in body and b"\\u" not in body
    assert _restored(path)
    _assert_same_state(path)


def test_a_nan_among_a_params_choices_keeps_the_snapshot_exact(
    tmp_path: Path, every_open_snapshots: None
) -> None:
    """A param's value comes from its distribution's choices, which the log holds as a string: a
    finite log can still give a NaN param, which orjson would write as null."""
    path = tmp_path / "journal.log"
    study = _finite_study(path)
    trial = study.ask()
    odd = distribution_to_json(CategoricalDistribution([0.5, math.nan]))
    _append(
        path,
        {"op_code": JournalOperation.SET_TRIAL_PARAM, "trial_id": trial._trial_id, "param_name": "odd",
         "param_value_internal": 1, "distribution": odd},
    )  # fmt: skip
    open_storage(f"journal://{path}")
    assert b"NaN" in journal_snapshot.path_of(str(path)).read_bytes().partition(b"\n")[2]
    assert _restored(path)
    _assert_same_state(path)  # the param is NaN, as Optuna replays it
    restored = open_storage(f"journal://{path}").get_trial(trial._trial_id)
    assert math.isnan(restored.params["odd"])


def test_a_snapshot_that_cannot_be_written_only_costs_the_next_replay(
    tmp_path: Path, every_open_snapshots: None
) -> None:
    path = tmp_path / "journal.log"
    _populate(path)
    journal_snapshot.path_of(str(path)).mkdir()  # nothing can be put in its place
    _assert_same_state(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["journal.log", "journal.log.snapshot"]


def _train(config: dict[str, Any], trial: sweeper.Trial) -> float:
    return float(config["x"])


def test_an_agent_leaves_a_snapshot_for_the_sweeps_next_reader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the trials' own files
    path = tmp_path / "journal.log"
    url = f"journal://{path}"
    spec = {"method": "grid", "metric": {"name": "loss"}, "parameters": {"x": {"values": [1, 2, 3]}}}
    sweep_id = sweeper.sweep(spec, storage=url)
    sweeper.agent(sweep_id, function=_train, storage=url, executor="local", count=1)
    assert not journal_snapshot.path_of(str(path)).exists()  # too little written to be worth one
    monkeypatch.setattr(journal_read, "STALE_BYTES", 1)
    monkeypatch.setattr(journal_snapshot, "MIN_RECORDS", 0)
    sweeper.agent(sweep_id, function=_train, storage=url, executor="local")
    assert journal_snapshot.covered(str(path)) == path.stat().st_size
    assert _restored(path)
    _assert_same_state(path)
    assert [t.value for t in sweeper.load(sweep_id, storage=url).trials] == [1.0, 2.0, 3.0]
    saved = journal_snapshot.path_of(str(path)).stat().st_ino
    journal_read.refresh_snapshot(open_storage(url))  # nothing new since: nothing written
    assert journal_snapshot.path_of(str(path)).stat().st_ino == saved


# -- the snapshot an agent keeps fresh from a child process ----------------------------------------


def test_the_keeper_saves_a_snapshot_from_a_child_once_enough_was_appended(tmp_path: Path) -> None:
    path = tmp_path / "journal.log"
    _populate(path)
    keeper = SnapshotKeeper(open_storage(f"journal://{path}"), stale_bytes=path.stat().st_size)
    assert keeper.poll()  # the whole journal is more than that stale
    assert keeper.wait(60)
    assert journal_snapshot.covered(str(path)) == path.stat().st_size
    assert _restored(path)
    _assert_same_state(path)
    assert not keeper.poll()  # nothing appended since
    study = optuna.load_study(study_name="one", storage=JournalStorage(JournalFileBackend(str(path))))
    study.tell(study.ask({"x": FLOAT}), 0.5)
    assert not keeper.poll()  # appended, but less than it waits for
    half = SnapshotKeeper(open_storage(f"journal://{path}"), stale_bytes=1)
    assert half.poll() and half.wait(60)
    assert journal_snapshot.covered(str(path)) == path.stat().st_size
    _assert_same_state(path)  # the records after the first snapshot replayed on top of it


def test_a_keeper_whose_child_cannot_save_waits_for_more_before_trying_again(tmp_path: Path) -> None:
    path = tmp_path / "journal.log"
    _populate(path)
    journal_snapshot.path_of(str(path)).mkdir()  # nothing can be put in its place
    keeper = SnapshotKeeper(open_storage(f"journal://{path}"), stale_bytes=100)
    assert keeper.poll() and keeper.wait(60)
    assert journal_snapshot.covered(str(path)) == 0
    assert not keeper.poll()  # still stale, but a child would fail again: not started
    _append(
        path,
        {"op_code": JournalOperation.CREATE_STUDY, "study_name": "late", "directions": [1]}
        | {"pad": "x" * 100},
    )
    assert keeper.poll() and keeper.wait(60)
    _assert_same_state(path)


def test_a_keeper_of_another_storage_does_nothing(tmp_path: Path) -> None:
    keeper = SnapshotKeeper(open_storage(f"sqlite:///{tmp_path / 'sweeps.db'}"), stale_bytes=0)
    assert not keeper.poll()
    assert not keeper.running() and keeper.wait(0)


def _waits_for_a_snapshot(config: dict[str, Any], trial: sweeper.Trial) -> float:
    """The sweep's second trial ends once its journal has a snapshot, which only the keeper writes
    while the agent runs (the agent's own refresh comes after its last trial)."""
    snapshot = journal_snapshot.path_of(config["journal"])
    deadline = time.monotonic() + 60
    while config["x"] > 1 and not snapshot.exists():
        assert time.monotonic() < deadline, "no snapshot while the agent ran"
        time.sleep(0.05)
    return float(config["x"])


def test_a_running_agent_keeps_the_snapshot_fresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the trials' own files
    path = tmp_path / "journal.log"
    url = f"journal://{path}"
    monkeypatch.setattr(journal_read, "STALE_BYTES", 1)  # the keeper starts a child at once
    spec = {
        "method": "grid",
        "metric": {"name": "loss"},
        "parameters": {"x": {"values": [1, 2]}, "journal": {"value": str(path)}},
    }
    sweep_id = sweeper.sweep(spec, storage=url)
    sweeper.agent(sweep_id, function=_waits_for_a_snapshot, storage=url, executor="local")
    assert [t.value for t in sweeper.load(sweep_id, storage=url).trials] == [1.0, 2.0]
    assert journal_snapshot.covered(str(path)) == path.stat().st_size  # and the run's end refreshed it
    _assert_same_state(path)


def test_one_child_at_a_time_refreshes_a_journal_whichever_agent_starts_it(tmp_path: Path) -> None:
    path = tmp_path / "journal.log"
    _populate(path)
    storage = open_storage(f"journal://{path}")
    with open(snapshot_keeper.lock_path(str(path)), "ab") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another agent's child is refreshing it
        assert not SnapshotKeeper(storage, stale_bytes=1).poll()
    keeper = SnapshotKeeper(storage, stale_bytes=1)  # it let go: this agent's turn
    assert keeper.poll() and keeper.wait(60)
    assert journal_snapshot.covered(str(path)) == path.stat().st_size
    with open(snapshot_keeper.lock_path(str(path)), "ab") as after:
        fcntl.flock(after, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the child's exit let it go


@pytest.mark.parametrize("synced", [True, False])
def test_a_record_a_killed_writer_left_half_written_is_cut_off_before_the_next_append(
    tmp_path: Path, synced: bool
) -> None:
    """Appended to, it would make one line of two records: every reader after would fail on it."""
    path = tmp_path / "journal.log"
    url = f"journal://{path}"
    sweeper.sweep({"method": "random", "parameters": {"x": {"min": 0.0, "max": 1.0}}}, storage=url)
    whole = path.read_bytes()
    with path.open("ab") as f:  # the writer was killed (SIGKILL) halfway through its record
        f.write(b'{"op_code":4,"worker_id":"killed","study_id":0,"datetime_st')

    storage = open_storage(url)
    study_id = storage.get_all_studies()[0]._study_id
    with journal_read.unsynced() if not synced else contextlib.nullcontext():
        trial_id = storage.create_new_trial(study_id)

    data = path.read_bytes()
    assert data.startswith(whole) and data.endswith(b"\n")
    assert b'"killed"' not in data  # the unfinished record is gone, the rest kept
    # Optuna's own reader reads the log through, the new trial in it.
    theirs = JournalStorage(JournalFileBackend(str(path)))
    assert theirs.get_trial(trial_id).state == TrialState.RUNNING
    assert len(theirs.get_all_studies()) == 1
