"""What a trial ran on: Python, package versions, host, visible GPUs and the trainer's git commit."""

from __future__ import annotations

import functools
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from typing import Any

# Distributions whose versions every trial records (absent ones are left out).
PACKAGES = (
    "sweeper",
    "optuna",
    "ray",
    "torch",
    "numpy",
    "scikit-learn",
    "mlflow",
    "wandb",
    "tensorboard",
)

# External commands must never hold a trial up for long.
COMMAND_TIMEOUT_S = 5.0

#: How long a process reuses its reading of a directory's git state. Each reading starts one or
#: two ``git`` processes (5-15 ms of a 2-core machine each trial, where a worker runs one trial after
#: another); a commit made during a sweep shows in the records of trials started this long after.
GIT_FRESH_S = 10.0


def collect_environment(code_dir: str | None = None) -> dict[str, Any]:
    """Describe where the calling process runs, cheaply (no heavy import, short subprocess calls).

    Args:
        code_dir: The trainer's source directory; its git commit is recorded when it lives in a
            repository. ``None`` means the current directory.

    Returns:
        A JSON-ready mapping: ``python``, ``platform``, ``hostname``, ``packages``
        (distribution -> version), ``cuda`` (torch's CUDA version when torch is already imported),
        ``cuda_visible_devices``, ``gpus`` (names of the GPUs this process sees) and ``git``
        (``commit``, ``dirty``, ``root``) or ``None``.

    Example:
        >>> env = collect_environment()
        >>> sorted(env)[:3]
        ['cuda', 'cuda_visible_devices', 'git']
    """
    return {
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "packages": package_versions(),
        "cuda": _torch_cuda(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "gpus": visible_gpus(),
        "git": git_state(code_dir or os.getcwd()),
    }


def package_versions() -> dict[str, str]:
    """The installed version of each of :data:`PACKAGES`, read from metadata (nothing imported)."""
    return dict(_package_versions())


@functools.lru_cache(maxsize=1)
def _package_versions() -> dict[str, str]:
    # Reading metadata takes tens of ms and every trial asks; a running process keeps the versions
    # it imported, so once per process is also the right answer.
    out: dict[str, str] = {}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def _torch_cuda() -> str | None:
    # Importing torch takes seconds: only ask it when the trainer has already imported it.
    torch = sys.modules.get("torch")
    cuda = getattr(getattr(torch, "version", None), "cuda", None)
    return str(cuda) if cuda else None


def _run(args: list[str], cwd: str | None = None) -> str | None:
    try:
        done = subprocess.run(
            args, cwd=cwd, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def visible_gpus() -> list[str]:
    """Names of the GPUs this process may use: nvidia-smi's list, filtered by CUDA_VISIBLE_DEVICES."""
    gpus = _machine_gpus()
    if not gpus:
        return []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")  # Ray sets it per task: read every time
    if visible is None:
        return [gpu[2] for gpu in gpus if len(gpu) == 3]
    wanted = [item.strip() for item in visible.split(",") if item.strip()]
    names = []
    for item in wanted:
        for gpu in gpus:
            if len(gpu) == 3 and item in (gpu[0], gpu[1]):
                names.append(gpu[2])
    return names


@functools.lru_cache(maxsize=1)
def _machine_gpus() -> tuple[tuple[str, ...], ...]:
    # nvidia-smi takes tens of ms, and the machine's GPUs stay as they are while a process lives.
    if shutil.which("nvidia-smi") is None:
        return ()
    listing = _run(["nvidia-smi", "--query-gpu=index,uuid,name", "--format=csv,noheader"])
    if not listing:
        return ()
    return tuple(
        tuple(part.strip() for part in line.split(",", 2)) for line in listing.splitlines() if line.strip()
    )


# path -> (when it was read, what was read). Two threads may both read a path: no harm.
_git_readings: dict[str, tuple[float, dict[str, Any] | None]] = {}


def git_state(path: str) -> dict[str, Any] | None:
    """The commit checked out where ``path`` lives, whether the tree is dirty, and its root; ``None``
    outside a git repository or without git. Read at most every :data:`GIT_FRESH_S` per process."""
    now = time.monotonic()
    reading = _git_readings.get(path)
    if reading is None or now - reading[0] >= GIT_FRESH_S:
        reading = _git_readings[path] = (now, _read_git_state(path))
    return dict(reading[1]) if reading[1] is not None else None


def _read_git_state(path: str) -> dict[str, Any] | None:
    if shutil.which("git") is None or not os.path.isdir(path) or not _may_be_in_repository(path):
        return None
    # One rev-parse for both answers: every trial pays for each git process it starts.
    parsed = _run(["git", "rev-parse", "HEAD", "--show-toplevel"], cwd=path)
    lines = parsed.splitlines() if parsed else []
    if not lines or not lines[0].strip():
        return None
    status = _run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=path)
    return {
        "commit": lines[0].strip(),
        "dirty": bool(status.strip()) if status is not None else None,
        "root": lines[1].strip() if len(lines) > 1 and lines[1].strip() else None,
    }


def _may_be_in_repository(path: str) -> bool:
    """Whether git could find a repository from ``path``: a ``.git`` in it or in a folder above it
    (by its real path, as git walks, or as written), or the environment names one (``GIT_DIR``).

    A few ``stat`` calls: most trials' code is no repository (a copy Ray shipped to a node, a
    scratch folder), and asking git costs a process, 5-15 ms of a 2-core machine each reading.
    """
    if os.environ.get("GIT_DIR"):
        return True
    for start in {os.path.realpath(path), os.path.abspath(path)}:
        current = start
        while True:
            if os.path.lexists(os.path.join(current, ".git")):
                return True
            parent = os.path.dirname(current)
            if parent == current:
                break
            current = parent
    return False
