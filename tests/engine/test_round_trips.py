"""Storage round trips on the agent's path: two per trial, on every storage (the target is three).

Taking or creating the trial is one; its params, attrs and lease are the other, written with the
end (state, values, attrs, late intermediate values) of the trial whose slot it takes. (An
unbudgeted sweep first looks for a queued retry, a round trip that writes nothing when none waits.)
Counted with a storage wrapper that counts every call made through it, run by a real agent.
"""

from __future__ import annotations

from pathlib import Path

import engine_trainers
import pytest
from counting import CountingStorage
from optuna.trial import TrialState

import sweeper
from sweeper.engine.agent import Agent
from sweeper.storage.urls import open_storage
from sweeper.storage.work import QUEUE_BLOCK

TRIALS = 12


def _per_trial_writes(storage: CountingStorage) -> int:
    """Writes about trials (the agent's heartbeat and the sweep's state are the study's, per agent)."""
    return storage.writes() - sum(n for name, n in storage.calls.items() if name.startswith("set_study"))


@pytest.mark.parametrize("budgeted", [False, True], ids=["created", "taken from the queue"])
def test_each_trial_costs_two_storage_writes(any_storage_url: str, project: Path, budgeted: bool) -> None:
    spec: dict[str, object] = {
        "method": "random",
        "metric": {"name": "loss"},
        "parameters": {"x": {"min": 0.0, "max": 2.0}, "kind": {"values": ["a", "b", "c"]}},
    }
    if budgeted:
        spec["run_cap"] = TRIALS
    sweep_id = sweeper.sweep(spec, storage=any_storage_url)
    storage = CountingStorage(open_storage(any_storage_url))

    summary = Agent(
        sweep_id, storage=storage, function=engine_trainers.noop, executor="local", count=TRIALS
    ).run()

    assert summary.complete == TRIALS
    calls = dict(storage.calls)
    # Taking a trial: one claim of the oldest WAITING one (one transaction on a database, Optuna's
    # conditional update on the journal); an unbudgeted sweep that has none waiting then creates
    # one, a second round trip (the database claim found nothing to write).
    claims = calls.get("pop a waiting trial", 0) + calls.get("set_trial_state_values", 0)
    assert claims <= TRIALS + 1, calls
    assert calls.get("create_new_trial", 0) == (0 if budgeted else TRIALS), calls
    # Its start (params, attrs, lease) rides in the write that ends the trial whose slot it takes
    # (state, values, attrs): one trial at a time, the first start and the last end are alone.
    assert calls["write_trials"] == TRIALS + 1, calls
    assert not [n for n in calls if n.startswith("set_trial") and n != "set_trial_state_values"], calls
    # A budgeted sweep's work is queued block by block: the claim that finds the queue empty before
    # each block writes nothing (the block's first trial is taken with it).
    empty_claims = -(-TRIALS // QUEUE_BLOCK) if budgeted else calls.get("pop a waiting trial", 0)
    assert _per_trial_writes(storage) - empty_claims <= 2 * TRIALS + 1, calls
    # Every trial's params, attrs, lease and result are all there, as Optuna reads them.
    trials = open_storage(any_storage_url).get_all_trials(
        open_storage(any_storage_url).get_study_id_from_name(sweep_id)
    )
    assert len(trials) == TRIALS
    for trial in trials:
        assert trial.state == TrialState.COMPLETE
        assert set(trial.params) == {"x", "kind"}
        assert trial.values == [trial.params["x"]]
        assert trial.user_attrs["config"] == {"x": trial.params["x"], "kind": trial.params["kind"]}
        assert trial.user_attrs["agent"] == summary.agent_id and trial.user_attrs["attempt"] == 0
        assert {"host", "duration_s", "metrics"} <= set(trial.user_attrs)
        assert trial.system_attrs["sweeper:lease"]["agent"] == summary.agent_id


@pytest.mark.ray
@pytest.mark.usefixtures("ray_trainers")
@pytest.mark.parametrize("method", ["random", "grid", "bayes"])
def test_a_wave_of_trials_drawn_alone_starts_in_one_write(
    project: Path, method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Random draws and grid points never read the other trials: the first wave is prepared
    together and written at once (its trials start together); bayes writes each start before it
    asks for the next, so that its model sees every running trial's params."""
    from sweeper.storage import batch

    writes: list[tuple[int, int]] = []  # (starts, ends) in each write of trials' starts or ends
    real = batch.write_trials

    def counted(storage: object, trial_writes: list[batch.TrialWrite]) -> object:
        starts = sum(1 for w in trial_writes if w.params)
        ends = sum(1 for w in trial_writes if w.state is not None)
        if starts or ends:  # not the pruner's writes of reported values
            writes.append((starts, ends))
        return real(storage, trial_writes)  # type: ignore[arg-type]

    monkeypatch.setattr("sweeper.engine.loop.batch.write_trials", counted)
    url = f"sqlite:///{project / 's.db'}"
    spec = {
        "method": method,
        "metric": {"name": "loss"},
        "parameters": {"x": {"values": [0.0, 0.5, 1.0, 1.5]}},
        "run_cap": 4,
        "sweeper": {"distinct": False},
    }
    sweep_id = sweeper.sweep(spec, storage=url)
    summary = sweeper.agent(sweep_id, function=engine_trainers.quadratic, storage=url, max_concurrent=4)

    assert summary.complete == 4
    if method == "bayes":
        assert writes[:4] == [(1, 0)] * 4, writes
    else:
        assert writes[0] == (4, 0), writes
    assert sum(starts for starts, _ in writes) == 4 and sum(ends for _, ends in writes) == 4
