"""The agent opens the sweep's trackers once and closes them when the sweep is over."""

from __future__ import annotations

from pathlib import Path

import engine_trainers
import pytest
from mlflow import MlflowClient

import sweeper


@pytest.mark.parametrize("end", ["finished", "running"])
def test_mlflow_parent_run_ends_only_when_the_sweep_does(
    project: Path, monkeypatch: pytest.MonkeyPatch, end: str
) -> None:
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    url = f"sqlite:///{project / 's.db'}"
    tracking = f"sqlite:///{project / 'mlflow.db'}"
    spec = {
        "method": "grid",
        "metric": {"name": "loss"},
        "parameters": {"x": {"values": [0.0, 1.0, 2.0]}},
        "sweeper": {"trackers": [{"type": "mlflow", "tracking_uri": tracking}]},
    }
    sweep_id = sweeper.sweep(spec, storage=url, name="closing")
    # count=2 leaves a grid point for another agent: the sweep (and its parent run) stays open.
    count = 3 if end == "finished" else 2
    sweeper.agent(sweep_id, function=engine_trainers.quadratic, storage=url, executor="local", count=count)

    client = MlflowClient(tracking_uri=tracking)
    [experiment] = [e for e in client.search_experiments() if e.name != "Default"]
    runs = client.search_runs([experiment.experiment_id])
    [parent] = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == count
    assert parent.info.status == ("FINISHED" if end == "finished" else "RUNNING")
