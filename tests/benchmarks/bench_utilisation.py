"""Cluster utilisation: the share of GPU-seconds busy over a sweep of 1-second trials on 16 fake GPUs.

Each trial asks ``gpus: 1`` and sleeps one second (cheap on 2 real cores), recording its own
wall-clock start and end. busy = sum of trial durations / (GPUs x makespan), the makespan running
from the first trial's start to the last trial's end. Warm-up sweeps of one short trial per GPU
run first, until 16 Ray workers have each run a trial (imports done), as on a cluster that has
been up for a while.

Beside it, in the same run, two peers on the same trials: Ray's own scheduler (a Ray task per
trial, all submitted at once, on the same warm workers) and the machine's floor (16 processes
each running its 12 trials back to back, with no scheduler at all: what sleeping and writing the
record cost here). The share of CPU time the hypervisor stole during the sweep is printed as the
machine's context: on a shared virtual machine, neighbours slow every hand-over.
"""

from __future__ import annotations

import itertools
import json
import os
from dataclasses import dataclass
from pathlib import Path
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
            runtime_env={"env_vars": {"PYTHONPATH": harness.worker_pythonpath()}},
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
    # The warm-up's records go in a folder of their own: in the project's top level, each of them
    # was linked into every measured trial's directory.
    warm_out = root / "warm-up"
    warm_out.mkdir()
    with stopwatch() as warm_s:
        # Until 16 live workers have each run a trial: a wave of fresh workers on 2 cores starts
        # over several seconds, so one warm-up wave of short trials can leave some never used.
        warm = {**spec, "name": "warm-up", "run_cap": gpus}
        warm["parameters"] = {
            **spec["parameters"],
            "outdir": {"value": str(warm_out)},
            "duration": {"value": 3},
        }
        for _ in range(3):
            sweeper.agent(sweeper.sweep(warm, storage=storage), storage=storage)
            if len(harness.live_workers(warm_out)) >= gpus:
                break
    sweep_id = sweeper.sweep(str(root / "utilisation.yaml"), storage=storage)
    before = harness.cpu_by_process()
    cpu_before = _cpu_jiffies()
    with stopwatch() as took:
        summary = sweeper.agent(sweep_id, storage=storage)
    stolen = _stolen(cpu_before, _cpu_jiffies())
    started = sum(1 for pid in harness.cpu_by_process() if pid not in before)  # Ray processes started
    records = _records(outdir)
    share, makespan, of_perfect = _utilisation(records, gpus)
    ideal = -(-len(records) // gpus)  # seconds: whole waves of 1-s trials
    ray_out = root / "ray-tasks"
    ray_out.mkdir()
    _ray_tasks(trials, ray_out)
    ray_records = _records(ray_out)
    ray_share, ray_makespan, ray_of_perfect = _utilisation(ray_records, gpus)
    floor_out = root / "floor"
    floor_out.mkdir()
    _floor(trials, gpus, floor_out)
    _, floor_makespan, floor_of_perfect = _utilisation(_records(floor_out), gpus)
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
            f"load average (1 min) at the end {os.getloadavg()[0]:.1f}; "
            f"Ray processes started during the sweep: {started}; "
            f"CPU time stolen by the hypervisor during the sweep {stolen:.1%}",
        ),
    ]
    figures += _losses(section, records)
    figures += [
        Figure(
            section,
            "peer: Ray's own scheduler (a task per trial, all submitted at once), / a perfect scheduler's",
            f"{ray_of_perfect:.1%}",
            "",
            None,
            f"{len(ray_records)} trials, makespan {ray_makespan:.2f} s ({ray_share:.1%} busy); "
            f"sweeper / Ray {of_perfect / ray_of_perfect:.3f}",
        ),
        *_losses(section, ray_records, who="Ray tasks"),
        Figure(
            section,
            f"floor: no scheduler ({gpus} processes, {trials // gpus} trials each back to back), "
            "/ a perfect scheduler's",
            f"{floor_of_perfect:.1%}",
            "",
            None,
            f"makespan {floor_makespan:.2f} s: what the trials' own sleep and record cost on this machine",
        ),
    ]
    harness.emit(figures, args.json)


def _records(outdir: Path) -> list[dict[str, Any]]:
    """The trials' own records in ``outdir``, each with the process that ran it."""
    return [{**json.loads(p.read_text()), "pid": p.stem.rsplit("-", 1)[1]} for p in outdir.glob("*.json")]


def _utilisation(records: list[dict[str, Any]], gpus: int) -> tuple[float, float, float]:
    """The busy share, the makespan, and the utilisation as a share of a perfect scheduler's."""
    busy = sum(r["end"] - r["start"] for r in records)
    makespan = max(r["end"] for r in records) - min(r["start"] for r in records)
    share = busy / (gpus * makespan)
    ideal = -(-len(records) // gpus) * 1.0
    # A perfect scheduler runs the same trials in ``ideal`` seconds (whole waves of 1-s trials).
    return share, makespan, share / (busy / (gpus * ideal))


def _ray_tasks(trials: int, outdir: Path) -> None:
    """The same trials as Ray tasks, one per trial, with a sweeper lane's resources (1 CPU, 1 GPU):
    Ray queues them and hands each freed GPU's worker the next. In Ray's best form: by default a
    GPU task's worker exits after it (``max_calls=1``), and each trial would pay a fresh worker."""
    import ray

    @ray.remote(num_cpus=1, num_gpus=1, max_retries=0, max_calls=0)
    def trial(number: int) -> None:
        import bench_trainers

        config = {"duration": 1.0, "x": 0.5, "outdir": str(outdir)}
        bench_trainers.sleeper(config, _Numbered(number))

    ray.get([trial.remote(number) for number in range(trials)])


def _floor(trials: int, gpus: int, outdir: Path) -> None:
    """The same trials with no scheduler: ``gpus`` processes, each runs its share back to back,
    all released at once."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # not a fork of a process running Ray's threads
    ready = context.Barrier(gpus + 1)  # every process imported: the first trials start together
    workers = [
        context.Process(target=_run_back_to_back, args=(range(lane, trials, gpus), outdir, ready))
        for lane in range(gpus)
    ]
    for worker in workers:
        worker.start()
    ready.wait()
    for worker in workers:
        worker.join()


def _run_back_to_back(numbers: range, outdir: Path, ready: Any) -> None:
    import bench_trainers

    ready.wait()
    for number in numbers:
        config = {"duration": 1.0, "x": 0.5, "outdir": str(outdir)}
        bench_trainers.sleeper(config, _Numbered(number))


@dataclass(frozen=True)
class _Numbered:
    """What ``bench_trainers.sleeper`` reads of its trial: a number and an attempt."""

    number: int
    attempt: int = 0


def _cpu_jiffies() -> list[int]:
    """The machine's CPU time by kind (``/proc/stat``'s first line): user, nice, system, idle,
    iowait, irq, softirq, steal."""
    return [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]


def _stolen(before: list[int], after: list[int]) -> float:
    """The share of the CPU time between two readings that the hypervisor gave to someone else."""
    spent = [b - a for a, b in zip(before, after, strict=True)]
    return spent[7] / max(1, sum(spent))


def _losses(section: str, records: list[dict[str, Any]], who: str = "") -> list[Figure]:
    """Where the idle GPU-seconds went, from the Ray worker (process id) each trial ran in.

    A worker's late first start, the hand-overs between its trials (a trial's end to the next
    trial's start in the same worker), and its idle tail before the last trial of the sweep ends.
    """
    first = min(r["start"] for r in records)
    last = max(r["end"] for r in records)
    by_worker: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_worker.setdefault(record["pid"], []).append(record)
    starts, gaps, tails = [], [], []
    for runs in by_worker.values():
        runs.sort(key=lambda r: r["start"])
        starts.append(runs[0]["start"] - first)
        gaps += [b["start"] - a["end"] for a, b in itertools.pairwise(runs)]
        tails.append(last - runs[-1]["end"])
    gaps.sort()

    def pct(q: float) -> float:
        return gaps[min(len(gaps) - 1, int(q * len(gaps)))] * 1000 if gaps else 0.0

    late = sorted(starts)[-3:]
    return [
        Figure(
            section,
            f"{who + ': ' if who else ''}idle GPU-seconds: workers' late first starts / hand-overs / tails",
            f"{sum(starts):.1f} / {sum(gaps):.1f} / {sum(tails):.1f}",
            "",
            None,
            f"{len(by_worker)} Ray workers ran trials; latest first starts "
            + ", ".join(f"{s:.2f}" for s in late)
            + f" s; {len(gaps)} hand-overs p50 / p90 / max {pct(0.5):.0f} / {pct(0.9):.0f} / "
            f"{pct(1.0):.0f} ms, mean {sum(gaps) / max(1, len(gaps)) * 1000:.0f} ms",
        )
    ]


if __name__ == "__main__":
    main()
