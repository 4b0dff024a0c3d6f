"""The report channel: intermediate values travel from trials to the agent, pruning decisions back.

Workers never reach the storage. A trial's ``log`` sends each value of the first objective metric
to a :class:`ReportBroker`, an async Ray actor pinned to the agent's node; an agent thread
(:class:`BrokerDrain`) takes pending reports in batches, hands them to the :class:`PruningJudge`
(which asks the Optuna pruner from its in-memory view of the values) and resolves the decisions,
then stores the batch's values in one write. A decision that does not come within
``decision_timeout`` lets the trial go on.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import threading
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from sweeper.storage import batch

_logger = logging.getLogger(__name__)

DECISION_TIMEOUT_S = 30.0
_DRAIN_WAIT_S = 0.2
PERSIST_S = 0.5
"""The local executor stores reported values at most this often (in one write each time)."""


@dataclass(frozen=True)
class Report:
    """One value of the first objective metric; ``key`` matches it to its decision."""

    key: int
    trial_id: int
    step: int
    value: float
    wants_decision: bool = True


class PruningJudge:
    """Agent side: decides on each report from memory, then stores the values it decided on.

    The judge keeps an in-memory view of its trials' intermediate values: a trial's stored values
    are read once, the ones it reports are added as they come. Decisions come from that view (other
    agents' trials come from the storage, as the pruner reads the study), so no decision waits on a
    write; :meth:`persist` then stores every value decided on since the last call in one write.

    Thread-safe enough for one drain thread plus the agent loop: the Optuna storages serialize
    their own writes, and the view is guarded by a lock.
    """

    def __init__(self, study: optuna.Study, pruner: optuna.pruners.BasePruner) -> None:
        self._study = study
        self._pruner = pruner
        self._prunes = not isinstance(pruner, optuna.pruners.NopPruner)
        self._lock = threading.Lock()
        self._trials: dict[int, FrozenTrial] = {}  # trial id -> the trial, its values as reported
        self._unstored: dict[int, dict[int, float]] = {}  # trial id -> values not stored yet

    @property
    def prunes(self) -> bool:
        """Whether decisions can ever be "stop"; if not, trials need not wait for them."""
        return self._prunes

    def decide(self, reports: Sequence[Report]) -> dict[int, bool]:
        """Take the reports' values into the view and return ``{report key: stop the trial?}``.

        The values are stored by the next :meth:`persist`.
        """
        by_trial: dict[int, list[Report]] = {}
        for report in reports:
            by_trial.setdefault(report.trial_id, []).append(report)
        decisions: dict[int, bool] = {r.key: False for r in reports}
        snapshot: optuna.Study | None = None
        for trial_id, trial_reports in by_trial.items():
            values = {r.step: r.value for r in trial_reports}
            with self._lock:
                self._unstored.setdefault(trial_id, {}).update(values)
            if not self._prunes or not any(r.wants_decision for r in trial_reports):
                continue
            try:
                frozen = self._view(trial_id, values)
                if frozen is None:
                    continue  # the trial ended (or was cancelled) before its report arrived
                snapshot = snapshot or self._snapshot()
                stop = bool(self._pruner.prune(snapshot, frozen))
            except Exception:  # a broken pruner must not kill the agent; the trial goes on
                _logger.exception("pruner failed on trial %d; letting it go on", trial_id)
                continue
            for report in trial_reports:
                decisions[report.key] = stop
        return decisions

    def unstored(self, trial_id: int) -> dict[int, float]:
        """Take the values of an ended trial not stored yet (they ride in its end write)."""
        with self._lock:
            return self._unstored.pop(trial_id, {})

    def persist(self) -> None:
        """Store the values decided on since the last call: one storage write for all of them."""
        with self._lock:
            unstored, self._unstored = self._unstored, {}
        if not unstored:
            return
        writes = [batch.TrialWrite(trial_id, intermediate=values) for trial_id, values in unstored.items()]
        refused = batch.write_trials(self._study._storage, writes)
        with self._lock:
            for trial_id in refused:  # ended: its values came with its end (see OutcomeRecorder)
                self._trials.pop(trial_id, None)

    def _snapshot(self) -> optuna.Study:
        """The study as one read of the storage shows it, with this agent's trials as reported.

        One read per drained batch, shared by its decisions (a pruner reads the whole study for
        each one): other agents' trials as stored, this agent's with every value decided on.
        """
        with self._lock:
            mine = dict(self._trials)
        stored = self._study.get_trials(deepcopy=False)
        trials = [mine.get(t._trial_id, t) if t.state == TrialState.RUNNING else t for t in stored]

        def get_trials(
            deepcopy: bool = True, states: Container[TrialState] | None = None, **_: Any
        ) -> list[FrozenTrial]:
            chosen = [t for t in trials if states is None or t.state in states]
            return copy.deepcopy(chosen) if deepcopy else chosen

        view = copy.copy(self._study)
        view.get_trials = get_trials  # type: ignore[method-assign]
        view._get_trials = get_trials  # type: ignore[method-assign,assignment]
        return view

    def _view(self, trial_id: int, values: dict[int, float]) -> FrozenTrial | None:
        """The trial with every value it reported, or None once it is no longer running."""
        with self._lock:
            known = self._trials.get(trial_id)
        if known is None:
            try:
                known = self._study._storage.get_trial(trial_id)  # once per trial
            except KeyError:
                return None
            if known.state != TrialState.RUNNING:
                return None
        frozen = copy.copy(known)
        frozen.intermediate_values = {**known.intermediate_values, **values}
        with self._lock:
            self._trials[trial_id] = frozen
        return frozen


class ReportBroker:
    """Ray actor (async): holds reports until the agent drains them, and their pending decisions."""

    def __init__(self, decision_timeout: float = DECISION_TIMEOUT_S) -> None:
        import asyncio

        self._timeout = decision_timeout
        self._pending: list[Report] = []
        self._started: list[int] = []
        self._futures: dict[int, asyncio.Future[bool]] = {}
        self._next_key = 0
        self._arrived = asyncio.Event()

    async def report(self, trial_id: int, step: int, value: float, wants_decision: bool) -> bool:
        """Queue a report; with ``wants_decision``, wait (bounded) for the pruner's answer."""
        import asyncio

        key = self._next_key
        self._next_key += 1
        self._pending.append(Report(key, trial_id, step, value, wants_decision))
        self._arrived.set()
        if not wants_decision:
            return False
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._futures[key] = future
        try:
            return await asyncio.wait_for(future, self._timeout)
        except asyncio.TimeoutError:
            return False
        finally:
            self._futures.pop(key, None)

    async def started(self, trial_id: int) -> None:
        """Note that a trial's trainer starts now (fire and forget)."""
        self._started.append(trial_id)
        self._arrived.set()

    async def drain(self, max_wait: float = _DRAIN_WAIT_S) -> tuple[list[Report], list[int]]:
        """Every pending report and start notice, waiting up to ``max_wait`` s for the first one."""
        import asyncio

        if not self._pending and not self._started:
            self._arrived.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), max_wait)
        pending, self._pending = self._pending, []
        started, self._started = self._started, []
        return pending, started

    async def resolve(self, decisions: dict[int, bool]) -> None:
        """Answer the trials waiting on these reports."""
        for key, stop in decisions.items():
            future = self._futures.get(key)
            if future is not None and not future.done():
                future.set_result(stop)


class BrokerReporter:
    """Worker side of the channel: what a trial running in a Ray task reports through."""

    def __init__(
        self, broker: Any, wants_decisions: bool, decision_timeout: float = DECISION_TIMEOUT_S
    ) -> None:
        self._broker = broker
        self._wants = wants_decisions
        self._timeout = decision_timeout

    def report(self, trial_id: int, step: int, value: float) -> bool:
        import ray

        ref = self._broker.report.remote(trial_id, step, value, self._wants)
        if not self._wants:
            return False  # fire and forget: nothing can stop this trial
        try:
            return bool(ray.get(ref, timeout=self._timeout + 5.0))
        except (ray.exceptions.GetTimeoutError, ray.exceptions.RayActorError):
            return False

    def started(self, trial_id: int) -> None:
        self._broker.started.remote(trial_id)


class BrokerDrain:
    """Agent thread: drains the broker in batches, decides, resolves; stops with :meth:`close`.

    ``on_started`` receives the trial ids whose trainers started since the last batch.
    """

    def __init__(
        self, broker: Any, judge: PruningJudge, on_started: Callable[[list[int]], None] | None = None
    ) -> None:
        self._broker = broker
        self._judge = judge
        self._on_started = on_started
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sweeper-report-drain", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import ray

        while not self._stop.is_set():
            try:
                reports, started = ray.get(self._broker.drain.remote())
                if started and self._on_started is not None:
                    self._on_started(started)
                if reports:
                    self._broker.resolve.remote(self._judge.decide(reports))
                    self._judge.persist()  # after the decisions are on their way
            except Exception:
                if self._stop.is_set():
                    return
                _logger.exception("report drain failed; retrying")
                self._stop.wait(1.0)

    def close(self) -> None:
        """Stop draining (after the batch in progress)."""
        self._stop.set()
        self._thread.join(timeout=5.0)


def start_broker(decision_timeout: float = DECISION_TIMEOUT_S) -> Any:
    """Start a :class:`ReportBroker` actor pinned to this (the agent's) node."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    node_id = ray.get_runtime_context().get_node_id()
    actor_class = ray.remote(ReportBroker)
    return actor_class.options(
        num_cpus=0,
        max_concurrency=1000,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node_id, soft=False),
    ).remote(decision_timeout)
