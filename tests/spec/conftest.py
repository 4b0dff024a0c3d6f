"""Spec test fixtures: W&B's own sweep engine (the `sweeps` package), the reference we test against."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import pytest

with warnings.catch_warnings():
    # `sweeps` imports pydantic v1-style config that warns at import time; not our code.
    warnings.simplefilter("ignore")
    from sweeps.grid_search import grid_search_next_runs
    from sweeps.params import HyperParameter


def wandb_grid(parameters: dict[str, Any]) -> list[dict[str, Any]]:
    """Every config W&B's grid search proposes, in order, as plain nested dicts."""
    runs = grid_search_next_runs([], {"method": "grid", "parameters": parameters}, n=100_000)
    return [{k: v["value"] for k, v in run.config.items()} for run in runs if run is not None]


def wandb_parameter(settings: dict[str, Any]) -> HyperParameter:
    """W&B's parameter object, whose ``cdf``/``ppf`` define the law."""
    return HyperParameter("p", dict(settings))


@pytest.fixture(name="wandb_grid")
def wandb_grid_fixture() -> Callable[[dict[str, Any]], list[dict[str, Any]]]:
    """W&B's grid order, as a function of the parameters block."""
    return wandb_grid


@pytest.fixture(name="wandb_parameter")
def wandb_parameter_fixture() -> Callable[[dict[str, Any]], HyperParameter]:
    """W&B's parameter objects (``cdf``/``ppf``), as a function of the settings."""
    return wandb_parameter
