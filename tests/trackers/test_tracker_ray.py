"""Trackers open where the trial runs: inside a Ray task, with the specs the agent prepared."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from tracker_readers import read_jsonl, read_mlflow, read_tensorboard, read_wandb

from sweeper.spec.model import TrackerSpec
from sweeper.trackers import prepare_trackers


@pytest.mark.ray
def test_trial_reports_from_a_ray_task(ray_session: None, tmp_path: Path) -> None:
    import ray

    sweep_dir = tmp_path / ".sweeper" / "sweeps" / "raysweep"
    specs = prepare_trackers(
        [TrackerSpec("jsonl"), TrackerSpec("mlflow"), TrackerSpec("tensorboard"), TrackerSpec("wandb")],
        "raysweep",
        "on-ray",
        str(sweep_dir),
    )

    # Defined here so Ray ships it by value (the test module is not importable on workers).
    def trial(specs: Any, number: int) -> dict[str, Any]:
        from sweeper.errors import TrialPruned
        from sweeper.trackers import RunInfo, open_trackers

        run = RunInfo("raysweep", "on-ray", number, config={"lr": 0.1 * number}, sweep_dir=str(sweep_dir))
        trackers = open_trackers(specs, run)
        try:
            with trackers:
                trackers.log_metrics({"loss": 1.0 / (number + 1)})
                if number == 1:
                    raise TrialPruned
        except TrialPruned:
            pass
        return {"pid": os.getpid(), "refs": trackers.refs(), "errors": trackers.errors}

    # W&B's per-user files go to the test's directory on the worker too.
    env = {key: value for key, value in os.environ.items() if key.startswith(("WANDB_", "MLFLOW_"))}
    remote = ray.remote(num_cpus=1, runtime_env={"env_vars": env})(trial)
    results = ray.get([remote.remote(specs, number) for number in range(2)], timeout=240)

    assert all(result["pid"] != os.getpid() for result in results)
    assert [result["errors"] for result in results] == [[], []]
    refs = [result["refs"] for result in results]
    expected = {"on-ray-0": "completed", "on-ray-1": "pruned"}

    def states(runs: dict[str, Any]) -> dict[str, str]:
        return {name: run.state for name, run in runs.items()}

    assert states(read_jsonl({str(i): r["jsonl"] for i, r in enumerate(refs)})) == expected
    assert states(read_tensorboard({str(i): r["tensorboard"] for i, r in enumerate(refs)})) == expected
    assert states(read_wandb({str(i): r["wandb"] for i, r in enumerate(refs)})) == expected
    mlflow_runs = read_mlflow(specs[1].options["tracking_uri"], "on-ray")
    assert states(mlflow_runs) == expected
    assert {run.extra["run_id"] for run in mlflow_runs.values()} == {r["mlflow"] for r in refs}
