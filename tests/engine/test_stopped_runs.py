"""W&B's semantics for stopped runs, on the bundled boosting trainer with hyperband (the issue's reproduction,
halved: 10 trials of 100 stages)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

import sweeper
from sweeper.cli import main

SPEC = {
    "name": "boosting-bayes-hb",
    "method": "bayes",
    "metric": {"name": "val_accuracy", "goal": "maximize"},
    "run_cap": 10,
    "early_terminate": {"type": "hyperband", "min_iter": 2, "eta": 3},
    "parameters": {
        "learning_rate": {"distribution": "log_uniform_values", "min": 0.005, "max": 0.5},
        "l2_regularization": {"min": 0.0, "max": 5.0},
        "tree": {
            "parameters": {
                "max_leaf_nodes": {"values": [8, 16, 31, 63]},
                "min_samples_leaf": {"distribution": "int_uniform", "min": 5, "max": 40},
            }
        },
        "dataset": {"value": "wine"},
        "max_iter": {"value": 100},
        "report_every": {"value": 10},
    },
    "sweeper": {"trainer": "trainers.boosting:train", "seed": 1},
}
REPORTS = 10  # max_iter / report_every


def test_stopped_trials_keep_their_best_value_and_a_finished_one_is_never_pruned(
    project: Path, monkeypatch
) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2]))  # trainers/ of the repo
    url = f"sqlite:///{project / 's.db'}"
    sweep_id = sweeper.sweep(SPEC, storage=url)
    summary = sweeper.agent(sweep_id, storage=url, executor="local")
    results = sweeper.load(sweep_id, storage=url)

    assert summary.ran == 10 and summary.failed == 0
    stopped = [t for t in results.trials if t.state == "pruned"]
    assert stopped, "hyperband stopped nothing"
    for trial in results.trials:
        reports = [value for _, value in trial.intermediate_values]
        if len(reports) == REPORTS:  # reported through to the end of its budget
            assert trial.state == "complete", f"trial {trial.number} did all its work"
        if trial.state == "pruned":
            assert len(reports) < REPORTS
            assert trial.value == max(reports)  # the best it logged, as W&B's run summary shows it
    best_stopped = max(stopped, key=lambda t: (t.value or 0.0, -t.number))
    ranked = results.best(None, include_stopped=True)
    assert best_stopped.number in [t.number for t in ranked]
    assert all(t.state == "complete" for t in results.best(None))

    shown = CliRunner().invoke(main, ["best", sweep_id, "--storage", url, "--top", "10", "--include-stopped"])
    assert shown.exit_code == 0, shown.output
    assert "pruned" in shown.output
