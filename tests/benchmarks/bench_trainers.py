"""Trainers the benchmarks run: they measure themselves and leave their timings in a directory.

Ray workers import this module by name (run_all puts this directory on the workers' PYTHONPATH),
so the specs name them ``bench_trainers:<function>``. Each writes one small JSON file per trial
into ``config["outdir"]`` (a constant parameter), which the benchmark reads back afterwards.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sweeper import Trial, TrialPruned


def _write(config: Mapping[str, Any], trial: Trial, record: Mapping[str, Any]) -> None:
    out = Path(str(config["outdir"])) / f"{trial.number}-{trial.attempt}-{os.getpid()}.json"
    out.write_text(json.dumps(dict(record)))


def noop(config: Mapping[str, Any], trial: Trial) -> dict[str, float]:
    """Does nothing but note when it ran: the trial's cost is the orchestration's."""
    now = time.time()
    _write(config, trial, {"start": now, "end": now})
    return {"value": float(config["x"])}


def log_every(config: Mapping[str, Any], trial: Trial) -> None:
    """Logs ``value`` every ``interval`` seconds for ``steps`` steps, timing each ``trial.log``.

    The latency is the time ``trial.log`` takes to return (or to raise TrialPruned): with a pruner,
    that is the round trip of the report to the agent and the pruning decision back.
    """
    steps = int(config["steps"])
    interval = float(config["interval"])
    x = float(config["x"])
    latencies: list[float] = []
    pruned = False
    try:
        for step in range(1, steps + 1):
            time.sleep(interval)
            start = time.perf_counter()
            try:
                trial.log({"value": x + 10.0 / step}, step=step)
            finally:
                latencies.append(time.perf_counter() - start)
    except TrialPruned:
        pruned = True
        raise
    finally:
        _write(config, trial, {"latencies": latencies, "pruned": pruned})


def sleeper(config: Mapping[str, Any], trial: Trial) -> dict[str, float]:
    """Sleeps ``duration`` seconds, recording its wall-clock start and end (a 1-GPU training job)."""
    start = time.time()
    time.sleep(float(config["duration"]))
    end = time.time()
    _write(config, trial, {"start": start, "end": end})
    return {"value": float(config["x"])}
