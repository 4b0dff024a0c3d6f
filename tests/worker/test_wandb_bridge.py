"""The W&B bridge's pieces: which trainers are W&B's form, the program hook, and what a missing wandb says."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import weakref
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

import sweeper
from sweeper.storage.urls import open_storage
from sweeper.worker import wandb_bridge
from sweeper.worker.wandb_bridge import takes_no_arguments

pytestmark = pytest.mark.usefixtures("wandb_offline")  # W&B offline, files under the project


def _ours(config: Any, trial: Any) -> None: ...
def _ours_with_default(config: Any, trial: Any = None) -> None: ...
def _varargs(*args: Any) -> None: ...
def _wandb_form() -> None: ...
def _wandb_form_with_defaults(project: str = "x") -> None: ...
def _one_required(config: Any) -> None: ...


@pytest.mark.parametrize(
    ("function", "expected"),
    [
        (_ours, False),
        (_ours_with_default, False),
        (_varargs, False),
        (_wandb_form, True),
        (_wandb_form_with_defaults, True),
        (_one_required, False),  # neither form: called ours, it fails with Python's own TypeError
        (print, False),
    ],
)
def test_which_trainers_are_wandb_style(function: Any, expected: bool) -> None:
    assert takes_no_arguments(function) is expected


class _Slotted:
    """A callable that cannot be weakly referenced."""

    __slots__ = ()

    def __call__(self) -> None: ...


def test_a_trainers_form_is_known_without_keeping_the_trainer_alive() -> None:
    def trainer() -> None: ...

    assert takes_no_arguments(trainer) is True
    assert takes_no_arguments(trainer) is True  # the second answer is the first's
    assert trainer in wandb_bridge._FORMS
    gone = weakref.ref(trainer)
    del trainer
    gc.collect()
    assert gone() is None  # the cache held it weakly
    assert takes_no_arguments(_Slotted()) is True  # not weakly referenceable: worked out each time


def _run_program(
    project: Path, script: str, command: list[str] | None = None, settings: dict[str, Any] | None = None
) -> optuna.trial.FrozenTrial:
    (project / "train.py").write_text(textwrap.dedent(script))
    url = f"sqlite:///{project / 's.db'}"
    spec: dict[str, Any] = {
        "method": "grid",
        "metric": {"name": "loss", "goal": "minimize"},
        "program": "train.py",
        "parameters": {"x": {"values": [3.0]}},
    }
    if command is not None:
        spec["command"] = command
    if settings is not None:
        spec["sweeper"] = settings
    sweep_id = sweeper.sweep(spec, storage=url)
    sweeper.agent(sweep_id, storage=url, executor="local")
    (trial,) = optuna.load_study(study_name=sweep_id, storage=open_storage(url)).trials
    return trial


def test_a_programs_own_sitecustomize_still_runs(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mine = project / "site"
    mine.mkdir()
    (mine / "sitecustomize.py").write_text("import os\nos.environ['MY_SITE'] = 'ran'\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(mine), os.environ.get("PYTHONPATH", "")]))
    trial = _run_program(
        project,
        """
        import os
        import wandb

        run = wandb.init()
        wandb.log({"loss": run.config.x, "site": os.environ.get("MY_SITE", "missing")})
        run.finish()
        """,
    )
    assert trial.state == TrialState.COMPLETE, trial.user_attrs.get("fail_reason")
    assert trial.values == [3.0]
    assert trial.user_attrs["metrics"]["site"] == "ran"


def test_a_program_and_the_wandb_tracker_make_one_run(project: Path) -> None:
    tracker = {"type": "wandb", "project": "mine", "dir": "runs"}
    trial = _run_program(
        project,
        """
        import wandb

        run = wandb.init()
        wandb.log({"loss": run.config.x})
        run.finish()
        """,
        settings={"trackers": ["jsonl", tracker]},
    )
    assert trial.state == TrialState.COMPLETE, trial.user_attrs.get("fail_reason")
    (run_dir,) = (project / "runs" / "wandb").glob("offline-run-*")  # the program's, where the tracker said
    assert trial.user_attrs["tracker_runs"]["wandb"] == str(run_dir)
    assert not list(project.glob(".sweeper/sweeps/*/wandb"))


def test_a_program_without_wandb_fails_naming_the_extra(project: Path) -> None:
    bare = project / "bare"  # an interpreter without wandb (or anything else)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True, timeout=120)
    trial = _run_program(
        project, "import wandb\n", command=[str(bare / "bin" / "python"), "${program}", "${args}"]
    )
    assert trial.state == TrialState.FAIL
    reason = trial.user_attrs["fail_reason"]
    assert "No module named 'wandb'" in reason and "pip install 'sweeper[wandb]'" in reason


def _defaults(tracker: dict[str, Any] | None, environ: dict[str, str]) -> wandb_bridge.RunDefaults:
    return wandb_bridge.run_defaults(
        sweep_id="abcdefgh",
        sweep_name="demo",
        number=4,
        attempt=1,
        sweep_dir="/p/.sweeper/sweeps/abcdefgh",
        tags=("t",),
        config={"lr": 0.1},
        tracker_options=tracker,
        environ=environ,
    )


def test_runs_are_offline_in_the_sweep_dir_unless_the_user_chooses() -> None:
    plain = _defaults(None, {})
    assert (plain.mode, plain.project, plain.entity) == ("offline", "sweeper", None)
    assert plain.dir == "/p/.sweeper/sweeps/abcdefgh"
    assert (plain.run_id, plain.name, plain.group) == ("abcdefgh-4-1", "demo-4", "demo")
    assert plain.tags == ("sweep:abcdefgh", "t")
    online = _defaults(None, {"WANDB_MODE": "online", "WANDB_PROJECT": "team", "WANDB_ENTITY": "me"})
    assert (online.mode, online.project, online.entity) == ("online", "team", "me")
    tracker = _defaults({"mode": "online", "project": "p", "dir": "/runs"}, {"WANDB_MODE": "disabled"})
    assert (tracker.mode, tracker.project, tracker.dir) == ("online", "p", "/runs")
    assert wandb_bridge.RunDefaults.from_json(tracker.to_json()) == tracker
