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
    return _run(task, channel, wants_decisions, None)[0]


def _run(
    task: TrialTask, channel: ChannelAddress, wants_decisions: bool, connection: Connection | None
) -> tuple[TrialOutcome, bool]:
    """:func:`run_trial`, its reports sent over ``connection`` (a lane's) when given; and whether
    that connection can carry the lane on (its reporter left no call unanswered on it)."""
    devices = gpu_binding.visible_devices()
    why = gpu_binding.misplaced(devices)
    if why is not None:
        return TrialOutcome.failed(Failure.MISPLACED, why, host=socket.gethostname()), True
    reporter = ChannelReporter(channel, wants_decisions, connection=connection)
    with trial_processes():
        outcome = execute_trial(task, reporter)
    if reporter.broken is not None:
        outcome = dataclasses.replace(outcome, channel_error=reporter.broken)
    if gpu_binding.note_trial_end(devices):
        outcome = dataclasses.replace(outcome, gpu_bound=True)
    return drop_untouched_dir(task, outcome, keep=True), reporter.reusable


def run_lane(
    first: TrialTask | None, lane: int, channel: ChannelAddress, wants_decisions: bool, join: bool = True
) -> LaneEnd:
    """Run ``first`` (if given), then the trials the agent sends over the channel, each handed back there.

    The trials report over the lane's own connection. The lane ends when the agent says so (it has
    no trial for it), when the channel breaks or a trial's reporter gave up on an answer (the trial
    it holds is returned through Ray), or after a trial that bound this worker's CUDA or found it
    bound to other GPUs: later trials get a worker of their own (see
    :mod:`sweeper.worker.gpu_binding`). A lane started without a trial that cannot reach the agent
    ends at once: the agent then gives its trial to a lane of its own. Without ``join`` (the agent
    saw that lanes cannot reach it) the lane runs ``first`` only.
    """
    connection = _join(channel, lane) if join else None
    try:
        held = None if first is None else (first.trial_id, *_run(first, channel, wants_decisions, connection))
        while True:
            if held is not None:  # hand it back over the connection, or through Ray
                trial_id, outcome, reusable = held
                if (
                    connection is None
                    or not reusable
                    or outcome.gpu_bound
                    or outcome.failure is Failure.MISPLACED
                ):
                    return trial_id, outcome
                try:
                    connection.send(("ended", (lane, trial_id, outcome)))
                except OSError:
                    return trial_id, outcome
            if connection is None:
                return None
            sent = _next_trial(connection, lane)
            if sent is None:
                return None
            held = sent[0], *_run_sent(sent[1], channel, wants_decisions, connection)
    finally:
        if connection is not None:
            connection.close()


def _run_sent(
    payload: bytes, channel: ChannelAddress, wants_decisions: bool, connection: Connection
) -> tuple[TrialOutcome, bool]:
    """Run a trial the agent sent pickled; one that cannot be unpickled fails, as Ray fails a task
    whose argument cannot be."""
    try:
        task: TrialTask = pickle.loads(payload)
    except Exception as exc:
        reason = f"the trial could not be unpickled in its worker: {type(exc).__name__}: {exc}"
        return TrialOutcome.failed(Failure.TRAINER, reason, host=socket.gethostname()), True
    return _run(task, channel, wants_decisions, connection)


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
