"""The body of every trial's Ray task, in a module of its own: what a Ray worker imports to run it.

A fresh worker imports this module before its first trial, on that trial's clock. It imports the
worker side only (the trial, its reporter to the broker, the reaper), not Optuna and NumPy, which
the agent's modules import (a quarter of a second here): ``tests/engine/test_ray_task.py`` keeps it so.
"""

from __future__ import annotations

import dataclasses
import socket
from typing import Any

from sweeper.engine.broker_reporter import BrokerReporter
from sweeper.worker import gpu_binding
from sweeper.worker.reaper import trial_processes
from sweeper.worker.task import Failure, TrialOutcome, TrialTask
from sweeper.worker.trial import drop_untouched_dir, execute_trial


def run_in_ray(task: TrialTask, broker: Any, epoch: int, wants_decisions: bool) -> TrialOutcome:
    """Run one trial in a Ray worker, reporting to ``broker`` in the agent run's ``epoch``; what the
    trial started ends with it (Linux). The worker keeps a trial directory left untouched for its
    next trial; a worker whose CUDA runs on other GPUs than Ray gave the trial does not run it."""
    devices = gpu_binding.visible_devices()
    why = gpu_binding.misplaced(devices)
    if why is not None:
        return TrialOutcome.failed(Failure.MISPLACED, why, host=socket.gethostname())
    with trial_processes():
        outcome = execute_trial(task, BrokerReporter(broker, wants_decisions, epoch=epoch))
    if gpu_binding.note_trial_end(devices):
        outcome = dataclasses.replace(outcome, gpu_bound=True)
    return drop_untouched_dir(task, outcome, keep=True)


def run_in_fresh_ray_worker(task: TrialTask, broker: Any, epoch: int, wants_decisions: bool) -> TrialOutcome:
    """:func:`run_in_ray`, as a function of its own: the executor submits it with ``max_calls=1``,
    so the worker exits after the trial (Ray's options belong to a function, not to a call)."""
    return run_in_ray(task, broker, epoch, wants_decisions)
