"""An executor that ends its trials as fast as the loop looks, and the random sweep it runs.

For tests of the agent's loop on real storages: each ``wait`` that waits hands back the oldest
trial, complete with its ``x`` as its loss; a look that does not wait sees none end.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from sweeper.worker.task import Failure, TrialOutcome, TrialTask

# A random sweep of 8 trials (W&B's random law: each trial drawn alone).
RANDOM: dict[str, Any] = {
    "method": "random",
    "metric": {"name": "loss"},
    "parameters": {"x": {"min": 0.0, "max": 1.0}},
    "run_cap": 8,
    "sweeper": {"seed": 3},
}


class EndsAtOnce:
    """An executor of ``slots`` slots whose every ``wait`` that waits hands back its oldest trial,
    complete (a look that does not wait sees none end); it counts the trials it started."""

    shipped = False

    def __init__(self, slots: int) -> None:
        self._slots = slots
        self.running: deque[TrialTask] = deque()
        self.started = 0
        self.most_at_once = 0

    def slots(self) -> int:
        return self._slots

    def start(self, task: TrialTask) -> None:
        self.running.append(task)
        self.started += 1
        self.most_at_once = max(self.most_at_once, len(self.running))

    def wait(self, timeout: float) -> list[tuple[TrialTask, TrialOutcome]]:
        if not self.running or timeout == 0:
            return []
        task = self.running.popleft()
        loss = float(task.config["x"])
        return [(task, TrialOutcome("complete", values=(loss,), metrics={"loss": loss}))]

    def cancel(self, trial_id: int, failure: Failure, reason: str) -> None:
        raise AssertionError("nothing is cancelled here")

    def close(self) -> None:
        pass
