"""Trainers the custom-scheduler tests run; Ray ships them by value (see conftest)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any


def conditional(config: dict[str, Any], trial: Any) -> float:
    """Checks the conditional config it got, logs a falling loss for ``steps`` steps.

    With ``out`` in the config, writes what it saw (pid, config, times) to a file in that directory.
    """
    complexity = config["complexity"]
    low, high = (10, 40) if complexity == "shallow" else (60, 100)
    if not low <= config["n_estimators"] <= high:
        raise ValueError(f"n_estimators {config['n_estimators']} outside {complexity}'s range")
    if ("min_samples_leaf" in config["tree"]) != (complexity == "deep"):
        raise ValueError(f"tree {config['tree']} does not fit complexity {complexity}")
    if trial.attempt == 0 and config.get("fail_first_attempt"):
        raise RuntimeError("first attempt fails")
    start = time.time()
    loss = 0.0
    for step in range(1, 5):
        time.sleep(float(config.get("sleep_s", 0.0)))
        loss = config["lr"] * 10 + config["n_estimators"] / 100 + 1.0 / step
        trial.log({"loss": loss}, step=step)
    out = config.get("out")
    if out:
        record = {
            "number": trial.number,
            "pid": os.getpid(),
            "config": config,
            "start": start,
            "end": time.time(),
        }
        (Path(out) / f"{trial.number}-{trial.attempt}.json").write_text(json.dumps(record))
    return loss


def two_objectives(config: dict[str, Any], trial: Any) -> dict[str, float]:
    """Two conflicting objectives of ``x`` in [0, 1]: ``a = x**2`` and ``b = (1 - x)**2``."""
    x = float(config["x"])
    return {"a": x**2, "b": (1 - x) ** 2}
