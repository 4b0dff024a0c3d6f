"""The contract every tracker passes, built-in or plugin: read back through each tool's own reader.

One small sweep per tracker (three trials: completed, pruned, failed) reports metrics, media and an
artifact through :class:`~sweeper.trackers.TrackerSet`; the tests then read each tool's files or
store back and check names, params, metric histories with their steps, states and refs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import isolate_tracker_env
from plugin_source import PLUGIN_NAME, install_plugin
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
from sweeper.spec import TrackerSpec
from sweeper.trackers import RunInfo, open_trackers, prepare_trackers

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
                trackers.log_metrics({"loss": losses[0][1], "note": "warming up"})
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
    collect = _Collect()
    logger = logging.getLogger("sweeper.trackers")
    logger.addHandler(collect)
    try:
        with pytest.MonkeyPatch.context() as mp:
            isolate_tracker_env(mp, root)
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
        ".sweeper",
        "weights.txt",
        "site",
        "wandb-dir",
        "wandb-config",
        "wandb-cache",
        "wandb-data",
    }
    assert not (sweep.root / "mlruns").exists()
