"""The agent side of pruning: how many reports one agent's judge decides on per second.

32 trials run; each round hands the judge one report per trial (one drained batch) and asks the
:class:`~sweeper.engine.judge.Persister` to store the values (one write at most every
``PERSIST_S``, on its own thread), as the report drain does; the time ends when the last write is
done. The pruner is W&B's hyperband
(``min_iter=10, eta=3``), which reads every trial of the study for each decision. Each storage is
measured twice in the same run: as the judge works (one read of the study serves the batches after
it until one of the agent's own trials starts or the read is ``REFRESH_S`` old) and with a fresh read
per batch (``REFRESH_S = 0``, the peer). No Ray: the transport is measured by ``bench_pruning``.
"""

from __future__ import annotations

import time

import harness
import optuna
from harness import Figure

from sweeper.engine import judge as judging
from sweeper.engine.judge import Persister, PruningJudge, Report
from sweeper.search.pruners import WandbHyperbandPruner
from sweeper.storage.urls import open_storage

SECTION = "2. Pruning latency"
TARGET = 3000.0  # reports/s one agent sustains (issue #13)


def measure(url: str, running: int, rounds: int, refresh_s: float) -> tuple[float, float, float]:
    """(reports/s, decide p50 ms, decide p95 ms per batch) with the judge's read kept ``refresh_s``."""
    judging.REFRESH_S = refresh_s
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(url)
    study = optuna.create_study(study_name=f"judge-{refresh_s}", storage=storage)
    for _ in range(10):  # finished trials for the pruner to compare with
        trial = study.ask()
        for step in range(30):
            trial.report(1.0 / (step + 1), step)
        study.tell(trial, 1.0 / 30)
    ids = [storage.create_new_trial(study._study_id) for _ in range(running)]
    judge = PruningJudge(study, WandbHyperbandPruner(min_iter=10, eta=3))
    persister = Persister(judge)
    key = 0
    decide_ms: list[float] = []
    began = time.perf_counter()
    for step in range(rounds):
        reports = []
        for trial_id in ids:
            key += 1
            reports.append(Report(key, trial_id, step, 1.0 / (step + 1)))
        t0 = time.perf_counter()
        judge.decide(reports)
        decide_ms.append((time.perf_counter() - t0) * 1000)
        persister.request()  # it writes at most every PERSIST_S
    persister.close()  # the last write, what is left
    took = time.perf_counter() - began
    return running * rounds / took, harness.percentile(decide_ms, 50), harness.percentile(decide_ms, 95)


def main() -> None:
    args = harness.parse_args(__doc__.splitlines()[0])
    running, rounds = (8, 10) if args.quick else (32, 200)
    root = harness.scratch_dir("bench-judge-")
    urls = {  # a fresh file for each measurement
        "SQLite": lambda tag: f"sqlite:///{root / tag}.db",
        "journal": lambda tag: f"journal://{root / tag}.log",
    }
    figures = []
    for name, url in urls.items():
        fresh = measure(url(f"{name}-fresh"), running, rounds, 0.0)
        reused = measure(url(f"{name}-reused"), running, rounds, judging.PERSIST_S)
        figures.append(
            Figure(
                SECTION,
                f"reports/s one agent's judge decides and stores, {name}, {running} running trials",
                f"{reused[0]:,.0f}",
                f">= {TARGET:,.0f}",
                reused[0] >= TARGET,
                f"decide p50/p95 {reused[1]:.1f}/{reused[2]:.1f} ms per batch of {running}; "
                f"a read per batch (the peer, same run): {fresh[0]:,.0f} reports/s, "
                f"p50/p95 {fresh[1]:.1f}/{fresh[2]:.1f} ms; ratio {reused[0] / fresh[0]:.2f}",
            )
        )
    harness.emit(figures, args.json)


if __name__ == "__main__":
    main()
