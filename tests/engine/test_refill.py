"""The loop's refill: trials that end while it refills are refilled first and recorded with the rest."""

from __future__ import annotations

from typing import Any

import engine_trainers
import optuna
import pytest
from optuna.trial import TrialState
from quick_executor import EndsAtOnce

import sweeper
from sweeper.engine import setup
from sweeper.storage import batch
from sweeper.storage.urls import open_storage


@pytest.mark.usefixtures("project")
def test_trials_ending_while_the_loop_refills_are_refilled_first_and_recorded_in_one_write(
    any_storage_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = any_storage_url
    spec = {"method": "grid", "metric": {"name": "loss"}, "parameters": {"x": {"values": [0, 1, 2, 3, 4, 5]}}}
    sweep_id = sweeper.sweep(spec, storage=url)
    executor = EndsAtOnce(slots=2, on_looks=True)
    monkeypatch.setattr(setup, "make_executor", lambda *args, **kwargs: executor)
    real_write = batch.write_trials
    writes: list[tuple[list[int], list[int]]] = []  # (starts, ends) of each write

    def noting(storage: Any, batch_writes: list[batch.TrialWrite]) -> batch.Refused:
        starts = [w.trial_id for w in batch_writes if w.state is None]
        ends = [w.trial_id for w in batch_writes if w.state is not None]
        writes.append((starts, ends))
        return real_write(storage, batch_writes)

    monkeypatch.setattr(batch, "write_trials", noting)
    summary = sweeper.agent(sweep_id, function=engine_trainers.quadratic, storage=url, executor="local")

    trials = optuna.load_study(study_name=sweep_id, storage=open_storage(url)).trials
    assert sorted(t.params["x"] for t in trials) == [0, 1, 2, 3, 4, 5]
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert summary.complete == 6
    assert executor.most_at_once == 2  # never more trials than slots
    # The first wave's starts, then one write: each end was seen as the refill before it ended,
    # its slot refilled at once, and all six ends are written together with the last starts (a
    # trial that started and ended in that pass has both in it, its params kept: checked above).
    ended_in = [ends for _, ends in writes if ends]
    assert len(ended_in) == 1 and sorted(ended_in[0]) == sorted(t._trial_id for t in trials)
    assert sum(len(starts) for starts, _ in writes) == 6
