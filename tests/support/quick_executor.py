"""An executor that ends its trials as fast as the loop looks, and the random sweep it runs.

For tests of the agent's loop on real storages: each ``wait`` hands back the oldest trial, complete
with its ``x`` as its loss (a look that does not wait too, if asked).
"""

from __future__ import annotations

import time
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
    """An executor of ``slots`` slots whose every ``wait`` hands back its oldest trial, complete.

    A look that does not wait (``wait(0)``, the refill's) sees none end, unless ``on_looks``: then
    each trial has ended by the loop's next look, a wave of slots freed one after another. It notes
    when it started each trial.
    """

    shipped = False

    def __init__(self, slots: int, *, on_looks: bool = False) -> None:
        self._slots = slots
        self._on_looks = on_looks
        self.running: deque[TrialTask] = deque()
        self.started_at: list[float] = []
        self.most_at_once = 0

    @property
    def started(self) -> int:
        return len(self.started_at)

    def slots(self) -> int:
        return self._slots

    def start(self, task: TrialTask) -> None:
        self.running.append(task)
        self.started_at.append(time.monotonic())
        self.most_at_once = max(self.most_at_once, len(self.running))

    def wait(self, timeout: float) -> list[tuple[TrialTask, TrialOutcome]]:
        if not self.running or (timeout == 0 and not self._on_looks):
            return []
        task = self.running.popleft()
        loss = float(task.config["x"])
        return [(task, TrialOutcome("complete", values=(loss,), metrics={"loss": loss}))]

    def cancel(self, trial_id: int, failure: Failure, reason: str) -> None:
        raise AssertionError("nothing is cancelled here")

    def close(self) -> None:
        pass
