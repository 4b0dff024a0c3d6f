"""Per-batch logging: every tracker keeps every value a trial logs, in step order, across its batches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tracker_readers import read_jsonl, read_mlflow, read_tensorboard, read_wandb

from sweeper.spec.model import TrackerSpec
from sweeper.trackers import RunInfo, open_trackers, prepare_trackers

LOGS = 2_500  # MLflow takes 1,000 metrics a call: three batches, the last one sent by the trial's end


@pytest.mark.parametrize("tracker", ["jsonl", "mlflow", "tensorboard", "wandb"])
def test_every_value_of_a_trial_that_logs_each_batch_is_kept_in_order(tracker: str, tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    specs = prepare_trackers([TrackerSpec(tracker)], "v0lume00", "volume", str(sweep_dir))
    trackers = open_trackers(specs, RunInfo("v0lume00", "volume", 0, sweep_dir=str(sweep_dir)))
    for step in range(LOGS):
        trackers.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
    trackers.finish("completed", {"loss": 1.0 / LOGS})

    assert trackers.errors == []
    refs: dict[str, str] = {"0": trackers.refs()[tracker]}
    readers: dict[str, Any] = {
        "jsonl": lambda: read_jsonl(refs),
        "mlflow": lambda: read_mlflow(specs[0].options["tracking_uri"], "volume"),
        "tensorboard": lambda: read_tensorboard(refs),
        "wandb": lambda: read_wandb(refs),
    }
    (run,) = readers[tracker]().values()
    history = run.history["loss"]
    assert [step for step, _ in history] == list(range(LOGS))
    expected = [1.0 / (step + 1) for step in range(LOGS)]
    assert [value for _, value in history] == pytest.approx(expected, rel=1e-6)  # TensorBoard: float32


def test_mlflow_gets_the_metrics_in_batches_not_one_call_per_log(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    sweep_dir = tmp_path / "sweep"
    specs = prepare_trackers([TrackerSpec("mlflow")], "v0lume00", "volume", str(sweep_dir))
    trackers = open_trackers(specs, RunInfo("v0lume00", "volume", 0, sweep_dir=str(sweep_dir)))
    client = MlflowClient(tracking_uri=specs[0].options["tracking_uri"])
    run_id = trackers.refs()["mlflow"]

    for step in range(999):
        trackers.log_metrics({"loss": float(step)}, step=step)
    # Gathered (sent only if a second passed, FLUSH_S), not sent one by one; all of them at the end.
    assert len(client.get_metric_history(run_id, "loss")) < 999
    trackers.finish("completed", {})
    assert [m.step for m in client.get_metric_history(run_id, "loss")] == list(range(999))
