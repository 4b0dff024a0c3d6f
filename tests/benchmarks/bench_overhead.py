"""Orchestration overhead: no-op trials per second, two at a time on 2 CPUs.

Three engines run the same no-op trainer over the same one-parameter random space in one process:

- ``sweeper run`` (the CLI, in process): Ray executor, embedded journal storage;
- Ray Tune: ``tune.Tuner`` with the same space and ``max_concurrent_trials=2``;
- plain Optuna: ``study.optimize(n_jobs=2)`` on a journal file storage.

Ray is started once, up front (its start-up is reported on its own, with a warm-up of two tasks);
then each engine's rate is trials divided by the span from the first trainer start to the last
trainer end, as the trainers themselves record it, so set-up and tear-down of each engine are
left out. The end-to-end rate of each call is reported alongside.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import harness
from harness import Figure, fmt, stopwatch

SPACE = {"x": {"min": 0.0, "max": 1.0}}
CONCURRENCY = 2


def start_ray() -> float:
    """Start a local Ray with 2 CPUs (workers import bench_trainers); returns the seconds it took."""
    import ray

    with stopwatch() as took:
        ray.init(
            address="local",  # a fresh instance, never another helper's or user's cluster
            num_cpus=CONCURRENCY,
            include_dashboard=False,
            log_to_driver=False,
            runtime_env={"env_vars": {"PYTHONPATH": harness.worker_pythonpath()}},
        )

        @ray.remote
        def warm() -> int:
            return os.getpid()

        ray.get([warm.remote() for _ in range(CONCURRENCY)])
    return took[0]


def spans(outdir: Path) -> tuple[int, float]:
    """(trials, seconds from the first trainer start to the last trainer end) from the records."""
    records = [json.loads(p.read_text()) for p in outdir.glob("*.json")]
    if not records:
        return 0, float("nan")
    return len(records), max(r["end"] for r in records) - min(r["start"] for r in records)


def run_sweeper(trials: int, root: Path) -> dict[str, float]:
    """``sweeper run`` on a random no-op sweep of ``trials`` trials."""
    import yaml

    from sweeper.cli import main

    outdir = root / "sweeper-out"
    outdir.mkdir()
    spec = {
        "name": "bench-overhead",
        "method": "random",
        "metric": {"name": "value", "goal": "minimize"},
        "parameters": {**SPACE, "outdir": {"value": str(outdir)}},
        "run_cap": trials,
        "sweeper": {"trainer": "bench_trainers:noop", "max_concurrent": CONCURRENCY, "seed": 0},
    }
    spec_path = root / "overhead.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    storage = f"journal://{root / 'sweeper.log'}"
    with stopwatch() as took:
        main.main(["run", str(spec_path), "--storage", storage], standalone_mode=False)
    done, span = spans(outdir)
    return {"trials": done, "loop_s": span, "call_s": took[0]}


def run_tune(trials: int, root: Path) -> dict[str, float]:
    """Ray Tune on the same space: function trainable, random search, two trials at a time."""
    from ray import tune

    outdir = root / "tune-out"
    outdir.mkdir()

    def trainable(config: dict[str, Any]) -> None:
        now = time.time()
        name = f"{os.getpid()}-{time.perf_counter_ns()}.json"
        (Path(config["outdir"]) / name).write_text(json.dumps({"start": now, "end": now}))
        tune.report({"value": float(config["x"])})

    tuner = tune.Tuner(
        trainable,
        param_space={"x": tune.uniform(0.0, 1.0), "outdir": str(outdir)},
        tune_config=tune.TuneConfig(
            num_samples=trials, max_concurrent_trials=CONCURRENCY, metric="value", mode="min"
        ),
        run_config=tune.RunConfig(storage_path=str(root / "tune"), name="overhead", verbose=0),
    )
    with stopwatch() as took:
        tuner.fit()
    done, span = spans(outdir)
    return {"trials": done, "loop_s": span, "call_s": took[0]}


def run_optuna(trials: int, root: Path) -> dict[str, float]:
    """Plain Optuna ``study.optimize`` with two threads on a journal file storage."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    outdir = root / "optuna-out"
    outdir.mkdir()
    path = str(root / "optuna.log")
    # The same backend and lock as sweeper's embedded storage (sweeper.storage.urls.open_storage).
    storage = JournalStorage(JournalFileBackend(path, lock_obj=JournalFileOpenLock(path)))
    study = optuna.create_study(storage=storage, sampler=optuna.samplers.RandomSampler(seed=0))

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0.0, 1.0)
        now = time.time()
        (outdir / f"{trial.number}.json").write_text(json.dumps({"start": now, "end": now}))
        return x

    with stopwatch() as took:
        study.optimize(objective, n_trials=trials, n_jobs=CONCURRENCY)
    done, span = spans(outdir)
    return {"trials": done, "loop_s": span, "call_s": took[0]}


def main() -> None:
    args = harness.parse_args(__doc__.splitlines()[0])
    trials = 40 if args.quick else 500
    tune_trials = 20 if args.quick else int(os.environ.get("BENCH_TUNE_TRIALS", "20"))
    root = harness.scratch_dir("bench-overhead-")
    os.chdir(root)  # the agent's .sweeper/ (tracker files, checkpoints) lands here
    ray_s = start_ray()
    results = {
        "sweeper": run_sweeper(trials, root),
        "optuna": run_optuna(trials, root),
        "tune": run_tune(tune_trials, root),
    }
    rate = {k: r["trials"] / r["loop_s"] for k, r in results.items()}
    call_rate = {k: r["trials"] / r["call_s"] for k, r in results.items()}
    print(json.dumps({"ray_start_s": ray_s, **results}, indent=1), file=sys.stderr)
    section = "1. Orchestration overhead"
    ours = rate["sweeper"]
    figures = [
        Figure(
            section,
            f"sweeper run: no-op trials/s ({results['sweeper']['trials']:.0f} trials, 2 at a time)",
            fmt(ours),
            ">= 50",
            ours >= 50,
            f"end to end (sweep creation, agent set-up, tear-down): {fmt(call_rate['sweeper'])}/s",
        ),
        Figure(
            section,
            f"Ray Tune: trials/s ({results['tune']['trials']:.0f} trials)",
            fmt(rate["tune"]),
            "",
            None,
            f"end to end (Tuner.fit): {fmt(call_rate['tune'])}/s",
        ),
        Figure(
            section,
            f"plain Optuna study.optimize, journal file: trials/s ({results['optuna']['trials']:.0f} trials)",
            fmt(rate["optuna"]),
            "",
            None,
            f"end to end: {fmt(call_rate['optuna'])}/s",
        ),
        Figure(
            section, "sweeper / Ray Tune", f"{ours / rate['tune']:.1f}x", ">= 25x", ours / rate["tune"] >= 25
        ),
        Figure(
            section,
            "sweeper / plain Optuna",
            f"{ours / rate['optuna']:.2f}",
            ">= 0.5",
            ours / rate["optuna"] >= 0.5,
        ),
        Figure(section, "Ray start-up (ray.init + 2 warm-up tasks), excluded above", f"{ray_s:.1f} s"),
    ]
    harness.emit(figures, args.json)


if __name__ == "__main__":
    main()
