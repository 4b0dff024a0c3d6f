"""Every kind of warm-start source, read back from the real thing and counted: sweeps in another
storage, `sweeper export` files, an MLflow experiment (read with MLflow's client), W&B offline runs
and a W&B runs table."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import engine_trainers
import pytest
from click.testing import CliRunner

import sweeper
from sweeper.analysis.priors import load_priors
from sweeper.cli import main
from sweeper.errors import SweepNotFoundError, UsageError
from sweeper.spec.model import WarmStart
from sweeper.spec.reader import load_spec
from sweeper.storage import sweeps, work
from sweeper.storage.urls import open_storage

# The source: a grid over x, one point of which (2.0) the new sweep's space leaves out.
SOURCE: dict[str, Any] = {
    "method": "grid",
    "metric": {"name": "loss"},
    "parameters": {"x": {"values": [0.0, 0.5, 1.0, 2.0]}, "steps": {"value": 3}},
}
NEW = load_spec(
    {
        "method": "bayes",
        "metric": {"name": "loss"},
        "run_cap": 3,
        "parameters": {"x": {"min": 0.0, "max": 1.5}, "steps": {"value": 3}},
    }
)
LOSS = {x: (x - 1.0) ** 2 + 1.0 / 3 for x in (0.0, 0.5, 1.0)}  # engine_trainers.quadratic after 3 steps


def run_source(url: str, trackers: list[dict[str, Any]] | None = None) -> str:
    spec = {**SOURCE, "sweeper": {"trackers": trackers or []}}
    sweep_id = sweeper.sweep(spec, storage=url, name="old")
    sweeper.agent(sweep_id, function=engine_trainers.quadratic, storage=url, executor="local")
    return sweep_id


def loaded(sources: list[WarmStart], storage_url: str) -> tuple[Any, Any]:
    priors, reports = load_priors(sources, NEW, open_storage(storage_url))
    return priors, reports


def values_by_x(priors: Any) -> dict[float, float]:
    return {t.params["x"]: t.values[0] for t in priors.trials}


def test_a_sweep_of_another_storage_with_its_curves_and_without_its_own_priors(
    project: Path, any_storage_url: str
) -> None:
    source_url = f"journal://{project / 'old.log'}"
    old = run_source(source_url)
    priors, [report] = loaded([WarmStart("sweep", "old", storage=source_url)], any_storage_url)
    assert (report.read, report.loaded) == (4, 3)
    assert report.skipped == {"outside the space": 1}
    assert report.examples["outside the space"] == ["trial 3: x=2.0 is outside [0, 1.5]"]
    assert report.source == f"sweep old in {source_url}"
    assert values_by_x(priors) == pytest.approx(LOSS)
    # The learning curve of the objective comes along (it teaches the pruner too).
    assert all(sorted(t.intermediate_values) == [1, 2, 3] for t in priors.trials)

    # A sweep warm-started from it: its priors are its source's, not its own results.
    new_id = sweeper.sweep(NEW, storage=any_storage_url, warm_start=[{"sweep": old, "storage": source_url}])
    storage = open_storage(any_storage_url)
    info = sweeps.get_sweep(storage, new_id)
    work.queue_through(storage, info.study_id, info.spec, 10**6)  # its tokens, as agents queue them
    results = sweeper.load(new_id, storage=any_storage_url)
    assert [t.number for t in results.priors()] == [0, 1, 2]
    assert results.counts() == {"running": 0, "waiting": 3, "complete": 0, "pruned": 0, "fail": 0}
    _, [chained] = loaded([WarmStart("sweep", new_id)], any_storage_url)
    assert (chained.read, chained.loaded) == (6, 0)
    assert chained.skipped == {"priors of their source": 3, "not finished": 3}

    with pytest.raises(SweepNotFoundError, match="no sweep 'nope' in this storage"):
        loaded([WarmStart("sweep", "nope")], any_storage_url)


def test_export_files_in_both_formats_are_read_back_and_counted(project: Path) -> None:
    url = f"sqlite:///{project / 's.db'}"
    old = run_source(url)
    for fmt in ("csv", "json"):
        result = CliRunner().invoke(
            main, ["export", old, "--storage", url, "--format", fmt, "--out", f"old.{fmt}"]
        )
        assert result.exit_code == 0, result.output
    priors, reports = loaded([WarmStart("export", "old.csv"), WarmStart("export", "old.json")], url)
    assert [(r.read, r.loaded, dict(r.skipped)) for r in reports] == [
        (4, 3, {"outside the space": 1}),
        (4, 0, {"outside the space": 1, "duplicates": 3}),  # the same results, read twice
    ]
    assert values_by_x(priors) == pytest.approx(LOSS)
    assert reports[1].examples["duplicates"] == ["trial 0", "trial 1", "trial 2"]

    with pytest.raises(UsageError, match=r"warm start export missing\.csv: no such file or folder"):
        loaded([WarmStart("export", "missing.csv")], url)
    Path("bad.json").write_text('{"rows": 1}')
    with pytest.raises(UsageError, match="must hold `sweeper export --format json` records or a W&B table"):
        loaded([WarmStart("export", "bad.json")], url)


@pytest.mark.slow  # eight W&B offline runs and an MLflow store: about 20 s
def test_mlflow_and_wandb_runs_of_a_sweep_are_read_back_and_counted(wandb_offline: Path) -> None:
    import wandb
    from mlflow import MlflowClient

    project = wandb_offline
    url = f"sqlite:///{project / 's.db'}"
    tracking = f"sqlite:///{project / 'mlflow.db'}"
    run_source(
        url,
        [
            {"type": "mlflow", "tracking_uri": tracking, "experiment": "old"},
            {"type": "wandb", "dir": str(project / "wb")},
        ],
    )
    # Runs made without sweeper: text params (as MLflow keeps them), a failed one, a nested config.
    client = MlflowClient(tracking_uri=tracking)
    experiment = client.get_experiment_by_name("old").experiment_id
    for x, status in (("0.25", "FINISHED"), ("0.75", "FAILED")):
        run = client.create_run(experiment)
        client.log_param(run.info.run_id, "x", x)
        client.log_param(run.info.run_id, "steps", "3")
        client.log_metric(run.info.run_id, "loss", 0.4)
        client.set_terminated(run.info.run_id, status=status)
    for config, exit_code in (({"x": 0.25, "steps": 3, "opt": {"name": "adam"}}, 0), ({"x": 0.5}, 1)):
        run = wandb.init(project="p", dir=str(project / "wb"), config=config, reinit="create_new")
        run.log({"loss": 0.7})
        run.finish(exit_code=exit_code)

    priors, (from_mlflow, from_wandb) = loaded(
        [WarmStart("mlflow", "old", tracking_uri=tracking), WarmStart("wandb", "wb")], url
    )
    assert (from_mlflow.read, from_mlflow.loaded) == (7, 4)
    assert from_mlflow.skipped == {"outside the space": 1, "not finished": 1, "sweep parent runs": 1}
    assert from_mlflow.examples["not finished"][0].endswith("(failed)")
    assert (from_wandb.read, from_wandb.loaded) == (6, 1)  # the sweep's 4 runs are the same results
    assert from_wandb.skipped == {"duplicates": 3, "outside the space": 1, "not finished": 1}
    assert from_wandb.ignored_keys == {"opt.name"}
    xs = sorted(t.params["x"] for t in priors.trials)
    assert xs == [0.0, 0.25, 0.25, 0.5, 1.0]
    assert sorted(t.values[0] for t in priors.trials if t.params["x"] == 0.25) == [0.4, 0.7]
    with pytest.raises(UsageError, match=f"no MLflow experiment 'nope' at {tracking}"):
        loaded([WarmStart("mlflow", "nope", tracking_uri=tracking)], url)


def test_a_wandb_runs_table_is_read_by_its_columns(project: Path) -> None:
    # The runs page's CSV export: a column per config key and summary metric, a state per run.
    rows = [
        {"Name": "calm-sea-1", "State": "finished", "x": "0.5", "steps": "3", "loss": "0.58"},
        {"Name": "dark-sky-2", "State": "crashed", "x": "0.7", "steps": "3", "loss": ""},
        {"Name": "old-moon-3", "State": "finished", "x": "9", "steps": "3", "loss": "64"},
        {"Name": "red-sun-4", "State": "killed", "x": "1.0", "steps": "3", "loss": "0.4"},
    ]
    with open("runs.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    priors, [report] = loaded([WarmStart("wandb", "runs.csv")], f"sqlite:///{project / 's.db'}")
    assert (report.read, report.loaded) == (4, 2)
    assert report.skipped == {"not finished": 1, "outside the space": 1}
    assert report.examples["not finished"] == ["run dark-sky-2 (crashed)"]
    assert [(t.params, t.values, t.state.name) for t in priors.trials] == [
        ({"x": 0.5}, [0.58], "COMPLETE"),
        ({"x": 1.0}, [0.4], "PRUNED"),
    ]
    assert not report.ignored_keys  # the metric columns are no config keys

    with pytest.raises(UsageError, match="no W&B run folder there"):
        loaded([WarmStart("wandb", ".")], f"sqlite:///{project / 's.db'}")


def test_a_downloaded_wandb_run_folder_is_read_from_its_files(project: Path) -> None:
    # A synced or downloaded run has no transaction log: files/config.yaml (W&B's {desc, value}
    # wrapping) and files/wandb-summary.json say what it was.
    files = project / "runs" / "run-20260101_000000-abc123" / "files"
    files.mkdir(parents=True)
    (files / "config.yaml").write_text(
        "_wandb:\n  value: {cli_version: 0.19.0}\nx:\n  desc: null\n  value: 0.5\nsteps:\n  value: 3\n"
    )
    (files / "wandb-summary.json").write_text('{"loss": 0.6, "_step": 2, "_runtime": 4.1}')
    priors, [report] = loaded([WarmStart("wandb", "runs")], f"sqlite:///{project / 's.db'}")
    assert (report.read, report.loaded, report.ignored_keys) == (1, 1, set())
    assert [(t.params, t.values) for t in priors.trials] == [({"x": 0.5}, [0.6])]
