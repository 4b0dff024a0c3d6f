"""Outputs that stay: each trial runs in its own directory, which outlives it, on Ray and locally."""

from __future__ import annotations

from pathlib import Path

import engine_trainers
import pytest
from click.testing import CliRunner

import sweeper
from sweeper.cli import main
from sweeper.worker.workdir import link_project, make_trial_dir, trial_dir

SPEC = {"method": "grid", "metric": {"name": "loss"}, "parameters": {"x": {"values": [1.0, 2.0, 3.0]}}}


def _check_outputs(project: Path, url: str, sweep_id: str, root: Path) -> None:
    results = sweeper.load(sweep_id, storage=url)
    assert [t.state for t in results.trials] == ["complete"] * 3
    for t in results.trials:
        where = trial_dir(root, sweep_id, t.number)
        assert t.trial_dir == str(where)
        assert (
            where / "model.pt"
        ).read_text() == f"weights of trial {t.number} (x={t.config['x']}, input hello)"
        assert (where / "logs" / "train.log").read_text() == f"cwd={where}\n"
    # Nothing the trainer wrote landed in the project itself.
    assert not (project / "model.pt").exists() and not (project / "logs").exists()
    shown = CliRunner().invoke(main, ["trials", sweep_id, "--storage", url])
    assert shown.exit_code == 0, shown.output
    assert "outputs" in shown.output and "trials" in shown.output


def test_local_trials_write_into_their_own_directories(project: Path) -> None:
    (project / "input.txt").write_text("hello\n")
    url = f"sqlite:///{project / 's.db'}"
    sweep_id = sweeper.sweep(SPEC, storage=url)
    sweeper.agent(sweep_id, function=engine_trainers.writes_outputs, storage=url, executor="local")

    _check_outputs(project, url, sweep_id, project / ".sweeper" / "sweeps")
    assert Path.cwd() == project  # the agent's own working directory is back where it was


def test_the_spec_names_another_root_for_the_outputs(project: Path) -> None:
    (project / "input.txt").write_text("hello\n")
    url = f"sqlite:///{project / 's.db'}"
    sweep_id = sweeper.sweep({**SPEC, "sweeper": {"outputs": "runs"}}, storage=url)
    sweeper.agent(sweep_id, function=engine_trainers.writes_outputs, storage=url, executor="local")

    _check_outputs(project, url, sweep_id, project / "runs")


@pytest.mark.ray
@pytest.mark.usefixtures("ray_trainers")
def test_ray_trials_leave_nothing_only_in_rays_temporary_folders(project: Path) -> None:
    (project / "input.txt").write_text("hello\n")
    url = f"sqlite:///{project / 's.db'}"
    sweep_id = sweeper.sweep(SPEC, storage=url)
    sweeper.agent(sweep_id, function=engine_trainers.writes_outputs, storage=url, executor="ray")

    _check_outputs(project, url, sweep_id, project / ".sweeper" / "sweeps")


def test_a_node_that_cannot_create_the_projects_path_uses_its_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the project's path needs a directory")  # fails even for root
    where = make_trial_dir(trial_dir(blocked / "sweeps", "abcdefgh", 3), "abcdefgh", 3)

    assert where == trial_dir(tmp_path / "home" / ".sweeper" / "sweeps", "abcdefgh", 3)
    assert where.is_dir()


def test_the_projects_entries_are_linked_in_and_names_already_there_are_left_alone(tmp_path: Path) -> None:
    project = tmp_path / "real project"
    (project / "data").mkdir(parents=True)
    (project / "data" / "train.csv").write_text("a,b\n")
    (project / "config.yaml").write_text("lr: 0.1\n")
    (project / "shared").symlink_to("data")  # an entry that is itself a link, relative to the project
    (project / ".git").mkdir()
    (tmp_path / "via").symlink_to(project)  # the project named through a link
    trial = tmp_path / "trial"
    trial.mkdir()
    (trial / "config.yaml").write_text("mine\n")  # what the trial has already stays
    (trial / "gone").symlink_to(tmp_path / "nowhere")  # even a dangling link
    (project / "gone").write_text("project's\n")

    link_project(tmp_path / "via", trial)
    link_project(tmp_path / "via", trial)  # again: every name exists now

    assert sorted(p.name for p in trial.iterdir()) == ["config.yaml", "data", "gone", "shared"]
    assert (trial / "data" / "train.csv").read_text() == "a,b\n"
    assert (trial / "shared" / "train.csv").read_text() == "a,b\n"
    assert (trial / "config.yaml").read_text() == "mine\n"
    assert (trial / "gone").readlink() == tmp_path / "nowhere"
    assert (trial / "data").readlink() == project / "data"  # the resolved project, not the link to it
    link_project(project, project)  # a trial run in the project itself links nothing
    assert not (project / "data" / "data").exists()
