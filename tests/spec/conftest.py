"""W&B's own sweep engine (the `sweeps` package), imported quietly: it is the reference we test against."""

from __future__ import annotations

import warnings
from typing import Any

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


__all__ = ["HyperParameter", "wandb_grid", "wandb_parameter"]
