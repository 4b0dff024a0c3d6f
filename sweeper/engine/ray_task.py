"""The body of every lane, a Ray task that runs trials one after another: what a Ray worker imports.

A lane is a Ray task with one trial's resources (see :mod:`sweeper.engine.lanes`). It joins its
agent run's report server, runs its first trial if it was given one as its argument, then the
trials the agent sends it there, until the agent has none for it. A lane that cannot reach the
agent runs its first trial only and returns its outcome through Ray, as a task per trial did.

A fresh worker imports this module before its first trial, on that trial's clock. It imports the
worker side only (the trial, its reporter to the agent, the reaper), not Optuna and NumPy, which
the agent's modules import (a quarter of a second here): ``tests/engine/test_ray_task.py`` keeps it so.
"""

from __future__ import annotations

import dataclasses
import logging
import pickle
import socket
from multiprocessing.connection import Connection

from sweeper.engine.report_channel import ChannelAddress, ChannelReporter, connect
from sweeper.worker import gpu_binding
from sweeper.worker.reaper import trial_processes
from sweeper.worker.task import Failure, TrialOutcome, TrialTask
from sweeper.worker.trial import drop_untouched_dir, execute_trial

_logger = logging.getLogger(__name__)

LANE_IDLE_S = 2.0
"""How long a lane waits for its next trial before it offers to leave (and free its resources)."""

LaneEnd = tuple[int, TrialOutcome] | None
"""What a lane's Ray task returns: the trial it could not hand back over the channel, with its
outcome, or None when every trial it ran was handed back."""


def run_trial(task: TrialTask, channel: ChannelAddress, wants_decisions: bool) -> TrialOutcome:
    """Run one trial in this Ray worker, reporting to the agent run's report server at ``channel``;
    what the trial started ends with it (Linux). The worker keeps a trial directory left untouched for
    its next trial; a worker whose CUDA runs on other GPUs than Ray gave the trial does not run it."""
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


def run_lane(
    first: TrialTask | None, lane: int, channel: ChannelAddress, wants_decisions: bool, join: bool = True
) -> LaneEnd:
    """Run ``first`` (if given), then the trials the agent sends over the channel, each handed back there.

    The lane ends when the agent says so (it has no trial for it), when the channel breaks (the
    trial it holds is returned through Ray), or after a trial that bound this worker's CUDA or
    found it bound to other GPUs: later trials get a worker of their own (see
    :mod:`sweeper.worker.gpu_binding`). A lane started without a trial that cannot reach the agent
    ends at once: the agent then gives its trial to a lane of its own. Without ``join`` (the agent
    saw that lanes cannot reach it) the lane runs ``first`` only.
    """
    connection = _join(channel, lane) if join else None
    try:
        held = None if first is None else (first.trial_id, run_trial(first, channel, wants_decisions))
        while True:
            if held is not None:  # hand it back over the connection, or through Ray
                _, outcome = held
                if connection is None or outcome.gpu_bound or outcome.failure is Failure.MISPLACED:
                    return held
                try:
                    connection.send(("ended", (lane, *held)))
                except OSError:
                    return held
            if connection is None:
                return None
            sent = _next_trial(connection, lane)
            if sent is None:
                return None
            held = sent[0], _run_sent(sent[1], channel, wants_decisions)
    finally:
        if connection is not None:
            connection.close()


def _run_sent(payload: bytes, channel: ChannelAddress, wants_decisions: bool) -> TrialOutcome:
    """Run a trial the agent sent pickled; one that cannot be unpickled fails, as Ray fails a task
    whose argument cannot be."""
    try:
        task: TrialTask = pickle.loads(payload)
    except Exception as exc:
        reason = f"the trial could not be unpickled in its worker: {type(exc).__name__}: {exc}"
        return TrialOutcome.failed(Failure.TRAINER, reason, host=socket.gethostname())
    return run_trial(task, channel, wants_decisions)


def run_lane_in_fresh_worker(
    first: TrialTask | None, lane: int, channel: ChannelAddress, wants_decisions: bool, join: bool = True
) -> LaneEnd:
    """:func:`run_lane`, as a function of its own: the executor submits it with ``max_calls=1``,
    so the worker exits after the lane (Ray's options belong to a function, not to a call)."""
    return run_lane(first, lane, channel, wants_decisions, join)


def _join(channel: ChannelAddress, lane: int) -> Connection | None:
    """The lane's connection to the agent, announced as lane ``lane``; None if it cannot be made."""
    try:
        connection = connect(channel)
        connection.send(("lane", lane))
    except Exception as exc:  # its first trial's outcome then goes back through Ray
        _logger.warning(
            "lane %d could not reach the agent at %s:%d (%r)", lane, channel.host, channel.port, exc
        )
        return None
    return connection


def _next_trial(connection: Connection, lane: int) -> tuple[int, bytes] | None:
    """The next trial the agent sends (its id and pickled task), or None: the lane ends.

    Idle for :data:`LANE_IDLE_S`, the lane offers to leave; the agent answers with an exit, or with
    a trial it sent meanwhile, so no trial is sent to a lane that has gone.
    """
    offered = False
    try:
        while True:
            if not offered and not connection.poll(LANE_IDLE_S):
                connection.send(("leaving", lane))
                offered = True
                continue
            kind, body = connection.recv()
            if kind == "run":
                return body  # type: ignore[no-any-return]
            return None  # "exit"
    except (OSError, EOFError):  # the agent is gone, or closed the channel
        return None
