"""Warm starts: a bayes sweep warm-started from a 50-trial sweep, after 30 new trials, against cold sweeps
after 80 and after 30 trials, on Hartmann6 (6-D, minimum -3.32237), median best over seeds.

Everything runs as a user's sweeps do: ``sweeper.sweep`` and ``sweeper.agent`` (in-process executor,
the trainer ``trainers.functions.hartmann6``) on a journal storage. Per seed: a cold sweep of 50
trials is the source; a new sweep (``run_cap: 30``) starts warm from it (``warm_start: [{sweep: ID}]``:
its 50 trials become priors); a cold sweep of 80 trials runs from scratch, and its best after its
first 30 trials is the cold sweep "after 30" (the sampler's choice of trial n does not depend on the
run_cap past it: the same sampler, GP or TPE, runs both). The three sweeps of a seed have distinct
seeds. The warm sweep's best counts its priors: they were the other 50 evaluations, so "no worse
than cold after 80" shows they are fully used.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import harness
from harness import Figure, fmt

sys.path.insert(0, str(harness.REPO_ROOT))  # trainers/ is a project directory, not an installed package

MINIMUM = -3.32237
SOURCE_TRIALS, NEW_TRIALS, COLD_TRIALS = 50, 30, 80
SECTION = "8. Warm starts"


def spec(run_cap: int, seed: int, warm_from: str | None = None) -> dict[str, Any]:
    settings: dict[str, Any] = {"seed": seed}
    if warm_from is not None:
        settings["warm_start"] = [{"sweep": warm_from}]
    return {
        "method": "bayes",
        "metric": {"name": "value", "goal": "minimize"},
        "run_cap": run_cap,
        "parameters": {f"x{i}": {"min": 0.0, "max": 1.0} for i in range(1, 7)},
        "sweeper": settings,
    }


def one_seed(seed: int, source: int, new: int, cold: int) -> dict[str, float]:
    """The figures of one seed (runs in a pool worker, in a scratch directory of its own)."""
    import logging

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("sweeper").setLevel(logging.WARNING)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # without torch, bayes is TPE
        pass
    # A pool worker exits without running atexit hooks: the scratch directory goes with this call.
    with tempfile.TemporaryDirectory(prefix=f"bench-warm-{seed}-") as scratch:
        os.chdir(scratch)
        try:
            return _one_seed(Path(scratch), seed, source, new, cold)
        finally:
            os.chdir(harness.REPO_ROOT)


def _one_seed(scratch: Path, seed: int, source: int, new: int, cold: int) -> dict[str, float]:
    import sweeper
    from trainers.functions import hartmann6

    url = f"journal://{scratch / 'sweeps.log'}"

    def run(sweep_spec: dict[str, Any]) -> tuple[str, float]:
        began = time.perf_counter()
        sweep_id = sweeper.sweep(sweep_spec, storage=url)
        sweeper.agent(sweep_id, function=hartmann6, storage=url, executor="local")
        return sweep_id, time.perf_counter() - began

    old, source_s = run(spec(source, 1000 + seed))
    warm, warm_s = run(spec(new, 2000 + seed, warm_from=old))
    cold_id, cold_s = run(spec(cold, 3000 + seed))
    warm_results = sweeper.load(warm, storage=url)
    cold_results = sweeper.load(cold_id, storage=url)
    own = [t for t in warm_results.trials if not t.is_prior and t.value is not None]
    cold_trials = sorted((t for t in cold_results.trials if t.value is not None), key=lambda t: t.number)
    return {
        "priors": float(len(warm_results.priors())),
        "new": float(len(own)),
        "warm": min(t.value for t in warm_results.trials if t.value is not None),
        "warm_own": min(t.value for t in own),
        "source": min(t.value for t in warm_results.priors() if t.value is not None),
        "cold_all": min(t.value for t in cold_trials),
        "cold_new": min(t.value for t in cold_trials[:new]),
        "warm_s_per_trial": warm_s / new,
        "cold_s_per_trial": (source_s + cold_s) / (source + cold),
    }


def main() -> None:
    args = harness.parse_args(__doc__.splitlines()[0])
    seeds = list(range(3 if args.quick else int(os.environ.get("BENCH_WARM_SEEDS", "10"))))
    source, new, cold = (10, 6, 16) if args.quick else (SOURCE_TRIALS, NEW_TRIALS, COLD_TRIALS)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    began = time.perf_counter()
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        outcomes = list(
            pool.map(one_seed, seeds, [source] * len(seeds), [new] * len(seeds), [cold] * len(seeds))
        )
    wall = time.perf_counter() - began
    for seed, outcome in zip(seeds, outcomes, strict=True):
        print(f"seed {seed}: " + ", ".join(f"{k} {v:.4g}" for k, v in outcome.items()), file=sys.stderr)
    assert all(o["priors"] == source and o["new"] == new for o in outcomes), "priors or budget off"

    def median(key: str) -> float:
        return statistics.median(o[key] for o in outcomes)

    from sweeper.search.strategy import choose_bayes_sampler
    from sweeper.spec.reader import load_spec

    sampler = choose_bayes_sampler(load_spec(spec(new, 0)), parallelism=1, priors=source)
    warm, cold_all, cold_new = median("warm"), median("cold_all"), median("cold_new")
    what = f"{len(seeds)} seeds, minimum {MINIMUM:g}, sampler {sampler} (auto)"
    figures = [
        Figure(
            SECTION,
            f"Hartmann6: median best, warm ({source} priors + {new} new) vs cold after {cold}",
            f"{fmt(warm, 4)} vs {fmt(cold_all, 4)}",
            "no worse",
            warm <= cold_all,
            what,
        ),
        Figure(
            SECTION,
            f"Hartmann6: median best, warm after {new} new vs cold after {new}",
            f"{fmt(warm, 4)} vs {fmt(cold_new, 4)}",
            "clearly better",
            warm < cold_new - 0.1,
            f"gap {fmt(cold_new - warm, 3)} (clearly: > 0.1)",
        ),
        Figure(
            SECTION,
            f"Hartmann6: median best of the {new} new trials alone, and of the {source}-trial source",
            f"{fmt(median('warm_own'), 4)} / {fmt(median('source'), 4)}",
            "",
            None,
            "how far the new trials improve on their priors on their own",
        ),
        Figure(
            SECTION,
            "wall time per trial, warm / cold (sweep, agent, trainer, sampler)",
            f"{fmt(median('warm_s_per_trial') * 1000, 3)} ms"
            f" / {fmt(median('cold_s_per_trial') * 1000, 3)} ms",
            "",
            None,
            f"{min(len(seeds), os.cpu_count() or 1)} seeds at once; {wall:.0f} s in all",
        ),
    ]
    harness.emit(figures, args.json)


if __name__ == "__main__":
    main()
