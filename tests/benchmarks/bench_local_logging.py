"""The local executor's report channel: one trial calls ``trial.log`` as fast as it can.

A sweep of one trial runs with ``--executor local`` (the trial in a process forked from the agent,
its reports on a pipe to the agent), once with W&B's hyperband rule (every report goes to the
pruner, in batches) and once with no pruner, the default ``jsonl`` tracker both times. Measured:
the trainer's own logs/s; the trial process's resident memory after 10 % and all of the logs (read
in the trainer from /proc); the agent's peak resident memory while the trainer logs, sampled every
0.1 s, after a small warm-up sweep (so its imports are not counted); and that the storage (SQLite)
holds every value, in step order.

``--logs N`` changes the count (default 100,000; ``--quick``: 20,000).
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import harness
from harness import Figure, stopwatch

SECTION = "10. Logging at any rate"


def log_many(config: dict[str, Any], trial: Any) -> float:
    """Log ``logs`` values of the objective (and a second metric) as fast as it can."""
    logs = int(config["logs"])
    rss: dict[str, float] = {}
    started = time.perf_counter()
    for step in range(logs):
        trial.log({"loss": 1.0 / (step + 1), "lr": 0.1}, step=step)
        if step + 1 in (logs // 10, logs):
            rss[f"{100 * (step + 1) // logs}%"] = harness.rss_mib()
    seconds = time.perf_counter() - started
    Path(config["out"]).write_text(json.dumps({"seconds": seconds, "rss": rss}))
    return 1.0 / logs


class PeakMemory:
    """This process's peak resident memory while the trainer logs (until ``done`` exists), sampled
    every 0.1 s on a thread: the report channel's share, not the trial's end write."""

    def __init__(self, done: Path) -> None:
        self.start = harness.rss_mib()
        self.peak = self.start
        self._done = done
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1) and not self._done.exists():
            self.peak = max(self.peak, harness.rss_mib())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def run(root: Path, logs: int, pruner: bool, name: str = "") -> list[Figure]:
    """One sweep of one trial logging ``logs`` times; its figures."""
    import optuna

    import sweeper
    from sweeper.storage.urls import open_storage

    name = name or ("hyperband" if pruner else "no pruner")
    out = root / f"{name.replace(' ', '-')}.json"
    spec: dict[str, Any] = {
        "method": "random",
        "metric": {"name": "loss", "goal": "minimize"},
        "parameters": {"x": {"min": 0.0, "max": 1.0}, "logs": {"value": logs}, "out": {"value": str(out)}},
        "run_cap": 1,
    }
    if pruner:
        spec["early_terminate"] = {"type": "hyperband", "min_iter": 10, "eta": 3}
    storage = f"sqlite:///{root / f'{out.stem}.db'}"
    sweep_id = sweeper.sweep(spec, storage=storage)
    memory = PeakMemory(out)
    error = ""
    with stopwatch() as took:
        try:
            summary = sweeper.agent(sweep_id, function=log_many, storage=storage, executor="local")
        except Exception as exc:  # the storage refusing the trial's end: say so, keep the figures
            error = f"the agent failed: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
    memory.stop()
    record = json.loads(out.read_text())
    trial = optuna.load_study(study_name=sweep_id, storage=open_storage(storage)).get_trials()[0]
    stored = trial.intermediate_values
    whole = list(stored) == list(range(logs)) and all(stored[s] == 1.0 / (s + 1) for s in range(logs))
    rate = logs / record["seconds"]
    rss = record["rss"]
    return [
        Figure(
            SECTION,
            f"local, {name}: logs/s in the trainer ({logs:,} logs of 2 metrics, jsonl)",
            f"{rate:,.0f}",
            ">= 10,000",
            rate >= 10_000,
            note=f"sweep {took[0]:.1f} s; trial {trial.state.name}",
        ),
        Figure(
            SECTION,
            f"local, {name}: trial process memory after 10% / 100% of the logs",
            f"{rss['10%']:.0f} / {rss['100%']:.0f} MiB",
            "flat",
            rss["100%"] - rss["10%"] <= 0.1 * rss["10%"],
        ),
        Figure(
            SECTION,
            f"local, {name}: agent memory at the start / peak while the trainer logs",
            f"{memory.start:.0f} / {memory.peak:.0f} MiB",
            "flat",
            memory.peak - memory.start <= 0.1 * memory.start + 20,
            note="the pipe holds at most 1 MiB of reports",
        ),
        Figure(
            SECTION,
            f"local, {name}: values stored, every step in order",
            f"{len(stored):,} of {logs:,}",
            "all",
            whole and not error and summary.complete == 1,
            note=error,
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 20,000 logs")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here as JSON")
    parser.add_argument("--logs", type=int, default=None, help="logs in the trial (default 100,000)")
    args = parser.parse_args()
    logs = args.logs or (20_000 if args.quick else 100_000)
    root = harness.scratch_dir("bench-local-logging-")
    os.chdir(root)
    run(root, 1_000, pruner=True, name="warm-up")  # the agent's imports are not what is measured
    figures = run(root, logs, pruner=True) + run(root, logs, pruner=False)
    harness.emit(figures, args.json)


if __name__ == "__main__":
    main()
