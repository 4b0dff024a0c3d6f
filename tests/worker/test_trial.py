"""The trial a function trainer gets: pruning stops take effect at the next report, as W&B's agent does."""

from __future__ import annotations

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
    # The decision came at step 1; the trainer stopped when it reported step 2, and keeps it.
    assert [step for step, _ in outcome.intermediate] == [0, 1, 2]
    assert len(reporter.reports) == 2  # the report after the decision is not asked about again
    assert outcome.values == (pytest.approx(0.7),)  # the best value it logged, W&B's run summary


def test_a_trial_that_reports_through_to_its_end_completes_even_if_stopped_at_its_last_report(
    tmp_path: Path,
) -> None:
    outcome = execute_trial(_task(tmp_path, _five_epochs), StopAt(5))

    assert outcome.state == "complete"
    assert outcome.values == (pytest.approx(0.9),)
    assert [step for step, _ in outcome.intermediate] == [0, 1, 2, 3, 4]


def test_the_stop_raises_trial_pruned_out_of_log(tmp_path: Path) -> None:
    trial = Trial(_task(tmp_path, None), StopAt(1))
    trial.log({"acc": 0.5})
    with pytest.raises(TrialPruned, match="pruned at step 1"):
        trial.log({"acc": 0.6})


def test_failure_kinds_say_what_may_be_retried_for_free_and_what_may_blame_the_machine() -> None:
    assert {f for f in Failure if f.infrastructure} == {
        Failure.NODE_LOST,
        Failure.AGENT_LOST,
        Failure.AGENT_INTERRUPTED,
        Failure.AGENT_STOPPED,
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
