"""The report channel: intermediate values travel from trials to the agent, pruning decisions back.

Workers never reach the storage. A trial's ``log`` sends each value of the first objective metric
to a :class:`ReportBroker`, an async Ray actor pinned to the agent's node; an agent thread
(:class:`BrokerDrain`) takes pending reports in batches, hands them to the :class:`PruningJudge`
(which writes the intermediate values and asks the Optuna pruner) and resolves the decisions. A
decision that does not come within ``decision_timeout`` lets the trial go on.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from sweeper.storage import batch

_logger = logging.getLogger(__name__)

DECISION_TIMEOUT_S = 30.0
_DRAIN_WAIT_S = 0.2


@dataclass(frozen=True)
class Report:
    """One value of the first objective metric; ``key`` matches it to its decision."""

    key: int
    trial_id: int
    step: int
    value: float
    wants_decision: bool = True


class PruningJudge:
    """Agent side: stores intermediate values and asks the pruner about each trial that reported.

    Thread-safe enough for one drain thread plus the agent loop: the Optuna storages serialize
    their own writes.
    """

    def __init__(self, study: optuna.Study, pruner: optuna.pruners.BasePruner) -> None:
        self._study = study
        self._pruner = pruner
        self._prunes = not isinstance(pruner, optuna.pruners.NopPruner)

    @property
    def prunes(self) -> bool:
        """Whether decisions can ever be "stop"; if not, trials need not wait for them."""
        return self._prunes

    def decide(self, reports: Sequence[Report]) -> dict[int, bool]:
        """Record the reports' values and return ``{report key: stop the trial?}``."""
        storage = self._study._storage
        by_trial: dict[int, list[Report]] = {}
        for report in reports:
            by_trial.setdefault(report.trial_id, []).append(report)
        # The whole batch's values in one storage write (one transaction, one journal append).
        writes = [
            batch.TrialWrite(trial_id, intermediate={r.step: r.value for r in trial_reports})
            for trial_id, trial_reports in by_trial.items()
        ]
        refused = batch.write_trials(storage, writes)
        # A refused trial ended (or was cancelled) before its reports arrived.
        live = {trial_id: rs for trial_id, rs in by_trial.items() if trial_id not in refused}
        decisions: dict[int, bool] = {r.key: False for r in reports}
        if not self._prunes:
            return decisions
        for trial_id, trial_reports in live.items():
            if not any(r.wants_decision for r in trial_reports):
                continue
            try:
                frozen = storage.get_trial(trial_id)
                if frozen.state != TrialState.RUNNING:
                    continue
                stop = bool(self._pruner.prune(self._study, frozen))
            except Exception:  # a broken pruner must not kill the agent; the trial goes on
                _logger.exception("pruner failed on trial %d; letting it go on", trial_id)
                continue
            for report in trial_reports:
                decisions[report.key] = stop
        return decisions


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
        batch, self._pending = self._pending, []
        started, self._started = self._started, []
        return batch, started

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


class DirectReporter:
    """In-process channel for the local executor: the judge decides on each report at once."""

    def __init__(self, judge: PruningJudge) -> None:
        self._judge = judge
        self._next_key = 0

    def report(self, trial_id: int, step: int, value: float) -> bool:
        self._next_key += 1
        report = Report(self._next_key, trial_id, step, value, self._judge.prunes)
        return self._judge.decide([report]).get(report.key, False)

    def started(self, trial_id: int) -> None:
        pass


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
                batch, started = ray.get(self._broker.drain.remote())
                if started and self._on_started is not None:
                    self._on_started(started)
                if batch:
                    self._broker.resolve.remote(self._judge.decide(batch))
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
