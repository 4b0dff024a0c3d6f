"""Trainers for the end-to-end inspect tests: a quick noisy one and a slow one that keeps a sweep running."""

from __future__ import annotations

import math
import random
import time
from typing import Any


def noisy(config: dict[str, Any], trial: Any) -> None:
    """Five steps of a loss curve whose floor depends on lr and depth, plus seed-dependent noise."""
    noise = random.Random(config["seed"] * 7919 + 1).gauss(0.0, 0.05)
    floor = (math.log10(config["lr"]) + 2.0) ** 2 + 1.0 / config["model"]["depth"] + noise
    for step in range(1, 6):
        trial.log({"loss": floor + (5 - step) * 0.1, "accuracy": 1.0 - floor / 10}, step=step)


def slow(config: dict[str, Any], trial: Any) -> None:
    """Logs a value every 0.2 s for ``config["steps"]`` steps: a trial that is seen running."""
    for step in range(1, int(config.get("steps", 50)) + 1):
        trial.log({"loss": 10.0 / step + config["lr"]}, step=step)
        time.sleep(0.2)
