"""sweeper.load and the trial records, on sweeps recorded the way the engine records them."""

from __future__ import annotations

import json

import optuna
import pytest
from inspect_sweeps import SPEC, Built, config_of, create, finish_trial, loss_of, start_trial

import sweeper
from sweeper.analysis import results as res
from sweeper.errors import SweepNotFoundError, UsageError


def test_load_gives_every_trial_with_config_values_curve_and_trackers(finished: Built) -> None:
    results = sweeper.load(finished.sweep_id, storage=finished.url)
    stored = {t.number: t for t in finished.study.get_trials()}

    assert results.id == finished.sweep_id
    assert results.name == "mnist-lr"
    assert results.state == "finished"
    assert results.objective_names == ("loss",)
    assert len(results.trials) == len(stored)
    for record in results.trials:
        frozen = stored[record.number]
        assert record.state == frozen.state.name.lower()
        assert record.params == frozen.params
        if record.state == "waiting":  # an unused run_cap budget token
            assert record.config == {} and record.values is None
            continue
        assert record.config == config_of(frozen.params)
        assert record.intermediate_values == tuple(sorted(frozen.intermediate_values.items()))
        assert record.tracker_runs == {"jsonl": f".sweeper/sweeps/x/trial-{record.number}/metrics.jsonl"}
        assert record.duration_s == 1.0 + record.number
        if record.state == "complete":
            assert record.values == (loss_of(frozen.params),)
            assert record.value == frozen.value
            assert record.metrics["train"] == {"epochs": 5}
        elif record.state == "pruned":  # stopped: keeps the best value it logged, as W&B's summary does
            assert record.values == (8.5,) and record.value == frozen.value == 8.5
        else:
            assert record.values is None
    failed = [t for t in results.trials if t.state == "fail"]
    assert [t.fail_reason for t in failed] == ["RuntimeError: CUDA out of memory"]
    counts = results.counts()
    assert (counts["complete"], counts["pruned"], counts["fail"], counts["running"]) == (9, 1, 1, 0)
    assert counts["waiting"] == SPEC["run_cap"] - 11
    assert results.budget() == SPEC["run_cap"]


def test_records_are_frozen_and_json_ready(finished: Built) -> None:
    results = sweeper.load(finished.sweep_id, storage=finished.url)
    record = results.best()[0]
    with pytest.raises(AttributeError):
        record.number = 3  # type: ignore[misc]
    payload = json.loads(json.dumps(record.to_dict(), allow_nan=False))
    assert payload["number"] == record.number
    assert payload["value"] == record.value
    assert payload["config"]["model"]["depth"] == record.config["model"]["depth"]
    assert payload["intermediate_values"][-1] == list(record.intermediate_values[-1])
    assert payload["started_at"] == record.started_at.isoformat()  # type: ignore[union-attr]


def test_best_is_the_lowest_loss_and_matches_optuna(finished: Built) -> None:
    results = sweeper.load(finished.sweep_id, storage=finished.storage)
    top = results.best(3)
    assert top[0].number == finished.study.best_trial.number
    assert [t.value for t in top] == sorted(t.value for t in results.completed())[:3]
    assert len(results.best(None)) == 9


def test_best_of_a_multi_objective_sweep_is_optunas_pareto_front(multi: Built) -> None:
    results = sweeper.load(multi.sweep_id, storage=multi.url)
    assert results.is_multi_objective
    assert results.objective_names == ("loss", "accuracy")
    front = results.best(None)
    assert {t.number for t in front} == {t.number for t in multi.study.best_trials}
    assert [t.values[0] for t in front] == sorted(t.values[0] for t in front)  # type: ignore[index]
    assert results.best(1) == front[:1]


def test_sorted_by_objective_metric_config_key_and_duration(finished: Built) -> None:
    results = sweeper.load(finished.sweep_id, storage=finished.url)
    by_loss = results.sorted_by("loss")
    complete = [t for t in by_loss if t.values]
    assert [t.value for t in complete] == sorted(t.value for t in complete)  # type: ignore[type-var]
    assert by_loss[: len(complete)] == complete  # trials without a value come last
    widths = [t.config["model"]["width"] for t in results.sorted_by("model.width") if t.config]
    assert widths == sorted(widths)
    durations = [t.duration_s for t in results.sorted_by("duration", reverse=True) if t.duration_s]
    assert durations == sorted(durations, reverse=True)
    assert results.sorted_by("number")[0].number == 0
    with pytest.raises(UsageError, match=r"sort key must be .* got 'nope'"):
        results.sorted_by("nope")


def test_running_sweep_shows_running_trials_elapsed_and_agents(running: Built) -> None:
    results = sweeper.load(running.sweep_id, storage=running.url)
    live = [t for t in results.trials if t.state == "running"]
    assert len(live) == 2
    assert all(t.duration_s is not None and t.duration_s >= 0 for t in live)
    assert {t.last_intermediate for t in live} == {(2, 2.5), (1, 4.0)}
    assert {t.config["seed"] for t in live} == {0}
    agents = {a.id: a for a in results.agents}
    assert set(agents) == {"agent-a", "agent-old"}
    assert agents["agent-a"].is_active() and not agents["agent-old"].is_active()
    assert agents["agent-a"].host == "node-1" and agents["agent-a"].pid == 4242
    assert results.agents[0].id == "agent-a"  # most recently seen first


def test_trial_lookup_and_unknown_number(finished: Built) -> None:
    results = sweeper.load(finished.sweep_id, storage=finished.url)
    assert results.trial(2).number == 2
    with pytest.raises(UsageError, match=r"trial number must be one of .* got 999"):
        results.trial(999)


def test_unknown_sweep_raises_sweep_not_found(finished: Built) -> None:
    with pytest.raises(SweepNotFoundError, match="no sweep 'zzzzzzzz'"):
        sweeper.load("zzzzzzzz", storage=finished.url)


def test_load_by_name(finished: Built) -> None:
    assert sweeper.load("mnist-lr", storage=finished.url).id == finished.sweep_id


def test_to_frame_flattens_config(finished: Built) -> None:
    frame = sweeper.load(finished.sweep_id, storage=finished.url).to_frame()
    assert len(frame) == len(finished.study.get_trials())
    assert {"number", "state", "value.loss", "config.lr", "config.model.depth", "metric.train.epochs"} <= set(
        frame.columns
    )
    row = frame[frame["number"] == finished.study.best_trial.number].iloc[0]
    assert row["value.loss"] == finished.study.best_value


def test_summarize_lists_each_sweep_with_counts_and_best(finished: Built) -> None:
    other = create(finished.url, {**SPEC, "name": "second", "run_cap": 2})
    finish_trial(other, start_trial(other))
    summaries = {s.id: s for s in res.summarize(finished.url)}
    assert set(summaries) == {finished.sweep_id, other.sweep_id}
    first = summaries[finished.sweep_id]
    assert first.best_values == (finished.study.best_value,)
    assert first.n_trials == SPEC["run_cap"]
    assert first.counts["complete"] == 9
    assert summaries[other.sweep_id].counts["waiting"] == 1


def test_pareto_front_keeps_ties_and_drops_dominated() -> None:
    def rec(number: int, values: tuple[float, ...]) -> res.TrialRecord:
        return res.TrialRecord(number=number, state="complete", values=values, config={}, params={})

    trials = [
        rec(0, (1.0, 1.0)),
        rec(1, (1.0, 1.0)),
        rec(2, (2.0, 3.0)),
        rec(3, (0.5, 0.5)),
        rec(4, (3.0, 0.2)),
    ]
    front = res.pareto_front(trials, ["minimize", "maximize"])
    assert [t.number for t in front] == [3, 0, 1, 2]  # 4 is dominated by 2 (worse on both)


def test_waiting_retry_gets_config_rebuilt_from_params(journal_url: str) -> None:
    built = create(journal_url, {k: v for k, v in SPEC.items() if k != "run_cap"})
    trial = start_trial(built)
    finish_trial(built, trial, "fail")
    built.study.enqueue_trial(dict(trial.params), user_attrs={"attempt": 1, "retry_of": trial.number})
    results = sweeper.load(built.sweep_id, storage=built.storage)
    retry = next(t for t in results.trials if t.state == "waiting")
    assert retry.retry_of == trial.number and retry.attempt == 1
    assert retry.config["model"] == config_of(trial.params)["model"]


def test_load_reads_optuna_sqlite_too(tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'x.db'}"
    built = create(url, SPEC)
    loss = finish_trial(built, start_trial(built))
    results = sweeper.load(built.sweep_id, storage=url)
    assert results.best()[0].value == loss
    assert isinstance(results.study(), optuna.Study)


def test_best_ranks_stopped_trials_only_when_asked(journal_url: str) -> None:
    built = create(journal_url, SPEC)
    for _ in range(3):
        finish_trial(built, start_trial(built))
    stopped = start_trial(built)
    # The engine stores a stopped trial's best logged value (here better than every complete one).
    built.study._storage.set_trial_state_values(stopped._trial_id, optuna.trial.TrialState.PRUNED, [-1.0])
    results = sweeper.load(built.sweep_id, storage=built.url)

    assert results.trial(stopped.number).values == (-1.0,)
    assert all(t.state == "complete" for t in results.best(None))
    best = results.best(1, include_stopped=True)
    assert [(t.number, t.state, t.value) for t in best] == [(stopped.number, "pruned", -1.0)]
