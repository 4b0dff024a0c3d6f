"""Trainers that misbehave in every way a hyperparameter sweep meets in practice."""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np


def hostile(config: dict[str, Any], trial: Any) -> Any:
    """Ends the way ``config["mode"]`` says."""
    mode = config["mode"]
    returns: dict[str, Any] = {
        "ok": 1.0,
        "numpy_scalar": np.float32(0.5),
        "numeric_string": "0.25",
        "word": "low",
        "bool": True,
        "list": [0.1, 0.2],
        "object": object(),
        "nan": float("nan"),
        "inf": float("inf"),
        "metric_string": {"loss": "low"},
        "metric_nan": {"loss": float("nan"), "acc": 0.9},
        "non_string_keys": {1: 0.5, (2, 3): 0.1},
    }
    if mode in returns:
        return returns[mode]
    if mode == "huge_dict":
        return {"loss": 0.5, **{f"m{i}": float(i) for i in range(50_000)}}
    if mode == "garbage_logs":
        trial.log({"loss": "x", "acc": object(), "deep": {"a": [1, 2]}})
        trial.log({"loss": 0.3})
        return None
    if mode == "prints_megabytes":
        for _ in range(200):
            sys.stdout.write("x" * 10_000 + "\n")
            sys.stderr.write("y" * 10_000 + "\n")
        return 0.75
    if mode == "never_returns":
        while True:
            time.sleep(0.05)
    if mode == "sys_exit":
        sys.exit(3)
    raise ValueError(f"unknown mode {mode!r}")
