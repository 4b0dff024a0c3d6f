"""``program:`` trainers that use only W&B (no ``import sweeper``), under real offline wandb."""

from __future__ import annotations

import os
import re
import textwrap
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState
from tracker_readers import read_wandb

import sweeper
from sweeper.storage.urls import open_storage

# W&B offline, its files under the scratch project (see tests/conftest.py).
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("wandb_offline")]

SCRIPT = """
import time
import wandb

run = wandb.init(config={"steps": 6})
mode = wandb.config.mode
x = {"good": 1.0, "worse": 2.0, "bad": 50.0, "raise": 1.0, "sleep": 1.0}[mode]
for step in range(wandb.config.steps):
    wandb.log({"loss": x / (step + 1)})
    if mode == "raise" and step == 1:
        raise RuntimeError("diverged at step 1")
    if mode == "sleep" and step == 1:
        time.sleep(300)
    if mode == "bad":
        # The pruner stops it at step 1; its answer has 4 s to arrive, even under load. The stop is
        # raised at step 2, and the second after it lets the agent's SIGTERM land before a step 3.
        time.sleep(4 if step == 1 else 1)
run.summary["final"] = x / wandb.config.steps
run.finish()
"""

TIMEOUT_S = 20


def _only(paths: Any) -> Path:
    (path,) = paths
    return Path(path)


def _spec() -> dict[str, Any]:
    return {
        "name": "prog",
        "method": "grid",
        "metric": {"name": "loss", "goal": "minimize"},
        # Iteration 2: "bad" (25) is worse than the best half of good (0.5), worse (1) and itself.
        "early_terminate": {"type": "hyperband", "min_iter": 2, "eta": 2},
        "program": "train.py",
        "parameters": {"mode": {"values": ["good", "worse", "bad", "raise", "sleep"]}},
        "sweeper": {"max_concurrent": 1, "timeout": TIMEOUT_S},
    }


@pytest.mark.parametrize("executor", ["local", pytest.param("ray", marks=pytest.mark.ray)])
def test_a_wandb_only_program_reports_to_the_sweep(project: Path, executor: str, request: Any) -> None:
    if executor == "ray":
        request.getfixturevalue("ray_session")
    (project / "train.py").write_text(textwrap.dedent(SCRIPT))
    # The agent's process has used W&B itself (a tracker, an in-process trainer): W&B exports its
    # service's address then, which the programs must not share (their runs would lose their end).
    import wandb

    wandb.init(mode="offline", dir=str(project), settings=wandb.Settings(silent=True)).finish()
    assert "WANDB_SERVICE" in os.environ
    url = f"sqlite:///{project / 's.db'}"
    sweep_id = sweeper.sweep(_spec(), storage=url)
    sweeper.agent(sweep_id, storage=url, executor=executor)  # type: ignore[arg-type]
    study = optuna.load_study(study_name=sweep_id, storage=open_storage(url))
    trials = {t.params["mode"]: t for t in study.trials}

    good = trials["good"]
    assert good.state == TrialState.COMPLETE
    assert good.values == [pytest.approx(1 / 6)]
    assert good.intermediate_values == {s: pytest.approx(1 / (s + 1)) for s in range(6)}
    assert good.user_attrs["metrics"]["final"] == pytest.approx(1 / 6)  # run.summary[...] = ...
    assert trials["worse"].state == TrialState.COMPLETE

    bad = trials["bad"]
    assert bad.state == TrialState.PRUNED
    # Stopped at its second report; the stop reaches the program at its next one (W&B's semantics).
    assert bad.intermediate_values == {0: 50.0, 1: 25.0, 2: pytest.approx(50 / 3)}
    assert bad.user_attrs["metrics"]["loss"] == pytest.approx(50 / 3)

    failed = trials["raise"]
    assert failed.state == TrialState.FAIL
    reason = failed.user_attrs["fail_reason"]
    assert "program exited with code 1" in reason and "RuntimeError: diverged at step 1" in reason
    assert failed.intermediate_values == {0: 1.0, 1: 0.5}

    slow = trials["sleep"]
    assert slow.state == TrialState.FAIL
    # The program stops itself at its timeout: SIGTERM, with a grace to finish its W&B run. Locally the
    # executor's SIGTERM of the trial may come first (the same grace); on Ray the executor's kill of
    # the worker is only a backstop, after that grace.
    reason = slow.user_attrs["fail_reason"]
    if executor == "ray":
        assert f"program ran longer than the trial timeout of {TIMEOUT_S}" in reason
    else:
        ours, its_own = (
            rf"ran past sweeper.timeout \({TIMEOUT_S} s\)",
            f"ran longer than the trial timeout of {TIMEOUT_S}",
        )
        assert re.search(f"{ours}|{its_own}", reason)
    assert slow.intermediate_values == {0: 1.0, 1: 0.5}

    # Each program's own W&B run, offline in the sweep's directory, named per trial, grouped by sweep.
    wandb_dir = project / ".sweeper" / "sweeps" / sweep_id / "wandb"
    run_dirs = {
        mode: _only(wandb_dir.glob(f"offline-run-*-{sweep_id}-{t.number}")) for mode, t in trials.items()
    }
    for mode, t in trials.items():
        if mode != "sleep" or executor == "ray":  # one the local executor timed out has none recorded
            assert t.user_attrs["tracker_runs"]["wandb"] == str(run_dirs[mode])
    runs = read_wandb({mode: str(path) for mode, path in run_dirs.items()})
    for mode, t in trials.items():
        run = runs[f"prog-{t.number}"]
        assert run.extra["dir"].is_relative_to(wandb_dir)
        assert run.extra["group"] == "prog"
        assert run.params == {"mode": mode, "steps": 6}
        assert dict(run.history["loss"]) == pytest.approx(t.intermediate_values)
    assert runs[f"prog-{good.number}"].extra["exit_code"] == 0
    assert runs[f"prog-{failed.number}"].extra["exit_code"] == 1
    # Stopped by the agent's SIGTERM, the program still finished its W&B run on the way out.
    assert runs[f"prog-{bad.number}"].extra["exit_code"] == 143
    # Timed out: asked to stop, it finished its W&B run on the way out too.
    assert runs[f"prog-{slow.number}"].extra["exit_code"] == 143
