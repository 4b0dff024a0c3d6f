"""Scale: inspect commands on a 10,000-trial sweep, sampler time per trial at 1,000 and 5,000 trials,
and the agent's memory over a long no-op sweep.

- Inspect: the sweep is built by ``bench_inspect.build`` (written as the agent writes it) on the
  default storage kind (journal file) and each CLI command runs in process, median of 3 after one
  warm-up run (which saves the journal's snapshot: the runs after it start from there);
  ``trials --json`` twice more: with the snapshot as far behind as running agents let it fall
  (``STALE_BYTES``: the slowest reader of a sweep sweeper wrote) and with none at all (the whole
  log replayed); ``trials --json`` also on SQLite and PostgreSQL (when the tests' server answers).
- Sampler: an in-memory study holding N finished trials of a 6-parameter space (5 floats, one
  categorical); the time of one more ``ask`` with the sampler the agent uses (``make_sampler``).
- Memory: one agent process runs a no-op sweep in chunks (``sweeper.agent(count=...)``, local
  executor so no Ray worker shares the work), its RSS read after each chunk.
- Agent at scale: the agent runs no-op trials (Ray, 2 at a time) on a sweep already holding 10,000
  trials and, its peer in the same run, on a fresh sweep, alternated, on each storage: its rate and
  its CPU a trial should not grow with the sweep.
"""

from __future__ import annotations

import gc
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import harness
from harness import Figure, rss_mib

SECTION = "6. Scale"
SAMPLER_SPACE: dict[str, Any] = {
    **{f"x{i}": {"min": 0.0, "max": 1.0} for i in range(1, 6)},
    "act": {"values": ["relu", "gelu", "tanh"]},
}


def inspect_figures(trials: int, root: Path) -> list[Figure]:
    """Time the inspect commands with the inspect helper's benchmark: every command on a journal
    file, and ``trials --json`` on SQLite and PostgreSQL too (each sweep written as the agent writes it)."""
    try:
        import bench_inspect
    except ImportError as exc:  # the inspect benchmark is another helper's file
        return [Figure(SECTION, "inspect commands", "not measured", "< 1 s", None, f"bench_inspect: {exc}")]
    from sweeper.storage import journal_read, journal_snapshot

    url = f"journal://{root / 'inspect.log'}"
    began = time.perf_counter()
    sweep_id = bench_inspect.build(url, trials)
    built = time.perf_counter() - began
    figures = []
    for label, args in (
        ("sweeper status", ("status", sweep_id)),
        ("sweeper best --top 10", ("best", sweep_id, "--top", "10")),
        ("sweeper trials (sorted table)", ("trials", sweep_id, "--sort", "loss")),
        ("sweeper trials --json (every record)", ("trials", sweep_id, "--json")),
        ("sweeper ls", ("ls",)),
    ):
        figures.append(
            _timed(f"{label} on {trials:,} trials (journal", bench_inspect.cli(*args, "--storage", url))
        )
    figures[
        0
    ].note += f"; sweep built in {built:.0f} s ({(root / 'inspect.log').stat().st_size / 1e6:.0f} MB of log)"
    # Those read the journal from its snapshot (the warm-up run saved it). A sweep's first reader
    # replays the whole log and saves the snapshot: timed with the snapshot removed before each run.
    snapshot = journal_snapshot.path_of(str(root / "inspect.log"))
    trials_json = bench_inspect.cli("trials", sweep_id, "--json", "--storage", url)

    def first_reader() -> None:
        snapshot.unlink(missing_ok=True)
        trials_json()

    # While agents write the sweep, a reader replays what lies past the snapshot their keeper left,
    # at most STALE_BYTES (sweeper.storage.snapshot_keeper): the slowest reader of a sweep sweeper wrote.
    lagging = bench_inspect.lagging_snapshot(root / "inspect.log")

    def lagging_reader() -> None:
        snapshot.write_bytes(lagging)  # as the keeper left it, not as the last reader did
        trials_json()

    figures.append(
        _timed(
            f"sweeper trials --json, a reader while agents write, {trials:,} trials (journal", lagging_reader
        )
    )
    figures[-1].note += f"; replays the {journal_read.STALE_BYTES / 1e6:.0f} MB past the snapshot agents keep"
    figures.append(
        _timed(f"sweeper trials --json, no snapshot at all, {trials:,} trials (journal", first_reader)
    )
    figures[-1].target, figures[-1].met = "documented", None
    figures[-1].note += (
        "; replays the whole log and saves the snapshot: a journal whose snapshot was lost, or whose"
        " directory cannot hold one"
    )
    with bench_inspect.postgres_database() as postgres:
        for kind, other in (("SQLite", f"sqlite:///{root / 'inspect.db'}"), ("PostgreSQL", postgres)):
            if other is None:
                figures.append(Figure(SECTION, f"sweeper trials --json on {kind}", "not measured", "< 1 s"))
                continue
            began = time.perf_counter()
            other_id = bench_inspect.build(other, trials)
            figure = _timed(
                f"sweeper trials --json (every record) on {trials:,} trials ({kind}",
                bench_inspect.cli("trials", other_id, "--json", "--storage", other),
            )
            figure.note += f"; sweep built in {time.perf_counter() - began:.0f} s"
            figures.append(figure)
    return figures


def _timed(label: str, action: Callable[[], None]) -> Figure:
    """The median of 3 runs of ``action`` in this process, wall and CPU time, against the 1 s target."""
    action()  # imports and first connections, as a command's own process pays them once
    walls, cpus = [], []
    for _ in range(3):
        wall, cpu = time.perf_counter(), time.process_time()
        action()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    took, cpu_took = statistics.median(walls), statistics.median(cpus)
    return Figure(
        SECTION,
        f"{label}, in process, median of 3)",
        f"{took:.2f} s",
        "< 1 s",
        took < 1.0,
        f"CPU time {cpu_took:.2f} s; load average {os.getloadavg()[0]:.1f}",
    )


def sampler_figures(sizes: tuple[int, ...], asks: int) -> list[Figure]:
    """Seconds per ``ask`` of TPE (bayes) and W&B-random samplers on a study of N finished trials."""
    import optuna
    from optuna.trial import TrialState, create_trial

    from sweeper.search.strategy import make_sampler
    from sweeper.spec.reader import load_spec

    figures = []
    for method, sampler in (("bayes", "tpe"), ("random", "auto")):
        spec = load_spec(
            {
                "method": method,
                "metric": {"name": "value"},
                "parameters": SAMPLER_SPACE,
                "sweeper": {"seed": 0, "sampler": sampler},
            }
        )
        distributions = spec.space.distributions()
        per_size = []
        for size in sizes:
            rng = random.Random(size)
            study = optuna.create_study(sampler=make_sampler(spec, parallelism=2))
            study.add_trials(
                [
                    create_trial(
                        state=TrialState.COMPLETE,
                        value=rng.random(),
                        params={
                            **{f"x{i}": rng.random() for i in range(1, 6)},
                            "act": rng.choice(["relu", "gelu", "tanh"]),
                        },
                        distributions=distributions,
                    )
                    for _ in range(size)
                ]
            )
            times = []
            for _ in range(asks):
                began = time.perf_counter()
                trial = study.ask(distributions)
                times.append(time.perf_counter() - began)
                study.tell(trial, rng.random())
            per_size.append(f"{statistics.median(times) * 1000:.1f} ms at {size:,}")
        label = "TPE (method: bayes, sampler: tpe)" if method == "bayes" else "W&B random (method: random)"
        figures.append(Figure(SECTION, f"sampler time per trial, {label}", "; ".join(per_size), "documented"))
    return figures


def memory_figure(total: int, chunks: int, root: Path) -> Figure:
    """RSS of this (the agent's) process after each chunk of a no-op sweep."""
    import sweeper

    outdir = root / "noop-out"
    outdir.mkdir()
    os.chdir(root)
    storage = f"journal://{root / 'memory.log'}"
    spec = {
        "method": "random",
        "metric": {"name": "value"},
        "parameters": {"x": {"min": 0.0, "max": 1.0}, "outdir": {"value": str(outdir)}},
        "sweeper": {"trainer": "bench_trainers:noop", "seed": 0},
    }
    sweep_id = sweeper.sweep(spec, storage=storage)
    gc.collect()
    readings = [(0, rss_mib())]
    began = time.perf_counter()
    for index in range(1, chunks + 1):
        sweeper.agent(sweep_id, storage=storage, count=total // chunks, executor="local")
        gc.collect()
        readings.append((index * total // chunks, rss_mib()))
    took = time.perf_counter() - began
    per_k = (readings[-1][1] - readings[1][1]) / ((readings[-1][0] - readings[1][0]) / 1000)
    shown = ", ".join(f"{n:,}: {mib:.1f}" for n, mib in readings)
    return Figure(
        SECTION,
        "agent RSS (MiB) after N trials of a no-op sweep (N: MiB)",
        shown,
        "documented",
        None,
        f"growth after the first chunk: {per_k:.2f} MiB per 1,000 trials; {total / took:.0f} trials/s "
        "(local executor)",
    )


def agent_scale_figures(held: int, count: int, root: Path) -> list[Figure]:
    """The agent's no-op trials/s on a sweep holding ``held`` trials, against a fresh one, on the
    journal, SQLite and PostgreSQL (when the tests' server answers)."""
    import bench_inspect
    import ray

    harness.init_local_ray(num_cpus=2)
    try:
        figures = [
            _agent_at_scale(
                "journal", lambda run: nullcontext(f"journal://{root / f'agent-{run}.log'}"), held, count
            ),
            _agent_at_scale(
                "SQLite", lambda run: nullcontext(f"sqlite:///{root / f'agent-{run}.db'}"), held, count
            ),
        ]
        with bench_inspect.postgres_database() as probe:  # whether the tests' server answers
            if probe is not None:
                figures.append(
                    _agent_at_scale("PostgreSQL", lambda run: bench_inspect.postgres_database(), held, count)
                )
    finally:
        ray.shutdown()
    return figures


def _agent_at_scale(
    kind: str, storage: Callable[[int], AbstractContextManager[str | None]], held: int, count: int
) -> Figure:
    import bench_inspect

    import sweeper

    spec = {**bench_inspect.SPEC, "sweeper": {"trainer": "bench_trainers:noop_loss", "max_concurrent": 2}}
    rates: dict[int, list[float]] = {0: [], held: []}
    cpu: dict[int, list[float]] = {0: [], held: []}
    for run, size in enumerate((0, held, 0, held)):
        with storage(run) as url:
            assert url is not None
            sweep_id = bench_inspect.build(url, size, running=0, spec=spec)
            sweeper.agent(sweep_id, storage=url, count=20)  # the storage opened, the workers warm
            before, began = time.process_time(), time.perf_counter()
            sweeper.agent(sweep_id, storage=url, count=count)
            rates[size].append(count / (time.perf_counter() - began))
            cpu[size].append((time.process_time() - before) / count * 1000)
    ratio = statistics.median(rates[held]) / statistics.median(rates[0])
    big, fresh = (", ".join(f"{r:.0f}" for r in rates[size]) for size in (held, 0))
    return Figure(
        SECTION,
        f"agent no-op trials/s on a {kind} sweep holding {held:,} trials / on a fresh sweep (2 at a time)",
        f"{ratio:.2f} ({big} vs {fresh})",
        "documented",
        None,
        f"{count} trials a run, runs alternated; the agent process's CPU a trial "
        f"{', '.join(f'{c:.1f}' for c in cpu[held])} vs {', '.join(f'{c:.1f}' for c in cpu[0])} ms",
    )


def main() -> None:
    args = harness.parse_args(__doc__.splitlines()[0])
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sys.path.insert(0, str(harness.BENCH_DIR))
    root = harness.scratch_dir("bench-scale-")
    # Memory first, while this process holds nothing else.
    memory = memory_figure(200 if args.quick else 1_000, 4, root)
    figures = inspect_figures(1_000 if args.quick else 10_000, root)
    figures += sampler_figures((200, 500) if args.quick else (1_000, 5_000), 3 if args.quick else 10)
    figures.append(memory)
    figures += agent_scale_figures(1_000 if args.quick else 10_000, 100 if args.quick else 300, root)
    harness.emit(figures, args.json)


if __name__ == "__main__":
    main()
