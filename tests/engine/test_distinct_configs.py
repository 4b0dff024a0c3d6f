"""A finite space's random and bayes sweeps run each config at most once, however many agents race,
and finish when the space is exhausted; ``sweeper.distinct: false`` keeps W&B's repeats."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any

import engine_trainers
import optuna
import pytest
from optuna.trial import TrialState
from racing import race, together

import sweeper
from sweeper.errors import SpecError
from sweeper.storage import claims, sweeps
from sweeper.storage.urls import open_storage

# 4 x 3 x 4 = 48 configs; quadratic reads x (steps: 1 keeps each trial to one report).
SPACE_48 = {
    "x": {"values": [0.0, 0.5, 1.0, 1.5]},
    "y": {"values": ["a", "b", "c"]},
    "z": {"min": 1, "max": 4},
    "steps": {"value": 1},
}


def _spec(
    method: str, run_cap: int | None, parameters: dict[str, Any] = SPACE_48, **settings: Any
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "method": method,
        "metric": {"name": "loss"},
        "parameters": parameters,
        "sweeper": {"seed": 11, **settings},
    }
    if run_cap is not None:
        spec["run_cap"] = run_cap
    return spec


def _configs(sweep_id: str, url: str) -> tuple[list[optuna.trial.FrozenTrial], Counter[str]]:
    trials = optuna.load_study(study_name=sweep_id, storage=open_storage(url)).trials
    spec = sweeps.get_sweep(open_storage(url), sweep_id).spec
    return trials, Counter(spec.space.config_key(t.params) for t in trials)


@pytest.mark.postgres
@pytest.mark.parametrize("method", ["random", "bayes"])
@pytest.mark.parametrize("run_cap", [48, 60])
def test_four_agents_on_postgres_run_each_config_of_a_finite_space_once(
    postgres_url: str, method: str, run_cap: int
) -> None:
    sweep_id = sweeper.sweep(_spec(method, run_cap), storage=postgres_url)
    results = race(sweep_id, postgres_url)

    trials, configs = _configs(sweep_id, postgres_url)
    # run_cap 60 on 48 configs: 48 trials, then the space is exhausted and the sweep finished.
    assert len(trials) == 48 and len(configs) == 48 and set(configs.values()) == {1}
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert sum(r.ran for r in results) == 48
    assert sweeps.get_sweep(open_storage(postgres_url), sweep_id).state == "finished"
    assert "sweep exhausted" in {r.ended for r in results}


@pytest.mark.parametrize("kind", ["journal", "sqlite"])
def test_a_conditional_finite_space_is_exhausted_without_repeats(project: Path, kind: str) -> None:
    url = f"journal://{project / 'j.log'}" if kind == "journal" else f"sqlite:///{project / 'race.db'}"
    parameters = {
        "x": {"values": [0.0, 0.5, 1.0, 1.5]},
        "mode": {"values": ["p", "q"]},
        "k": {"min": 1, "max": 3, "sweeper_if": {"mode": ["p"]}},
        "w": {"values": ["u", "v"], "sweeper_if": {"mode": ["q"]}},
        "steps": {"value": 1},
    }
    # No run_cap: a finite space ends by itself, after x (4) * [p * k (3) + q * w (2)] = 20 configs.
    spec = _spec("random", None, parameters)
    assert sweeper.load_spec(spec).budget == 20
    sweep_id = sweeper.sweep(spec, storage=url)
    race(sweep_id, url)

    trials, configs = _configs(sweep_id, url)
    assert len(trials) == 20 and len(configs) == 20 and set(configs.values()) == {1}
    assert all(("k" in t.params) == (t.params["mode"] == "p") for t in trials)
    assert all(("w" in t.params) == (t.params["mode"] == "q") for t in trials)
    assert sweeps.get_sweep(open_storage(url), sweep_id).state == "finished"


def test_distinct_false_keeps_wandbs_draws_with_replacement(project: Path) -> None:
    url = f"sqlite:///{project / 'wb.db'}"
    small = {"x": {"values": [0.0, 1.0]}, "steps": {"value": 1}}
    spec = _spec("random", 12, small, distinct=False)
    assert sweeper.load_spec(spec).budget == 12
    sweep_id = sweeper.sweep(spec, storage=url)
    summary = sweeper.agent(sweep_id, function=engine_trainers.quadratic, storage=url, executor="local")
    assert summary.ran == 12
    trials, configs = _configs(sweep_id, url)
    assert len(trials) == 12 and len(configs) == 2  # two configs, drawn again and again as W&B does
    # The default: the same sweep stops after its two configs.
    distinct = sweeper.sweep(_spec("random", 12, small), storage=url)
    assert sweeper.agent(distinct, function=engine_trainers.quadratic, storage=url, executor="local").ran == 2


def test_distinct_must_be_a_boolean() -> None:
    with pytest.raises(SpecError, match=r"sweeper\.distinct: must be true or false, got 'no'"):
        sweeper.load_spec(_spec("random", 10, distinct="no"))


def test_finite_size_and_budget() -> None:
    def load(parameters: dict[str, Any], method: str = "random", run_cap: int | None = None) -> Any:
        return sweeper.load_spec(_spec(method, run_cap, parameters))

    assert load(SPACE_48).space.finite_size() == 48
    assert load(SPACE_48).budget == 48 and load(SPACE_48, run_cap=10).budget == 10
    assert load(SPACE_48, "bayes", run_cap=60).budget == 48
    # Equal values count once (1 and 1.0), quantized laws count their multiples of q.
    assert load({"a": {"values": [1, 1.0, True]}}).space.finite_size() == 2
    assert load({"q": {"distribution": "q_uniform", "min": 0, "max": 1, "q": 0.25}}).space.finite_size() == 5
    assert (
        load(
            {"q": {"distribution": "q_log_uniform_values", "min": 1, "max": 100, "q": 10}}
        ).space.finite_size()
        == 11
    )
    # A continuous parameter: no finite space, run_cap (or nothing) bounds the sweep as before.
    continuous = {**SPACE_48, "lr": {"min": 0.0, "max": 1.0}}
    assert load(continuous).space.finite_size() is None
    assert load(continuous).budget is None and not load(continuous).is_budgeted
    assert load(continuous, run_cap=7).budget == 7
    # Every finite config is enumerated once.
    space = load(SPACE_48).space
    assert len({space.config_key(p) for p in space.iter_finite()}) == 48


def _claim_storage(kind: str, project: Path, request: pytest.FixtureRequest) -> str:
    if kind == "sqlite":
        return f"sqlite:///{project / 'claims.db'}"
    if kind == "journal":
        return f"journal://{project / 'claims.log'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.mark.postgres
@pytest.mark.parametrize("kind", ["sqlite", "journal", "postgres", "memory"])
def test_each_config_claim_has_exactly_one_winner_under_a_race(
    kind: str, project: Path, request: pytest.FixtureRequest
) -> None:
    keys = [f"config-{i}" for i in range(25)]
    if kind == "memory":
        shared = optuna.create_study()
        studies = [shared] * 8
    else:
        url = _claim_storage(kind, project, request)
        name = optuna.create_study(storage=open_storage(url)).study_name
        # Each racer has its own storage object (its own connection, its own journal reader).
        studies = [optuna.load_study(study_name=name, storage=open_storage(url)) for _ in range(8)]
    won: dict[int, list[str]] = {racer: [] for racer in range(8)}
    orders = [list(keys) for _ in range(8)]
    for racer, order in enumerate(orders):
        random.Random(racer).shuffle(order)

    def race(racer: int) -> None:
        for key in orders[racer]:
            if claims.claim_config(studies[racer], key, trial_number=racer):
                won[racer].append(key)

    together(race, 8, timeout_s=120)
    winners = Counter(key for keys_won in won.values() for key in keys_won)
    assert set(winners) == set(keys) and set(winners.values()) == {1}
    # A claim is idempotent for its holder (a retried write recognises its own) and final for others.
    for racer, keys_won in won.items():
        for key in keys_won[:3]:
            assert claims.claim_config(studies[racer], key, trial_number=racer)
            assert not claims.claim_config(studies[racer], key, trial_number=racer + 100)
