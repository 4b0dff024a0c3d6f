"""The engine's commands, in-process and as the console script, and W&B-style program trainers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest
import yaml
from click.testing import CliRunner
from optuna.trial import TrialState

from sweeper.cli import main
from sweeper.storage import sweeps
from sweeper.storage.urls import open_storage

TRAINER_MODULE = """
def train(config, trial):
    for step in range(1, 4):
        trial.log({"loss": (config["x"] - 1.0) ** 2 + 1.0 / step})
"""

PROGRAM = """
import argparse

import sweeper

parser = argparse.ArgumentParser()
parser.add_argument("--x", type=float)
parser.add_argument("--tag")
args = parser.parse_args()
trial = sweeper.init()
assert trial.config["x"] == args.x, (trial.config, args)
for step in range(1, 4):
    trial.log({"loss": (args.x - 1.0) ** 2 + 1.0 / step})
"""


def _write_project(root: Path, spec: dict[str, object]) -> Path:
    (root / "mytrainers").mkdir()
    (root / "mytrainers" / "__init__.py").write_text("")
    (root / "mytrainers" / "quad.py").write_text(TRAINER_MODULE)
    (root / "train.py").write_text(PROGRAM)
    path = root / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _grid(**extra: object) -> dict[str, object]:
    return {
        "method": "grid",
        "metric": {"name": "loss"},
        "parameters": {"x": {"values": [0.0, 1.0, 2.0]}},
        **extra,
    }


def test_submit_prints_the_id_last_and_agent_runs_the_sweep(project: Path) -> None:
    spec_path = _write_project(project, _grid(sweeper={"trainer": "mytrainers.quad:train"}))
    url = f"sqlite:///{project / 's.db'}"
    runner = CliRunner()
    submitted = runner.invoke(main, ["submit", str(spec_path), "--storage", url])
    assert submitted.exit_code == 0, submitted.output
    sweep_id = submitted.stdout.strip().splitlines()[-1]
    assert sweeps.get_sweep(open_storage(url), sweep_id).state == "running"

    ran = runner.invoke(main, ["agent", sweep_id, "--storage", url, "--executor", "local", "--json"])
    assert ran.exit_code == 0, ran.output
    events = [json.loads(line) for line in ran.stdout.splitlines() if line.startswith("{")]
    assert [e["event"] for e in events].count("trial_ended") == 3
    assert events[-1]["event"] == "agent_finished" and events[-1]["complete"] == 3
    trials = optuna.load_study(study_name=sweep_id, storage=open_storage(url)).trials
    assert all(t.state == TrialState.COMPLETE for t in trials) and len(trials) == 3


def test_agent_runs_only_the_trials_it_is_given(project: Path) -> None:
    spec_path = _write_project(project, _grid(sweeper={"trainer": "mytrainers.quad:train"}))
    url = f"sqlite:///{project / 's.db'}"
    runner = CliRunner()
    sweep_id = (
        runner.invoke(main, ["submit", str(spec_path), "--storage", url]).stdout.strip().splitlines()[-1]
    )
    args = ["agent", sweep_id, "--storage", url, "--executor", "local", "--trial", "2", "--trial", "0"]
    ran = runner.invoke(main, args)
    assert ran.exit_code == 0, ran.output
    trials = optuna.load_study(study_name=sweep_id, storage=open_storage(url)).trials
    assert {t.number: t.state for t in trials} == {
        0: TrialState.COMPLETE,
        1: TrialState.WAITING,
        2: TrialState.COMPLETE,
    }
    unknown = runner.invoke(
        main, ["agent", sweep_id, "--storage", url, "--executor", "local", "--trial", "7"]
    )
    assert unknown.exit_code == 2 and "7" in unknown.stderr


def test_state_commands_and_user_errors(project: Path) -> None:
    spec_path = _write_project(project, _grid())
    url = f"sqlite:///{project / 's.db'}"
    runner = CliRunner()
    sweep_id = (
        runner.invoke(main, ["submit", str(spec_path), "--storage", url]).stdout.strip().splitlines()[-1]
    )
    for command, state in [("pause", "paused"), ("resume", "running"), ("stop", "finished")]:
        result = runner.invoke(main, [command, sweep_id, "--storage", url])
        assert result.exit_code == 0 and result.stdout.strip() == f"sweep {sweep_id} is {state}"
    refused = runner.invoke(main, ["resume", sweep_id, "--storage", url])
    assert refused.exit_code == 2
    assert refused.stderr.strip() == (
        f"error: sweep {sweep_id} is finished; it cannot become running "
        "(`sweeper extend` gives it more budget or grid values)"
    )
    missing = runner.invoke(main, ["agent", "nosuchid", "--storage", url])
    assert missing.exit_code == 4 and missing.stderr.strip() == "error: no sweep 'nosuchid' in this storage"
    no_trainer = runner.invoke(main, ["run", str(spec_path), "--storage", url, "--executor", "local"])
    assert no_trainer.exit_code == 5 and "names no trainer" in no_trainer.stderr
    assert "Traceback" not in no_trainer.output
    fresh = f"sqlite:///{project / 'fresh.db'}"
    bad = runner.invoke(
        main, ["run", str(spec_path), "--storage", fresh, "--trainer", "mytrainers.quad:nope"]
    )
    assert bad.exit_code == 5 and "has no attribute 'nope'" in bad.stderr
    assert sweeps.list_sweeps(open_storage(fresh)) == []  # checked before the sweep was created
    ports = runner.invoke(
        main,
        ["run", str(spec_path), "--storage", fresh, "--trainer", "mytrainers.quad:train"],
        env={"SWEEPER_AGENT_PORTS": "40200-40100"},
    )
    assert ports.exit_code == 2 and "Traceback" not in ports.output
    assert ports.stderr.strip() == (
        "error: SWEEPER_AGENT_PORTS must be a port or a range LOW-HIGH within 1-65535 (40100-40199), "
        "got '40200-40100'"
    )
    assert sweeps.list_sweeps(open_storage(fresh)) == []  # checked before the sweep was created


def test_password_in_storage_url_is_never_printed(project: Path) -> None:
    spec_path = _write_project(project, _grid())
    url = "postgresql://alice:s3cret@127.0.0.1:1/nowhere"
    result = CliRunner().invoke(main, ["submit", str(spec_path), "--storage", url])
    assert result.exit_code == 3
    assert "s3cret" not in result.output and "alice:***@" in result.stderr


@pytest.mark.ray
@pytest.mark.usefixtures("ray_session")
def test_program_trainer_runs_in_ray_and_reports_its_metrics(project: Path) -> None:
    spec = _grid(
        program="train.py",
        command=["${env}", "${interpreter}", "${program}", "--tag", "literal", "${args}"],
    )
    spec_path = _write_project(project, spec)
    url = f"sqlite:///{project / 's.db'}"
    result = CliRunner().invoke(main, ["run", str(spec_path), "--storage", url])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1].startswith("sweep ")
    [info] = sweeps.list_sweeps(open_storage(url))
    trials = optuna.load_study(study_name=info.id, storage=open_storage(url)).trials
    assert sorted(t.state for t in trials) == [TrialState.COMPLETE] * 3, [t.user_attrs for t in trials]
    for t in trials:
        assert t.values == [pytest.approx((t.params["x"] - 1.0) ** 2 + 1.0 / 3)]
        assert sorted(t.intermediate_values) == [1, 2, 3]


@pytest.mark.ray
@pytest.mark.slow
def test_console_script_ships_the_project_to_a_fresh_ray(project: Path) -> None:
    """`sweeper run` in a project starts its own Ray; the trainer module reaches the workers."""
    spec_path = _write_project(
        project, _grid(sweeper={"trainer": "mytrainers.quad:train", "resources": {"cpus": 1}})
    )
    url = f"sqlite:///{project / 's.db'}"
    script = Path(sys.executable).with_name("sweeper")
    env = {**os.environ, "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run(
        [str(script), "run", str(spec_path), "--storage", url, "--max-concurrent", "2"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("sweep ") and "3 complete" in last, textwrap.shorten(proc.stdout, 500)


def test_the_command_process_leaves_what_it_holds_out_of_the_collection_at_its_exit() -> None:
    """Python's last collection at exit (0.25-0.3 s after a `sweeper run`) finds nothing to walk."""
    script = textwrap.dedent(
        """
        import atexit, gc
        import sweeper.cli
        held = [[index] for index in range(1000)]
        atexit._run_exitfuncs()  # what the interpreter runs as it exits, in its order
        print("frozen at exit:", gc.get_freeze_count() >= len(held))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "frozen at exit: True"
