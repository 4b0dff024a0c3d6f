"""The body of every trial's Ray task, in a module of its own: what a Ray worker imports to run it.

A fresh worker imports this module before its first trial, on that trial's clock. It imports the
worker side only (the trial, its reporter to the agent, the reaper), not Optuna and NumPy, which
the agent's modules import (a quarter of a second here): ``tests/engine/test_ray_task.py`` keeps it so.
"""

from __future__ import annotations

import dataclasses
import socket

from sweeper.engine.report_channel import ChannelAddress, ChannelReporter
from sweeper.worker import gpu_binding
from sweeper.worker.reaper import trial_processes
from sweeper.worker.task import Failure, TrialOutcome, TrialTask
from sweeper.worker.trial import drop_untouched_dir, execute_trial


def run_in_ray(task: TrialTask, channel: ChannelAddress, wants_decisions: bool) -> TrialOutcome:
    """Run one trial in a Ray worker, reporting to the agent run's report server at ``channel``; what
    the trial started ends with it (Linux). The worker keeps a trial directory left untouched for its
    next trial; a worker whose CUDA runs on other GPUs than Ray gave the trial does not run it."""
    devices = gpu_binding.visible_devices()
    why = gpu_binding.misplaced(devices)
    if why is not None:
        return TrialOutcome.failed(Failure.MISPLACED, why, host=socket.gethostname())
    reporter = ChannelReporter(channel, wants_decisions)
    with trial_processes():
        outcome = execute_trial(task, reporter)
    if reporter.broken is not None:
        outcome = dataclasses.replace(outcome, channel_error=reporter.broken)
    if gpu_binding.note_trial_end(devices):
        outcome = dataclasses.replace(outcome, gpu_bound=True)
    return drop_untouched_dir(task, outcome, keep=True)


def run_in_fresh_ray_worker(task: TrialTask, channel: ChannelAddress, wants_decisions: bool) -> TrialOutcome:
    """:func:`run_in_ray`, as a function of its own: the executor submits it with ``max_calls=1``,
    so the worker exits after the trial (Ray's options belong to a function, not to a call)."""
    return run_in_ray(task, channel, wants_decisions)
