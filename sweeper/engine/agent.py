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
import math
import os
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import optuna
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from sweeper.engine import leases
from sweeper.engine.broker import PruningJudge
from sweeper.engine.executor import Executor, LocalExecutor, RayExecutor
from sweeper.engine.flapping import FlapGuard, FlapPolicy
from sweeper.engine.progress import Progress, SilentProgress, Tally
from sweeper.errors import TrainerError, UsageError
from sweeper.redaction import redact
from sweeper.spec import overrides
from sweeper.spec.model import SweepSpec
from sweeper.storage import attrs as keys
from sweeper.storage import queue, sweeps
from sweeper.storage.urls import DEFAULT_DIR, open_storage
from sweeper.worker.trial import Objective, TrialOutcome, TrialTask, load_trainer

ExecutorKind = Literal["ray", "local"]
EXECUTORS: tuple[ExecutorKind, ...] = ("ray", "local")

STATE_POLL_S = 1.0
HEARTBEAT_S = 5.0


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
    # Multi-objective sweeps: how many trials the sweep's Pareto front holds (else None).
    pareto_size: int | None = None

    def line(self) -> str:
        """The one-line summary the CLI prints last."""
        if self.pareto_size is not None:
            best = f"Pareto front of {self.pareto_size} trials"
        elif self.best_value is not None:
            best = f"best {self.metric or 'value'}={self.best_value:.6g} (trial {self.best_trial})"
        else:
            best = "no best yet"
        return (
            f"sweep {self.sweep_id}: {self.ran} trials ({self.complete} complete, {self.pruned} pruned, "
            f"{self.failed} failed); {best}; {self.ended}; sweep {self.state}"
        )


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
        executor: ``ray`` (default) or ``local`` (one at a time, in this process).
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
        self._progress: Progress = progress or SilentProgress()
        self._workdir = Path(workdir or Path.cwd()).resolve()
        host = socket.gethostname()
        self.agent_id = f"{host}-{os.getpid()}-{secrets.token_hex(2)}"
        self._heartbeat_record = {
            "host": host,
            "pid": os.getpid(),
            "started_at": _now(),
            "last_seen": _now(),
        }
        self._objectives = tuple(Objective(m.name, m.goal) for m in self.spec.objectives)
        self._tally = Tally()
        self._inflight: dict[int, optuna.Trial] = {}
        self._state: sweeps.SweepState = self.info.state
        self._state_changed = threading.Event()
        self._cancelling = False
        self._lease_policy = leases.LeasePolicy(grace_s=lease_grace_s, renew_s=lease_renew_s)
        self._leases: leases.LeaseKeeper | None = None
        self._flaps = FlapGuard(flap_policy or FlapPolicy())
        self._draining = threading.Event()
        # Targeted run: the lineages (first-attempt numbers) of the trials to run, else None.
        self._targets = None if trials is None else self._target_lineages(trials)

    def _target_lineages(self, numbers: Collection[int]) -> frozenset[int]:
        if not numbers:
            raise UsageError("trials must name at least one trial number, got none")
        if self.info.state == "cancelled":
            raise UsageError(f"sweep {self.info.id} is cancelled; its trials cannot run")
        wanted = set(numbers)
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

    # -- setup ---------------------------------------------------------------------------------

    def _trainer_target(self) -> str | Callable[..., Any] | None:
        if self._function is not None:
            return self._function
        path = self._trainer or self.spec.sweeper.trainer
        if path is not None:
            # `trainers.digits:train` names a module of the project directory, like on the workers.
            if str(self._workdir) not in sys.path:
                sys.path.insert(0, str(self._workdir))
            load_trainer(path)  # fail here, once, with one line, rather than in every trial
            return path
        if self.spec.program is None and self.spec.command is None:
            raise TrainerError(
                f"sweep {self.info.id} names no trainer: set sweeper.trainer or program in the spec, "
                "or pass --trainer module:function"
            )
        return None

    def _make_executor(self, judge: PruningJudge) -> Executor:
        if self._executor_kind == "local":
            return LocalExecutor(judge)
        return RayExecutor(
            self.spec.sweeper.resources,
            judge,
            address=self._ray_address,
            ship_dir=self._workdir,
            max_concurrent=self._max_concurrent,
        )

    # -- the loop --------------------------------------------------------------------------------

    def run(self) -> AgentSummary:
        """Work on the sweep until it ends for this agent; returns what was done."""
        from sweeper.search.pruners import make_pruner
        from sweeper.search.strategy import make_sampler
        from sweeper.trackers.tracker_set import close_trackers, prepare_trackers

        target = self._trainer_target()
        spec = self.spec
        directions = sweeps.directions(spec)
        # A Pareto front has no single curve to compare: multi-objective sweeps never prune.
        pruner = make_pruner(spec.early_terminate, directions) if len(directions) == 1 else None
        study = sweeps.load_study(
            self._storage,
            self.info.id,
            sampler=optuna.samplers.RandomSampler(seed=spec.sweeper.seed),
            pruner=pruner or optuna.pruners.NopPruner(),
        )
        sweep_dir = self._workdir / DEFAULT_DIR / "sweeps" / self.info.id
        trackers = prepare_trackers(spec.sweeper.trackers, self.info.id, self.info.name, str(sweep_dir))
        judge = PruningJudge(study, study.pruner)
        executor = self._make_executor(judge)
        # The sampler's choice (GP or TPE) depends on how many trials run at once.
        study.sampler = make_sampler(spec, parallelism=max(1, executor.slots()), claim=queue.claim_config)
        shipped = bool(getattr(executor, "shipped", False))
        make_task = _TaskFactory(self, target, trackers, str(sweep_dir), shipped)
        self._leases = leases.LeaseKeeper(study, self.agent_id, self._lease_policy, spec.sweeper.retries)
        self._leases.start()
        self._tally.total = self._total()
        self._state = sweeps.read_state(self._storage, self.info.study_id)
        stop_watch = threading.Event()
        watcher = threading.Thread(
            target=self._watch, args=(stop_watch, executor), name="sweeper-agent-watch", daemon=True
        )
        watcher.start()
        metric = self._objectives[0].name if self._objectives else None
        self._progress.start(self.info.id, self.info.name, metric, self._tally)
        try:
            ended = self._loop(study, executor, make_task)
        except BaseException:  # Ctrl-C or a crash: hand the running trials back to the sweep
            self._abandon(study, "agent interrupted")
            raise
        finally:
            stop_watch.set()
            executor.close()
            watcher.join(timeout=5.0)
            # Whatever this agent still holds goes back to the sweep: nothing it ran stays RUNNING.
            self._leases.close(leases.AGENT_STOPPED)
        state = sweeps.read_state(self._storage, self.info.study_id)
        # A budgeted sweep (grid, run_cap) is done once nothing is left, whichever agent ran the last trial.
        if (
            (ended == "sweep exhausted" or self.spec.is_budgeted)
            and state == "running"
            and not queue.has_open_trials(self._storage, self.info.study_id)
        ):
            self._set_state_quietly("finished")
            state = "finished"
        if state in ("finished", "cancelled"):
            # The sweep is over for every agent: end what the trackers opened for it (MLflow's parent run).
            close_trackers(trackers, state)
        summary = AgentSummary(
            sweep_id=self.info.id,
            sweep_name=self.info.name,
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
            pareto_size=len(study.best_trials) if len(directions) > 1 else None,
        )
        self._progress.finish(summary.line(), asdict(summary))
        return summary

    def _loop(self, study: optuna.Study, executor: Executor, make_task: _TaskFactory) -> str:
        budgeted = self.spec.is_budgeted
        distributions = self.spec.space  # suggested define-by-run: a trial gets its active parameters only
        launched = 0
        exhausted = False
        target_hit = False

        def fill(state: str) -> None:
            """Start trials until every slot is busy or nothing may start now."""
            nonlocal launched, exhausted
            # A finished sweep still runs a targeted agent's trials (the module docstring).
            runnable = state == "running" or (state == "finished" and self._targets is not None)
            while (
                runnable
                and not exhausted
                and not target_hit
                and (self._count is None or launched < self._count)
                and len(self._inflight) < executor.slots()
                and not self._flaps.paused()
                and not self._draining.is_set()
            ):
                if self._targets is None:
                    trial = queue.ask_trial(study, distributions, budgeted=budgeted)
                else:
                    trial = queue.claim_trial(study, distributions, self._targets)
                if trial is None:
                    exhausted = True
                    return
                try:
                    task = make_task(trial)
                except UsageError as exc:  # a malformed config_overrides attr fails its trial, not the agent
                    study._storage.set_trial_user_attr(trial._trial_id, keys.FAIL_REASON, str(exc))
                    study.tell(trial, state=TrialState.FAIL)
                    continue
                if self._leases is not None:
                    self._leases.hold(trial._trial_id)
                executor.start(task)
                self._inflight[trial._trial_id] = trial
                launched += 1
                self._tally.started += 1
                self._tally.running = len(self._inflight)
                self._progress.trial_started(trial.number, dict(task.config), self._tally)

        while True:
            state = self._state
            if state == "cancelled":
                self._cancel_all(study, executor)
                return "sweep cancelled"
            fill(state)
            count_left = self._count is None or launched < self._count
            if not self._inflight:
                verdict = self._flaps.verdict()
                if verdict is not None:
                    return verdict
                if self._draining.is_set():
                    return "interrupted: started no new trials, the running ones ended"
                if state == "finished" and self._targets is None:
                    return "sweep stopped"
                if target_hit:
                    return "metric target reached"
                if exhausted and self._targets is not None:
                    # Targeted trials another agent runs (or a retry it queues) are waited for.
                    if not queue.has_open_lineages(self._storage, self.info.study_id, self._targets):
                        return "targeted trials done"
                    exhausted = False
                elif exhausted:
                    # Other agents' trials still run: if one is lost or fails, its re-queue is ours.
                    if self._leases is None or not self._leases.others_running():
                        return "sweep exhausted"
                    exhausted = False
                if not count_left:
                    return f"count {self._count} reached"
                # Paused, or no slot on the cluster yet: idle until the state changes.
                self._state_changed.wait(STATE_POLL_S)
                self._state_changed.clear()
                continue
            for task, outcome in executor.wait(STATE_POLL_S / 2):
                retried, reached = self._record(study, task, outcome)
                exhausted = exhausted and not retried
                # The target ends the search, not a targeted agent's explicit trials.
                target_hit = (target_hit or reached) and self._targets is None
                # Refill this slot now rather than after every trial that ended together is recorded.
                if self._state != "cancelled":
                    fill(self._state)

    def drain(self) -> None:
        """Start no new trial; :meth:`run` returns once the running ones have ended (a first Ctrl-C).

        Safe to call from a signal handler or another thread.
        """
        self._draining.set()
        self._state_changed.set()

    def _watch(self, stop: threading.Event, executor: Executor) -> None:
        """Background thread: poll the sweep's state every second, beat the heartbeat every few.

        A cancel reaches a trial running in-process here, since the loop is then busy running it.
        """
        last_beat = -math.inf
        while not stop.is_set():
            # A storage hiccup must not kill the agent; the next round retries.
            with contextlib.suppress(Exception):
                state = sweeps.read_state(self._storage, self.info.study_id)
                if state != self._state:
                    self._state = state
                    self._state_changed.set()
                    interrupt = getattr(executor, "interrupt", None)
                    if state == "cancelled" and interrupt is not None:
                        interrupt("sweep cancelled")
            if time.monotonic() - last_beat >= HEARTBEAT_S:
                last_beat = time.monotonic()
                self._heartbeat_record["last_seen"] = _now()
                with contextlib.suppress(Exception):
                    record = dict(self._heartbeat_record)
                    sweeps.heartbeat(self._storage, self.info.study_id, self.agent_id, record)
            stop.wait(STATE_POLL_S)
        # A last beat says the agent left, so `sweeper status` stops counting it as active at once.
        self._heartbeat_record["last_seen"] = self._heartbeat_record["stopped_at"] = _now()
        with contextlib.suppress(Exception):
            record = dict(self._heartbeat_record)
            sweeps.heartbeat(self._storage, self.info.study_id, self.agent_id, record)

    def _record(self, study: optuna.Study, task: TrialTask, outcome: TrialOutcome) -> tuple[bool, bool]:
        """Tell Optuna how a trial ended; enqueue a retry. Returns (retried, target reached)."""
        trial = self._inflight.pop(task.trial_id)
        # A reason may quote a connection string or a key: mask it before it is stored or shown.
        outcome = replace(
            outcome,
            fail_reason=redact(outcome.fail_reason) if outcome.fail_reason else outcome.fail_reason,
            tracker_errors=tuple(redact(error) for error in outcome.tracker_errors),
        )
        storage = study._storage
        # ``agent`` was written when the trial started (_TaskFactory); each attribute is one storage
        # write (an fsync'd append on the journal), the bulk of the loop's cost per trial.
        attrs: dict[str, Any] = {
            keys.HOST: outcome.host,
            keys.DURATION_S: round(outcome.duration_s, 3),
            keys.METRICS: dict(outcome.metrics),
        }
        if outcome.tracker_runs:
            attrs[keys.TRACKER_RUNS] = dict(outcome.tracker_runs)
        if outcome.tracker_errors:
            attrs[keys.TRACKER_ERRORS] = list(outcome.tracker_errors)
        if outcome.fail_reason:
            attrs[keys.FAIL_REASON] = outcome.fail_reason
        told = True
        try:
            for key, value in attrs.items():
                storage.set_trial_user_attr(task.trial_id, key, value)
            self._store_late_reports(storage, task.trial_id, outcome)
            if outcome.state == "complete" and outcome.values is not None:
                study.tell(trial, list(outcome.values))
            elif outcome.state == "pruned":
                self._tell_pruned(study, task.trial_id, outcome.values)
            else:
                study.tell(trial, state=TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            told = False  # someone else (sweeper cancel, a lease reaper) ended and re-queued it
        if self._leases is not None:
            self._leases.release(task.trial_id)
        self._count_outcome(task, outcome)
        self._flaps.record(outcome.state, outcome.duration_s, outcome.fail_reason)
        retried = False
        if outcome.state == "failed" and told and not self._cancelling:
            frozen = storage.get_trial(task.trial_id)
            if leases.should_requeue(frozen, outcome.fail_reason, self.spec.sweeper.retries):
                leases.requeue(study, frozen, outcome.fail_reason)
                retried = True
        reached = outcome.state == "complete" and self._target_reached(outcome.values)
        if reached and self._targets is None:
            self._set_state_quietly("finished")
        self._progress.trial_ended(
            task.number, outcome.state, list(outcome.values or ()), outcome.fail_reason, self._tally
        )
        return retried, reached

    def _store_late_reports(self, storage: BaseStorage, trial_id: int, outcome: TrialOutcome) -> None:
        """Store the reports the channel had not delivered when the trial ended."""
        if not outcome.intermediate:
            return
        stored = storage.get_trial(trial_id).intermediate_values
        for step, value in outcome.intermediate:
            if step not in stored:
                storage.set_trial_intermediate_value(trial_id, step, value)

    def _tell_pruned(self, study: optuna.Study, trial_id: int, values: tuple[float, ...] | None) -> None:
        # Optuna's tell would store the last intermediate value; W&B's objective is the best one.
        frozen = study._storage.get_trial(trial_id)
        study.sampler.after_trial(study, frozen, TrialState.PRUNED, list(values) if values else None)
        study._storage.set_trial_state_values(trial_id, TrialState.PRUNED, list(values) if values else None)

    def _count_outcome(self, task: TrialTask, outcome: TrialOutcome) -> None:
        tally = self._tally
        tally.running = len(self._inflight)
        if outcome.state == "complete":
            tally.complete += 1
        elif outcome.state == "pruned":
            tally.pruned += 1
        else:
            tally.failed += 1
        if outcome.state == "complete" and outcome.values and self._objectives:
            value = outcome.values[0]
            objective = self._objectives[0]
            if tally.best_value is None or objective.better(value, tally.best_value):
                tally.best_value = value
                tally.best_trial = task.number

    def _target_reached(self, values: tuple[float, ...] | None) -> bool:
        if not values or not self.spec.objectives:
            return False
        metric = self.spec.objectives[0]
        if metric.target is None or not math.isfinite(values[0]):
            return False
        return values[0] <= metric.target if metric.goal == "minimize" else values[0] >= metric.target

    def _cancel_all(self, study: optuna.Study, executor: Executor) -> None:
        self._cancelling = True
        for trial_id in list(self._inflight):
            executor.cancel(trial_id, "sweep cancelled")
        deadline = time.monotonic() + 30.0
        while self._inflight and time.monotonic() < deadline:
            for task, ended in executor.wait(0.5):
                outcome = ended
                if ended.state != "failed":
                    outcome = TrialOutcome.failed(
                        "sweep cancelled", duration_s=ended.duration_s, host=ended.host
                    )
                self._record(study, task, outcome)

    def _abandon(self, study: optuna.Study, reason: str) -> None:
        """Fail the trials still in flight and put their params back in the queue for any agent."""
        for trial_id in list(self._inflight):
            del self._inflight[trial_id]
            # Best effort: the storage may be what failed; then other agents' lease reapers take over.
            with contextlib.suppress(Exception):
                leases.fail_and_requeue(study, trial_id, reason, self.spec.sweeper.retries)
            if self._leases is not None:
                self._leases.release(trial_id)

    def _set_state_quietly(self, state: str) -> None:
        current = sweeps.read_state(self._storage, self.info.study_id)
        if current in ("running", "paused"):
            self._storage.set_study_user_attr(self.info.study_id, keys.STATE, state)

    def _total(self) -> int | None:
        total = self.spec.budget
        if self._targets is not None:
            total = len(self._targets)
        if self._count is not None:
            total = self._count if total is None else min(total, self._count)
        return total


class _TaskFactory:
    """Turns an asked Optuna trial into the worker's :class:`TrialTask` (and records its config)."""

    def __init__(
        self,
        agent: Agent,
        target: str | Callable[..., Any] | None,
        trackers: tuple[Any, ...],
        sweep_dir: str,
        shipped: bool,
    ) -> None:
        self._agent = agent
        self._target = target
        self._trackers = trackers
        self._sweep_dir = sweep_dir
        self._shipped = shipped
        self._space = agent.spec.space
        self._checkpoints = agent._workdir / DEFAULT_DIR / "checkpoints" / agent.info.id

    def __call__(self, trial: optuna.Trial) -> TrialTask:
        agent = self._agent
        spec = agent.spec
        params = dict(trial.params)
        user_attrs = trial.user_attrs
        config = self._space.to_config(params)
        if keys.CONFIG_OVERRIDES in user_attrs:
            config = overrides.apply(config, user_attrs[keys.CONFIG_OVERRIDES])
        attempt = int(user_attrs.get(keys.ATTEMPT, 0))
        original = int(user_attrs.get(keys.RETRY_OF, trial.number))
        trial.set_user_attr(keys.CONFIG, config)
        if keys.ATTEMPT not in user_attrs:
            trial.set_user_attr(keys.ATTEMPT, attempt)
        trial.set_user_attr(keys.AGENT, agent.agent_id)
        return TrialTask(
            sweep_id=agent.info.id,
            sweep_name=agent.info.name,
            trial_id=trial._trial_id,
            number=trial.number,
            params=params,
            config=config,
            objectives=agent._objectives,
            checkpoint_dir=str(self._checkpoints / str(original)),
            sweep_dir=self._sweep_dir,
            trainer=self._target,
            program=spec.program,
            command=spec.command,
            attempt=attempt,
            timeout=spec.sweeper.timeout,
            trackers=tuple(self._trackers),
            tags=spec.sweeper.tags,
            workdir=None if self._shipped else str(agent._workdir),
        )


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
