"""The contract every tracker passes, built-in or plugin: read back through each tool's own reader.

One small sweep per tracker (three trials: completed, pruned, failed) reports metrics, media and an
artifact through :class:`~sweeper.trackers.TrackerSet`; the tests then read each tool's files or
store back and check names, params, metric histories with their steps, states and refs.
"""

from __future__ import annotations

import json
import logging
import platform
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from plugin_source import PLUGIN_NAME, install_plugin
from tracker_env import isolate_tracker_env
from tracker_readers import (
    Recorded,
    flatten,
    plain,
    read_jsonl,
    read_mlflow,
    read_notebook,
    read_tensorboard,
    read_wandb,
)

from sweeper.errors import TrialPruned
from sweeper.spec.model import TrackerSpec
from sweeper.trackers import RunInfo, open_trackers, prepare_trackers
from sweeper.trackers import base as tracker_base

SWEEP_ID = "k3v9q2zt"
SWEEP_NAME = "contract"
TRACKERS = ["jsonl", "mlflow", "tensorboard", "wandb", PLUGIN_NAME]
OUTCOMES = {0: "completed", 1: "pruned", 2: "failed"}


def config_of(number: int) -> dict[str, Any]:
    return {"lr": 0.01 * (number + 1), "model": {"layers": number + 2, "act": "relu"}, "batch": 32}


def losses_of(number: int) -> list[tuple[int, float]]:
    """The loss history each trial logs: two implicit steps, then (if it completes) step 5."""
    first = [(0, 1.0 / (number + 1)), (1, 0.5 / (number + 1))]
    return [*first, (5, 0.125)] if OUTCOMES[number] == "completed" else first


@dataclass
class Sweep:
    tracker: str
    specs: tuple[TrackerSpec, ...]
    refs: dict[str, dict[str, str]]  # run name -> refs()
    errors: dict[str, list[str]]
    root: Path
    log: list[logging.LogRecord]


def run_sweep(tracker: str, root: Path, artifact: Path) -> Sweep:
    import matplotlib.pyplot as plt

    sweep_dir = root / ".sweeper" / "sweeps" / SWEEP_ID
    specs = prepare_trackers([TrackerSpec(tracker)], SWEEP_ID, SWEEP_NAME, str(sweep_dir))
    refs, errors = {}, {}
    for number, outcome in OUTCOMES.items():
        config = config_of(number)
        run = RunInfo(
            sweep_id=SWEEP_ID,
            sweep_name=SWEEP_NAME,
            trial_number=number,
            config=config,
            params=flatten(config),
            tags=("contract",),
            sweep_dir=str(sweep_dir),
            code_dir=str(root),
        )
        trackers = open_trackers(specs, run)
        losses = losses_of(number)
        figure = plt.figure()
        plt.plot([step for step, _ in losses], [loss for _, loss in losses])
        try:
            with trackers:
                # A text value and a key MLflow would reject ("@") must not upset any tracker.
                trackers.log_metrics({"loss": losses[0][1], "note": "warming up", "acc@1": 0.5})
                trackers.log_metrics({"loss": losses[1][1]})
                trackers.log_histogram("weights", [0.1 * i for i in range(20)])
                trackers.log_figure("loss-curve", figure)
                trackers.log_table("predictions", [{"x": 1, "y": 2.0}, {"x": 2, "y": 4.0, "ok": True}])
                trackers.log_artifact(str(artifact))
                if outcome == "pruned":
                    raise TrialPruned
                if outcome == "failed":
                    raise RuntimeError("the trainer broke")
                trackers.log_metrics({"loss": losses[2][1]}, step=losses[2][0])
                trackers.finish("completed", {"loss": 0.125, "accuracy": 0.75})
        except (TrialPruned, RuntimeError):
            pass
        finally:
            plt.close(figure)
        refs[run.run_name] = trackers.refs()
        errors[run.run_name] = list(trackers.errors)
    return Sweep(tracker, specs, refs, errors, root, [])


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module", params=TRACKERS)
def sweep(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sweep]:
    root = tmp_path_factory.mktemp(f"sweep-{request.param}")
    artifact = root / "weights.txt"
    artifact.write_text("0.1 0.2 0.3\n")
    # The trainer's code lives in a git repository: its commit must reach every tracker.
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run(
        [
            "git",
            "-C",
            str(root),
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "x",
        ],
        check=True,
    )
    collect = _Collect()
    logger = logging.getLogger("sweeper.trackers")
    logger.addHandler(collect)
    try:
        with pytest.MonkeyPatch.context() as mp:
            isolate_tracker_env(mp, root)
            mp.setattr(tracker_base, "_UNSUPPORTED_SAID", set())
            mp.syspath_prepend(install_plugin(root / "site"))
            result = run_sweep(request.param, root, artifact)
            result.log = collect.records
            yield result
    finally:
        logger.removeHandler(collect)


def read_back(sweep: Sweep) -> dict[str, Recorded]:
    """The sweep's runs, through the tool's own reader."""
    readers: dict[str, Callable[[dict[str, str]], dict[str, Recorded]]] = {
        "jsonl": read_jsonl,
        "tensorboard": read_tensorboard,
        "wandb": read_wandb,
        PLUGIN_NAME: read_notebook,
    }
    if sweep.tracker == "mlflow":
        options = sweep.specs[0].options
        return read_mlflow(options["tracking_uri"], options["experiment"])
    refs = {name: ref[sweep.tracker] for name, ref in sweep.refs.items()}
    return readers[sweep.tracker](refs)


def test_no_tracker_error(sweep: Sweep) -> None:
    assert sweep.errors == {f"{SWEEP_NAME}-{n}": [] for n in OUTCOMES}


def test_one_run_per_trial_named_sweep_dash_number(sweep: Sweep) -> None:
    runs = read_back(sweep)
    assert sorted(runs) == [f"{SWEEP_NAME}-{n}" for n in OUTCOMES]


def test_runs_hold_the_flattened_config(sweep: Sweep) -> None:
    runs = read_back(sweep)
    for number in OUTCOMES:
        params = runs[f"{SWEEP_NAME}-{number}"].params
        expected = {key: plain(value) for key, value in flatten(config_of(number)).items()}
        assert {key: params.get(key) for key in expected} == expected


def test_metric_history_keeps_steps(sweep: Sweep) -> None:
    runs = read_back(sweep)
    for number in OUTCOMES:
        history = runs[f"{SWEEP_NAME}-{number}"].history
        expected = losses_of(number)
        assert [step for step, _ in history["loss"]] == [step for step, _ in expected]
        # TensorBoard stores scalars as float32.
        assert [value for _, value in history["loss"]] == pytest.approx([v for _, v in expected], rel=1e-6)


def test_each_trial_shows_its_state(sweep: Sweep) -> None:
    runs = read_back(sweep)
    assert {name: run.state for name, run in runs.items()} == {
        f"{SWEEP_NAME}-{n}": outcome for n, outcome in OUTCOMES.items()
    }


def test_refs_name_where_each_run_lives(sweep: Sweep) -> None:
    runs = read_back(sweep)
    for name, refs in sweep.refs.items():
        assert set(refs) == {sweep.tracker}
        ref = refs[sweep.tracker]
        if sweep.tracker == "mlflow":
            assert ref == runs[name].extra["run_id"]
        else:
            assert Path(ref).exists()
            assert Path(ref).resolve().is_relative_to(sweep.root.resolve())


def test_nothing_written_outside_the_sweep_root(sweep: Sweep) -> None:
    written = {path.relative_to(sweep.root).parts[0] for path in sweep.root.iterdir()}
    # The sweep directory, the test's own inputs, and W&B's per-user dirs pointed here by the env.
    assert written <= {
        ".git",
        ".sweeper",
        "weights.txt",
        "site",
        "wandb-dir",
        "wandb-config",
        "wandb-cache",
        "wandb-data",
    }
    assert not (sweep.root / "mlruns").exists()


def git_commit(root: Path) -> str:
    done = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


# What each tool shows beyond the shared contract, from the same sweeps.


@pytest.mark.parametrize("sweep", ["jsonl"], indirect=True)
def test_jsonl_keeps_media_artifacts_and_environment(sweep: Sweep) -> None:
    runs = read_back(sweep)
    completed = runs[f"{SWEEP_NAME}-0"]
    kinds = [event["event"] for event in completed.extra["events"]]
    assert kinds[0] == "start" and kinds[-1] == "finish"
    assert {"histogram", "figure", "table", "artifact"} <= set(kinds)
    # Non-numeric values are kept as given in the embedded log.
    assert completed.extra["events"][1]["metrics"]["note"] == "warming up"
    files = Path(sweep.refs[f"{SWEEP_NAME}-0"]["jsonl"]).with_suffix("")
    assert (files / "weights.txt").read_text() == "0.1 0.2 0.3\n"
    assert (files / "loss-curve-1.png").read_bytes()[:4] == b"\x89PNG"
    environment = completed.extra["environment"]
    assert environment["git"]["commit"] == git_commit(sweep.root)
    assert environment["packages"]["optuna"]
    assert completed.extra["events"][-1]["summary"] == {"loss": 0.125, "accuracy": 0.75}


@pytest.mark.parametrize("sweep", ["mlflow"], indirect=True)
def test_mlflow_nests_trial_runs_under_one_sweep_run(sweep: Sweep) -> None:
    runs = read_back(sweep)
    parents = {run.extra["parent"] for run in runs.values()}
    assert parents == set(runs[f"{SWEEP_NAME}-0"].extra["parents"])
    assert len(parents) == 1
    assert {name: run.extra["status"] for name, run in runs.items()} == {
        f"{SWEEP_NAME}-0": "FINISHED",
        f"{SWEEP_NAME}-1": "KILLED",
        f"{SWEEP_NAME}-2": "FAILED",
    }
    completed = runs[f"{SWEEP_NAME}-0"]
    assert completed.extra["tags"]["sweeper.sweep_id"] == SWEEP_ID
    assert completed.extra["tags"]["sweeper.trial_number"] == "0"
    assert completed.extra["tags"]["mlflow.source.git.commit"] == git_commit(sweep.root)
    assert completed.extra["tags"]["sweeper.python"] == platform.python_version()
    assert completed.history["accuracy"] == [(5, 0.75)]  # returned only: recorded at the last step
    assert completed.history["acc_1"] == [(0, 0.5)]
    assert {"environment.json", "summary.json", "weights.txt", "figures", "tables"} <= set(
        completed.extra["artifacts"]
    )


@pytest.mark.parametrize("sweep", ["mlflow"], indirect=True)
def test_mlflow_says_once_it_has_no_histograms(sweep: Sweep) -> None:
    said = [r for r in sweep.log if "does not support histograms" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.WARNING


@pytest.mark.parametrize("sweep", ["tensorboard"], indirect=True)
def test_tensorboard_writes_hparams_sessions_and_media(sweep: Sweep) -> None:
    runs = read_back(sweep)
    sweep_dir = sweep.root / ".sweeper" / "sweeps" / SWEEP_ID
    for name, refs in sweep.refs.items():
        assert Path(refs["tensorboard"]) == sweep_dir / "tensorboard" / SWEEP_NAME / name
    assert {name: run.extra["status"] for name, run in runs.items()} == {
        f"{SWEEP_NAME}-0": "STATUS_SUCCESS",
        f"{SWEEP_NAME}-1": "STATUS_SUCCESS",
        f"{SWEEP_NAME}-2": "STATUS_FAILURE",
    }
    completed = runs[f"{SWEEP_NAME}-0"]
    assert completed.extra["group"] == SWEEP_NAME
    assert set(completed.extra["hparams_plugin"]) == {
        "_hparams_/session_start_info",
        "_hparams_/session_end_info",
    }
    tags = completed.extra["tags"]
    assert "weights" in tags["histograms"]
    assert "loss-curve" in tags["images"]
    assert {"predictions", "sweeper/environment"} <= set(tags["tensors"])
    assert completed.history["accuracy"] == [(5, 0.75)]
    artifacts_said = [r for r in sweep.log if "does not support artifacts" in r.getMessage()]
    assert len(artifacts_said) == 1


@pytest.mark.parametrize("sweep", ["wandb"], indirect=True)
def test_wandb_runs_are_offline_grouped_with_summary_and_files(sweep: Sweep) -> None:
    runs = read_back(sweep)
    assert {run.extra["group"] for run in runs.values()} == {SWEEP_NAME}
    assert {name: run.extra["exit_code"] for name, run in runs.items()} == {
        f"{SWEEP_NAME}-0": 0,
        f"{SWEEP_NAME}-1": 0,
        f"{SWEEP_NAME}-2": 1,
    }
    completed = runs[f"{SWEEP_NAME}-0"]
    assert completed.extra["summary"]["accuracy"] == 0.75
    assert completed.extra["summary"]["sweeper/sweep_id"] == SWEEP_ID
    assert "completed" in completed.extra["tags"]
    run_dir = completed.extra["dir"]
    assert run_dir.name.startswith("offline-run-")
    assert run_dir.is_relative_to(sweep.root / ".sweeper" / "sweeps" / SWEEP_ID / "wandb")
    environment = json.loads((run_dir / "files" / "sweeper-environment.json").read_text())
    assert environment["git"]["commit"] == git_commit(sweep.root)
    media = {path.parent.name for path in (run_dir / "files" / "media").rglob("*") if path.is_file()}
    assert {"images", "table"} <= media
