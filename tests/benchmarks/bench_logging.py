"""Logging at any rate: one trial calls ``trial.log`` 100,000 times as fast as it can.

Each executor (Ray, then the agent's own process) runs a sweep of one trial of
``bench_trainers:log_many`` with the default ``jsonl`` tracker, twice: under W&B's hyperband rule
(every report goes to the pruner; a lone trial is never stopped), and without ``early_terminate``
(the agent only stores the values). Measured: the trainer's own logs/s;
the worker's resident memory after 1 %, 10 %, 50 % and all of the logs, read in the trainer from
/proc; the agent's peak resident memory over the sweep (on Ray it holds the report channel's
end too), sampled from /proc every 0.1 s; and that the storage holds every value, in step order.

``--logs N`` changes the count (``--quick``: 10,000), ``--executor ray`` or ``local`` runs one,
``--storage sqlite`` uses a SQLite file instead of the journal.
A trainer still logging after ``MAX_S`` seconds stops there; its figures say how far it got.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import harness
from harness import Figure, stopwatch

SECTION = "10. Logging at any rate"
MAX_S = 120.0


def _memory_kib(pid: int) -> tuple[int, int]:
    """A process's resident set now and at its peak (VmRSS, VmHWM), in KiB; (0, 0) once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0, 0
    lines = [line for line in status.splitlines() if line.startswith("Vm")]
    fields = {line.split(":")[0]: int(line.split()[1]) for line in lines}
    return fields.get("VmRSS", 0), fields.get("VmHWM", 0)


class Sampler:
    """Samples the agent's (this process's) resident memory every 0.1 s."""

    def __init__(self) -> None:
        self.agent_start = _memory_kib(os.getpid())[0]
        self.samples: list[tuple[float, int]] = []  # (wall time, agent KiB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.samples.append((time.time(), _memory_kib(os.getpid())[0]))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def peak(self, until: float = float("inf")) -> int:
        """The agent's peak (KiB) over the samples taken before ``until``."""
        return max([self.agent_start, *(agent for at, agent in self.samples if at <= until)])


def run(root: Path, executor: str, logs: int, pruned: bool, storage_kind: str = "journal") -> list[Figure]:
    """One sweep of one trial logging ``logs`` times on ``executor``; its figures."""
    import optuna

    import sweeper
    from sweeper.storage.urls import open_storage

    name = f"{executor}-{'hyperband' if pruned else 'no-pruner'}"
    outdir = root / f"out-{name}"
    outdir.mkdir()
    spec: dict[str, Any] = {
        "name": f"bench-logging-{name}",
        "method": "random",
        "metric": {"name": "loss", "goal": "minimize"},
        "parameters": {
            "x": {"min": 0.0, "max": 1.0},
            "logs": {"value": logs},
            "max_s": {"value": MAX_S},
            "outdir": {"value": str(outdir)},
        },
        "run_cap": 1,
        "sweeper": {"trainer": "bench_trainers:log_many", "seed": 0},
    }
    if pruned:
        spec["early_terminate"] = {"type": "hyperband", "min_iter": 10, "eta": 3}
    storage = f"journal://{root / f'{name}.log'}"
    if storage_kind == "sqlite":
        storage = f"sqlite:///{root / f'{name}.db'}"
    sweep_id = sweeper.sweep(spec, storage=storage)
    sampler = Sampler()
    with stopwatch() as took:
        summary = sweeper.agent(sweep_id, storage=storage, executor=executor)  # type: ignore[arg-type]
    sampler.stop()
    (path,) = outdir.glob("*.json")
    record: dict[str, Any] = json.loads(path.read_text())
    logging_peak = sampler.peak(until=path.stat().st_mtime)  # the trainer wrote it as it ended
    agent_peak = sampler.peak()
    study = optuna.load_study(study_name=sweep_id, storage=open_storage(storage))
    (trial,) = study.get_trials(deepcopy=False)
    done = int(record["logs"])
    stored = trial.intermediate_values
    whole = sorted(stored) == list(range(done)) and all(stored[s] == 1.0 / (s + 1) for s in range(done))
    rss = {mark: kib / 1024 for mark, kib in record["rss_kib"].items()}
    cut = "" if done == logs else f"; stopped after {MAX_S:.0f} s, {done:,} of {logs:,} logs"
    where = ("Ray" if executor == "ray" else "local") + (", hyperband" if pruned else ", no pruner")
    where += "" if storage_kind == "journal" else f", {storage_kind}"
    figures = [
        Figure(
            SECTION,
            f"{where}: logs/s in the trainer ({logs:,} logs of 2 metrics, jsonl tracker)",
            f"{done / record['seconds']:,.0f}",
            ">= 10,000" if executor == "local" else "",
            done / record["seconds"] >= 10_000 if executor == "local" else None,
            note=f"slowest trial.log {record['slowest'] * 1000:.0f} ms; sweep {took[0]:.1f} s; "
            f"trial {trial.state.name}{cut}",
        ),
        Figure(
            SECTION,
            f"{where}: worker memory after 1% / 10% / 50% / 100% of the logs (peak)",
            " / ".join(f"{rss[mark]:.0f}" if mark in rss else "-" for mark in ("1%", "10%", "50%", "100%"))
            + f" MiB ({record['peak_kib'] / 1024:.0f})",
            "flat",
            "10%" in rss and rss["100%"] - rss["10%"] <= 0.1 * rss["10%"],
            note="the agent's own process when local" if executor == "local" else "",
        ),
        Figure(
            SECTION,
            f"{where}: agent memory at the start / peak while the trial logged / peak over the sweep",
            f"{sampler.agent_start / 1024:.0f} / {logging_peak / 1024:.0f} / {agent_peak / 1024:.0f} MiB",
            note="the report channel's end included" if executor == "ray" else "",
        ),
        Figure(
            SECTION,
            f"{where}: values stored, every step in order",
            f"{len(stored):,} of {done:,}",
            "all",
            whole and summary.complete == 1,
        ),
    ]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 10,000 logs")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here as JSON")
    parser.add_argument("--logs", type=int, default=None, help="logs in the trial (default 100,000)")
    parser.add_argument("--executor", choices=["ray", "local", "both"], default="both")
    parser.add_argument("--storage", choices=["journal", "sqlite"], default="journal")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # EXECUTOR:PRUNED, in a child
    args = parser.parse_args()
    logs = args.logs or (10_000 if args.quick else 100_000)
    if args.one is not None:
        executor, pruned = args.one.split(":")
        harness.emit(run_one(executor, logs, pruned == "pruned", args.storage), args.json)
        return
    # Each run in a process of its own: the agent's memory is its own.
    figures: list[Figure] = []
    executors = ["ray", "local"] if args.executor == "both" else [args.executor]
    scratch = harness.scratch_dir("bench-logging-figures-")
    for executor in executors:
        for pruned in ("pruned", "plain"):
            out = scratch / f"{executor}-{pruned}.json"
            command = [sys.executable, __file__, "--one", f"{executor}:{pruned}", "--logs", str(logs)]
            command += ["--storage", args.storage]
            subprocess.run([*command, "--json", str(out)], check=True)
            figures += harness.load_figures(out)
    harness.emit(figures, args.json)


def run_one(executor: str, logs: int, pruned: bool, storage_kind: str) -> list[Figure]:
    """One sweep in this process (a fresh one): Ray started first if it runs there."""
    root = harness.scratch_dir("bench-logging-")
    os.chdir(root)
    if executor == "ray":
        harness.init_local_ray(num_cpus=2)
    return run(root, executor, logs, pruned, storage_kind)


if __name__ == "__main__":
    main()
