"""Cluster utilisation: the share of GPU-seconds busy over a sweep of 1-second trials on 16 fake GPUs.

Each trial asks ``gpus: 1`` and sleeps one second (cheap on 2 real cores), recording its own
wall-clock start and end. busy = sum of trial durations / (GPUs x makespan), the makespan running
from the first trial's start to the last trial's end. A warm-up sweep of one short trial per GPU
runs first, so every Ray worker has run a trial before (imports done), as on a cluster that has
been up for a while.
"""

from __future__ import annotations

import json
import os
from typing import Any

import harness
from harness import Figure, stopwatch


def main() -> None:
    args = harness.parse_args(__doc__.splitlines()[0])
    gpus = 16
    trials = 48 if args.quick else 192  # a multiple of 16: a perfect scheduler keeps every GPU busy
    import ray
    import yaml

    import sweeper

    root = harness.scratch_dir("bench-utilisation-")
    os.chdir(root)
    outdir = root / "out"
    outdir.mkdir()
    with stopwatch() as ray_s:
        ray.init(
            address="local",
            num_cpus=gpus,  # logical: the trials sleep
            num_gpus=gpus,
            include_dashboard=False,
            log_to_driver=False,
            runtime_env={"env_vars": {"PYTHONPATH": str(harness.BENCH_DIR)}},
        )
    spec: dict[str, Any] = {
        "name": "bench-utilisation",
        "method": "random",
        "metric": {"name": "value", "goal": "minimize"},
        "parameters": {
            "x": {"min": 0.0, "max": 1.0},
            "duration": {"value": 1.0},
            "outdir": {"value": str(outdir)},
        },
        "run_cap": trials,
        "sweeper": {"trainer": "bench_trainers:sleeper", "resources": {"gpus": 1}, "seed": 0},
    }
    (root / "utilisation.yaml").write_text(yaml.safe_dump(spec))
    storage = f"journal://{root / 'journal.log'}"
    with stopwatch() as warm_s:
        warm = {**spec, "name": "warm-up", "run_cap": gpus}
        warm["parameters"] = {**spec["parameters"], "outdir": {"value": str(root)}, "duration": {"value": 2}}
        sweeper.agent(sweeper.sweep(warm, storage=storage), storage=storage)
    sweep_id = sweeper.sweep(str(root / "utilisation.yaml"), storage=storage)
    with stopwatch() as took:
        summary = sweeper.agent(sweep_id, storage=storage)
    records = [json.loads(p.read_text()) for p in outdir.glob("*.json")]
    busy = sum(r["end"] - r["start"] for r in records)
    makespan = max(r["end"] for r in records) - min(r["start"] for r in records)
    share = busy / (gpus * makespan)
    ideal = -(-len(records) // gpus) * 1.0
    # A perfect scheduler runs the same trials in ``ideal`` seconds (whole waves of 1-s trials).
    of_perfect = share / (busy / (gpus * ideal))
    section = "3. Cluster utilisation"
    figures = [
        Figure(
            section,
            f"busy GPU-seconds / (16 GPUs x makespan), {len(records)} trials of 1 s",
            f"{share:.1%}",
            "",
            None,
            f"makespan {makespan:.2f} s (ideal {ideal:.0f} s); agent call {took[0]:.1f} s; "
            f"{summary.complete} complete; Ray start {ray_s[0]:.1f} s, warm-up sweep {warm_s[0]:.1f} s",
        ),
        Figure(
            section,
            "utilisation / a perfect scheduler's on the same trials",
            f"{of_perfect:.1%}",
            ">= 99%",
            of_perfect >= 0.99,
            f"load average (1 min) at the end {os.getloadavg()[0]:.1f}",
        ),
    ]
    harness.emit(figures, args.json)


if __name__ == "__main__":
    main()
