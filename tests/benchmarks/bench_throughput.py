"""Steady-state no-op throughput against plain Optuna on the same storage, with storage round trips.

For each storage (SQLite, PostgreSQL at 127.0.0.1:5432, the journal file) and each concurrency
(2 and 8 at a time), in one process, one after the other:

- the sweeper agent (Ray executor, as ``sweeper run`` runs it) on a ``run_cap`` random sweep of
  no-op trials, its storage wrapped in a counter of storage calls;
- plain Optuna, ``study.optimize(n_jobs=k)`` on a fresh study in the same storage.

Beside each rate, the CPU a trial cost, by process: for sweeper the agent's process, the Ray
workers, the raylet and the GCS (every process's CPU time read from ``/proc`` before and after its
run); for plain Optuna its one process. A database server's own CPU is in neither. On a machine of
few cores that, not the storage, bounds the rate.

The rate is the steady state: ``k`` Ray workers are started first (as on a cluster that has been
up a while), and the rate counts the trials after the first ``WARM`` (by start time), divided by the
span from the start of the first of them to the last end, as the trainers record it. Round trips
are the agent's storage calls per trial: writes about trials (taking or creating one, its start,
its end) and every read, the agent's own threads (lease keeper, state watch) included.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import harness
from harness import Figure, fmt

sys.path.insert(0, str(harness.REPO_ROOT / "tests" / "support"))

POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
WARM = 50


def steady_rate(outdir: Path, warm: int) -> float:
    """Trials per second after the first ``warm`` (by start), from the trainers' own records."""
    records = sorted((json.loads(p.read_text()) for p in outdir.glob("*.json")), key=lambda r: r["start"])
    steady = records[warm:]
    if len(steady) < 2:
        return float("nan")
    return len(steady) / (max(r["end"] for r in steady) - steady[0]["start"])


@contextmanager
def postgres_database() -> Iterator[str | None]:
    """A fresh PostgreSQL database (dropped after), or None when no server answers."""
    try:
        import psycopg2

        admin = psycopg2.connect(POSTGRES_ADMIN, connect_timeout=5)
    except Exception as exc:
        print(f"PostgreSQL skipped: {exc}", file=sys.stderr)
        yield None
        return
    admin.autocommit = True
    name = f"sweeper_bench_{uuid.uuid4().hex[:10]}"
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield POSTGRES_ADMIN.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def run_sweeper(url: str, trials: int, k: int, outdir: Path) -> dict[str, float]:
    from counting import CountingStorage

    import sweeper
    from sweeper.engine.agent import Agent
    from sweeper.storage.urls import open_storage

    spec = {
        "method": "random",
        "metric": {"name": "value", "goal": "minimize"},
        "parameters": {"x": {"min": 0.0, "max": 1.0}, "outdir": {"value": str(outdir)}},
        "run_cap": trials,
        "sweeper": {"trainer": "bench_trainers:noop", "max_concurrent": k, "seed": 0},
    }
    sweep_id = sweeper.sweep(spec, storage=url)
    storage = CountingStorage(open_storage(url))
    before = harness.cpu_by_process()
    summary = Agent(sweep_id, storage=storage, max_concurrent=k).run()
    after = harness.cpu_by_process()
    spent = harness.cpu_spent(before, after)
    study_writes = sum(n for name, n in storage.calls.items() if name.startswith("set_study"))
    return {
        "trials": summary.ran,
        "rate": steady_rate(outdir, WARM),
        "writes_per_trial": (storage.writes() - study_writes) / summary.ran,
        "reads_per_trial": storage.reads() / summary.ran,
        "calls": dict(storage.calls),  # type: ignore[dict-item]
        "cpu_ms": {group: seconds / summary.ran * 1000 for group, seconds in spent.items()},  # type: ignore[dict-item]
        "started": sum(1 for pid in after if pid not in before),  # Ray processes started meanwhile
    }


def run_optuna(url: str, trials: int, k: int, outdir: Path) -> dict[str, float]:
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if url.startswith("journal://"):
        path = url[len("journal://") :]
        storage: Any = JournalStorage(JournalFileBackend(path, lock_obj=JournalFileOpenLock(path)))
    else:
        storage = url.replace("postgresql://", "postgresql+psycopg2://", 1)
    study = optuna.create_study(storage=storage, sampler=optuna.samplers.RandomSampler(seed=0))

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0.0, 1.0)
        now = time.time()
        (outdir / f"{trial.number}.json").write_text(json.dumps({"start": now, "end": now}))
        return x

    before = time.process_time()
    study.optimize(objective, n_trials=trials, n_jobs=k)
    cpu_ms = (time.process_time() - before) / trials * 1000
    return {"trials": trials, "rate": steady_rate(outdir, WARM), "cpu_ms": cpu_ms}


def warm_workers(k: int) -> None:
    """Have ``k`` Ray workers started: ``k`` tasks held at once (a no-op task frees its worker so fast
    that one or two serve them all, and a sweep at ``k`` at a time would start the rest within its
    measured trials, a second of CPU each on this machine)."""
    import ray

    @ray.remote(num_cpus=1, max_retries=0)
    def hold() -> None:
        time.sleep(0.5)

    ray.get([hold.remote() for _ in range(k)])


def run_ray_floor(trials: int, k: int) -> float:
    """Bare Ray: no-op tasks kept ``k`` in flight, one submitted as each ends; tasks per second.

    The floor under any engine that runs each trial as a Ray task, measured beside it.
    """
    import ray

    @ray.remote(num_cpus=1, max_retries=0)
    def noop() -> float:
        return time.time()

    ends: list[float] = []
    running = [noop.remote() for _ in range(k)]
    submitted = k
    while running:
        done, running = ray.wait(running, num_returns=1)
        ends.extend(ray.get(done))
        if submitted < trials:
            running.append(noop.remote())
            submitted += 1
    ends.sort()
    steady = ends[WARM:]
    return (len(steady) - 1) / (steady[-1] - steady[0]) if len(steady) > 1 else float("nan")


def main() -> None:
    args = harness.parse_args(__doc__.splitlines()[0])
    trials = WARM + (50 if args.quick else 200)
    import ray

    root = harness.scratch_dir("bench-throughput-")
    os.chdir(root)
    ray.init(
        address="local",
        num_cpus=8,  # logical: the trials do nothing
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": harness.worker_pythonpath()}},
    )
    load_before = os.getloadavg()
    figures: list[Figure] = []
    results: dict[str, Any] = {}
    section = "1. Orchestration overhead"
    with postgres_database() as pg:
        urls = {
            "SQLite": f"sqlite:///{root / 'sweeps.db'}",
            "PostgreSQL": pg,
            "journal": f"journal://{root / 'j.log'}",
        }
        for kind, url in urls.items():
            if url is None:
                continue
            for k in (2, 8):
                name = f"{kind}-{k}"
                ours_dir, theirs_dir = root / f"{name}-sweeper", root / f"{name}-optuna"
                ours_dir.mkdir()
                theirs_dir.mkdir()
                warm_workers(k)  # the steady state of both: k workers up (Ray keeps them)
                floor = run_ray_floor(trials, k)
                ours = run_sweeper(url, trials, k, ours_dir)
                theirs = run_optuna(url, trials, k, theirs_dir)
                results[name] = {"sweeper": ours, "optuna": theirs, "ray_floor": floor}
                ratio = ours["rate"] / theirs["rate"]
                target = 0.7 if kind == "journal" else 1.0
                figures.append(
                    Figure(
                        section,
                        f"{kind}, {k} at a time: sweeper / plain Optuna (steady no-op trials/s)",
                        f"{ratio:.2f} ({fmt(ours['rate'])} vs {fmt(theirs['rate'])})",
                        f">= {target}",
                        ratio >= target,
                        f"storage writes per trial {ours['writes_per_trial']:.2f} (target <= 3), "
                        f"reads {ours['reads_per_trial']:.2f}; bare Ray no-op tasks {k} at a time: "
                        f"{fmt(floor)}/s; CPU a trial {_cpu_note(ours['cpu_ms'])}, plain Optuna "
                        f"{theirs['cpu_ms']:.1f} ms; Ray processes started during the sweep: "
                        f"{ours['started']}",
                    )
                )
    load_after = os.getloadavg()
    print(json.dumps(results, indent=1, default=str), file=sys.stderr)
    figures.append(
        Figure(section, "load average (1 min) before / after", f"{load_before[0]:.1f} / {load_after[0]:.1f}")
    )
    harness.emit(figures, args.json)


def _cpu_note(cpu_ms: dict[str, float]) -> str:
    parts = ", ".join(
        f"{group} {cpu_ms.get(group, 0.0):.1f}" for group in ("agent", "workers", "raylet", "GCS")
    )
    return f"{sum(cpu_ms.values()):.1f} ms ({parts})"


if __name__ == "__main__":
    main()
