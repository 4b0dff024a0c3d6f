"""Conditional search: median best after 60 trials over seeds, bayes on a conditional space vs random
vs bayes on the same space flattened.

The problem is ``trainers.functions.model_family``: a choice of model family (svm, forest,
boosting), each with its own parameters and best value (0.3, 0.2, 0.1), the spec being
``sweeps/conditional.yaml``. The samplers are the agent's (``make_sampler``), each trial suggested
as the agent suggests it (``queue.suggest_params``: define-by-run over the active parameters), in a
plain Optuna ask/tell loop, one process per run, no Ray.

"Flattened" is what a W&B user writes today: the same parameters without ``sweeper_if``, every
family's settings drawn in every trial, the trainer ignoring those of the other families; our bayes
then models all nine parameters on every trial (multivariate TPE, as for any spec).
"""

from __future__ import annotations

import copy
import os
import statistics
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import harness
from harness import Figure, fmt

sys.path.insert(0, str(harness.REPO_ROOT))  # trainers/ is a project directory, not an installed package

from trainers.functions import MODEL_FAMILIES, MODEL_FAMILY_MINIMUM, model_family_value

SPEC_PATH = harness.REPO_ROOT / "sweeps" / "conditional.yaml"
BUDGET = 60
METHODS = ("sweeper bayes (conditional)", "sweeper random (conditional)", "sweeper bayes (flattened)")


def _spec(method: str, seed: int, flattened: bool) -> Any:
    from sweeper.spec.loader import read_yaml
    from sweeper.spec.reader import load_spec

    raw = copy.deepcopy(dict(read_yaml(SPEC_PATH)))
    raw.update(method=method, run_cap=BUDGET)
    raw["sweeper"] = {"seed": seed}
    if flattened:
        for settings in raw["parameters"].values():
            settings.pop("sweeper_if", None)
    return load_spec(raw)


def _active_only(config: dict[str, Any]) -> dict[str, Any]:
    """What a trainer of the flattened space uses: the chosen family's settings only."""
    model = config["model"]
    kept = {"model": model, model: config[model]}
    if model in ("svm", "forest"):
        kept["class_weight"] = config["class_weight"]
    return kept


def best_of(method_index: int, seed: int) -> tuple[float, float, float]:
    """(best loss, share of trials on the best family, seconds) of one run; runs in a pool worker."""
    import optuna

    from sweeper.search.strategy import make_sampler
    from sweeper.storage.queue import suggest_params

    warnings.filterwarnings("ignore")  # Optuna's experimental notices (multivariate, group)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    method = METHODS[method_index]
    flattened = method.endswith("(flattened)")
    spec = _spec("random" if "random" in method else "bayes", seed, flattened)
    start = time.perf_counter()
    study = optuna.create_study(direction="minimize", sampler=make_sampler(spec, parallelism=1))
    on_best = 0
    for _ in range(BUDGET):
        trial = study.ask()
        config = spec.space.to_config(suggest_params(trial, spec.space))
        if flattened:
            config = _active_only(config)
        on_best += config["model"] == "boosting"
        study.tell(trial, model_family_value(config))
    return float(study.best_value), on_best / BUDGET, time.perf_counter() - start


def main() -> None:
    args = harness.parse_args(__doc__.splitlines()[0])
    seeds = list(range(3 if args.quick else int(os.environ.get("BENCH_QUALITY_SEEDS", "10"))))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        futures = {(m, s): pool.submit(best_of, m, s) for m in range(len(METHODS)) for s in seeds}
    medians: dict[str, float] = {}
    shares: dict[str, float] = {}
    seconds: dict[str, float] = {}
    for m, method in enumerate(METHODS):
        outcomes = [futures[(m, s)].result() for s in seeds]
        medians[method] = statistics.median(best for best, _, _ in outcomes)
        shares[method] = statistics.mean(share for _, share, _ in outcomes)
        seconds[method] = sum(t for _, _, t in outcomes) / (len(seeds) * BUDGET)
        print(f"{method:30} median best {medians[method]:.4g}", file=sys.stderr)

    section = "7. Conditional parameters"
    families = ", ".join(f"{name} ({len(p)})" for name, p in MODEL_FAMILIES.items())
    ours = medians["sweeper bayes (conditional)"]
    rnd = medians["sweeper random (conditional)"]
    flat = medians["sweeper bayes (flattened)"]
    figures = [
        Figure(
            section,
            f"model family ({families} parameters): median best after {BUDGET} trials, {len(seeds)} "
            f"seeds (minimum {MODEL_FAMILY_MINIMUM:g})",
            ", ".join(f"{m}: {fmt(v, 4)}" for m, v in medians.items()),
        ),
        Figure(
            section,
            "bayes on the conditional space vs random / vs bayes on the flattened space",
            f"{fmt(ours, 4)} vs {fmt(rnd, 4)} / {fmt(flat, 4)}",
            "beats both",
            ours < rnd and ours < flat,
        ),
        Figure(
            section,
            "share of trials spent on the best family (boosting), mean over seeds",
            ", ".join(f"{m}: {shares[m]:.0%}" for m in METHODS),
        ),
        Figure(
            section,
            "cost per suggestion (mean, incl. the function)",
            ", ".join(f"{m}: {seconds[m] * 1000:.0f} ms" for m in METHODS),
        ),
    ]
    harness.emit(figures, args.json)


if __name__ == "__main__":
    main()
