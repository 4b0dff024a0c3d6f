"""An agent on a warm-started sweep: the priors teach its sampler, take none of its budget, and hold
no config of a distinct sweep (they are earlier results, not its runs)."""

from __future__ import annotations

import csv
import logging
import statistics
from collections import Counter
from pathlib import Path

import engine_trainers
import pytest
from optuna.trial import TrialState

import sweeper
from sweeper.search.strategy import choose_bayes_sampler
from sweeper.spec.reader import load_spec
from sweeper.storage import attrs as keys


def write_export(path: Path, points: list[float], *, best_at: float = 1.0) -> None:
    """A ``sweeper export`` CSV of complete trials of ``quadratic``'s loss, (x - best_at)^2 + 1/3."""
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(
            handle, fieldnames=["number", "state", "value.loss", "config.x", "config.steps"]
        )
        writer.writeheader()
        for number, x in enumerate(points):
            loss = (x - best_at) ** 2 + 1.0 / 3
            writer.writerow(
                {"number": number, "state": "complete", "value.loss": loss, "config.x": x, "config.steps": 3}
            )


def test_priors_take_none_of_the_budget(project: Path, any_storage_url: str) -> None:
    write_export(project / "old.csv", [i / 10 for i in range(12)])
    spec = {
        "method": "bayes",
        "metric": {"name": "loss"},
        "run_cap": 4,
        "parameters": {"x": {"min": 0.0, "max": 2.0}, "steps": {"value": 3}},
        "sweeper": {"seed": 1, "warm_start": [{"export": "old.csv"}]},
    }
    sweep_id = sweeper.sweep(spec, storage=any_storage_url)
    summary = sweeper.agent(
        sweep_id, function=engine_trainers.quadratic, storage=any_storage_url, executor="local"
    )
    assert (summary.ran, summary.complete, summary.state) == (4, 4, "finished")
    results = sweeper.load(sweep_id, storage=any_storage_url)
    assert len(results.priors()) == 12 and results.counts()["complete"] == 4
    assert [t.number for t in results.trials if not t.is_prior] == [12, 13, 14, 15]


def test_a_distinct_sweep_may_run_the_configs_of_its_priors(
    project: Path, journal_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Priors cover the whole 4-config space; the sweep still runs each config once, without a
    # lost claim: a prior is no run of this sweep.
    write_export(project / "old.csv", [0.0, 0.5, 1.0, 1.5])
    spec = {
        "method": "bayes",
        "metric": {"name": "loss"},
        "parameters": {"x": {"values": [0.0, 0.5, 1.0, 1.5]}, "steps": {"value": 3}},
        "sweeper": {"seed": 2, "warm_start": [{"export": "old.csv"}]},
    }
    sweep_id = sweeper.sweep(spec, storage=journal_url)
    with caplog.at_level(logging.WARNING, logger="sweeper"):
        summary = sweeper.agent(
            sweep_id, function=engine_trainers.quadratic, storage=journal_url, executor="local"
        )
    assert (summary.ran, summary.end.name) == (4, "SWEEP_EXHAUSTED")
    own = [t for t in sweeper.load(sweep_id, storage=journal_url).trials if not t.is_prior]
    assert Counter(t.config["x"] for t in own) == Counter({0.0: 1, 0.5: 1, 1.0: 1, 1.5: 1})
    assert not [r for r in caplog.records if "claimed" in r.getMessage()]


def test_the_sampler_learns_from_the_priors(project: Path) -> None:
    # 30 priors say the loss is lowest near x = 0.8: TPE, past its start-up trials thanks to them,
    # proposes there at once, where a cold sweep's first trials are W&B's uniform draws.
    write_export(project / "old.csv", [i / 29 * 2.0 for i in range(30)], best_at=0.8)
    base = {
        "method": "bayes",
        "metric": {"name": "loss"},
        "run_cap": 5,
        "parameters": {"x": {"min": 0.0, "max": 2.0}, "steps": {"value": 3}},
    }
    distances = {}
    for warm in (False, True):
        settings = {"sampler": "tpe", "seed": 5, **({"warm_start": [{"export": "old.csv"}]} if warm else {})}
        url = f"sqlite:///{project / f'{warm}.db'}"
        sweep_id = sweeper.sweep({**base, "sweeper": settings}, storage=url)
        sweeper.agent(sweep_id, function=engine_trainers.quadratic, storage=url, executor="local")
        own = [t for t in sweeper.load(sweep_id, storage=url).trials if not t.is_prior]
        distances[warm] = statistics.median(abs(t.config["x"] - 0.8) for t in own)
    assert distances[True] < 0.15 < distances[False]


def test_the_gp_limit_counts_the_priors() -> None:
    pytest.importorskip("torch")  # without torch, bayes is TPE whatever the count
    spec = load_spec(
        {
            "method": "bayes",
            "metric": {"name": "loss"},
            "run_cap": 100,
            "parameters": {"x": {"min": 0.0, "max": 1.0}},
        }
    )
    assert choose_bayes_sampler(spec, parallelism=1) == "gp"
    assert choose_bayes_sampler(spec, parallelism=1, priors=250) == "tpe"


def test_a_pruned_prior_keeps_its_value_and_state(project: Path, journal_url: str) -> None:
    # Stopped trials of the source rank and teach as stopped trials (W&B's rule for stopped runs).
    spec = {
        "method": "random",
        "metric": {"name": "loss"},
        "run_cap": 1,
        "parameters": {"x": {"min": 0.0, "max": 2.0}},
    }
    with (project / "old.csv").open("w", newline="") as handle:
        handle.write("number,state,value.loss,config.x\n0,pruned,0.9,0.5\n1,complete,0.7,1.5\n")
    sweep_id = sweeper.sweep(spec, storage=journal_url, warm_start="export:old.csv")
    results = sweeper.load(sweep_id, storage=journal_url)
    frozen = {t.number: t for t in results.frozen_trials if keys.is_prior(t)}
    assert (frozen[0].state, frozen[0].values) == (TrialState.PRUNED, [0.9])
    assert [t.number for t in results.best(None)] == [1]
    assert [t.number for t in results.best(None, include_stopped=True)] == [1, 0]
