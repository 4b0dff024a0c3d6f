"""The trial a function trainer gets: pruning stops take effect at the next report, as W&B's agent does."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from sweeper.errors import TrialPruned
from sweeper.worker.task import Failure, Objective, TrialOutcome, TrialTask
from sweeper.worker.trial import Trial, execute_trial


class StopAt:
    """A reporter whose pruner stops the trial at its ``n``-th report (the reporter protocol)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.reports: list[tuple[int, float]] = []

    def report(self, trial_id: int, step: int, value: float) -> bool:
        self.reports.append((step, value))
        return len(self.reports) == self.n

    def started(self, trial_id: int) -> None:
        pass

    def settle(self, trial_id: int, timeout: float) -> None:
        pass  # it decides within report()


def _task(tmp_path: Path, trainer: Any) -> TrialTask:
    return TrialTask(
        sweep_id="abcdefgh",
        sweep_name="demo",
        trial_id=0,
        number=0,
        params={},
        config={"epochs": 5},
        objectives=(Objective("acc", "maximize"),),
        checkpoint_dir=str(tmp_path / "ckpt"),
        sweep_dir=str(tmp_path / "sweep"),
        trainer=trainer,
    )


def _five_epochs(config: dict[str, Any], trial: Trial) -> float:
    acc = 0.0
    for epoch in range(config["epochs"]):
        acc = 0.5 + 0.1 * epoch
        trial.log({"acc": acc}, step=epoch)
    return acc


def test_a_stop_decided_at_a_report_is_raised_at_the_next_one(tmp_path: Path) -> None:
    reporter = StopAt(2)
    outcome = execute_trial(_task(tmp_path, _five_epochs), reporter)

    assert outcome.state == "pruned"
    # The decision came at step 1; the trainer stopped when it reported step 2, and keeps it: the
    # report after the decision is not asked about again, its value goes with the outcome.
    assert [step for step, _ in reporter.reports] == [0, 1]
    assert outcome.intermediate == ((2, pytest.approx(0.7)),)
    assert outcome.values == (pytest.approx(0.7),)  # the best value it logged, W&B's run summary


def test_a_trial_that_reports_through_to_its_end_completes_even_if_stopped_at_its_last_report(
    tmp_path: Path,
) -> None:
    reporter = StopAt(5)
    outcome = execute_trial(_task(tmp_path, _five_epochs), reporter)

    assert outcome.state == "complete"
    assert outcome.values == (pytest.approx(0.9),)
    assert [step for step, _ in reporter.reports] == [0, 1, 2, 3, 4]
    assert outcome.intermediate == ()  # the reporter delivered every value as it came


def test_the_stop_raises_trial_pruned_out_of_log(tmp_path: Path) -> None:
    trial = Trial(_task(tmp_path, None), StopAt(1))
    trial.log({"acc": 0.5})
    with pytest.raises(TrialPruned, match="pruned at step 1"):
        trial.log({"acc": 0.6})


class NoticesStart(StopAt):
    """A reporter that notes when the trial's worker says its trainer starts."""

    def __init__(self) -> None:
        super().__init__(0)
        self.starts: list[tuple[int, int]] = []  # (trial id, reports before it)

    def started(self, trial_id: int) -> None:
        self.starts.append((trial_id, len(self.reports)))


@pytest.mark.parametrize("timeout", [None, 30.0])
def test_the_start_notice_is_sent_before_the_trainer_runs_only_when_a_timeout_counts_from_it(
    tmp_path: Path, timeout: float | None
) -> None:
    reporter = NoticesStart()
    task = dataclasses.replace(_task(tmp_path, _five_epochs), trial_id=7, timeout=timeout)
    outcome = execute_trial(task, reporter)

    assert outcome.state == "complete"
    assert len(reporter.reports) == 5
    # On Ray the notice is an actor call and a wake of the agent's drain: a trial without a timeout
    # has no use for it.
    assert reporter.starts == ([] if timeout is None else [(7, 0)])


class LateStop:
    """A buffering reporter (the protocol of the Ray channel): values are delivered later, in one go
    at the end, and the pruner's stop for report ``n`` arrives ``lag`` reports after it."""

    def __init__(self, n: int | None, lag: int, undelivered: int = 0) -> None:
        self.n, self.lag, self.undelivered = n, lag, undelivered
        self.buffered: list[tuple[int, float]] = []
        self.closed: list[tuple[int, float]] = []

    def report(self, trial_id: int, step: int, value: float) -> bool:
        self.buffered.append((step, value))
        return False

    def stopped(self, trial_id: int) -> tuple[int, float] | None:
        arrived = self.n is not None and len(self.buffered) >= self.n + self.lag
        return self.buffered[self.n - 1] if arrived and self.n is not None else None

    def started(self, trial_id: int) -> None:
        pass

    def settle(self, trial_id: int, timeout: float) -> None:
        self.lag = 0  # every value so far decided on: a stop for one of them is known now

    def close(self, trial_id: int) -> list[tuple[int, float]]:
        cut = len(self.buffered) - self.undelivered
        self.closed = self.buffered[:cut]
        return self.buffered[cut:]


def test_a_stop_that_arrives_later_is_raised_at_the_first_report_after_it_named_by_its_step(
    tmp_path: Path,
) -> None:
    reporter = LateStop(2, lag=2)  # decided at the 2nd report (step 1), known after the 4th
    trial = Trial(_task(tmp_path, None), reporter)
    for epoch in range(4):
        trial.log({"acc": 0.5 + 0.1 * epoch}, step=epoch)
    with pytest.raises(TrialPruned, match=r"pruned at step 1 \(acc=0.6\)"):
        trial.log({"acc": 0.9}, step=4)

    assert [step for step, _ in reporter.buffered] == [0, 1, 2, 3]
    assert trial.unreported() == ((4, 0.9),)


def test_the_report_after_a_band_waits_for_the_bands_verdict_and_raises_the_stop(tmp_path: Path) -> None:
    reporter = LateStop(2, lag=5)  # decided at the 2nd report; without waiting, known after the 7th
    task = dataclasses.replace(_task(tmp_path, None), verdict_at=frozenset({2}))
    trial = Trial(task, reporter)
    trial.log({"acc": 0.5}, step=0)
    trial.log({"acc": 0.6}, step=1)  # the band
    with pytest.raises(TrialPruned, match=r"pruned at step 1 \(acc=0.6\)"):
        trial.log({"acc": 0.7}, step=2)  # waits for the band's verdict: the stop
    assert trial.unreported() == ((2, 0.7),)


def test_no_other_report_waits_the_band_s_own_included(tmp_path: Path) -> None:
    class Settles(LateStop):
        def settle(self, trial_id: int, timeout: float) -> None:
            raise AssertionError("only the report after a band waits")

    task = dataclasses.replace(_task(tmp_path, None), verdict_at=frozenset({2}))
    trial = Trial(task, Settles(None, lag=0))
    trial.log({"acc": 0.5}, step=0)
    trial.log({"acc": 0.5}, step=1)  # the band's own report
    with pytest.raises(AssertionError, match="only the report after a band waits"):
        trial.log({"acc": 0.5}, step=2)


def test_a_buffering_reporter_is_flushed_at_the_end_and_what_it_could_not_deliver_rides_in_the_outcome(
    tmp_path: Path,
) -> None:
    reporter = LateStop(None, lag=0, undelivered=2)
    outcome = execute_trial(_task(tmp_path, _five_epochs), reporter)

    assert outcome.state == "complete"
    assert [step for step, _ in reporter.closed] == [0, 1, 2]
    assert [step for step, _ in outcome.intermediate] == [3, 4]


def test_failure_kinds_say_what_may_be_retried_for_free_and_what_may_blame_the_machine() -> None:
    assert {f for f in Failure if f.infrastructure} == {
        Failure.NODE_LOST,
        Failure.AGENT_LOST,
        Failure.AGENT_INTERRUPTED,
        Failure.AGENT_STOPPED,
        Failure.MISPLACED,  # a worker bound to other GPUs refused it: the trial never ran
    }
    assert {f for f in Failure if f.may_blame_machine} == {Failure.TRAINER, Failure.WORKER_DIED}
    failed = TrialOutcome.failed(Failure.TIMEOUT, "timeout: trial ran past sweeper.timeout (1 s)")
    assert failed.state == "failed" and failed.failure is Failure.TIMEOUT


def test_a_trainer_that_raises_fails_as_a_trainer_failure(tmp_path: Path) -> None:
    def broken(config: dict[str, Any], trial: Trial) -> float:
        raise ValueError("boom")

    outcome = execute_trial(_task(tmp_path, broken))
    assert outcome.state == "failed" and outcome.failure is Failure.TRAINER
    assert outcome.fail_reason is not None and outcome.fail_reason.startswith("ValueError: boom")
