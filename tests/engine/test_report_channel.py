"""The report channel on a real local Ray: batched, one call in flight, bounded, every value in order."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import engine_trainers
import optuna
import pytest
from optuna.trial import FrozenTrial

from sweeper.engine.broker import PruningJudge, start_broker
from sweeper.engine.broker_reporter import BrokerReporter
from sweeper.engine.executor import RayExecutor
from sweeper.engine.report_broker import Batch
from sweeper.spec.model import Resources
from sweeper.storage.urls import open_storage
from sweeper.worker.task import Objective, TrialOutcome, TrialTask

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_trainers")]

LOGS = 100_000


class RecordingPruner(optuna.pruners.BasePruner):
    """Notes what each of its calls saw of the trial; stops it once it has ``stop_at`` values."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.stop_at = stop_at
        self.seen: list[tuple[int, int, int]] = []  # (values, lowest step, highest step) per call
        self.trial: FrozenTrial | None = None
        self.stopped_at: int | None = None  # the highest step when it first said stop

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        values = trial.intermediate_values
        self.seen.append((len(values), min(values), max(values)))
        self.trial = trial
        stop = self.stop_at is not None and len(values) >= self.stop_at
        if stop and self.stopped_at is None:
            self.stopped_at = max(values)
        return stop


def _run_on_ray(
    url: str, tmp_path: Path, pruner: optuna.pruners.BasePruner, config: dict[str, Any]
) -> tuple[TrialOutcome, dict[int, float]]:
    """One trial of ``engine_trainers.log_many`` through the Ray executor and its report channel.

    Returns its outcome and every value the agent holds for it: stored, taken by the judge but not
    stored yet, and carried by the outcome.
    """
    study = optuna.create_study(storage=open_storage(url))
    trial = study.ask()
    judge = PruningJudge(study, pruner)
    executor = RayExecutor(Resources(cpus=1), judge)
    task = TrialTask(
        sweep_id="abcdefgh",
        sweep_name="channel",
        trial_id=trial._trial_id,
        number=trial.number,
        params={},
        config=config,
        objectives=(Objective("loss"),),
        checkpoint_dir=str(tmp_path / "checkpoint"),
        sweep_dir=str(tmp_path / "sweep"),
        trainer=engine_trainers.log_many,
    )
    ended: list[tuple[TrialTask, TrialOutcome]] = []
    try:
        executor.start(task)
        deadline = time.monotonic() + 240
        while not ended and time.monotonic() < deadline:
            ended = executor.wait(1.0)
    finally:
        executor.close()
    ((_, outcome),) = ended
    judge.persist()
    stored = study._storage.get_trial(trial._trial_id).intermediate_values
    return outcome, {**stored, **judge.unstored(trial._trial_id), **dict(outcome.intermediate)}


def test_a_trial_logging_100k_times_completes_with_flat_memory_and_the_pruner_saw_every_value_in_order(
    journal_url: str, tmp_path: Path
) -> None:
    pruner = RecordingPruner()
    out = tmp_path / "memory.json"
    outcome, values = _run_on_ray(journal_url, tmp_path, pruner, {"logs": LOGS, "out": str(out)})

    assert outcome.state == "complete", outcome.fail_reason
    assert values == {step: 1.0 / (step + 1) for step in range(LOGS)}
    # Each call of the pruner saw steps 0..n-1, every one of them (no value skipped or out of
    # order), more of them each time, and the last call saw all of them.
    assert all(low == 0 and high == count - 1 for count, low, high in pruner.seen), pruner.seen[:5]
    counts = [count for count, _, _ in pruner.seen]
    assert counts == sorted(set(counts)) and counts[-1] == LOGS
    assert pruner.trial is not None and pruner.trial.intermediate_values == values
    # Far fewer calls than reports: the reports travelled in batches.
    assert len(counts) < LOGS / 10
    # The worker's memory after a tenth of the logs and at the end: flat (the old channel kept
    # every value in the trial, and one pending Ray task per report).
    memory = json.loads(out.read_text())
    grown_mib = (memory["rss_end_kib"] - memory["rss_tenth_kib"]) / 1024
    assert grown_mib < 8, memory


def test_the_pruners_stop_reaches_a_trial_that_logs_as_fast_as_it_can(
    journal_url: str, tmp_path: Path
) -> None:
    pruner = RecordingPruner(stop_at=500)
    out = tmp_path / "memory.json"
    outcome, values = _run_on_ray(journal_url, tmp_path, pruner, {"logs": 10 * LOGS, "out": str(out)})

    assert outcome.state == "pruned"
    assert not out.exists()  # the trainer never finished its loop
    last = max(values)
    # Every value it logged, up to the report that raised the stop, after the one stopped at.
    assert values == {step: 1.0 / (step + 1) for step in range(last + 1)}
    assert pruner.stopped_at is not None and 499 <= pruner.stopped_at < last < 10 * LOGS - 1


def test_one_call_in_flight_bounded_batches_in_order_and_the_answer_names_the_report_stopped_at(
    ray_session: None,
) -> None:
    import ray

    broker = start_broker()
    reporter = BrokerReporter(broker, wants_decisions=True, max_buffered=100)
    done = threading.Event()

    def trainer() -> None:
        for step in range(1_000):
            reporter.report(7, step, step / 10)
        done.set()

    threading.Thread(target=trainer, daemon=True).start()
    received: list[list[float]] = []
    # The agent's part, by hand: take the pending calls, answer them (the first one: stop).
    while not done.is_set() or sum(len(v) for v in received) < 1_000:
        calls, _ = ray.get(broker.drain.remote(0.5))
        assert len(calls) <= 1  # one call in flight
        for _, batches in calls:
            (batch,) = batches
            assert batch.trial_id == 7 and len(batch.values) <= 100  # the buffer's bound
            received.append(batch.values)
        ray.get(broker.resolve.remote({key: [7] if len(received) == 1 else [] for key, _ in calls}))

    assert [v for values in received for v in values] == [step / 10 for step in range(1_000)]
    assert len(received) >= 10  # 1,000 values through a buffer of 100: the trainer waited
    first = received[0]
    assert reporter.stopped(7) == (round(first[-1] * 10), first[-1])
    assert reporter.close(7) == []  # everything was taken
    ray.kill(broker)


def test_when_the_broker_is_gone_the_values_stay_with_the_trial_in_order(ray_session: None) -> None:
    import ray

    broker = start_broker()
    ray.kill(broker)
    reporter = BrokerReporter(broker, wants_decisions=True, max_buffered=100)
    for step in range(1_000):  # never waits: a dead channel keeps what it is given
        reporter.report(3, step, float(step))

    assert reporter.close(3) == [(step, float(step)) for step in range(1_000)]
    assert reporter.stopped(3) is None


def test_a_drain_waiting_for_reports_ends_when_the_broker_is_woken_and_later_drains_do_not_wait(
    ray_session: None,
) -> None:
    """The agent's last drain, as it closes, takes what is there and returns: no wait sat out."""
    import ray

    broker = start_broker()
    try:
        waiting = broker.drain.remote(max_wait=60.0)
        ray.get(broker.started.remote(5))  # taken by the drain at once: an ordinary drain
        assert ray.get(waiting, timeout=30) == ([], [5])
        waiting = broker.drain.remote(max_wait=60.0)
        broker.wake.remote()
        assert ray.get(waiting, timeout=30) == ([], [])  # 60 s otherwise
        assert ray.get(broker.drain.remote(max_wait=60.0), timeout=30) == ([], [])
    finally:
        ray.kill(broker)


def test_a_reset_broker_serves_the_next_run_and_answers_an_earlier_runs_calls_at_once(
    ray_session: None,
) -> None:
    import ray

    broker = start_broker()
    try:
        first = ray.get(broker.reset.remote())
        waiting = broker.report.remote([Batch(1, [0], [0.5])], first)  # run 1's call, not drained
        ray.get(broker.started.remote(1, first))
        second = ray.get(broker.reset.remote())

        assert second == first + 1
        assert ray.get(waiting, timeout=30) == []  # answered by the reset: nothing stops
        # A trial of run 1 still sending (its agent has ended): answered at once, never drained.
        assert ray.get(broker.report.remote([Batch(1, [1], [0.4])], first), timeout=30) == []
        broker.started.remote(1, first)
        call = broker.report.remote([Batch(2, [0], [0.3])], second)
        calls, started = ray.get(broker.drain.remote(5.0), timeout=30)
        assert [[b.trial_id for b in batches] for _, batches in calls] == [[2]]
        assert started == []
        ray.get(broker.resolve.remote({calls[0][0]: [2]}))
        assert ray.get(call, timeout=30) == [2]
    finally:
        ray.kill(broker)


def test_an_agent_run_on_a_ray_it_did_not_start_leaves_its_broker_to_the_next_one(
    journal_url: str, tmp_path: Path
) -> None:
    """A new broker takes a worker from Ray's pool, one a trial would have run in: back-to-back
    runs of a process (a notebook's ``sweeper.agent`` calls) share one."""
    study = optuna.create_study(storage=open_storage(journal_url))
    first = RayExecutor(Resources(cpus=1), PruningJudge(study, RecordingPruner()))
    first.close()
    pruner = RecordingPruner()
    config = {"logs": 1_000, "out": str(tmp_path / "memory.json")}
    outcome, values = _run_on_ray(journal_url, tmp_path, pruner, config)

    assert outcome.state == "complete", outcome.fail_reason
    assert values == {step: 1.0 / (step + 1) for step in range(1_000)}
    assert pruner.seen  # the values came through the kept broker, not only with the outcome
    second = RayExecutor(Resources(cpus=1), PruningJudge(study, RecordingPruner()))
    try:
        assert second.epoch == first.epoch + 2  # the same actor, reset for each run
    finally:
        second.close()
