"""Pruning latency: how long the pruner's stop takes to reach a trial, and what reporting costs it.

32 trials run at once on 32 fake GPUs (``gpus: 1`` each), each logging its objective every 10 ms
under W&B's hyperband rule. The trainer times every ``trial.log`` call (reports travel in the
background: the call returns at once) and, when it is stopped, the stop's latency: from its
report the pruner stopped it at (the step ``TrialPruned`` names) to the ``TrialPruned`` raised at
its first report after the decision reached it. Reported: p50/p95 of both.

For scale, the same number of Ray tasks then call a do-nothing async actor at the same rate: the
round trip of Ray alone on this machine (the issue's yardstick; a trial's values travel to the agent
over a connection of their own, not through Ray).
A warm-up sweep of one trial per GPU runs first, so both find every worker started.
"""

from __future__ import annotations

import json
import os
from typing import Any

import harness
from harness import Figure, percentile, stopwatch


class Echo:
    """An async actor that answers at once (the transport without any pruning work)."""

    async def ping(self, step: int) -> bool:
        return False


def ray_round_trips(tasks: int, steps: int, interval: float) -> list[float]:
    """Seconds per call of ``tasks`` Ray tasks, each calling an :class:`Echo` every ``interval`` s."""
    import ray

    echo: Any = ray.remote(Echo).options(num_cpus=0, max_concurrency=1000).remote()
    ray.get(echo.ping.remote(0))  # started, as the agent's report server is before its trials report

    @ray.remote(num_gpus=1)
    def caller(actor: object) -> list[float]:
        import time

        out = []
        for step in range(steps):
            time.sleep(interval)
            start = time.perf_counter()
            ray.get(actor.ping.remote(step))  # type: ignore[attr-defined]
            out.append(time.perf_counter() - start)
        return out

    results = ray.get([caller.remote(echo) for _ in range(tasks)])
    return [x for r in results for x in r]


def main() -> None:
    args = harness.parse_args(__doc__.splitlines()[0])
    gpus = 8 if args.quick else 32
    trials = 3 * gpus
    steps = 20 if args.quick else 60
    import ray
    import yaml

    import sweeper

    root = harness.scratch_dir("bench-pruning-")
    os.chdir(root)
    outdir = root / "out"
    outdir.mkdir()
    with stopwatch() as ray_s:
        ray.init(
            address="local",
            num_cpus=gpus,  # logical: the trials mostly sleep
            num_gpus=gpus,
            include_dashboard=False,
            log_to_driver=False,
            runtime_env={"env_vars": {"PYTHONPATH": harness.worker_pythonpath()}},
        )
    spec = {
        "name": "bench-pruning",
        "method": "random",
        "metric": {"name": "value", "goal": "minimize"},
        "parameters": {
            "x": {"min": 0.0, "max": 1.0},
            "steps": {"value": steps},
            "interval": {"value": 0.01},
            "outdir": {"value": str(outdir)},
        },
        # Bands at 10, 30, 90 reports: trials live long enough to keep 32 of them reporting at once.
        "early_terminate": {"type": "hyperband", "min_iter": 10, "eta": 3},
        "run_cap": trials,
        "sweeper": {
            "trainer": "bench_trainers:log_every",
            "resources": {"gpus": 1},
            "max_concurrent": gpus,
            "seed": 0,
        },
    }
    (root / "pruning.yaml").write_text(yaml.safe_dump(spec))
    storage = f"journal://{root / 'journal.log'}"
    # Warm-up sweeps until 32 live workers have each run a trial, as the echo's callers find them
    # after the sweep. A fresh Ray worker costs 1.5 s of CPU here, and one wave of short trials can
    # leave some workers unused (one that started late finds every trial taken): ten starting
    # during the measured sweep took most of its 2 cores and slowed the echo after it too.
    # The warm-up's records go in a folder of their own: in the project's top level, each of them
    # was linked into every measured trial's directory.
    warm_out = root / "warm-up"
    warm_out.mkdir()
    with stopwatch() as warm_s:
        # No pruner: every warm-up trial runs its 100 steps, so all of them run at once. Pruned
        # early, they freed their workers for the next ones and fewer workers were started.
        warm = {key: value for key, value in spec.items() if key != "early_terminate"}
        warm |= {"name": "warm-up", "run_cap": gpus}
        warm["parameters"] = {
            **spec["parameters"],
            "outdir": {"value": str(warm_out)},
            "steps": {"value": 100},
        }
        for _ in range(4):
            sweeper.agent(sweeper.sweep(warm, storage=storage), storage=storage)
            if len(harness.live_workers(warm_out)) >= gpus:
                break
    sweep_id = sweeper.sweep(str(root / "pruning.yaml"), storage=storage)
    before = harness.cpu_by_process()
    with stopwatch() as took:
        summary = sweeper.agent(sweep_id, storage=storage)
    after = harness.cpu_by_process()
    cpu = harness.cpu_spent(before, after)
    started = sum(1 for pid in after if pid not in before)  # processes Ray started during the sweep
    latencies: list[float] = []
    stops: list[float] = []
    pruned = 0
    for path in outdir.glob("*.json"):
        record = json.loads(path.read_text())
        latencies.extend(record["latencies"])
        pruned += bool(record["pruned"])
        if record.get("stop") is not None:
            stops.append(record["stop"])
    ms = [x * 1000 for x in latencies]
    stop_ms = [x * 1000 for x in stops]
    p50, p95 = percentile(ms, 50), percentile(ms, 95)
    stop_p95 = percentile(stop_ms, 95)
    floor = [x * 1000 for x in ray_round_trips(gpus, steps, 0.01)]
    floor_p95 = percentile(floor, 95)
    section = "2. Pruning latency"
    figures = [
        Figure(
            section,
            f"a stop's latency: the report the pruner stopped at -> TrialPruned in the trainer, p50 / p95 "
            f"({gpus} trials at once on {gpus} fake GPUs, a report every 10 ms)",
            f"{percentile(stop_ms, 50):.1f} / {stop_p95:.1f} ms",
            note=f"{len(stop_ms)} stops; a stop is raised at the next report, up to 10 ms after the decision",
        ),
        Figure(
            section,
            "a stop's latency p95 / (Ray's round trip p95 at the same load + 10 ms to the next report)",
            f"{stop_p95 / (floor_p95 + 10):.2f}x ({stop_p95:.1f} vs {floor_p95:.1f} + 10 ms)",
            "<= 2x",
            stop_p95 <= 2 * (floor_p95 + 10),
        ),
        Figure(
            section,
            "trial.log call (what reporting costs the trainer), p50 / p95",
            f"{p50:.3f} / {p95:.3f} ms",
            note=f"max {max(ms):.1f} ms",
        ),
        Figure(
            section,
            "reports one agent took per second over the sweep (offered: 100/s per running trial)",
            f"{len(ms) / took[0]:.0f}",
            ">= 3000",
            len(ms) / took[0] >= 3000,
            note="counted from the trials' own timings; the agent decides on every report it is sent",
        ),
        Figure(
            section,
            "reports timed / trials pruned / sweep time",
            f"{len(ms)} / {pruned} of {summary.ran} / {took[0]:.1f} s",
            note=f"offered load {gpus * 100} reports/s; Ray start {ray_s[0]:.1f} s, "
            f"warm-up sweep {warm_s[0]:.1f} s",
        ),
        Figure(
            section,
            f"for scale: Ray alone, {gpus} tasks calling a do-nothing async actor every 10 ms, p50 / p95",
            f"{percentile(floor, 50):.1f} / {floor_p95:.1f} ms",
            note="the transport floor on this machine, no storage and no pruner",
        ),
        Figure(
            section,
            "CPU the measured sweep took, by process, in seconds of its wall time (2 cores: at most 2.0)",
            ", ".join(f"{group} {seconds / took[0]:.2f}" for group, seconds in sorted(cpu.items())),
            note=f"the trials' workers, the agent (the report channel's end), Ray's raylet and GCS; "
            f"{started} processes started during the sweep",
        ),
    ]
    harness.emit(figures, args.json)


if __name__ == "__main__":
    main()
