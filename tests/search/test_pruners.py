"""The hyperband pruner against W&B's own engine (package ``sweeps``) as an oracle.

``sweeps`` 0.3 implements the rule as documented (1-based iterations, ``strict``); 0.2, which is
what resolves next to numpy 2, checks the value *after* each band and has no ``strict``. With 0.2
the oracle is driven with one sentinel row prepended to every history, which turns its 0-based
indexing into the documented 1-based one exactly (the sentinel is never a run's best value); strict
mode is then checked by its properties and worked examples instead.
"""

from __future__ import annotations

import itertools
import math
import sys
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import optuna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from optuna.trial import TrialState

from sweeper.errors import UsageError
from sweeper.search.pruners import WandbHyperbandPruner, hyperband_bands, learning_curve, make_pruner
from sweeper.spec.model import EarlyTerminate

with warnings.catch_warnings():
    # sweeps 0.2 declares a pydantic-v1 config that pydantic 2 warns about at import.
    warnings.simplefilter("ignore")
    from sweeps.config.schema import dereferenced_sweep_config_jsonschema
    from sweeps.hyperband_stopping import hyperband_stop_runs
    from sweeps.run import RunState, SweepRun

ORACLE_HAS_STRICT = (
    "strict" in dereferenced_sweep_config_jsonschema["definitions"]["hyperband_stopping"]["properties"]
)
OTHER_STATES = (RunState.finished, RunState.killed, RunState.crashed, RunState.failed)
optuna.logging.set_verbosity(optuna.logging.WARNING)


def oracle_stops(
    curves: Sequence[Sequence[float]],
    running: Sequence[bool],
    early_terminate: dict[str, Any],
    goal: str,
) -> set[int]:
    """Indices of the running runs W&B's engine stops, for runs with these metric histories."""
    et = dict(early_terminate, type="hyperband")
    sentinel: list[float] = []
    if not ORACLE_HAS_STRICT:
        assert et.pop("strict", True) is False, "this oracle version only knows the non-strict rule"
        sentinel = [-sys.float_info.max if goal == "maximize" else sys.float_info.max]
    runs = [
        SweepRun(
            name=str(i),
            state=RunState.running if running[i] else OTHER_STATES[i % len(OTHER_STATES)],
            # By alias: under pydantic 2, sweeps 0.2 silently drops ``history=``.
            sampledHistory=[{"loss": v} for v in [*sentinel, *curve]],
        )
        for i, curve in enumerate(curves)
    ]
    config = {
        "method": "random",
        "metric": {"name": "loss", "goal": goal},
        "early_terminate": et,
        "parameters": {"x": {"values": [1]}},
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stopped = hyperband_stop_runs(runs, config)
    return {int(run.name) for run in stopped}


def study_with_curves(
    curves: Sequence[Sequence[float]], goal: str, steps: Sequence[int] | None = None
) -> optuna.Study:
    """An in-memory study holding one finished trial per curve, values at the given steps."""
    study = optuna.create_study(direction=goal)
    for i, curve in enumerate(curves):
        at = list(steps or range(1, len(curve) + 1))[: len(curve)]
        state = TrialState.PRUNED if i % 3 == 1 else TrialState.COMPLETE
        study.add_trial(
            optuna.trial.create_trial(
                state=state,
                value=None if state == TrialState.PRUNED else 0.0,
                intermediate_values=dict(zip(at, curve, strict=True)),
                distributions={},
                params={},
            )
        )
    return study


def pruner_stops(
    curves: Sequence[Sequence[float]], running: Sequence[bool], early_terminate: dict[str, Any], goal: str
) -> set[int]:
    pruner = WandbHyperbandPruner(**early_terminate)
    study = study_with_curves(curves, goal)
    trials = study.get_trials()
    return {i for i, is_running in enumerate(running) if is_running and pruner.prune(study, trials[i])}


# -- bands --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("min_iter", "max_iter", "s", "eta", "expected"),
    [
        (None, 27, 2, 3, [3, 9]),
        (None, 81, 3, 3, [3, 9, 27]),
        (None, 81, 10, 3, [1, 3, 9, 27]),
        (None, 5, 2, 2, [1, 2]),
        (3, 81, 2, 3, [9, 27]),  # max_iter wins over min_iter
        (2, None, None, 2.5, [2, 5, 12, 31]),
    ],
)
def test_hyperband_bands_worked_examples(min_iter, max_iter, s, eta, expected):
    assert hyperband_bands(min_iter, max_iter, s, eta)[: len(expected)] == expected


def test_min_iter_bands_grow_geometrically():
    bands = hyperband_bands(3, None, None, 3)
    assert bands[:5] == [3, 9, 27, 81, 243]
    # W&B lists 100 bands; we stop at the largest iteration count that can ever be reached.
    assert bands[-1] < 2**62 <= bands[-1] * 3
    assert all(earlier < later for earlier, later in itertools.pairwise(bands))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"min_iter": None, "max_iter": None, "s": None, "eta": 3}, "max_iter with s, or min_iter"),
        ({"min_iter": None, "max_iter": 2, "s": 2, "eta": 3}, "gives no band"),
        ({"min_iter": None, "max_iter": 27, "s": None, "eta": 3}, "needs s"),
        ({"min_iter": 3, "max_iter": None, "s": None, "eta": 1}, "eta must be > 1"),
        ({"min_iter": 0, "max_iter": None, "s": None, "eta": 3}, "min_iter must be >= 1"),
    ],
)
def test_hyperband_bands_rejects_impossible_settings(kwargs, match):
    with pytest.raises(UsageError, match=match):
        hyperband_bands(**kwargs)


# -- the rule against the oracle ----------------------------------------------------------------


def test_wandb_docstring_example_matches_oracle():
    curves = [[10, 9], [10, 10], [10, 8, 8], [10, 7, 7], [10, 6, 6]]
    running = [False, True, True, True, False]
    et = {"max_iter": 5, "eta": 2, "s": 2, "strict": False}
    assert pruner_stops(curves, running, et, "minimize") == oracle_stops(curves, running, et, "minimize")
    assert pruner_stops(curves, running, et, "minimize") == {1}


def test_strict_compares_the_value_at_the_band():
    # Band 3: third values are 5, 6, 7 -> threshold sorted[int(3 / 3)] = 6. The last run is worse
    # than 6 at iteration 3 (strict stops it) but its best value so far, 1, is not (non-strict keeps it).
    curves = [[9, 9, 5], [9, 9, 6], [1, 9, 7]]
    running = [False, False, True]
    assert pruner_stops(curves, running, {"min_iter": 3, "strict": True}, "minimize") == {2}
    assert pruner_stops(curves, running, {"min_iter": 3, "strict": False}, "minimize") == set()


def test_run_past_last_band_keeps_being_checked_against_it():
    curves = [[1, 1, 1, 1, 1], [2, 2, 2, 2, 2], [3, 3, 3, 3, 3]]
    running = [False, False, True]
    et = {"max_iter": 9, "s": 1, "strict": False}  # one band: 3
    assert pruner_stops(curves, running, et, "minimize") == {2}
    assert pruner_stops(curves, running, et, "minimize") == oracle_stops(curves, running, et, "minimize")


curve_values = st.one_of(
    st.integers(-5, 5).map(float),  # ties matter for "strictly greater"
    st.floats(-100, 100, allow_nan=False),
    st.sampled_from([math.nan, math.inf, -math.inf]),  # dropped: not iterations
    st.sampled_from([1.7e308, -1.7e308]),  # finite, but two of them sum past a float's range
)


@settings(max_examples=150, deadline=None)
@given(
    curves=st.lists(st.lists(curve_values, max_size=12), min_size=1, max_size=8),
    running_bits=st.lists(st.booleans(), min_size=8, max_size=8),
    form=st.sampled_from(
        [
            {"min_iter": 1, "eta": 2},
            {"min_iter": 2, "eta": 3},
            {"min_iter": 1, "eta": 1.5},
            {"max_iter": 9, "s": 2, "eta": 3},
            {"max_iter": 12, "s": 3, "eta": 2},
            {"max_iter": 27, "s": 3, "eta": 3},
        ]
    ),
    goal=st.sampled_from(["minimize", "maximize"]),
    strict=st.booleans() if ORACLE_HAS_STRICT else st.just(False),
)
def test_random_learning_curves_match_oracle(curves, running_bits, form, goal, strict):
    running = running_bits[: len(curves)]
    et = {**form, "strict": strict}
    assert pruner_stops(curves, running, et, goal) == oracle_stops(curves, running, et, goal)


@pytest.mark.parametrize("goal", ["minimize", "maximize"])
def test_seeded_random_sweeps_match_oracle(goal):
    rng = np.random.default_rng(42)
    with_stops = 0
    for _ in range(100):
        n = int(rng.integers(2, 12))
        curves = [list(rng.normal(size=int(rng.integers(0, 30))).cumsum()) for _ in range(n)]
        running = list(rng.random(n) < 0.7)
        et = {"min_iter": int(rng.integers(1, 4)), "eta": float(rng.choice([2, 3, 4])), "strict": False}
        expected = oracle_stops(curves, running, et, goal)
        assert pruner_stops(curves, running, et, goal) == expected
        with_stops += bool(expected)
    assert with_stops >= 30  # the comparison is not vacuous


@settings(max_examples=100, deadline=None)
@given(
    curves=st.lists(st.lists(st.integers(0, 6).map(float), max_size=10), min_size=1, max_size=8),
    goal=st.sampled_from(["minimize", "maximize"]),
)
def test_strict_stops_everything_non_strict_stops(curves, goal):
    running = [True] * len(curves)
    strict = pruner_stops(curves, running, {"min_iter": 1, "eta": 2, "strict": True}, goal)
    lenient = pruner_stops(curves, running, {"min_iter": 1, "eta": 2, "strict": False}, goal)
    assert lenient <= strict


def test_iterations_follow_step_order_and_skip_non_finite_values():
    study = optuna.create_study()
    trial = optuna.trial.create_trial(
        state=TrialState.COMPLETE,
        value=0.0,
        intermediate_values={30: 3.0, 10: 1.0, 20: math.nan, 25: 2.0},
        distributions={},
        params={},
    )
    study.add_trial(trial)
    assert learning_curve(study.trials[0]) == [1.0, 2.0, 3.0]


# -- a whole study ------------------------------------------------------------------------------

ITERATIONS = 27
BANDS_27 = {"max_iter": 27, "s": 2, "eta": 3}  # bands 3 and 9


def known_curves(n: int, seed: int) -> list[list[float]]:
    """Noisy decaying losses: trial i plateaus at its own level, so some are clearly worse early."""
    rng = np.random.default_rng(seed)
    levels = rng.uniform(0.1, 1.0, size=n)
    speeds = rng.uniform(0.5, 3.0, size=n)
    k = np.arange(1, ITERATIONS + 1)
    return [list(levels[i] + speeds[i] / k + rng.normal(0, 0.02, size=ITERATIONS)) for i in range(n)]


def run_study(
    curves: list[list[float]],
    pruner: optuna.pruners.BasePruner,
    workers: int,
    oracle: dict[str, Any] | None = None,
) -> tuple[dict[int, int], int]:
    """Ask/tell with ``workers`` trials in flight, round-robin one value each.

    With ``oracle`` (early_terminate settings), checks every decision against W&B's verdict on
    the same snapshot.
    Returns {trial: iteration it was pruned at} and the steps spent.
    """
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage(), pruner=pruner)
    pending = list(range(len(curves)))
    active: dict[int, optuna.Trial] = {}
    done: set[int] = set()
    progress = dict.fromkeys(range(len(curves)), 0)
    pruned_at: dict[int, int] = {}
    steps = 0
    while pending or active:
        while pending and len(active) < workers:
            index = pending.pop(0)
            active[index] = study.ask()
        for index in list(active):
            trial = active[index]
            value = curves[index][progress[index]]
            progress[index] += 1
            steps += 1
            trial.report(value, step=progress[index] * 10)  # the user's steps: 10, 20, ...
            decision = trial.should_prune()
            if oracle is not None:
                numbers = [i for i in range(len(curves)) if i in active or i in done]
                snapshot = [curves[i][: progress[i]] for i in numbers]
                is_running = [i in active for i in numbers]
                expected = numbers.index(index) in oracle_stops(snapshot, is_running, oracle, "minimize")
                assert decision == expected, f"trial {index} at iteration {progress[index]}"
            if decision:
                study.tell(trial, state=TrialState.PRUNED)
                pruned_at[index] = progress[index]
            elif progress[index] == ITERATIONS:
                study.tell(trial, min(curves[index][: progress[index]]))
            else:
                continue
            done.add(index)
            del active[index]
    return pruned_at, steps


@pytest.mark.parametrize("strict", [False, True])
@pytest.mark.parametrize("workers", [1, 4])
def test_hyperband_study_prunes_what_wandb_stops_and_saves_steps(workers, strict):
    curves = known_curves(12, seed=workers)
    settings = {**BANDS_27, "strict": strict}
    oracle = settings if ORACLE_HAS_STRICT or not strict else None
    pruned_at, steps = run_study(curves, WandbHyperbandPruner(**settings), workers, oracle)
    baseline_pruned, baseline_steps = run_study(curves, optuna.pruners.NopPruner(), workers)
    assert baseline_pruned == {}
    assert baseline_steps == 12 * ITERATIONS
    assert pruned_at, "hyperband stopped nothing"
    assert min(pruned_at.values()) >= 3  # nothing is checked before the first band
    assert steps == baseline_steps - sum(ITERATIONS - at for at in pruned_at.values())
    assert steps < 0.9 * baseline_steps


# -- make_pruner --------------------------------------------------------------------------------


def test_make_pruner_maps_each_type():
    assert isinstance(make_pruner(None, ["minimize"]), optuna.pruners.NopPruner)
    hyper = make_pruner(EarlyTerminate(type="hyperband", min_iter=3, eta=3, strict=False), ["maximize"])
    assert isinstance(hyper, WandbHyperbandPruner)
    assert (hyper.bands[:3], hyper.strict) == ([3, 9, 27], False)
    asha = make_pruner(
        EarlyTerminate(type="asha", options={"min_resource": 2, "reduction_factor": 3}), ["minimize"]
    )
    assert isinstance(asha, optuna.pruners.SuccessiveHalvingPruner)
    median = make_pruner(EarlyTerminate(type="median", options={"n_startup_trials": 2}), ["minimize"])
    assert isinstance(median, optuna.pruners.MedianPruner)


def test_make_pruner_rejects_several_objectives_and_bad_options():
    with pytest.raises(UsageError, match="exactly one objective"):
        make_pruner(EarlyTerminate(type="median"), ["minimize", "maximize"])
    with pytest.raises(UsageError, match=r"early_terminate\.options for asha"):
        make_pruner(EarlyTerminate(type="asha", options={"bogus": 1}), ["minimize"])
    assert isinstance(make_pruner(None, ["minimize", "maximize"]), optuna.pruners.NopPruner)


def test_median_option_reaches_optuna():
    pruner = make_pruner(EarlyTerminate(type="median", options={"n_startup_trials": 0}), ["minimize"])
    study = optuna.create_study(pruner=pruner)
    for value in (1.0, 2.0):
        trial = study.ask()
        trial.report(value, step=1)
        study.tell(trial, value)
    trial = study.ask()
    trial.report(5.0, step=1)
    assert trial.should_prune()
