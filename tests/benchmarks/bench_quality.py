"""Search quality: the median best value after a budget of trials, over seeds, per method and function.

Our samplers are the ones the agent uses (``sweeper.search.strategy.make_sampler`` on a parsed spec),
driven in a plain Optuna ask/tell loop; W&B's own engine (the ``sweeps`` package's
``next_run(config, runs)``) is driven in the same loop, each of its runs carrying its metric in
both its summary and its history. All four functions are minimised.
"""

from __future__ import annotations

import math
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import harness
from harness import Figure, fmt

sys.path.insert(0, str(harness.REPO_ROOT))  # trainers/ is a project directory, not an installed package

from trainers.functions import ackley_value, branin_value, hartmann6_value, rosenbrock_value

Objective = Callable[[Mapping[str, Any]], float]


@dataclass(frozen=True)
class Problem:
    """A test function over a box: its name, ``x1..xn`` bounds, the known minimum."""

    name: str
    bounds: tuple[tuple[float, float], ...]
    minimum: float
    evaluate: Callable[[Sequence[float]], float]

    def parameters(self) -> dict[str, dict[str, float]]:
        return {f"x{i + 1}": {"min": lo, "max": hi} for i, (lo, hi) in enumerate(self.bounds)}

    def value(self, config: Mapping[str, Any]) -> float:
        return self.evaluate([float(config[f"x{i + 1}"]) for i in range(len(self.bounds))])


PROBLEMS = (
    Problem("Branin (2-D)", ((-5.0, 10.0), (0.0, 15.0)), 0.397887, lambda x: branin_value(x[0], x[1])),
    Problem("Hartmann6 (6-D)", ((0.0, 1.0),) * 6, -3.32237, hartmann6_value),
    Problem("Rosenbrock (4-D)", ((-2.048, 2.048),) * 4, 0.0, rosenbrock_value),
    Problem("Ackley (5-D)", ((-32.768, 32.768),) * 5, 0.0, ackley_value),
)


def sweeper_best(problem: Problem, method: str, sampler: str, seed: int, budget: int) -> float:
    """Best value after ``budget`` trials of our sampler for ``method`` (and bayes ``sampler``)."""
    import optuna

    from sweeper.search.strategy import make_sampler
    from sweeper.spec.reader import load_spec

    spec = load_spec(
        {
            "method": method,
            "metric": {"name": "value", "goal": "minimize"},
            "parameters": problem.parameters(),
            "run_cap": budget,
            "sweeper": {"seed": seed, "sampler": sampler},
        }
    )
    study = optuna.create_study(direction="minimize", sampler=make_sampler(spec, parallelism=1))
    distributions = spec.space.distributions()
    for _ in range(budget):
        trial = study.ask(distributions)
        study.tell(trial, problem.value(spec.space.to_config(trial.params)))
    return float(study.best_value)


def wandb_best(problem: Problem, seed: int, budget: int) -> float:
    """Best value after ``budget`` runs proposed by W&B's bayes engine (``sweeps.next_run``)."""
    import numpy as np
    from sweeps.run import RunState, SweepRun

    import sweeps

    np.random.seed(seed)  # W&B's engine draws its candidates from numpy's global generator
    config = {
        "method": "bayes",
        "metric": {"name": "value", "goal": "minimize"},
        "parameters": problem.parameters(),
    }
    runs: list[SweepRun] = []
    best = math.inf
    for _ in range(budget):
        suggestion = sweeps.next_run(config, runs)  # type: ignore[attr-defined]
        assert suggestion is not None
        params = {name: item["value"] for name, item in suggestion.config.items()}
        value = problem.value(params)
        best = min(best, value)
        # pydantic 2 drops SweepRun(history=...): the alias is what reaches the field.
        run = SweepRun(
            name=f"run-{len(runs)}",
            config=suggestion.config,
            state=RunState.finished,
            summaryMetrics={"value": value},
            sampledHistory=[{"value": value}],
        )
        if run.metric_extremum("value", "minimum") != value:
            raise RuntimeError("sweeps dropped the run's metric; the comparison would be void")
        runs.append(run)
    return best


METHODS: tuple[tuple[str, Callable[[Problem, int, int], float]], ...] = (
    ("sweeper bayes (gp)", lambda p, s, b: sweeper_best(p, "bayes", "gp", s, b)),
    ("sweeper bayes (tpe)", lambda p, s, b: sweeper_best(p, "bayes", "tpe", s, b)),
    ("sweeper random", lambda p, s, b: sweeper_best(p, "random", "auto", s, b)),
    ("W&B bayes (sweeps)", wandb_best),
)


def best_of(problem_index: int, method_index: int, seed: int, budget: int) -> tuple[float, float]:
    """(best value, seconds) of one run; runs in a pool worker."""
    import optuna

    warnings.filterwarnings("ignore")  # sklearn convergence and Optuna experimental notices
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # GP needs torch; without it method: bayes uses TPE anyway
        pass
    start = time.perf_counter()
    best = METHODS[method_index][1](PROBLEMS[problem_index], seed, budget)
    return best, time.perf_counter() - start


def main() -> None:
    args = harness.parse_args(__doc__.splitlines()[0])
    budget = 50
    seeds = list(range(3 if args.quick else int(os.environ.get("BENCH_QUALITY_SEEDS", "10"))))
    problems = PROBLEMS[:2] if args.quick else PROBLEMS
    from sweeper.search.strategy import choose_bayes_sampler

    # One BLAS/torch thread per run, the runs spread over the cores instead: on 2 cores, GP runs
    # with 2 threads each took 4x the wall time (oversubscription), for the same results.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, "1")

    medians: dict[tuple[str, str], float] = {}
    seconds: dict[str, float] = {}
    # Runs are independent and deterministic per seed: spread them over the cores.
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        futures = {
            (p, m, s): pool.submit(best_of, p, m, s, budget)
            for p in range(len(problems))
            for m in range(len(METHODS))
            for s in seeds
        }
    for p, problem in enumerate(problems):
        for m, (method, _) in enumerate(METHODS):
            outcomes = [futures[(p, m, s)].result() for s in seeds]
            seconds[method] = seconds.get(method, 0.0) + sum(t for _, t in outcomes)
            medians[(problem.name, method)] = statistics.median(b for b, _ in outcomes)
            print(
                f"{problem.name:18} {method:22} median {medians[(problem.name, method)]:.4g}", file=sys.stderr
            )
    from sweeper.spec.reader import load_spec

    section = "5. Search quality"
    figures: list[Figure] = []
    for problem in problems:
        ours = {m: medians[(problem.name, m)] for m, _ in METHODS}
        table = ", ".join(f"{m}: {fmt(v, 4)}" for m, v in ours.items())
        figures.append(
            Figure(
                section,
                f"{problem.name}: median best after {budget} trials, {len(seeds)} seeds "
                f"(minimum {problem.minimum:g})",
                table,
            )
        )
        wb = ours["W&B bayes (sweeps)"]
        rnd = ours["sweeper random"]
        # The target is for what `method: bayes` runs (sampler: auto); the other sampler is shown.
        spec = {"method": "bayes", "metric": {"name": "value"}, "parameters": problem.parameters()}
        auto = choose_bayes_sampler(load_spec({**spec, "run_cap": budget}), parallelism=1)
        for sampler in ("gp", "tpe"):
            value = ours[f"sweeper bayes ({sampler})"]
            chosen = sampler == auto
            figures.append(
                Figure(
                    section,
                    f"{problem.name}: sweeper bayes ({sampler}) vs W&B bayes / vs random",
                    f"{fmt(value, 4)} vs {fmt(wb, 4)} / {fmt(rnd, 4)}",
                    "beats both" if chosen else "",
                    (value < wb and value < rnd) if chosen else None,
                    "what `method: bayes` runs here (sampler: auto)"
                    if chosen
                    else f"only with `sweeper.sampler: {sampler}`; "
                    + ("beats both" if value < wb and value < rnd else "does not beat both"),
                )
            )
    runs = len(seeds) * len(problems)
    cost = ", ".join(f"{m}: {seconds[m] / (runs * budget) * 1000:.0f} ms" for m, _ in METHODS)
    cost += " (wall time per suggestion incl. the function; 2 runs at once)"
    figures.append(Figure(section, "cost per suggestion (mean over all runs)", cost))
    harness.emit(figures, args.json)


if __name__ == "__main__":
    main()
