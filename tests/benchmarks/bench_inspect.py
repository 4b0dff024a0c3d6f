"""How fast the inspect commands answer on a sweep of 10,000 trials (journal file, SQLite, PostgreSQL).

Run: ``python tests/benchmarks/bench_inspect.py [--trials N] [--dir DIR]``. Prints one line per
measurement; the target is under a second for ``best``, ``trials`` (``--json`` too) and ``status``.
On the journal, a reader starts from the snapshot beside the log and replays what came after it:
measured with the snapshot up to date, with the snapshot as far behind as a running agent lets it
fall (:func:`lagging_snapshot`), and with none at all (the whole log replayed). Not a test: the
figures depend on the machine. PostgreSQL is measured when the server of the tests answers
(``$SWEEPER_TEST_POSTGRES``, else ``postgresql://postgres@127.0.0.1:5432/postgres``), in a database
of its own, dropped afterwards.

The sweep is written as the agent writes it (see :func:`build`), 500 trials a round trip: seconds on
the journal and SQLite, where Optuna's ``add_trials`` of ready-made trials took minutes on SQLite.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import optuna
from click.testing import CliRunner
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.storages import JournalStorage
from optuna.trial import TrialState

from sweeper.analysis import results as res
from sweeper.cli import main
from sweeper.spec.reader import load_spec
from sweeper.storage import batch, journal_read, journal_snapshot, sweeps
from sweeper.storage.fast_read import database_of
from sweeper.storage.urls import open_storage

SPEC = {
    "method": "random",
    "name": "bench",
    "metric": {"name": "loss", "goal": "minimize"},
    "parameters": {
        "lr": {"distribution": "log_uniform_values", "min": 1e-5, "max": 1e-1},
        "model": {"parameters": {"depth": {"values": [2, 4, 8, 16]}, "width": {"min": 16, "max": 1024}}},
        "dropout": {"min": 0.0, "max": 0.5},
        "seed": {"value": 0},
    },
}
DISTRIBUTIONS = {
    "lr": FloatDistribution(1e-5, 1e-1, log=True),
    "model.depth": CategoricalDistribution([2, 4, 8, 16]),
    "model.width": IntDistribution(16, 1024),
    "dropout": FloatDistribution(0.0, 0.5),
}


def build(url: str, n_trials: int, running: int = 8, spec: dict[str, Any] | None = None) -> str:
    """A sweep of ``n_trials`` trials (a few running, some pruned or failed); returns its id.

    The trials are written as the agent writes them, through its batched writer
    (:func:`sweeper.storage.batch.write_trials`), 500 at a time: on the journal that is the agent's
    very records (a create, then params, attrs, a lease, reports and the end: about 25 records a
    trial), on a database the same rows. Only the creation of the trials' rows is bulk (one
    statement, or one append, per 500).
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = _bulk_storage(url)
    info = sweeps.create_sweep(storage, load_spec(spec or SPEC))
    rng = random.Random(0)
    start = datetime.now(timezone.utc) - timedelta(hours=10)
    for first in range(0, n_trials, _CHUNK):
        count = min(_CHUNK, n_trials - first)
        ids = _create_trials(storage, info.study_id, count, start + timedelta(seconds=3 * first))
        writes = [_writes(trial_id, info.id, first + i, rng) for i, trial_id in enumerate(ids)]
        batch.write_trials(storage, [begin for begin, _ in writes])
        batch.write_trials(storage, [end for _, end in writes])
    study = sweeps.load_study(storage, info.id)
    for _ in range(running):  # a few live trials, as a running sweep has
        trial = study.ask(DISTRIBUTIONS)
        trial.set_user_attr("config", {"lr": trial.params["lr"]})
        trial.report(1.0, 1)
    sweeps.heartbeat(
        storage,
        info.study_id,
        "bench-agent",
        {
            "host": "node-1",
            "pid": 1,
            "started_at": start.isoformat(),
            "last_seen": datetime.now().isoformat(),
        },
    )
    return info.id


_CHUNK = 500


def _writes(trial_id: int, sweep_id: str, number: int, rng: random.Random) -> tuple[Any, Any]:
    """The agent's two writes of one trial: its start and its end."""
    params = {
        "lr": math.exp(rng.uniform(math.log(1e-5), math.log(1e-1))),
        "model.depth": rng.choice([2, 4, 8, 16]),
        "model.width": rng.randint(16, 1024),
        "dropout": rng.uniform(0.0, 0.5),
    }
    loss = (math.log10(params["lr"]) + 3) ** 2 + params["dropout"] + rng.random()
    state = rng.choices([TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL], weights=[0.8, 0.15, 0.05])[
        0
    ]
    config = {
        "lr": params["lr"],
        "model": {"depth": params["model.depth"], "width": params["model.width"]},
        "dropout": params["dropout"],
        "seed": 0,
    }
    begin = batch.TrialWrite(
        trial_id,
        params={
            name: (DISTRIBUTIONS[name].to_internal_repr(v), DISTRIBUTIONS[name]) for name, v in params.items()
        },
        user_attrs={"config": config, "attempt": 0, "agent": "bench-agent"},
        system_attrs={"sweeper:lease": {"agent": "bench-agent", "seq": number, "grace_s": 60.0}},
    )
    attrs: dict[str, Any] = {
        "host": "node-1",
        "duration_s": 3.0,
        "metrics": {"loss": loss, "accuracy": 1 - loss / 10},
        "tracker_runs": {"jsonl": f".sweeper/sweeps/{sweep_id}/trial-{number}/metrics.jsonl"},
    }
    curve = {step: loss + (10 - step) * 0.05 for step in range(1, 11 if state != TrialState.PRUNED else 4)}
    if state == TrialState.FAIL:
        attrs["fail_reason"] = "RuntimeError: boom"
        curve = {}
    end = batch.TrialWrite(
        trial_id,
        user_attrs=attrs,
        intermediate=curve,
        state=state,
        values=[loss] if state == TrialState.COMPLETE else None,
    )
    return begin, end


def _create_trials(
    storage: optuna.storages.BaseStorage, study_id: int, count: int, at: datetime
) -> list[int]:
    """``count`` new RUNNING trials, as ``create_new_trial`` makes them, in one statement or append."""
    rdb = database_of(storage)
    if rdb is not None:
        import sqlalchemy as sa
        from optuna.storages._rdb import models

        table = models.TrialModel.__table__
        with rdb.engine.begin() as connection:
            numbered = connection.execute(
                sa.select(sa.func.count()).select_from(table).where(table.c.study_id == study_id)
            ).scalar_one()
            rows = [
                {
                    "number": numbered + i,
                    "study_id": study_id,
                    "state": TrialState.RUNNING,
                    "datetime_start": (at + timedelta(seconds=3 * i)).replace(tzinfo=None),
                }
                for i in range(count)
            ]
            returned = connection.execute(
                sa.insert(table).returning(table.c.trial_id, sort_by_parameter_order=True), rows
            )
            return [row[0] for row in returned]
    from optuna.storages.journal._storage import JournalOperation

    assert isinstance(storage, JournalStorage)
    storage._backend.append_logs(
        [
            {
                "op_code": JournalOperation.CREATE_TRIAL,
                "worker_id": "bench-agent",
                "study_id": study_id,
                "datetime_start": (at + timedelta(seconds=3 * i)).isoformat(timespec="microseconds"),
            }
            for i in range(count)
        ]
    )
    with storage._thread_lock:
        storage._sync_with_backend()
    return storage._replay_result._study_id_to_trial_ids[study_id][-count:]


def _bulk_storage(url: str) -> optuna.storages.BaseStorage:
    """The storage to build in: SQLite without fsync per commit (build speed only; reads use the default)."""
    if not url.startswith("sqlite"):
        return open_storage(url)
    from sqlalchemy import event

    open_storage(url)  # create the schema the normal way
    rdb = optuna.storages.RDBStorage(url)

    def no_sync(connection: Any, _record: Any) -> None:
        cursor = connection.cursor()
        cursor.execute("PRAGMA synchronous=OFF")
        cursor.execute("PRAGMA journal_mode=MEMORY")
        cursor.close()

    event.listen(rdb.engine, "connect", no_sync)
    rdb.engine.dispose()
    return rdb


def timed(label: str, action: Callable[[], Any], repeat: int = 3) -> float:
    """Run ``action`` ``repeat`` times; print the median wall time and the median CPU time.

    CPU time is what the code costs; wall time also counts waiting for a busy machine's cores.
    """
    walls, cpus = [], []
    for _ in range(repeat):
        began, began_cpu = time.perf_counter(), time.process_time()
        action()
        walls.append(time.perf_counter() - began)
        cpus.append(time.process_time() - began_cpu)
    median = statistics.median(walls)
    print(
        f"  {label:<52} wall {median * 1000:7.0f} ms  cpu {statistics.median(cpus) * 1000:7.0f} ms",
        flush=True,
    )
    return median


def lagging_snapshot(journal: Path, lag: int = journal_read.STALE_BYTES) -> bytes:
    """The snapshot of all but the last ``lag`` bytes of ``journal``, put beside it; its bytes.

    The most a reader replays while an agent writes the sweep: the agent's keeper
    (:mod:`sweeper.storage.snapshot_keeper`) starts a new snapshot once ``STALE_BYTES`` lie past
    the last. A snapshot stands for a prefix of the log's bytes, so one taken of a copy of that
    prefix is the one the keeper would have saved then.
    """
    data = journal.read_bytes()
    prefix = journal.with_name(journal.name + ".prefix")
    prefix.write_bytes(data[: data.rfind(b"\n", 0, max(1, len(data) - lag)) + 1])
    journal_read.refresh_file(str(prefix))
    saved = journal_snapshot.path_of(str(prefix))
    os.replace(saved, journal_snapshot.path_of(str(journal)))
    prefix.unlink()
    return journal_snapshot.path_of(str(journal)).read_bytes()


def cli(*args: str) -> Callable[[], None]:
    def run() -> None:
        result = CliRunner().invoke(main, list(args), catch_exceptions=False)
        if result.exit_code != 0:
            raise SystemExit(result.output)

    return run


def bench(url: str, n_trials: int) -> None:
    began = time.perf_counter()
    sweep_id = build(url, n_trials)
    print(
        f"{url.split(':', 1)[0]}: built {n_trials} trials in {time.perf_counter() - began:.1f} s", flush=True
    )
    if url.startswith("journal://"):
        # The first reader of a journal replays all of it (and saves a snapshot); the others start
        # from the snapshot. The first reader is measured by removing the snapshot before each run.
        snapshot = journal_snapshot.path_of(url[len("journal://") :])

        def first_reader() -> None:
            snapshot.unlink(missing_ok=True)
            cli("trials", sweep_id, "--json", "--storage", url)()

        timed("sweeper trials --json, first reader (replays all)", first_reader)
        lagging = lagging_snapshot(Path(url[len("journal://") :]))

        def lagging_reader() -> None:
            snapshot.write_bytes(lagging)  # as the keeper left it, not as the last reader did
            cli("trials", sweep_id, "--json", "--storage", url)()

        timed(
            f"sweeper trials --json, snapshot {journal_read.STALE_BYTES / 1e6:.0f} MB behind", lagging_reader
        )
    timed("load (fresh storage, read every trial)", lambda: res.load(sweep_id, url))
    loaded = res.load(sweep_id, url)
    timed("best(10) on a loaded sweep", lambda: loaded.best(10))
    timed("sorted_by('loss') on a loaded sweep", lambda: loaded.sorted_by("loss"))
    for name, args in (
        ("sweeper best", ("best", sweep_id, "--top", "10")),
        ("sweeper best --json", ("best", sweep_id, "--json")),
        ("sweeper status", ("status", sweep_id)),
        ("sweeper status --json", ("status", sweep_id, "--json")),
        ("sweeper trials (table, first 100)", ("trials", sweep_id, "--sort", "loss")),
        ("sweeper trials --state running", ("trials", sweep_id, "--state", "running")),
        ("sweeper trials --json (all 10k records)", ("trials", sweep_id, "--json")),
        ("sweeper ls", ("ls",)),
    ):
        timed(f"{name} (in process)", cli(*args, "--storage", url))
    executable = str(Path(sys.executable).parent / "sweeper")
    timed(
        "sweeper best (subprocess, with interpreter start)",
        lambda: subprocess.run(
            [executable, "best", sweep_id, "--storage", url], check=True, capture_output=True
        ),
        repeat=1,
    )


POSTGRES_ADMIN_URL = os.environ.get("SWEEPER_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


@contextmanager
def postgres_database() -> Iterator[str | None]:
    """A fresh PostgreSQL database on the tests' server (None when it does not answer), dropped afterwards."""
    try:
        import psycopg2

        admin = psycopg2.connect(POSTGRES_ADMIN_URL, connect_timeout=5)
    except Exception as exc:  # no driver, no server: the figures say so
        print(f"postgresql: not measured ({type(exc).__name__}: {exc})".strip(), flush=True)
        yield None
        return
    admin.autocommit = True
    name = f"sweeper_bench_{uuid.uuid4().hex[:12]}"
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def main_() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument(
        "--dir", type=Path, default=None, help="Where to put the storages (default: a temp dir)."
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        where = args.dir or Path(tmp)
        where.mkdir(parents=True, exist_ok=True)
        bench(f"journal://{where / 'bench.log'}", args.trials)
        bench(f"sqlite:///{where / 'bench.db'}", args.trials)
        with postgres_database() as url:
            if url is not None:
                bench(url, args.trials)


if __name__ == "__main__":
    main_()
