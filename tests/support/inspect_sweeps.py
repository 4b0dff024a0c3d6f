"""Sweeps built the way the engine records them (contracts.md "Storage and studies"), to inspect.

Helpers live here, under a name of their own, so test modules import them unambiguously.

The studies are made with ``sweeper.storage.sweeps.create_sweep``; their trials carry the user attrs
the engine writes (config, metrics, tracker_runs, duration_s, agent, host, fail_reason, attempt) and a
learning curve of the first objective as intermediate values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from sweeper.spec.reader import load_spec
from sweeper.storage import attrs as keys
from sweeper.storage import queue, sweeps, work
from sweeper.storage.urls import open_storage

SPEC: dict[str, Any] = {
    "method": "random",
    "name": "mnist-lr",
    "metric": {"name": "loss", "goal": "minimize"},
    "run_cap": 20,
    "parameters": {
        "lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-1},
        "model": {"parameters": {"depth": {"values": [2, 4, 8]}, "width": {"min": 16, "max": 128}}},
        "seed": {"value": 0},
    },
}
MULTI_SPEC: dict[str, Any] = {
    "method": "random",
    "name": "mnist-pareto",
    "metrics": [{"name": "loss", "goal": "minimize"}, {"name": "accuracy", "goal": "maximize"}],
    "parameters": {
        "lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-1},
        "model": {"parameters": {"depth": {"values": [2, 4, 8]}, "width": {"min": 16, "max": 128}}},
    },
}
DISTRIBUTIONS = {
    "lr": FloatDistribution(1e-4, 1e-1, log=True),
    "model.depth": CategoricalDistribution([2, 4, 8]),
    "model.width": IntDistribution(16, 128),
}


def config_of(params: Mapping[str, Any]) -> dict[str, Any]:
    """The nested config the trainer sees for ``params`` (the spec's constant ``seed`` added)."""
    return {
        "lr": params["lr"],
        "model": {"depth": params["model.depth"], "width": params["model.width"]},
        "seed": 0,
    }


def loss_of(params: Mapping[str, Any]) -> float:
    """A smooth objective of the params, best near lr = 0.01 with deep models."""
    return (math.log10(params["lr"]) + 2.0) ** 2 + 1.0 / params["model.depth"] + params["model.width"] / 1000


def curve_of(final: float, steps: int = 5) -> dict[int, float]:
    """A decreasing learning curve that ends at ``final`` (the best value, as the objective is)."""
    return {step: final + (steps - step) * 0.1 for step in range(1, steps + 1)}


def engine_attrs(number: int, params: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    """The trial user attrs the engine writes when a trial ends."""
    attrs: dict[str, Any] = {
        "config": config_of(params),
        "attempt": 0,
        "agent": "agent-a",
        "host": "node-1",
        "tracker_runs": {"jsonl": f".sweeper/sweeps/x/trial-{number}/metrics.jsonl"},
        "tracker_errors": [],
    }
    attrs.update(extra)
    return attrs


@dataclass
class Built:
    """A sweep made for a test: where it lives and what went in."""

    url: str
    sweep_id: str
    storage: optuna.storages.BaseStorage
    study: optuna.Study


def create(url: str, spec: Mapping[str, Any]) -> Built:
    """A new sweep from ``spec`` in the storage at ``url``."""
    storage = open_storage(url)
    loaded = load_spec(spec)
    info = sweeps.create_sweep(storage, loaded)
    sampler = optuna.samplers.RandomSampler(seed=0)
    study = sweeps.load_study(storage, info.id, sampler=sampler)
    if loaded.budget is not None:  # its first block of budget tokens queued, as the first agent does
        block = min(work.QUEUE_BLOCK, loaded.budget)
        for _ in range(block):
            queue.enqueue(study, {}, {keys.ATTEMPT: 0})
        storage.set_study_system_attr(study._study_id, keys.QUEUED, block)
    return Built(url, info.id, storage, study)


def start_trial(built: Built, curve: Mapping[int, float] | None = None) -> optuna.Trial:
    """Start the next trial as an agent does: ask (budget tokens first), record config, report curve."""
    trial = built.study.ask(DISTRIBUTIONS)
    trial.set_user_attr("config", config_of(trial.params))
    trial.set_user_attr("attempt", 0)
    trial.set_user_attr("agent", "agent-a")
    trial.set_user_attr("host", "node-1")
    report(built, trial, curve or {})
    return trial


def report(built: Built, trial: optuna.Trial, curve: Mapping[int, float]) -> None:
    """Write a learning curve as the agent stores one (at storage level: multi-objective too)."""
    for step, value in curve.items():
        built.storage.set_trial_intermediate_value(trial._trial_id, step, value)


def finish_trial(built: Built, trial: optuna.Trial, state: str = "complete") -> float:
    """End a started trial as the engine does (final attrs, curve, tell); returns its loss."""
    params = trial.params
    loss = loss_of(params)
    for key, value in engine_attrs(trial.number, params, duration_s=1.0 + trial.number).items():
        trial.set_user_attr(key, value)
    if state == "complete":
        report(built, trial, curve_of(loss))
        values: Any = loss
        if len(built.study.directions) > 1:
            values = [loss, 1.0 - loss / 10 + (trial.number % 4) * 0.02]
            trial.set_user_attr("metrics", {"loss": loss, "accuracy": values[1]})
        else:
            trial.set_user_attr("metrics", {"loss": loss, "train": {"epochs": 5}})
        built.study.tell(trial, values)
    elif state == "pruned":
        report(built, trial, {1: 9.0, 2: 8.5})
        built.study.tell(trial, state=TrialState.PRUNED)
    else:
        trial.set_user_attr("fail_reason", "RuntimeError: CUDA out of memory")
        built.study.tell(trial, state=TrialState.FAIL)
    return loss


def add_finished(built: Built, n_complete: int = 9) -> None:
    """``n_complete`` complete trials, then one pruned and one failed."""
    for _ in range(n_complete):
        finish_trial(built, start_trial(built))
    finish_trial(built, start_trial(built), "pruned")
    finish_trial(built, start_trial(built), "fail")


def beat(built: Built, agent_id: str, seconds_ago: float) -> None:
    """Record an agent heartbeat as the engine does (study user attr ``sweeper:agent:<id>``)."""
    now = datetime.now(timezone.utc)
    built.study.set_user_attr(
        f"{keys.AGENT_PREFIX}{agent_id}",
        {
            "host": "node-1",
            "pid": 4242,
            "started_at": (now - timedelta(hours=1)).isoformat(),
            "last_seen": (now - timedelta(seconds=seconds_ago)).isoformat(),
        },
    )
