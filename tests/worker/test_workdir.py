"""Outputs that stay: each trial runs in its own directory, which outlives it, on Ray and locally;
one the trainer left nothing of its own in does not."""

from __future__ import annotations

import os
from pathlib import Path

import engine_trainers
import pytest
from click.testing import CliRunner

import sweeper
from sweeper.cli import main
from sweeper.worker import workdir
from sweeper.worker.workdir import (
    link_project,
    make_trial_dir,
    release_trial_dir,
    remove_kept_dirs,
    trial_dir,
    trials_dir,
)

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


@pytest.mark.parametrize("executor", ["local", pytest.param("ray", marks=pytest.mark.ray)])
@pytest.mark.usefixtures("ray_trainers")
def test_a_trial_that_leaves_nothing_in_its_directory_leaves_no_directory(
    project: Path, executor: str
) -> None:
    (project / "input.txt").write_text("hello\n")
    url = f"sqlite:///{project / 's.db'}"
    sweep_id = sweeper.sweep({**SPEC, "sweeper": {"max_concurrent": 1}}, storage=url)
    # One at a time: on Ray the untouched directory a worker kept is its next trial's.
    sweeper.agent(sweep_id, function=engine_trainers.writes_only_for_two, storage=url, executor=executor)

    results = sweeper.load(sweep_id, storage=url)
    assert [(t.config["x"], t.state) for t in results.trials] == [
        (1.0, "complete"),
        (2.0, "complete"),
        (3.0, "complete"),
    ]
    root = project / ".sweeper" / "sweeps"
    kept = trial_dir(root, sweep_id, results.trials[1].number)
    assert [t.trial_dir for t in results.trials] == [None, str(kept), None]
    assert (kept / "model.pt").read_text() == f"trial {results.trials[1].number} read hello"
    assert (kept / "input.txt").readlink() == project / "input.txt"
    # No other directory, not even a hidden one a worker kept (the agent removed those at its end).
    assert [p.name for p in (root / sweep_id / "trials").iterdir() if p.is_dir()] == [kept.name]
    assert not (project / ".sweeper" / "checkpoints").exists()  # no trial asked for its checkpoint folder
    assert (project / "input.txt").read_text() == "hello\n"


@pytest.fixture
def no_spare(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process holds no kept trial directory before or after the test."""
    monkeypatch.setattr(workdir, "_spare", None)


def _linked(project: Path, trial: Path) -> Path:
    trial.mkdir(parents=True)
    link_project(project, trial)
    return trial


@pytest.mark.usefixtures("no_spare")
def test_only_a_directory_of_the_projects_own_links_is_released(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    (project / "config.yaml").write_text("lr: 0.1\n")
    untouched = _linked(project, tmp_path / "trials" / "0")
    wrote = _linked(project, tmp_path / "trials" / "1")
    (wrote / "model.pt").write_text("weights")
    own_link = _linked(project, tmp_path / "trials" / "2")
    (own_link / "config.yaml").unlink()
    (own_link / "config.yaml").symlink_to(tmp_path / "elsewhere.yaml")  # the trainer's, not ours
    made_dir = _linked(project, tmp_path / "trials" / "3")
    (made_dir / "logs").mkdir()

    assert release_trial_dir(untouched, project, keep=False)
    assert not untouched.exists()
    for kept in (wrote, own_link, made_dir):
        assert not release_trial_dir(kept, project, keep=False)
    assert (wrote / "model.pt").read_text() == "weights" and (wrote / "data").readlink() == project / "data"
    assert (own_link / "config.yaml").readlink() == tmp_path / "elsewhere.yaml"
    assert (made_dir / "logs").is_dir()
    assert (project / "config.yaml").read_text() == "lr: 0.1\n" and (project / "data").is_dir()
    assert workdir._spare is None  # nothing kept without keep=True


@pytest.mark.usefixtures("no_spare")
def test_a_kept_directory_becomes_the_next_trials_with_the_projects_entries_of_now(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "old.txt").write_text("old")
    (project / "stays.txt").write_text("stays")
    first = _linked(project, trial_dir(tmp_path / "sweeps", "abcdefgh", 0))
    inode = first.stat().st_ino

    assert release_trial_dir(first, project, keep=True)
    assert not first.exists()
    (project / "old.txt").unlink()
    (project / "new.txt").write_text("new")
    # The next sweep's trial: its trials folder does not exist yet.
    second = trial_dir(tmp_path / "sweeps", "ijklmnop", 4)
    assert make_trial_dir(second, "ijklmnop", 4, project) == second
    link_project(project, second)

    assert second.stat().st_ino == inode  # renamed into place, not created again
    assert sorted(p.name for p in second.iterdir()) == ["new.txt", "stays.txt"]
    assert (second / "stays.txt").read_text() == "stays" and (second / "new.txt").read_text() == "new"
    assert [p.name for p in (tmp_path / "sweeps" / "abcdefgh" / "trials").iterdir()] == []
    assert workdir._spare is None


@pytest.mark.usefixtures("no_spare")
def test_a_kept_directory_removed_by_the_agent_leaves_the_next_trial_a_new_one(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "data.csv").write_text("a,b\n")
    first = _linked(project, trial_dir(tmp_path / "sweeps", "abcdefgh", 0))
    assert release_trial_dir(first, project, keep=True)
    (first.parent / "1").mkdir()
    (first.parent / "1" / "model.pt").write_text("a trial's own")

    remove_kept_dirs(trials_dir(tmp_path / "sweeps", "abcdefgh"))

    assert sorted(p.name for p in first.parent.iterdir()) == ["1"]  # only the hidden one went
    assert (first.parent / "1" / "model.pt").read_text() == "a trial's own"
    second = make_trial_dir(trial_dir(tmp_path / "sweeps", "abcdefgh", 2), "abcdefgh", 2, project)
    link_project(project, second)
    assert second.is_dir() and (second / "data.csv").read_text() == "a,b\n"
    assert (project / "data.csv").read_text() == "a,b\n"
    assert workdir._spare is None


@pytest.mark.usefixtures("no_spare")
def test_a_kept_directory_of_another_project_is_removed_not_reused(tmp_path: Path) -> None:
    mine, theirs = tmp_path / "mine", tmp_path / "theirs"
    for project in (mine, theirs):
        project.mkdir()
        (project / f"{project.name}.txt").write_text(project.name)
    first = _linked(theirs, trial_dir(tmp_path / "sweeps", "abcdefgh", 0))
    assert release_trial_dir(first, theirs, keep=True)

    second = make_trial_dir(trial_dir(tmp_path / "sweeps", "abcdefgh", 1), "abcdefgh", 1, mine)
    link_project(mine, second)

    assert sorted(p.name for p in second.iterdir()) == ["mine.txt"]
    assert [p.name for p in (tmp_path / "sweeps" / "abcdefgh" / "trials").iterdir()] == ["1"]
    assert (theirs / "theirs.txt").read_text() == "theirs"  # only the links went


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
    link_project(tmp_path / "via", project)  # ... however either is named
    link_project(project, tmp_path / "via")
    assert not (project / "data" / "data").exists()
    assert sorted(p.name for p in project.iterdir()) == [".git", "config.yaml", "data", "gone", "shared"]


def test_a_directory_that_holds_the_projects_links_already_is_not_linked_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    for name in ("a.txt", "b.txt", "c.txt"):
        (project / name).write_text(name)
    trial = tmp_path / "trial"
    trial.mkdir()
    link_project(project, trial)
    made: list[str] = []
    real_symlink = os.symlink

    def counting(source: str, target: Path) -> None:
        made.append(Path(target).name)
        real_symlink(source, target)

    monkeypatch.setattr(os, "symlink", counting)
    link_project(project, trial)  # a kept directory: every link is there
    assert made == []
    (trial / "b.txt").unlink()
    (project / "d.txt").write_text("d")
    link_project(project, trial)  # only what is missing is made
    assert sorted(made) == ["b.txt", "d.txt"]
    assert sorted(p.name for p in trial.iterdir()) == ["a.txt", "b.txt", "c.txt", "d.txt"]
    assert (trial / "d.txt").read_text() == "d"


def test_a_project_named_relative_to_the_working_directory_is_the_one_there_now(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for side in ("a", "b"):
        (tmp_path / side / "project").mkdir(parents=True)
        (tmp_path / side / "project" / f"{side}.txt").write_text(side)
        (tmp_path / side / "trial").mkdir()
    for side in ("a", "b"):  # the project's real path is kept per process, never a relative one's
        monkeypatch.chdir(tmp_path / side)
        link_project(Path("project"), tmp_path / side / "trial")
        assert [p.name for p in (tmp_path / side / "trial").iterdir()] == [f"{side}.txt"]
