"""The inspect commands through click's runner: tables for people, ``--json`` parsed back for scripts."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from inspect_sweeps import MULTI_SPEC, SPEC, Built, create, finish_trial, start_trial

from sweeper.analysis import results as res
from sweeper.cli import main
from sweeper.cli.format import export_record, json_text
from sweeper.storage import sweeps


def invoke(*args: str) -> Result:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result


def as_json(*args: str) -> Any:
    result = invoke(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_ls_lists_sweeps_with_counts_and_best(finished: Built, running: Built) -> None:
    sweeps = {s["id"]: s for s in as_json("ls", "--storage", finished.url)}
    assert set(sweeps) == {finished.sweep_id, running.sweep_id}
    done = sweeps[finished.sweep_id]
    assert done["state"] == "finished"
    assert done["counts"]["complete"] == 9 and done["counts"]["fail"] == 1
    assert done["best_value"] == finished.study.best_value
    assert sweeps[running.sweep_id]["counts"]["running"] == 2

    table = invoke("ls", "--storage", finished.url)
    assert table.exit_code == 0
    assert finished.sweep_id in table.stdout and "mnist-lr" in table.stdout and "finished" in table.stdout


def test_status_of_a_running_sweep(running: Built) -> None:
    status = as_json("status", running.sweep_id, "--storage", running.url)
    assert status["id"] == running.sweep_id and status["state"] == "running"
    assert status["counts"]["running"] == 2 and status["counts"]["complete"] == 4
    assert status["progress"] == {"finished": 4, "total": 20}
    assert status["objectives"] == [{"name": "loss", "goal": "minimize"}]
    last = {r["number"]: r["last_metric"] for r in status["running"]}
    assert sorted(m["step"] for m in last.values()) == [1, 2]
    assert all(r["elapsed_s"] >= 0 for r in status["running"])
    assert status["best"][0]["value"] == running.study.best_value
    agents = {a["id"]: a for a in status["agents"]}
    assert agents["agent-a"]["active"] is True and agents["agent-old"]["active"] is False

    table = invoke("status", running.sweep_id, "--storage", running.url)
    assert table.exit_code == 0
    for text in ("Running", "Agents", "agent-a", "@ step 2", "Best so far"):
        assert text in table.stdout


def test_status_of_a_finished_sweep(finished: Built) -> None:
    status = as_json("status", finished.sweep_id, "--storage", finished.url)
    assert status["state"] == "finished" and status["running"] == [] and status["agents"] == []
    assert status["counts"]["pruned"] == 1


def test_trials_json_records_have_the_contract_fields(finished: Built) -> None:
    records = as_json("trials", finished.sweep_id, "--storage", finished.url, "--state", "complete")
    assert len(records) == 9
    for record in records:
        assert {"number", "state", "value", "values", "config", "duration_s", "tracker_runs"} <= set(record)
        frozen = finished.study.trials[record["number"]]
        assert record["value"] == frozen.value
        assert record["config"]["model"]["depth"] == frozen.params["model.depth"]
        assert record["tracker_runs"]["jsonl"].endswith(f"trial-{record['number']}/metrics.jsonl")


def test_trials_sort_state_filter_and_limit(finished: Built) -> None:
    by_loss = as_json(
        "trials", finished.sweep_id, "--storage", finished.url, "--sort", "loss", "--limit", "3"
    )
    assert [r["value"] for r in by_loss] == sorted(t.value for t in finished.study.trials if t.value)[:3]
    worst = as_json("trials", finished.sweep_id, "--storage", finished.url, "--sort", "loss", "--reverse")
    complete = [r["value"] for r in worst if r["value"] is not None]
    assert complete == sorted(complete, reverse=True)
    failed = as_json("trials", finished.sweep_id, "--storage", finished.url, "--state", "fail")
    assert [r["fail_reason"] for r in failed] == ["RuntimeError: CUDA out of memory"]

    table = invoke("trials", finished.sweep_id, "--storage", finished.url, "--limit", "2", "--sort", "loss")
    assert table.exit_code == 0
    assert "Showing 2 of 20 trials" in table.stdout
    assert '"model": {"depth": ' in table.stdout  # the nested config, as the trainer saw it


def test_trials_of_a_running_sweep(running: Built) -> None:
    live = as_json("trials", running.sweep_id, "--storage", running.url, "--state", "running")
    assert len(live) == 2 and all(r["value"] is None and r["duration_s"] >= 0 for r in live)


def test_best_single_and_top_k(finished: Built) -> None:
    (best,) = as_json("best", finished.sweep_id, "--storage", finished.url)
    assert best["number"] == finished.study.best_trial.number
    assert best["config"] == finished.study.best_trial.user_attrs["config"]
    top = as_json("best", finished.sweep_id, "--storage", finished.url, "--top", "4")
    assert [r["value"] for r in top] == sorted(r["value"] for r in top) and len(top) == 4
    table = invoke("best", finished.sweep_id, "--storage", finished.url)
    assert str(finished.study.best_trial.number) in table.stdout


def test_best_of_a_multi_objective_sweep_is_the_pareto_front(multi: Built) -> None:
    front = as_json("best", multi.sweep_id, "--storage", multi.url)
    assert {r["number"] for r in front} == {t.number for t in multi.study.best_trials}
    assert all(len(r["values"]) == 2 for r in front)
    table = invoke("best", multi.sweep_id, "--storage", multi.url)
    assert "Pareto front" in table.stdout and "accuracy" in table.stdout


def test_importance_table_and_json(finished: Built) -> None:
    rows = as_json("importance", finished.sweep_id, "--storage", finished.url)
    assert {r["param"] for r in rows} == {"lr", "model.depth", "model.width"}
    assert sum(r["importance"] for r in rows) == pytest.approx(1.0)
    assert rows[0]["param"] == "lr"  # the objective is driven by lr above all
    table = invoke("importance", finished.sweep_id, "--storage", finished.url, "--evaluator", "ped-anova")
    assert table.exit_code == 0 and "model.depth" in table.stdout


def test_importance_of_a_multi_objective_sweep_has_one_column_per_objective(multi: Built) -> None:
    rows = as_json("importance", multi.sweep_id, "--storage", multi.url)
    assert {r["objective"] for r in rows} == {"loss", "accuracy"}


def test_importance_needs_two_complete_trials(running: Built, journal_url: str) -> None:
    from inspect_sweeps import SPEC, create

    empty = create(journal_url, SPEC)
    result = CliRunner().invoke(main, ["importance", empty.sweep_id, "--storage", journal_url])
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"error: parameter importances need at least 2 complete trials, sweep {empty.sweep_id} has 0"
    )


def test_compare_shows_differing_config_metrics_and_curves(finished: Built, tmp_path: Path) -> None:
    a, b = (t.number for t in finished.study.trials[:2])
    records = as_json("compare", finished.sweep_id, str(a), str(b), "--storage", finished.url)
    assert [r["number"] for r in records] == [a, b]
    differing = records[0]["differing_config"]
    assert "seed" not in differing and "lr" in differing
    plot = tmp_path / "curves.html"
    table = invoke(
        "compare", finished.sweep_id, str(a), str(b), "--storage", finished.url, "--plot", str(plot)
    )
    assert table.exit_code == 0
    assert "config.lr" in table.stdout and "metric.loss" in table.stdout and "curve" in table.stdout
    assert "config.seed" not in table.stdout
    assert plot.read_text().count('"name":"trial ') == 2


def test_compare_needs_two_trials_and_known_numbers(finished: Built) -> None:
    result = CliRunner().invoke(main, ["compare", finished.sweep_id, "0", "--storage", finished.url])
    assert result.exit_code == 2 and "compare needs at least 2 trial numbers, got 1" in result.stderr
    result = CliRunner().invoke(main, ["compare", finished.sweep_id, "0", "77", "--storage", finished.url])
    assert result.exit_code == 2 and "got 77" in result.stderr


def test_export_json_and_csv(finished: Built, tmp_path: Path) -> None:
    out = tmp_path / "trials.json"
    result = invoke(
        "export", finished.sweep_id, "--format", "json", "--out", str(out), "--storage", finished.url
    )
    assert result.exit_code == 0
    records = json.loads(out.read_text())
    assert len(records) == len(finished.study.trials)
    assert {r["state"] for r in records} == {"complete", "pruned", "fail", "waiting"}

    result = invoke("export", finished.sweep_id, "--format", "csv", "--storage", finished.url)
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == len(finished.study.trials)
    best = finished.study.best_trial
    row = next(r for r in rows if int(r["number"]) == best.number)
    assert float(row["value.loss"]) == best.value
    assert int(row["config.model.depth"]) == best.params["model.depth"]
    assert float(row["duration_s"]) == best.user_attrs["duration_s"]
    assert row["started_at"] and row["completed_at"]


def test_json_of_trials_is_json_text_of_their_dicts(finished: Built) -> None:
    """``trials``, ``best`` and ``export`` encode each record fast; the text holds what ``json_text`` of
    the records' ``to_dict()`` prints (the one encoder before), one record a line, values in order."""
    url, sweep_id = finished.url, finished.sweep_id
    results = res.load(sweep_id, url)
    assert {t.state for t in results.trials} == {"complete", "pruned", "fail", "waiting"}

    def same_records(text: str, reference: str) -> None:
        assert text.count("\n") == reference.count("\n")  # "[", a line a record, "]"
        # Dumped again: the same values in the same order, whatever a float's spelling.
        assert json.dumps(json.loads(text)) == json.dumps(json.loads(reference))

    every = json_text([t.to_dict() for t in results.select()])
    same_records(invoke("trials", sweep_id, "--storage", url, "--json").stdout, every)
    export = invoke("export", sweep_id, "--format", "json", "--storage", url).stdout
    # Export names each record's objective values too (a file that can warm-start another sweep).
    assert export == json_text([export_record(t, results.objective_names) for t in results.trials])
    best = json_text([t.to_dict() for t in results.best(3)])
    same_records(invoke("best", sweep_id, "--top", "3", "--storage", url, "--json").stdout, best)


def test_unknown_sweep_is_one_line_with_exit_code_4(finished: Built) -> None:
    for command in ("status", "trials", "best", "export", "importance"):
        result = CliRunner().invoke(main, [command, "nosuchid", "--storage", finished.url])
        assert result.exit_code == 4, command
        assert result.stderr == "error: no sweep 'nosuchid' in this storage\n"


def test_a_name_shared_by_sweeps_means_the_newest_with_a_note_on_stderr(finished: Built) -> None:
    # The same spec submitted three times (as running the quickstart again does): the name keeps working.
    second, third = create(finished.url, SPEC), create(finished.url, SPEC)
    finish_trial(third, start_trial(third))
    result = invoke("best", "mnist-lr", "--storage", finished.url, "--json")
    assert result.exit_code == 0, result.output
    assert [r["number"] for r in json.loads(result.stdout)] == [0]  # --json stdout stays pure JSON
    created = sweeps.get_sweep(third.storage, third.sweep_id).created_at
    assert result.stderr == (
        f"note: 3 sweeps are named 'mnist-lr'; using the newest, {third.sweep_id} (created {created}); "
        f"the others: {second.sweep_id}, {finished.sweep_id}\n"
    )
    status = as_json("status", "mnist-lr", "--storage", finished.url)
    assert status["id"] == third.sweep_id
    # Ids stay exact, and say nothing.
    exact = invoke("best", finished.sweep_id, "--storage", finished.url, "--json")
    assert exact.exit_code == 0 and exact.stderr == ""
    assert len(json.loads(exact.stdout)) == 1
    # A unique name says nothing either.
    unique = invoke("status", "mnist-pareto", "--storage", create(finished.url, MULTI_SPEC).url, "--json")
    assert unique.exit_code == 0 and unique.stderr == ""


def test_bad_sort_key_is_a_usage_error(finished: Built) -> None:
    result = CliRunner().invoke(
        main, ["trials", finished.sweep_id, "--sort", "bogus", "--storage", finished.url]
    )
    assert result.exit_code == 2 and "got 'bogus'" in result.stderr


def test_ls_on_an_empty_storage(journal_url: str) -> None:
    assert as_json("ls", "--storage", journal_url) == []
    assert "No sweeps" in invoke("ls", "--storage", journal_url).stdout


def test_storage_from_the_environment(finished: Built, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWEEPER_STORAGE", finished.url)
    assert [s["id"] for s in as_json("ls")] == [finished.sweep_id]


def test_failure_reasons_are_in_view_without_json(finished: Built) -> None:
    status = invoke("status", finished.sweep_id, "--storage", finished.url)
    assert status.exit_code == 0, status.output
    assert "Latest failures (1 of 1)" in status.output
    assert "RuntimeError: CUDA out of memory" in status.output
    as_data = as_json("status", finished.sweep_id, "--storage", finished.url)
    assert [t["fail_reason"] for t in as_data["latest_failures"]] == ["RuntimeError: CUDA out of memory"]

    trials = invoke("trials", finished.sweep_id, "--storage", finished.url, "--state", "fail")
    assert trials.exit_code == 0, trials.output
    assert "reason" in trials.output and "RuntimeError: CUDA out of memory" in trials.output
