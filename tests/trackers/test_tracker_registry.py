"""Finding, configuring and isolating trackers: registry errors, plugins, failures that never fail a trial."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest
from plugin_source import PLUGIN_NAME, install_plugin

from sweeper.errors import TrackerError, TrialPruned
from sweeper.spec.model import TrackerSpec
from sweeper.trackers import (
    DEFAULT_TRACKERS,
    RunInfo,
    Tracker,
    available_trackers,
    base,
    check_tracker_specs,
    get_tracker_class,
    open_trackers,
    prepare_trackers,
    register_tracker,
    unregister_tracker,
)
from sweeper.trackers.jsonl import read_events


def run_info(tmp_path: Path, number: int = 0) -> RunInfo:
    return RunInfo(
        "abcdefgh", "demo", number, config={"lr": 0.1}, params={"lr": 0.1}, sweep_dir=str(tmp_path)
    )


class Recording(Tracker):
    """Keeps every call in memory, for tests of TrackerSet itself."""

    name: ClassVar[str] = "recording"
    options: ClassVar[frozenset[str]] = frozenset({"fail_on"})
    calls: ClassVar[list[tuple[str, Any]]] = []

    def _maybe_fail(self, action: str) -> None:
        if self.config.get("fail_on") == action:
            raise OSError(f"{action} is broken")

    def start(self, run: RunInfo, environment: Mapping[str, Any]) -> None:
        self._maybe_fail("start")
        self.calls.append(("start", run.run_name))

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self._maybe_fail("log_metrics")
        self.calls.append(("log_metrics", (dict(metrics), step)))

    def finish(self, state: str, summary: Mapping[str, Any]) -> None:  # type: ignore[override]
        self._maybe_fail("finish")
        self.calls.append(("finish", state))

    def ref(self) -> str:
        return "memory"


@pytest.fixture
def recording() -> Any:
    Recording.calls = []
    register_tracker("recording", Recording)
    yield Recording
    unregister_tracker("recording")


def test_builtins_are_available_through_entry_points() -> None:
    assert {"jsonl", "mlflow", "wandb", "tensorboard"} <= set(available_trackers())


def test_unknown_tracker_lists_available_and_extras() -> None:
    with pytest.raises(
        TrackerError, match=r"unknown tracker 'mlfow' \(did you mean 'mlflow'\?\); available: .*jsonl"
    ):
        get_tracker_class("mlfow")
    with pytest.raises(TrackerError, match=re.escape("pip install -e '.[mlflow,wandb,tensorboard]'")):
        prepare_trackers([TrackerSpec("comet")], "abcdefgh", "demo", ".")


def test_unknown_option_names_tracker_and_allowed_options() -> None:
    with pytest.raises(
        TrackerError,
        match=r"tracker 'mlflow': unknown option\(s\) 'uri'; allowed options: experiment, tracking_uri",
    ):
        check_tracker_specs([TrackerSpec("mlflow", {"uri": "x"})])
    with pytest.raises(
        TrackerError, match=r"tracker 'wandb': mode must be one of online, offline, disabled, got 'cloud'"
    ):
        check_tracker_specs([TrackerSpec("wandb", {"mode": "cloud"})])


def test_tracker_without_its_library_names_the_extra() -> None:
    class Needy(Tracker):
        name = "needy"
        requires = "sweeper_library_that_is_not_installed"
        extra = "needy"

    register_tracker("needy", Needy)
    try:
        with pytest.raises(
            TrackerError,
            match=r"needs the 'sweeper_library_that_is_not_installed' package.*"
            r"pip install -e '\.\[needy\]' \(in sweeper's checkout\)",
        ):
            check_tracker_specs([TrackerSpec("needy")])
    finally:
        unregister_tracker("needy")


def test_registered_object_must_be_a_tracker() -> None:
    register_tracker("bogus", "collections:OrderedDict")
    try:
        with pytest.raises(
            TrackerError, match=r"tracker 'bogus' must be a sweeper.trackers.Tracker subclass"
        ):
            get_tracker_class("bogus")
    finally:
        unregister_tracker("bogus")


def test_plugin_registers_through_the_entry_point_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert PLUGIN_NAME not in available_trackers()
    monkeypatch.syspath_prepend(install_plugin(tmp_path / "site"))
    assert PLUGIN_NAME in available_trackers()
    cls = get_tracker_class(PLUGIN_NAME)
    assert cls.__module__ == "sweeper_notebook_plugin"
    (spec,) = prepare_trackers([TrackerSpec(PLUGIN_NAME)], "abcdefgh", "demo", str(tmp_path))
    with open_trackers([spec], run_info(tmp_path)) as trackers:
        trackers.log_metrics({"loss": 1.0})
    assert Path(trackers.refs()[PLUGIN_NAME]).is_file()


def test_no_trackers_means_the_jsonl_default(tmp_path: Path) -> None:
    specs = prepare_trackers([], "abcdefgh", "demo", str(tmp_path))
    assert [spec.type for spec in specs] == [spec.type for spec in DEFAULT_TRACKERS] == ["jsonl"]
    assert specs[0].options["path"] == str(tmp_path / "trials")
    with open_trackers((), run_info(tmp_path)) as trackers:
        trackers.log_metrics({"loss": 1.0})
    assert trackers.refs() == {"jsonl": str(tmp_path / "trials" / "demo-0.jsonl")}


def test_steps_continue_from_the_last_one(tmp_path: Path, recording: Any) -> None:
    with open_trackers([TrackerSpec("recording")], run_info(tmp_path)) as trackers:
        trackers.log_metrics({"a": 1})
        trackers.log_metrics({"a": 2}, step=10)
        trackers.log_metrics({"a": 3})
    steps = [args[1] for call, args in recording.calls if call == "log_metrics"]
    assert steps == [0, 10, 11]


@pytest.mark.parametrize(
    ("raised", "state"), [(None, "completed"), (TrialPruned, "pruned"), (ValueError, "failed")]
)
def test_context_manager_always_finishes(tmp_path: Path, recording: Any, raised: Any, state: str) -> None:
    trackers = open_trackers([TrackerSpec("recording")], run_info(tmp_path))
    if raised is None:
        with trackers:
            pass
    else:
        with pytest.raises(raised), trackers:
            raise raised
    assert recording.calls[-1] == ("finish", state)
    trackers.finish("completed")  # a second finish does nothing
    assert [call for call, _ in recording.calls].count("finish") == 1


@pytest.mark.parametrize("action", ["start", "log_metrics", "finish"])
def test_failing_tracker_never_fails_the_trial(
    tmp_path: Path, recording: Any, action: str, caplog: pytest.LogCaptureFixture
) -> None:
    specs = [TrackerSpec("recording", {"fail_on": action}), TrackerSpec("jsonl")]
    with (
        caplog.at_level(logging.ERROR, logger="sweeper.trackers"),
        open_trackers(specs, run_info(tmp_path)) as trackers,
    ):
        trackers.log_metrics({"loss": 0.5})
    assert len(trackers.errors) == 1
    assert trackers.errors[0].startswith("recording: ") and f"{action} is broken" in trackers.errors[0]
    assert any(f"{action} is broken" in record.getMessage() for record in caplog.records)
    # The other tracker got everything.
    events = read_events(trackers.refs()["jsonl"])
    assert [e["event"] for e in events] == ["start", "metrics", "finish"]
    assert events[-1]["state"] == "completed"
    assert ("recording" in trackers.refs()) == (action != "start")


def test_a_tracker_failing_again_and_again_is_left_alone(tmp_path: Path, recording: Any) -> None:
    with open_trackers(
        [TrackerSpec("recording", {"fail_on": "log_metrics"})], run_info(tmp_path)
    ) as trackers:
        for _ in range(20):
            trackers.log_metrics({"loss": 0.5})
    assert len(trackers.errors) == 5
    assert recording.calls[-1] == ("finish", "completed")


def test_unsupported_media_is_said_once_per_process(
    tmp_path: Path, recording: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(base, "_UNSUPPORTED_SAID", set())
    with caplog.at_level(logging.WARNING, logger="sweeper.trackers"):
        for number in range(2):
            with open_trackers([TrackerSpec("recording")], run_info(tmp_path, number)) as trackers:
                trackers.log_histogram("w", [1.0, 2.0])
                trackers.log_histogram("w", [1.0, 2.0])
                trackers.log_table("t", [{"a": 1}])
    messages = [record.getMessage() for record in caplog.records]
    assert messages == [
        "tracker 'recording' does not support histograms; skipping them",
        "tracker 'recording' does not support tables; skipping them",
    ]
    assert trackers.errors == []


def test_finish_rejects_unknown_state(tmp_path: Path, recording: Any) -> None:
    trackers = open_trackers([TrackerSpec("recording")], run_info(tmp_path))
    with pytest.raises(ValueError, match="state must be one of completed, pruned, failed, got 'done'"):
        trackers.finish("done")  # type: ignore[arg-type]


def test_importing_trackers_imports_no_tracking_library() -> None:
    code = (
        "import sys, sweeper.trackers as t; t.check_tracker_specs([]); "
        "print(sorted(m for m in ('mlflow', 'wandb', 'tensorboard', 'torch') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_threads_logging_at_once_get_distinct_steps(tmp_path: Path) -> None:
    import threading

    with open_trackers([], run_info(tmp_path)) as trackers:
        threads = [
            threading.Thread(target=lambda: [trackers.log_metrics({"loss": 1.0}) for _ in range(50)])
            for _ in range(4)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    events = read_events(trackers.refs()["jsonl"])
    steps = [event["step"] for event in events if event["event"] == "metrics"]
    assert sorted(steps) == list(range(200))
    assert events[-1]["event"] == "finish"
