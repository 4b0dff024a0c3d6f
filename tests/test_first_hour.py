"""A new user's first hour, as the README tells it, through the real ``sweeper`` command in subprocesses.

The quickstart runs in a copy of the project (its own ``.sweeper/``, its own local Ray), twice, as a
user who runs it again does; every line it prints must be ours or the trainer's (which prints
nothing): no third-party notice reaches the terminal. Then the README's "look at what worked"
commands use the sweep's name, which keeps working though two sweeps now share it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.ray, pytest.mark.slow]

ID = r"[a-z][a-z0-9]{7}"
# Every line `sweeper run` may print for the quickstart: our own formats, nothing else.
OURS = (
    re.compile(rf"created sweep {ID} \(quickstart\): 20 trials \(run_cap\)"),
    re.compile(
        rf"sweep {ID}: \d+ trials \(\d+ complete, \d+ pruned, \d+ failed\); best val_loss=[-0-9.e]+ "
        r"\(trial \d+\); count \d+ reached; sweep running"
    ),
)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of what a user's clone holds for the quickstart: the spec and the trainers."""
    shutil.copytree(ROOT / "trainers", tmp_path / "trainers", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "sweeps").mkdir()
    shutil.copy(ROOT / "sweeps" / "quickstart.yaml", tmp_path / "sweeps")
    return tmp_path


def sweeper_cli(project: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """``sweeper ARGS`` run in ``project`` as a user's shell would (no storage or Ray settings)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SWEEPER_", "RAY_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    try:
        return subprocess.run(
            [sys.executable, "-c", "from sweeper.cli import main; main()", *args],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:  # say where it stood, not only that it took too long
        printed = [exc.stdout, exc.stderr]
        tail = "".join(p.decode(errors="replace") if isinstance(p, bytes) else p or "" for p in printed)
        pytest.fail(f"sweeper {' '.join(args)} ran past {timeout} s; it printed:\n{tail[-4000:]}")


def foreign_lines(done: subprocess.CompletedProcess[str]) -> list[str]:
    lines = done.stdout.splitlines() + done.stderr.splitlines()
    return [line for line in lines if not any(p.fullmatch(line) for p in OURS)]


def test_the_quickstart_twice_prints_only_our_lines_and_its_name_keeps_working(project: Path) -> None:
    first = sweeper_cli(project, "run", "sweeps/quickstart.yaml", "--count", "2")
    assert first.returncode == 0, first.stderr
    assert foreign_lines(first) == []
    second = sweeper_cli(project, "run", "sweeps/quickstart.yaml", "--count", "1")
    assert second.returncode == 0, second.stderr
    assert foreign_lines(second) == []
    first_id, second_id = (re.search(rf"created sweep ({ID})", d.stderr)[1] for d in (first, second))  # type: ignore[index]

    best = sweeper_cli(project, "best", "quickstart", "--top", "5", "--json")
    assert best.returncode == 0, best.stderr
    assert len(json.loads(best.stdout)) == 1  # the newest sweep's one trial; stdout is pure JSON
    assert re.fullmatch(
        rf"note: 2 sweeps are named 'quickstart'; using the newest, {second_id} \(created [^)]+\); "
        rf"the others: {first_id}\n",
        best.stderr,
    ), best.stderr
    status = sweeper_cli(project, "status", first_id, "--json")  # an id is exact
    assert status.returncode == 0 and status.stderr == ""
    assert json.loads(status.stdout)["counts"]["complete"] == 2
