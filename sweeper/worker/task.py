"""What travels between the agent and a worker: the task of one trial, and how it ended.

The agent turns an Optuna trial into a picklable :class:`TrialTask`; the worker returns a
:class:`TrialOutcome`, whose :class:`Failure` says, as a type, why a failed trial failed. Reports of
the first objective go through a :class:`Reporter` while the trial runs.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from sweeper.spec.model import TrackerSpec

OutcomeState = Literal["complete", "pruned", "failed"]
TrainerFunction = Callable[..., Any]


class Reporter(Protocol):
    """Where a trial sends each value of its first objective metric.

    A reporter may also deliver in the background (see :class:`BufferingReporter`); one that does
    not has delivered each value by the time :meth:`report` returns.
    """

    def report(self, trial_id: int, step: int, value: float) -> bool:
        """Record ``value`` at ``step``; True means the pruner stops the trial."""
        ...

    def started(self, trial_id: int) -> None:
        """The trial's worker is about to call the trainer (its timeout counts from here); called
        only for a trial with a timeout."""
        ...

    def settle(self, trial_id: int, timeout: float) -> None:
        """Wait until the pruner has decided on every report so far, or ``timeout`` seconds (a
        reporter that decides within :meth:`report` returns at once)."""
        ...


@runtime_checkable
class BufferingReporter(Reporter, Protocol):
    """A reporter that delivers in the background: :meth:`report` returns at once (unless its bounded
    buffer is full) and the pruner's answer arrives later.

    The trial asks :meth:`stopped` at each report, and calls :meth:`close` once at its end.
    """

    def stopped(self, trial_id: int) -> tuple[int, float] | None:
        """``(step, value)`` of the report the pruner stopped the trial at, once that answer came."""
        ...

    def close(self, trial_id: int) -> list[tuple[int, float]]:
        """Deliver what is buffered; return, in order, the ``(step, value)`` pairs not delivered."""
        ...


class NullReporter:
    """A reporter that records nothing and never prunes (a trial run by hand)."""

    def report(self, trial_id: int, step: int, value: float) -> bool:
        return False

    def started(self, trial_id: int) -> None:
        pass

    def settle(self, trial_id: int, timeout: float) -> None:
        pass


@dataclass(frozen=True)
class Objective:
    """An objective metric the trial's value is computed from."""

    name: str
    goal: Literal["minimize", "maximize"] = "minimize"

    def better(self, a: float, b: float) -> bool:
        """Whether ``a`` is strictly better than ``b``."""
        return a < b if self.goal == "minimize" else a > b


@dataclass(frozen=True)
class TrialTask:
    """Everything a worker needs to run one trial; it never reads the storage."""

    sweep_id: str
    sweep_name: str
    trial_id: int
    number: int
    params: Mapping[str, Any]
    config: Mapping[str, Any]
    objectives: tuple[Objective, ...]
    checkpoint_dir: str
    sweep_dir: str
    trainer: str | TrainerFunction | None = None
    program: str | None = None
    command: tuple[str, ...] | None = None
    attempt: int = 0
    timeout: float | None = None
    trackers: tuple[TrackerSpec, ...] = ()
    tags: tuple[str, ...] = ()
    # The agent's directory, put on sys.path; None when the executor shipped it as the cwd.
    workdir: str | None = None
    # Where the trial runs and its relative files stay (see sweeper.worker.workdir); None: the cwd.
    trial_dir: str | None = None
    # The counts of reports whose verdict the next report waits for (hyperband's bands).
    verdict_at: frozenset[int] = frozenset()

    @property
    def runs_program(self) -> bool:
        """Whether the trial runs a program (``program`` / ``command``): a trainer function wins."""
        return self.trainer is None and (self.program is not None or self.command is not None)


class Failure(str, enum.Enum):
    """Why a trial failed. The fail reason stored with a trial says it in words; this says it in a type.

    The infrastructure kinds (an agent or a node went away, a worker bound to other GPUs) re-queue
    the trial without using one of its ``retries`` (see :mod:`sweeper.engine.leases`); only kinds
    that may blame the machine count towards an agent's fast-failure streak (see
    :mod:`sweeper.engine.flapping`).
    """

    TRAINER = "trainer"  # the trainer raised, exited, or reported no finite objective
    CONFIG = "config"  # the trial's config could not be built (a malformed config override)
    TIMEOUT = "timeout"  # ran past sweeper.timeout
    CANCELLED = "cancelled"  # the sweep was cancelled, or the executor cancelled it
    WORKER_DIED = "worker died"  # the process running the trial died (OOM, segfault, os._exit)
    NODE_LOST = "node lost"  # the machine running the trial left the cluster
    AGENT_LOST = "agent lost"  # its agent renewed no lease: another agent reaped it
    AGENT_INTERRUPTED = "agent interrupted"  # its agent was interrupted (Ctrl-C twice, a crash)
    AGENT_STOPPED = "agent stopped"  # its agent stopped while it was still held
    MISPLACED = "misplaced"  # Ray gave it GPUs other than those its worker's CUDA runs on (not run)

    @property
    def infrastructure(self) -> bool:
        """Whether the infrastructure ended the trial, not the trial itself."""
        return self in _INFRASTRUCTURE

    @property
    def may_blame_machine(self) -> bool:
        """Whether such failures, fast and in a row, may mean the machine is broken."""
        return self in (Failure.TRAINER, Failure.WORKER_DIED)


_INFRASTRUCTURE = frozenset(
    {
        Failure.NODE_LOST,
        Failure.AGENT_LOST,
        Failure.AGENT_INTERRUPTED,
        Failure.AGENT_STOPPED,
        Failure.MISPLACED,
    }
)


@dataclass(frozen=True)
class TrialOutcome:
    """How a trial ended, as the worker saw it."""

    state: OutcomeState
    values: tuple[float, ...] | None = None
    metrics: Mapping[str, Any] = field(default_factory=dict)
    fail_reason: str | None = None
    failure: Failure | None = None  # set exactly when state is "failed"
    duration_s: float = 0.0
    host: str = ""
    tracker_runs: Mapping[str, str] = field(default_factory=dict)
    tracker_errors: tuple[str, ...] = ()
    # (step, value) of the reports of the first objective the report channel did not deliver (a
    # report raising the pruner's stop, a channel that failed or timed out at the end), stored
    # by the agent with the trial's end; each value travels once, by the channel or here.
    intermediate: tuple[tuple[int, float], ...] = ()
    # The directory the trial ran in, on ``host``: its relative outputs (and a program's logs).
    trial_dir: str | None = None
    # Why its reports could not reach the agent while it ran (they came with its end instead, too
    # late for the pruner), or None.
    channel_error: str | None = None
    # Whether the worker that ran it is bound to its GPUs (see sweeper.worker.gpu_binding): a trial
    # given other GPUs must not run there, so the agent starts later trials in fresh workers.
    gpu_bound: bool = False

    @classmethod
    def failed(
        cls, failure: Failure, reason: str, *, duration_s: float = 0.0, host: str = ""
    ) -> TrialOutcome:
        """A failed outcome the worker could not report itself (timeout, dead worker, cancel)."""
        return cls("failed", fail_reason=reason, failure=failure, duration_s=duration_s, host=host)
