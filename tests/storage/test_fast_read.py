"""The fast trial reader returns what Optuna's own ``get_all_trials`` returns, on SQLite and PostgreSQL."""

from __future__ import annotations

import doctest
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.storages import BaseStorage, RDBStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState, create_trial

import sweeper
from sweeper.spec.reader import load_spec
from sweeper.storage import fast_read as trial_reader
from sweeper.storage import queue, sweeps
from sweeper.storage.retry import RetryingStorage
from sweeper.storage.urls import open_storage

DISTRIBUTIONS = {
    "optimizer": CategoricalDistribution(["adam", "sgd", None, 3, 0.5, True]),
    "layers": IntDistribution(1, 8),
    "width": IntDistribution(16, 1024, log=True),
    "batch": IntDistribution(8, 64, step=8),
    "dropout": FloatDistribution(0.0, 0.5),
    "lr": FloatDistribution(1e-5, 1e-1, log=True),
    "momentum": FloatDistribution(0.0, 1.0, step=0.25),
    "fixed": FloatDistribution(2.0, 2.0),
}
NESTED: dict[str, Any] = {
    "config": {"lr": 0.001, "model": {"depth": 4, "act": "relu", "widths": [64, 32]}, "none": None},
    "metrics": {"loss": 0.25, "tags": ["a", "b"], "ok": True},
    "unicode": "täst ✓",
    "empty": {},
}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database URL: a SQLite file, or a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'sweeps.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def fallbacks(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> Iterator[Callable[[], list[str]]]:
    """The fallback notes the reader has logged so far (each reason is otherwise logged once a process)."""
    monkeypatch.setattr(trial_reader, "_noted", set())
    with caplog.at_level(logging.DEBUG, logger=trial_reader.__name__):
        yield lambda: [r.getMessage() for r in caplog.records if r.name == trial_reader.__name__]


def _params(i: int) -> dict[str, Any]:
    return {
        "optimizer": DISTRIBUTIONS["optimizer"].choices[i % 6],  # type: ignore[attr-defined]
        "layers": 1 + i % 8,
        "width": 16 * 2 ** (i % 7),
        "batch": 8 * (1 + i % 8),
        "dropout": 0.5 / (i + 1),
        "lr": 10 ** -(1 + i % 4) * 0.7,
        "momentum": 0.25 * (i % 5),
        "fixed": 2.0,
    }


def _populate_single(storage: BaseStorage) -> int:
    """A minimize study holding every kind of trial; returns its id."""
    study = optuna.create_study(storage=storage, study_name="single")
    study.set_user_attr("sweeper:name", "single")  # study attrs are not trial rows: must not leak in
    # Complete trials, finite, +inf and -inf, with full learning curves including NaN and infinities.
    for i, value in enumerate([0.5, math.inf, -math.inf, 1e-300, -2.5e12]):
        trial = study.ask(DISTRIBUTIONS)
        trial.set_user_attr("attempt", i)
        for key, attr in NESTED.items():
            trial.set_user_attr(key, attr)
        study._storage.set_trial_system_attr(trial._trial_id, "sweeper:lease", {"agent": "a", "until": i})
        for step, reported in enumerate([1.0, math.nan, math.inf, -math.inf, 0.125 * i]):
            trial.report(reported, step * 10)
        study.tell(trial, value)
    # Pruned, with a partial curve.
    trial = study.ask({"lr": DISTRIBUTIONS["lr"], "layers": DISTRIBUTIONS["layers"]})
    trial.report(3.0, 1)
    trial.report(math.nan, 2)
    study.tell(trial, state=TrialState.PRUNED)
    # Failed, once explicitly and once by a NaN objective.
    trial = study.ask({"optimizer": DISTRIBUTIONS["optimizer"]})
    trial.set_user_attr("fail_reason", "RuntimeError: boom")
    study.tell(trial, state=TrialState.FAIL)
    trial = study.ask({"dropout": DISTRIBUTIONS["dropout"]})
    with pytest.warns(UserWarning, match="not acceptable"):
        study.tell(trial, math.nan)
    # Running: partial params and curve; and one with nothing at all.
    trial = study.ask({"batch": DISTRIBUTIONS["batch"], "width": DISTRIBUTIONS["width"]})
    trial.report(7.0, 0)
    trial.set_user_attr("agent", "agent-1")
    study.ask()
    # Waiting: enqueued (fixed params in a system attr), with user attrs.
    study.enqueue_trial(_params(3), user_attrs={"attempt": 1, "retry_of": 2})
    study.enqueue_trial({}, user_attrs={"attempt": 0})
    # Ready-made trials with explicit timestamps and every param kind.
    start = datetime(2026, 3, 29, 0, 30, 15, 123456)  # a DST change in many zones
    made = []
    for i in range(12):
        trial = create_trial(
            state=TrialState.COMPLETE,
            value=float(i) / 3,
            params=_params(i),
            distributions=DISTRIBUTIONS,
            user_attrs={"config": {"i": i, "nested": {"deep": [i, {"x": i / 7}]}}},
            system_attrs={"sweeper:create_token": f"token-{i}"},
            intermediate_values={s: i + s / 3 for s in range(4)},
        )
        trial.datetime_start = start + timedelta(hours=i, microseconds=i)
        trial.datetime_complete = trial.datetime_start + timedelta(seconds=1.5)
        made.append(trial)
    study.add_trials(made)
    return study._study_id


def _populate_multi(storage: BaseStorage) -> int:
    """A (minimize, maximize) study with infinities among the values; returns its id."""
    study = optuna.create_study(storage=storage, study_name="multi", directions=["minimize", "maximize"])
    for values in ([1.0, 2.0], [math.inf, -math.inf], [-math.inf, math.inf], [0.0, -0.0]):
        trial = study.ask({"lr": DISTRIBUTIONS["lr"], "optimizer": DISTRIBUTIONS["optimizer"]})
        # Optuna's report is single-objective only; a multi-objective sweep's curve goes to the storage.
        study._storage.set_trial_intermediate_value(trial._trial_id, 1, values[0])
        study.tell(trial, values)
    study.tell(study.ask(), state=TrialState.FAIL)
    study.ask({"layers": DISTRIBUTIONS["layers"]})
    return study._study_id


def _same(a: Any, b: Any) -> bool:
    """Equal, of the same type, NaN equal to NaN, containers compared element by element."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _assert_same_trials(fast: list[FrozenTrial], reference: list[FrozenTrial]) -> None:
    assert [t.number for t in fast] == [t.number for t in reference]
    for mine, theirs in zip(fast, reference, strict=True):
        where = f"trial {theirs.number}"
        assert mine._trial_id == theirs._trial_id, where
        assert mine.state is theirs.state, where
        assert _same(mine.values, theirs.values), (where, mine.values, theirs.values)
        assert _same(mine.params, theirs.params), (where, mine.params, theirs.params)
        assert mine.distributions == theirs.distributions, where
        assert list(mine.distributions) == list(theirs.distributions), where
        # Attrs and curves: Optuna leaves their order to the database; keys and values must match.
        for field in ("user_attrs", "system_attrs", "intermediate_values"):
            ours, optunas = getattr(mine, field), getattr(theirs, field)
            assert sorted(ours) == sorted(optunas), (where, field)
            assert all(_same(ours[k], optunas[k]) for k in optunas), (where, field, ours, optunas)
        assert mine.datetime_start == theirs.datetime_start, where
        assert mine.datetime_complete == theirs.datetime_complete, where
        assert type(mine.datetime_start) is type(theirs.datetime_start), where


def _reference(url: str, study_id: int) -> list[FrozenTrial]:
    """Optuna's own reading: a fresh RDBStorage, no cache, no wrapper."""
    # SQLAlchemy 2.1 assumes psycopg 3 for a bare postgresql URL; psycopg2 is what is installed.
    rdb = RDBStorage(url.replace("postgresql://", "postgresql+psycopg2://", 1))
    try:
        return rdb.get_all_trials(study_id, deepcopy=False)
    finally:
        rdb.engine.dispose()


def test_reads_every_kind_of_trial_as_optuna_does(url: str, fallbacks: Callable[[], list[str]]) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    writer = open_storage(url)
    single = _populate_single(writer)
    multi = _populate_multi(writer)

    reader = open_storage(url)  # how sweeper opens it: RetryingStorage(_CachedStorage(RDBStorage))
    assert isinstance(reader, RetryingStorage)
    assert isinstance(trial_reader.database_of(reader), RDBStorage)
    for study_id, expected in ((single, 24), (multi, 6)):
        fast = trial_reader.read_trials(reader, study_id)
        assert len(fast) == expected
        _assert_same_trials(fast, _reference(url, study_id))
        _assert_same_trials(fast, open_storage(url).get_all_trials(study_id, deepcopy=False))
    states = {t.state for t in trial_reader.read_trials(reader, single)}
    assert states == set(TrialState)
    assert fallbacks() == []  # the fast path answered every time


def test_datetimes_are_local_time_as_optuna_hands_them_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fallbacks: Callable[[], list[str]]
) -> None:
    # Optuna 5 stores naive UTC and converts to naive local time on read; a zone far from UTC shows it.
    url = f"sqlite:///{tmp_path / 'sweeps.db'}"
    monkeypatch.setenv("TZ", "XYZ-5:30")
    time.tzset()
    try:
        study_id = _populate_multi(open_storage(url))
        fast = trial_reader.read_trials(open_storage(url), study_id)
        reference = _reference(url, study_id)
    finally:
        monkeypatch.undo()
        time.tzset()
    _assert_same_trials(fast, reference)
    assert fast[0].datetime_start is not None
    assert fallbacks() == []


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/St_Johns"])
def test_local_times_across_a_zone_change_are_optunas(
    zone: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fallbacks: Callable[[], list[str]]
) -> None:
    # Local times are worked out once an hour of timestamps, unless the zone changes within the
    # hour: Berlin's changes fall on a UTC hour, St. John's on a half hour (04:30 UTC here).
    if not Path("/usr/share/zoneinfo", zone).exists():
        pytest.skip("no zone database")
    url = f"sqlite:///{tmp_path / 'sweeps.db'}"
    start = datetime(2026, 10, 25, 0, 0, tzinfo=timezone.utc)  # Berlin: back an hour at 01:00 UTC
    if zone == "America/St_Johns":
        start = datetime(2026, 11, 1, 3, 0, tzinfo=timezone.utc)
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        study = optuna.create_study(storage=open_storage(url))
        made = []
        for i in range(40):  # every 7 minutes, across the change
            trial = create_trial(state=TrialState.COMPLETE, value=float(i))
            trial.datetime_start = start + timedelta(minutes=7 * i, microseconds=i)
            trial.datetime_complete = trial.datetime_start + timedelta(seconds=1)
            made.append(trial)
        study.add_trials(made)
        fast = trial_reader.read_trials(open_storage(url), study._study_id)
        reference = _reference(url, study._study_id)
        offsets = {t.datetime_start.astimezone().utcoffset() for t in fast if t.datetime_start}
    finally:
        monkeypatch.undo()
        time.tzset()
    _assert_same_trials(fast, reference)
    assert len(offsets) == 2  # both sides of the change were read
    assert fallbacks() == []


def test_a_journal_storage_falls_back_to_its_own_reader(
    tmp_path: Path, fallbacks: Callable[[], list[str]]
) -> None:
    storage = open_storage(f"journal://{tmp_path / 'sweeps.log'}")
    study_id = _populate_multi(storage)

    assert trial_reader.database_of(storage) is None
    _assert_same_trials(
        trial_reader.read_trials(storage, study_id), storage.get_all_trials(study_id, deepcopy=False)
    )
    trial_reader.read_trials(storage, study_id)
    assert fallbacks() == [
        "reading trials with the storage's get_all_trials: LinearJournalStorage is not a database storage"
    ]


def test_a_missing_study_raises_the_storages_own_error(tmp_path: Path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 'sweeps.db'}")
    storage.create_new_study([StudyDirection.MINIMIZE], "there")
    with pytest.raises(KeyError):
        trial_reader.read_trials(storage, 999)


def test_load_reads_a_database_sweep_through_the_fast_reader(
    url: str, fallbacks: Callable[[], list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = load_spec(
        {
            "method": "random",
            "metric": {"name": "loss", "goal": "minimize"},
            "run_cap": 3,
            "parameters": {"lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-1}},
        }
    )
    storage = open_storage(url)
    info = sweeps.create_sweep(storage, spec)
    study = sweeps.load_study(storage, info.id)
    trial = study.ask({"lr": FloatDistribution(1e-4, 1e-1, log=True)})
    trial.set_user_attr("config", {"lr": trial.params["lr"]})
    study.tell(trial, 0.5)
    for _ in range(2):  # two budget tokens waiting, as the first agent queues them
        queue.enqueue(study, {}, {"attempt": 0})

    read = trial_reader._read
    fast_reads: list[int] = []

    def spied(rdb: RDBStorage, study_id: int) -> list[FrozenTrial] | None:
        fast_reads.append(study_id)
        return read(rdb, study_id)

    monkeypatch.setattr(trial_reader, "_read", spied)
    results = sweeper.load(info.id, storage=url)

    assert fast_reads == [info.study_id]

    _assert_same_trials(list(results.frozen_trials), _reference(url, info.study_id))
    assert [t.state for t in results.trials] == ["complete", "waiting", "waiting"]
    assert results.best()[0].config == {"lr": trial.params["lr"]}
    assert fallbacks() == []


@pytest.mark.postgres
def test_postgresql_reads_its_tables_at_once_and_all_as_of_one_moment(
    postgres_url: str, fallbacks: Callable[[], list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The biggest tables are read on connections of their own, each importing the first one's
    # snapshot: a write that commits in between is seen by none of the queries.
    storage = open_storage(postgres_url)
    study = optuna.create_study(storage=storage, study_name="moment")
    first = study.ask({"lr": FloatDistribution(1e-4, 1e-1, log=True)})
    first.set_user_attr("config", {"lr": first.params["lr"]})
    first.report(0.5, 1)  # running: it still takes attrs
    later = open_storage(postgres_url)
    threads: list[str] = []
    real_pool = trial_reader.ThreadPoolExecutor

    class WriteFirst(real_pool):  # type: ignore[misc,valid-type]
        """Commits a write once the first connection's snapshot is taken, then reads alongside."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            later.set_trial_user_attr(first._trial_id, "late", True)
            later.set_trial_system_attr(first._trial_id, "late", True)
            super().__init__(*args, **kwargs)

        def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            def traced(*a: Any, **k: Any) -> Any:
                threads.append(threading.current_thread().name)
                return fn(*a, **k)

            return super().submit(traced, *args, **kwargs)

    monkeypatch.setattr(trial_reader, "ThreadPoolExecutor", WriteFirst)
    (read,) = trial_reader.read_trials(storage, study._study_id)

    assert len(threads) == 3 and all(name.startswith("sweeper-read") for name in threads)
    assert "late" not in read.user_attrs  # read alongside, in the snapshot
    assert "late" not in read.system_attrs  # read on the first connection
    assert read.user_attrs["config"] == {"lr": first.params["lr"]} and read.intermediate_values == {1: 0.5}
    assert fallbacks() == []
    (now,) = trial_reader.read_trials(storage, study._study_id)
    assert now.user_attrs["late"] is True and now.system_attrs["late"] is True


def test_docstring_examples_run() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    result = doctest.testmod(trial_reader)
    assert result.attempted > 0
    assert result.failed == 0
