"""How fast the inspect commands answer on a sweep of 10,000 trials (journal file and SQLite).

Run: ``python tests/benchmarks/bench_inspect.py [--trials N] [--dir DIR]``. Prints one line per
measurement; the target is under a second for ``best``, ``trials`` and ``status``. Not a test: the
figures depend on the machine.

The sweep is built at the storage level (``study.add_trials`` of ready-made trials carrying the user
attrs the engine writes and a 10-step learning curve), which takes seconds instead of minutes.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import optuna
from click.testing import CliRunner
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from sweeper.analysis import results as res
from sweeper.cli import main
from sweeper.spec.reader import load_spec
from sweeper.storage import sweeps
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


def build(url: str, n_trials: int, running: int = 8) -> str:
    """A sweep of ``n_trials`` trials (a few running, some pruned or failed); returns its id."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = _bulk_storage(url)
    info = sweeps.create_sweep(storage, load_spec(SPEC))
    study = sweeps.load_study(storage, info.id)
    rng = random.Random(0)
    start = datetime.now() - timedelta(hours=10)
    trials = []
    for number in range(n_trials):
        params = {
            "lr": math.exp(rng.uniform(math.log(1e-5), math.log(1e-1))),
            "model.depth": rng.choice([2, 4, 8, 16]),
            "model.width": rng.randint(16, 1024),
            "dropout": rng.uniform(0.0, 0.5),
        }
        loss = (math.log10(params["lr"]) + 3) ** 2 + params["dropout"] + rng.random()
        state = rng.choices(
            [TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL], weights=[0.8, 0.15, 0.05]
        )[0]
        curve = {
            step: loss + (10 - step) * 0.05 for step in range(1, 11 if state != TrialState.PRUNED else 4)
        }
        attrs: dict[str, Any] = {
            "config": {
                "lr": params["lr"],
                "model": {"depth": params["model.depth"], "width": params["model.width"]},
                "dropout": params["dropout"],
                "seed": 0,
            },
            "attempt": 0,
            "agent": "bench-agent",
            "host": "node-1",
            "duration_s": 3.0,
            "metrics": {"loss": loss, "accuracy": 1 - loss / 10},
            "tracker_runs": {"jsonl": f".sweeper/sweeps/{info.id}/trial-{number}/metrics.jsonl"},
        }
        if state == TrialState.FAIL:
            attrs["fail_reason"] = "RuntimeError: boom"
            curve = {}
        trial = create_trial(
            state=state,
            value=loss if state == TrialState.COMPLETE else None,
            params=params,
            distributions=DISTRIBUTIONS,
            user_attrs=attrs,
            intermediate_values=curve,
        )
        trial.datetime_start = start + timedelta(seconds=3 * number)
        trial.datetime_complete = trial.datetime_start + timedelta(seconds=3)
        trials.append(trial)
    study.add_trials(trials)
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


if __name__ == "__main__":
    main_()
