"""Hyperband savings: training steps spent to reach the unpruned sweep's best value, with pruning.

The same seeded random sweep of ``trainers.functions:multifidelity_branin`` (27 steps per trial,
a learning curve that converges to Branin's value) runs twice, one trial at a time in process
(``executor="local"``): without ``early_terminate`` and with W&B's hyperband rule. Steps are
counted from the trials' intermediate values in trial order; each run's cost is the steps spent
until a trial first reaches the unpruned sweep's best value. Repeated over several seeds.
"""

from __future__ import annotations

import os
import statistics
import sys
from pathlib import Path
from typing import Any

import harness
from harness import Figure

STEPS = 27
HYPERBAND = {"type": "hyperband", "max_iter": STEPS, "s": 2, "eta": 3}  # bands at 3 and 9 steps


def run_sweep(root: Path, seed: int, trials: int, early_terminate: dict[str, Any] | None) -> list[Any]:
    """Run the sweep to its end; its trials in order, as Optuna frozen trials."""
    import optuna

    import sweeper

    spec: dict[str, Any] = {
        "method": "random",
        "metric": {"name": "value", "goal": "minimize"},
        "parameters": {
            "x1": {"min": -5.0, "max": 10.0},
            "x2": {"min": 0.0, "max": 15.0},
            "steps": {"value": STEPS},
        },
        "run_cap": trials,
        "sweeper": {"trainer": "trainers.functions:multifidelity_branin", "seed": seed},
    }
    if early_terminate:
        spec["early_terminate"] = early_terminate
    storage = f"journal://{root / f'{seed}-{bool(early_terminate)}.log'}"
    sweep_id = sweeper.sweep(spec, storage=storage)
    sweeper.agent(sweep_id, storage=storage, executor="local")
    study = optuna.load_study(study_name=sweep_id, storage=sweeper.storage.urls.open_storage(storage))
    return sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)


def steps_to_reach(trials: list[Any], target: float) -> tuple[int, bool]:
    """Steps spent, in trial order, until a trial's value reaches ``target`` (and whether one did)."""
    spent = 0
    for trial in trials:
        spent += len(trial.intermediate_values)
        if trial.value is not None and trial.value <= target + 1e-12:
            return spent, True
    return spent, False


def main() -> None:
    args = harness.parse_args(__doc__.splitlines()[0])
    trials = 30 if args.quick else 80
    seeds = range(2 if args.quick else 5)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sys.path.insert(0, str(harness.REPO_ROOT))
    root = harness.scratch_dir("bench-hyperband-")
    os.chdir(root)  # the agent's .sweeper/ (tracker files, checkpoints) lands here
    ratios: list[float] = []
    totals: list[float] = []
    reached_all = True
    for seed in seeds:
        plain = run_sweep(root, seed, trials, None)
        pruned = run_sweep(root, seed, trials, HYPERBAND)
        best = min(t.value for t in plain if t.value is not None)
        plain_steps, _ = steps_to_reach(plain, best)
        pruned_steps, reached = steps_to_reach(pruned, best)
        reached_all = reached_all and reached
        ratios.append(pruned_steps / plain_steps)
        totals.append(
            sum(len(t.intermediate_values) for t in pruned) / sum(len(t.intermediate_values) for t in plain)
        )
        print(f"seed {seed}: {pruned_steps} vs {plain_steps} steps, reached={reached}", file=sys.stderr)
    ratio = statistics.median(ratios)
    section = "4. Hyperband savings"
    figures = [
        Figure(
            section,
            f"steps to reach the unpruned best, hyperband / none (median of {len(ratios)} seeds, "
            f"{trials} trials x {STEPS} steps)",
            f"{ratio:.2f}",
            "<= 0.33",
            ratio <= 1 / 3 and reached_all,
            f"per seed: {', '.join(f'{r:.2f}' for r in ratios)}; the pruned sweep reached the same best "
            f"value in {'every' if reached_all else 'NOT every'} seed; whole-sweep steps ratio "
            f"{statistics.median(totals):.2f}",
        )
    ]
    harness.emit(figures, args.json)


if __name__ == "__main__":
    main()
