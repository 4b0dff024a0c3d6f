"""Tracker options from the spec, and the defaults each tracker fills in on the agent side."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweeper.spec.model import TrackerSpec
from sweeper.trackers import RunInfo, close_trackers, open_trackers, prepare_trackers


def prepared(type_: str, sweep_dir: Path, **options: object) -> dict[str, object]:
    (spec,) = prepare_trackers([TrackerSpec(type_, options)], "abcdefgh", "demo", str(sweep_dir))
    return dict(spec.options)


def test_relative_paths_resolve_on_the_agent(tmp_path: Path) -> None:
    # Workers may run elsewhere (another cwd, another node with a shared disk): ship absolute paths.
    assert prepared("jsonl", tmp_path, path="logs")["path"] == str(tmp_path / "logs")
    assert prepared("tensorboard", tmp_path, logdir="tb")["logdir"] == str(tmp_path / "tb")
    assert prepared("tensorboard", tmp_path / "s")["logdir"] == str(tmp_path / "s" / "tensorboard")


def test_wandb_defaults_to_offline_in_the_sweep_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WANDB_MODE")
    assert prepared("wandb", tmp_path / "s") == {
        "project": "sweeper",
        "mode": "offline",
        "dir": str(tmp_path / "s"),
    }
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("WANDB_PROJECT", "team")
    assert prepared("wandb", tmp_path)["mode"] == "disabled"
    assert prepared("wandb", tmp_path)["project"] == "team"
    options = prepared("wandb", tmp_path, project="p", entity="e", mode="online", dir="runs")
    assert options == {"project": "p", "entity": "e", "mode": "online", "dir": str(tmp_path / "runs")}


def test_mlflow_uses_its_environment_variable_and_reuses_the_sweep_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'team.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    first = prepared("mlflow", tmp_path / "s", experiment="team-experiment")
    assert first["tracking_uri"] == uri
    assert first["experiment"] == "team-experiment"
    # A second agent on the same sweep joins the same experiment and parent run.
    assert prepared("mlflow", tmp_path / "s", experiment="team-experiment") == first
    # When the sweep ends, the parent run ends with it; a later agent (sweep resumed) reopens it.
    assert close_trackers([TrackerSpec("mlflow", first)], "finished") == []
    client = MlflowClient(uri)
    assert client.get_run(str(first["_parent_run_id"])).info.status == "FINISHED"
    assert prepared("mlflow", tmp_path / "s", experiment="team-experiment") == first
    assert client.get_run(str(first["_parent_run_id"])).info.status == "RUNNING"
    # The option beats the environment variable (the same file spelled otherwise: no second database).
    own = f"sqlite:///{tmp_path}/./team.db"
    assert prepared("mlflow", tmp_path / "s", tracking_uri=own)["tracking_uri"] == own


def test_mlflow_opens_its_own_sweep_when_not_prepared(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    run = RunInfo("abcdefgh", "demo", 4, config={"lr": 0.1}, sweep_dir=str(tmp_path))
    with open_trackers([TrackerSpec("mlflow")], run) as trackers:
        trackers.log_metrics({"loss": 0.5})
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    logged = client.get_run(trackers.refs()["mlflow"])
    assert logged.info.run_name == "demo-4"
    assert logged.data.metrics == {"loss": 0.5}
    assert client.get_run(logged.data.tags["mlflow.parentRunId"]).info.run_name == "demo"
