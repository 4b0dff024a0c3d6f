"""The agent: asks Optuna for trials, keeps the executor's slots full, tells Optuna how they ended.

Any number of agents can work on one sweep and join or leave at any time: the storage is the only
thing they share. An agent ends at the sweep's budget (``run_cap``, grid exhausted), its own
``count``, the metric's ``target``, or when the sweep is stopped or cancelled.

A *targeted* agent (``trials=[numbers]``) runs only those WAITING trials (and the retries of any
that fail), leaves the rest of the queue alone, and ends when they are all done, including those
another agent took. It obeys pause and cancel, but a finished sweep does not stop it: the search is
over, yet trials queued on purpose (``sweeper repeat``) may still run, and the sweep stays finished.
Its trials reaching the metric's target do not finish the sweep either (a repeat measures noise; a
lucky seed must not end a search); only the budget rule may (a budgeted sweep with nothing left
is finished, whichever agent ran its last trial).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage

from sweeper.engine import leases
from sweeper.engine.flapping import FlapGuard, FlapPolicy
from sweeper.engine.loop import End, FillLoop, Signals
from sweeper.engine.outcomes import OutcomeRecorder
from sweeper.engine.progress import Progress, SilentProgress, Tally
from sweeper.engine.ray_start import RayStart
from sweeper.engine.setup import EXECUTORS, ExecutorKind, set_up, trainer_target
from sweeper.engine.trainer_check import check_trainer_module
from sweeper.engine.watch import SweepWatch
from sweeper.errors import UsageError
from sweeper.heap import frozen_heap
from sweeper.spec.model import SweepSpec
from sweeper.storage import attrs as keys
from sweeper.storage import journal_read, sweeps, work
from sweeper.storage.snapshot_keeper import SnapshotKeeper
from sweeper.storage.sweeps import SweepState
from sweeper.storage.urls import open_storage
from sweeper.worker.task import Failure
from sweeper.worker.workdir import remove_kept_dirs, trials_dir

__all__ = ["EXECUTORS", "Agent", "AgentSummary", "End", "ExecutorKind"]

_SHOWN_REASONS = 3  # fail reasons named in the summary
_SNAPSHOT_WAIT_S = 10.0  # a child saving the journal's snapshot, waited for at the run's end


@dataclass(frozen=True)
class AgentSummary:
    """What one agent did, and why it stopped."""

    sweep_id: str
    sweep_name: str
    agent_id: str
    ran: int
    complete: int
    pruned: int
    failed: int
    best_value: float | None
    best_trial: int | None
    metric: str | None
    state: str
    ended: str
    end: End
    # Multi-objective sweeps: how many trials the sweep's Pareto front holds (else None).
    pareto_size: int | None = None
    # The commonest fail reasons of this agent's trials (first line of each), with counts, commonest first.
    failures: tuple[tuple[str, int], ...] = ()

    def line(self) -> str:
        """The summary the CLI prints last: one line, then a line per common fail reason."""
        if self.pareto_size is not None:
            best = f"Pareto front of {self.pareto_size} trials"
        elif self.best_value is not None:
            best = f"best {self.metric or 'value'}={self.best_value:.6g} (trial {self.best_trial})"
        else:
            best = "no best yet"
        line = (
            f"sweep {self.sweep_id}: {self.ran} trials ({self.complete} complete, {self.pruned} pruned, "
            f"{self.failed} failed); {best}; {self.ended}; sweep {self.state}"
        )
        # Why trials failed, without --json: a line per reason, commonest first.
        return "\n".join([line, *(f"  {count} failed: {reason}" for reason, count in self.failures)])


class Agent:
    """Runs a sweep's trials until the sweep, or this agent's share of it, is done.

    Args:
        sweep_id: The sweep's id or unique name.
        storage: A storage URL (None: ``$SWEEPER_STORAGE`` or the embedded default) or an open
            Optuna storage.
        function: A trainer function ``train(config, trial)``; pickled by Ray.
        trainer: A ``module:function`` path; overrides the spec's ``sweeper.trainer``.
        count: Run at most this many trials in this agent.
        max_concurrent: At most this many trials at once (default: what the cluster can run).
        executor: ``ray`` (default) or ``local`` (one at a time, each in a process forked from this one).
        ray_address: Ray to connect to (None: a local instance; ``auto``; ``host:port``); an
            already initialized Ray is reused.
        progress: Where the live progress goes (default: nowhere).
        workdir: The project directory shipped to the workers (default: the current directory).
        lease_grace_s: A trial whose agent renewed no lease for this long is lost: any agent
            fails it ("agent lost") and re-queues it (see :mod:`sweeper.engine.leases`).
        lease_renew_s: How often this agent renews the leases of its running trials.
        flap_policy: When fast failures in a row make this agent back off, then stop
            (see :mod:`sweeper.engine.flapping`; default :class:`~sweeper.engine.flapping.FlapPolicy`).
        trials: Run only these WAITING trials (by number) and the retries of those that fail;
            those another agent took are waited for. See the module docstring for how a
            targeted agent treats the sweep's state.
        ray_start: Ray's start, begun already (``sweeper run`` begins it before it creates the
            sweep); by default :meth:`run` begins it (see :mod:`sweeper.engine.ray_start`).

    Raises:
        UsageError: an option is out of range, a targeted trial does not exist, or the sweep
            is cancelled.
    """

    def __init__(
        self,
        sweep_id: str,
        *,
        storage: str | BaseStorage | None = None,
        function: Callable[..., Any] | None = None,
        trainer: str | None = None,
        count: int | None = None,
        max_concurrent: int | None = None,
        executor: ExecutorKind = "ray",
        ray_address: str | None = None,
        progress: Progress | None = None,
        workdir: str | Path | None = None,
        lease_grace_s: float = leases.DEFAULT_GRACE_S,
        lease_renew_s: float = leases.DEFAULT_RENEW_S,
        flap_policy: FlapPolicy | None = None,
        trials: Collection[int] | None = None,
        ray_start: RayStart | None = None,
    ) -> None:
        if executor not in EXECUTORS:
            raise UsageError(f"executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
        if count is not None and count < 1:
            raise UsageError(f"count must be >= 1, got {count}")
        if max_concurrent is not None and max_concurrent < 1:
            raise UsageError(f"max_concurrent must be >= 1, got {max_concurrent}")
        if function is not None and trainer is not None:
            raise UsageError("give either a trainer function or a module:function trainer, not both")
        self._storage = storage if isinstance(storage, BaseStorage) else open_storage(storage)
        self.info = sweeps.get_sweep(self._storage, sweep_id)
        self.spec: SweepSpec = self.info.spec
        self._function = function
        self._trainer = trainer
        self._count = count
        self._max_concurrent = max_concurrent or self.spec.sweeper.max_concurrent
        self._executor_kind = executor
        self._ray_address = ray_address
        self._ray_start = ray_start
        self._progress: Progress = progress or SilentProgress()
        self._workdir = Path(workdir or Path.cwd()).resolve()
        self.agent_id = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"
        self._tally = Tally()
        self._inflight: dict[int, optuna.Trial] = {}
        self._signals = Signals(self.info.state)
        self._lease_policy = leases.LeasePolicy(grace_s=lease_grace_s, renew_s=lease_renew_s)
        self._flaps = FlapGuard(flap_policy or FlapPolicy())
        # Targeted run: the lineages (first-attempt numbers) of the trials to run, else None.
        self._targets = None if trials is None else self._target_lineages(trials)

    def _stored_budget(self) -> int | None:
        return sweeps.get_sweep(self._storage, self.info.id).spec.budget

    def _target_lineages(self, numbers: Collection[int]) -> frozenset[int]:
        if not numbers:
            raise UsageError("trials must name at least one trial number, got none")
        if self.info.state == "cancelled":
            raise UsageError(f"sweep {self.info.id} is cancelled; its trials cannot run")
        wanted = set(numbers)
        # A grid point or budget token no agent has queued yet gets its trial now.
        work.queue_through(self._storage, self.info.study_id, self.spec, max(wanted))
        found = {
            t.number: t
            for t in self._storage.get_all_trials(self.info.study_id, deepcopy=False)
            if t.number in wanted
        }
        missing = sorted(wanted - set(found))
        if missing:
            raise UsageError(f"sweep {self.info.id} has no trial {', '.join(map(str, missing))}")
        # A trial no longer waiting was taken by another agent (targeted agents may race on the
        # same trials): it is waited for while it runs, and counts as done once it has ended.
        return frozenset(keys.lineage(t) for t in found.values())

    def run(self) -> AgentSummary:
        """Work on the sweep until it ends for this agent; returns what was done."""
        from sweeper.trackers.tracker_set import close_trackers

        info, spec = self.info, self.spec
        start = self._ray_start
        if start is None and self._executor_kind == "ray":
            # What would fail the set-up, found before Ray starts (no import: that overlaps it).
            path = self._trainer or spec.sweeper.trainer
            if self._function is None and path is None:
                trainer_target(spec, info.id, None, None, self._workdir)  # no trainer, no program: raises
            elif self._function is None:
                check_trainer_module(path, self._workdir)
            start = RayStart.begin(self._ray_address, self._workdir)
        # Ray starts meanwhile: the trainer's import, the study, the search plan, the trackers.
        with start or contextlib.nullcontext():
            target = trainer_target(spec, info.id, self._function, self._trainer, self._workdir)
            engine = set_up(
                self._storage,
                info,
                agent_id=self.agent_id,
                target=target,
                executor_kind=self._executor_kind,
                ray_address=self._ray_address,
                max_concurrent=self._max_concurrent,
                project=self._workdir,
                ray_start=start,
                count=self._count,
            )
        keeper = leases.LeaseKeeper(engine.study, self.agent_id, self._lease_policy, spec.sweeper.retries)
        keeper.start()
        recorder = OutcomeRecorder(
            engine.study,
            spec,
            tally=self._tally,
            flaps=self._flaps,
            progress=self._progress,
            keeper=keeper,
            targeted=self._targets is not None,
            judge=engine.judge,
        )
        self._tally.total = self._total()
        signals = self._signals
        signals.state = sweeps.read_state(self._storage, info.study_id)
        executor = engine.executor

        def on_change(state: SweepState) -> None:
            signals.state = state
            signals.changed.set()

        snapshots = SnapshotKeeper(self._storage)
        watch = SweepWatch(
            self._storage, info.study_id, self.agent_id, signals.state, on_change, snapshots=snapshots
        )
        watch.start()
        metric = spec.objectives[0].name if spec.objectives else None
        self._progress.start(info.id, info.name, metric, self._tally)
        try:
            loop = FillLoop(
                engine,
                keeper,
                recorder,
                signals,
                inflight=self._inflight,
                flaps=self._flaps,
                tally=self._tally,
                progress=self._progress,
                storage=self._storage,
                study_id=info.study_id,
                count=self._count,
                targets=self._targets,
            )
            with frozen_heap():  # what the set-up loaded is never walked by a collection again
                end, ended = loop.run()
        except BaseException:  # Ctrl-C or a crash: hand the running trials back to the sweep
            self._abandon(engine.study, keeper)
            raise
        finally:
            watch.stop()
            executor.close()
            remove_kept_dirs(trials_dir(engine.make_task.outputs_dir, info.id))
            # Whatever this agent still holds goes back to the sweep: nothing it ran stays RUNNING.
            keeper.close(Failure.AGENT_STOPPED)
        state = sweeps.read_state(self._storage, info.study_id)
        # A budgeted sweep (grid, run_cap) is done once nothing is left, whichever agent ran the last trial.
        if (
            (end is End.SWEEP_EXHAUSTED or spec.is_budgeted)
            and state == "running"
            # The stored spec, not this agent's: an extension may have given the sweep more budget.
            and not work.work_left(
                self._storage, info.study_id, sweeps.get_sweep(self._storage, info.id).spec.budget
            )
        ):
            sweeps.finish(self._storage, info.study_id)
            state = "finished"
        if state in ("finished", "cancelled"):
            # The sweep is over for every agent: end what the trackers opened for it (MLflow's parent run).
            close_trackers(engine.trackers, state)
        summary = AgentSummary(
            sweep_id=info.id,
            sweep_name=info.name,
            agent_id=self.agent_id,
            ran=self._tally.done,
            complete=self._tally.complete,
            pruned=self._tally.pruned,
            failed=self._tally.failed,
            best_value=self._tally.best_value,
            best_trial=self._tally.best_trial,
            metric=metric,
            state=state,
            ended=ended,
            end=end,
            pareto_size=len(engine.study.best_trials) if len(engine.directions) > 1 else None,
            failures=tuple(self._tally.reasons.most_common(_SHOWN_REASONS)),
        )
        self._progress.finish(summary.line(), asdict(summary))
        # The sweep's next reader (`sweeper best`) starts from a snapshot of what this run wrote; a
        # child still saving one is left a moment first, so that the two do not replay together.
        snapshots.wait(_SNAPSHOT_WAIT_S)
        journal_read.refresh_snapshot(self._storage)
        return summary

    def drain(self) -> None:
        """Start no new trial; :meth:`run` returns once the running ones have ended (a first Ctrl-C).

        Safe to call from a signal handler or another thread.
        """
        self._signals.draining.set()
        self._signals.changed.set()

    def _abandon(self, study: optuna.Study, keeper: leases.LeaseKeeper) -> None:
        """Fail the trials still in flight and put their params back in the queue for any agent."""
        for trial_id in list(self._inflight):
            del self._inflight[trial_id]
            # Best effort: the storage may be what failed; then other agents' lease reapers take over.
            with contextlib.suppress(Exception):
                leases.fail_and_requeue(
                    study,
                    trial_id,
                    Failure.AGENT_INTERRUPTED,
                    Failure.AGENT_INTERRUPTED.value,
                    self.spec.sweeper.retries,
                )
            keeper.release(trial_id)

    def _total(self) -> int | None:
        total = self.spec.budget
        if self._targets is not None:
            total = len(self._targets)
        if self._count is not None:
            total = self._count if total is None else min(total, self._count)
        return total
