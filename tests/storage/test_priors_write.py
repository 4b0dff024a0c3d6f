"""Priors are written as Optuna's own add_trials writes them, at once, before the sweep's budget."""

from __future__ import annotations

from datetime import datetime

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from sweeper.spec.reader import load_spec
from sweeper.storage import attrs as keys
from sweeper.storage import sweeps, work
from sweeper.storage.priors import Priors, add_trials
from sweeper.storage.urls import open_storage

DISTRIBUTIONS = {
    "lr": FloatDistribution(1e-4, 1e-1, log=True),
    "depth": IntDistribution(2, 8, step=2),
    "opt": CategoricalDistribution(["adam", "sgd"]),
}


def templates(n: int) -> list[FrozenTrial]:
    out = []
    for i in range(n):
        state = TrialState.PRUNED if i % 5 == 4 else TrialState.COMPLETE
        trial = optuna.trial.create_trial(
            state=state,
            values=[0.5 + i],
            params={"lr": 10 ** -(1 + i % 3), "depth": 2 + 2 * (i % 4), "opt": "sgd" if i % 2 else "adam"},
            distributions=DISTRIBUTIONS,
            user_attrs={keys.PRIOR: {"source": "export old.csv", "ref": f"row {i}"}, "config": {"i": i}},
            intermediate_values={1: 3.0 + i, 2: 2.0 + i} if i % 2 else {},
        )
        trial.datetime_start = datetime(2026, 1, 2, 3, 4, 5, 600000)
        trial.datetime_complete = datetime(2026, 1, 2, 3, 5, 5, 600000)
        out.append(trial)
    return out


def seen(trial: FrozenTrial) -> tuple[object, ...]:
    """What a prior is, as Optuna's readers hand it out (the retrying storage's create token aside)."""
    system = {k: v for k, v in trial.system_attrs.items() if k != "sweeper:create_token"}
    return (
        trial.number,
        trial.state,
        trial.values,
        trial.params,
        trial.distributions,
        trial.user_attrs,
        system,
        trial.intermediate_values,
        trial.datetime_start,
        trial.datetime_complete,
    )


def test_optuna_reads_back_what_its_own_add_trials_writes(any_storage_url: str) -> None:
    storage = open_storage(any_storage_url)
    minimize = [optuna.study.StudyDirection.MINIMIZE]
    ours = storage.create_new_study(minimize, "ours")
    theirs = storage.create_new_study(minimize, "theirs")
    add_trials(storage, ours, templates(12))
    optuna.load_study(study_name="theirs", storage=storage).add_trials(templates(12))

    fresh = open_storage(any_storage_url)  # read by a new process's storage, not from a cache
    got = [seen(t) for t in fresh.get_all_trials(ours)]
    assert got == [seen(t) for t in fresh.get_all_trials(theirs)]
    assert len(got) == 12
    assert got[4][1] == TrialState.PRUNED and got[4][2] == [4.5]


def test_a_prior_must_be_finished_and_its_params_agree() -> None:
    storage = optuna.storages.InMemoryStorage()
    study_id = storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], "s")
    waiting = optuna.trial.create_trial(state=TrialState.WAITING)
    with pytest.raises(ValueError, match="finished trial, got state WAITING"):
        add_trials(storage, study_id, [waiting])
    clash = [
        optuna.trial.create_trial(params={"x": 1.0}, distributions={"x": FloatDistribution(0, 2)}, value=1.0),
        optuna.trial.create_trial(
            params={"x": "a"}, distributions={"x": CategoricalDistribution(["a"])}, value=1.0
        ),
    ]
    with pytest.raises(ValueError):
        add_trials(storage, study_id, clash)
    assert storage.get_all_trials(study_id) == []


def test_a_new_sweep_holds_its_priors_first_and_its_whole_budget_after(any_storage_url: str) -> None:
    storage = open_storage(any_storage_url)
    spec = load_spec(
        {
            "method": "random",
            "metric": {"name": "loss"},
            "run_cap": 5,
            "parameters": {"lr": {"min": 0.0, "max": 1.0}},
        }
    )
    prior = optuna.trial.create_trial(
        params={"lr": 0.5},
        distributions={"lr": FloatDistribution(0.0, 1.0)},
        value=0.25,
        user_attrs={keys.PRIOR: {"source": "sweep old", "ref": "trial 3"}},
    )
    summary = ({"source": "sweep old", "read": 2, "loaded": 1, "skipped": {"not finished": 1}},)
    info = sweeps.create_sweep(storage, spec, priors=Priors((prior, prior), summary))
    assert work.queued(storage, info.study_id, spec.budget) == 0  # the budget is all ahead
    work.queue_through(storage, info.study_id, spec, 10**6)  # all of it, as agents queue it

    trials = open_storage(any_storage_url).get_all_trials(info.study_id)
    assert [(t.number, t.state, keys.is_prior(t)) for t in trials] == [
        (0, TrialState.COMPLETE, True),
        (1, TrialState.COMPLETE, True),
        *[(n, TrialState.WAITING, False) for n in range(2, 7)],
    ]
    assert storage.get_study_user_attrs(info.study_id)[keys.PRIORS] == [dict(summary[0])]
