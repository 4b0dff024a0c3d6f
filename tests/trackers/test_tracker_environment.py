"""The environment every trial records: Python, packages, host, GPUs, the trainer's git commit."""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest

from sweeper.trackers import environment
from sweeper.trackers.environment import collect_environment


def make_repo(path: Path) -> str:
    path.mkdir(parents=True, exist_ok=True)
    git = ["git", "-C", str(path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (path / "train.py").write_text("def train(config, trial):\n    return 0.0\n")
    subprocess.run([*git, "add", "train.py"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "trainer"], check=True)
    return subprocess.run(
        [*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_records_python_packages_and_host(tmp_path: Path) -> None:
    env = collect_environment(str(tmp_path))
    assert env["python"] == platform.python_version()
    assert env["hostname"] == socket.gethostname()
    assert env["packages"]["optuna"] == version("optuna")
    assert env["packages"]["sweeper"] == version("sweeper")
    assert env["git"] is None  # tmp_path is no repository
    json.dumps(env)  # ready for any tracker


def test_records_the_trainer_commit_and_dirtiness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    commit = make_repo(tmp_path / "code")
    env = collect_environment(str(tmp_path / "code"))
    assert env["git"] == {"commit": commit, "dirty": False, "root": str((tmp_path / "code").resolve())}
    (tmp_path / "code" / "train.py").write_text("# edited\n")
    monkeypatch.setattr(environment, "GIT_FRESH_S", 0.0)  # read again now
    assert collect_environment(str(tmp_path / "code"))["git"]["dirty"] is True


def test_a_process_reads_a_directorys_git_state_at_most_once_in_its_freshness_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker runs trial after trial: git is asked once per window, not once per trial."""
    make_repo(tmp_path / "code")
    commands: list[list[str]] = []
    run = environment._run
    monkeypatch.setattr(environment, "_run", lambda args, cwd=None: commands.append(args) or run(args, cwd))
    first = environment.git_state(str(tmp_path / "code"))
    assert first is not None and len(commands) == 2  # rev-parse, status
    first["commit"] = "changed by a caller"  # a caller's copy: the reading stays as read
    (tmp_path / "code" / "train.py").write_text("# edited\n")
    again = environment.git_state(str(tmp_path / "code"))
    assert len(commands) == 2 and again is not None and again["dirty"] is False  # within the window
    assert again["commit"] != "changed by a caller"
    monkeypatch.setattr(environment, "GIT_FRESH_S", 0.0)  # the window has passed
    later = environment.git_state(str(tmp_path / "code"))
    assert len(commands) == 4 and later is not None and later["dirty"] is True


def test_a_folder_outside_any_repository_starts_no_git_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    commands: list[list[str]] = []
    run = environment._run
    monkeypatch.setattr(environment, "_run", lambda args, cwd=None: commands.append(args) or run(args, cwd))
    (tmp_path / "plain" / "sub").mkdir(parents=True)
    assert environment._read_git_state(str(tmp_path / "plain" / "sub")) is None
    assert commands == []
    # Below a repository, through a link, or named by GIT_DIR: git is asked.
    commit = make_repo(tmp_path / "code")
    (tmp_path / "code" / "sub").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "code" / "sub")
    for where in (tmp_path / "code" / "sub", tmp_path / "link"):
        state = environment._read_git_state(str(where))
        assert state is not None and state["commit"] == commit
    commands.clear()
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "code" / ".git"))
    assert environment._read_git_state(str(tmp_path / "plain"))["commit"] == commit  # type: ignore[index]
    assert commands


def test_records_the_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,3")
    env = collect_environment()
    assert env["cuda_visible_devices"] == "1,3"
    assert isinstance(env["gpus"], list)


def test_never_imports_torch_to_find_cuda() -> None:
    code = (
        "import sys; from sweeper.trackers.environment import collect_environment as c; "
        "e = c(); print('torch' in sys.modules, e['cuda'])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "None"]


@pytest.fixture
def two_gpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """An ``nvidia-smi`` on PATH that reports two GPUs, as the real one does (CI machines have none)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "nvidia-smi"
    tool.write_text(
        "#!/bin/sh\n"
        'test "$1" = "--query-gpu=index,uuid,name" || exit 2\n'
        "echo '0, GPU-aaaa, NVIDIA H200'\n"
        "echo '1, GPU-bbbb, NVIDIA A100-SXM4-80GB'\n"
    )
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    environment._machine_gpus.cache_clear()  # a process asks nvidia-smi once: this one, now
    yield
    environment._machine_gpus.cache_clear()


@pytest.mark.parametrize(
    ("visible", "names"),
    [
        (None, ["NVIDIA H200", "NVIDIA A100-SXM4-80GB"]),
        ("1", ["NVIDIA A100-SXM4-80GB"]),
        ("GPU-aaaa", ["NVIDIA H200"]),
        ("1,0", ["NVIDIA A100-SXM4-80GB", "NVIDIA H200"]),
        ("", []),
    ],
)
def test_gpus_are_those_the_trial_may_use(
    two_gpus: None, monkeypatch: pytest.MonkeyPatch, visible: str | None, names: list[str]
) -> None:
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert collect_environment()["gpus"] == names


def test_nvidia_smi_is_asked_once_per_process_and_the_visible_devices_every_time(
    two_gpus: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert collect_environment()["gpus"] == ["NVIDIA H200"]
    monkeypatch.setenv("PATH", "/nonexistent")  # nvidia-smi gone: the machine's list is kept
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")  # Ray gives the next task another GPU
    assert collect_environment()["gpus"] == ["NVIDIA A100-SXM4-80GB"]
