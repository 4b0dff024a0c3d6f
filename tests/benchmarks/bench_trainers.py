"""Trainers the benchmarks run: they measure themselves and leave their timings in a directory.

Ray workers import this module by name (run_all puts this directory on the workers' PYTHONPATH),
so the specs name them ``bench_trainers:<function>``. Each writes one small JSON file per trial
into ``config["outdir"]`` (a constant parameter), which the benchmark reads back afterwards.
"""

from __future__ import annotations

import json
import os
import re
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

    Two latencies: how long each ``trial.log`` takes to return, and for a trial the pruner stops,
    the stop's: from the report the pruner stopped it at (the step ``TrialPruned`` names) to the
    ``TrialPruned`` raised at a later report.
    """
    steps = int(config["steps"])
    interval = float(config["interval"])
    x = float(config["x"])
    latencies: list[float] = []
    logged: dict[int, float] = {}  # step -> when its trial.log was called
    pruned = False
    stop: float | None = None
    decided_at: int | None = None
    try:
        for step in range(1, steps + 1):
            time.sleep(interval)
            start = time.perf_counter()
            logged[step] = start
            try:
                trial.log({"value": x + 10.0 / step}, step=step)
            finally:
                latencies.append(time.perf_counter() - start)
    except TrialPruned as stopped:
        pruned = True
        decided = re.search(r"pruned at step (\d+)", str(stopped))
        if decided is not None:
            decided_at = int(decided.group(1))
            stop = time.perf_counter() - logged[decided_at]
        raise
    finally:
        steps_logged = max(logged, default=0)
        record = {"latencies": latencies, "pruned": pruned, "stop": stop, "decided_at": decided_at}
        _write(config, trial, {**record, "last_step": steps_logged})


def noop_loss(config: Mapping[str, Any], trial: Trial) -> dict[str, float]:
    """Does nothing, for a sweep whose metric is ``loss`` (``bench_inspect``'s)."""
    return {"loss": float(config.get("dropout", 0.0))}


def sleeper(config: Mapping[str, Any], trial: Trial) -> dict[str, float]:
    """Sleeps ``duration`` seconds, recording its wall-clock start and end (a 1-GPU training job)."""
    start = time.time()
    time.sleep(float(config["duration"]))
    end = time.time()
    _write(config, trial, {"start": start, "end": end})
    return {"value": float(config["x"])}


def _memory_kib() -> tuple[int, int]:
    """This process's resident set now and at its peak (VmRSS, VmHWM), in KiB."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            fields[line.split(":")[0]] = int(line.split()[1])
    return fields["VmRSS"], fields["VmHWM"]


def log_many(config: Mapping[str, Any], trial: Trial) -> float:
    """Logs ``loss`` ``logs`` times as fast as it can (per-batch logging), noting its own memory.

    The record: logs/s of the loop, and the worker's resident memory after 1 %, 10 %, 50 % and
    100 % of the logs (with the peak): flat memory means the later figures match the first ones.
    It stops early, after ``max_s`` seconds, if logging is that slow (the record says how far it got).
    """
    logs = int(config["logs"])
    max_s = float(config.get("max_s", "inf"))
    marks = {max(1, logs // 100): "1%", max(1, logs // 10): "10%", max(1, logs // 2): "50%"}
    rss: dict[str, int] = {}
    slowest = 0.0
    done = 0
    start = time.perf_counter()
    for step in range(logs):
        began = time.perf_counter()
        trial.log({"loss": 1.0 / (step + 1), "lr": 0.1}, step=step)
        slowest = max(slowest, time.perf_counter() - began)
        done = step + 1
        if done in marks:
            rss[marks[done]] = _memory_kib()[0]
        if began - start > max_s:
            break
    took = time.perf_counter() - start
    rss["100%"], peak = _memory_kib()
    record = {"logs": done, "seconds": took, "rss_kib": rss, "peak_kib": peak, "slowest": slowest}
    _write(config, trial, record)
    return 1.0 / done
