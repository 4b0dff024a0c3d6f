"""Each trial's own working directory, which outlives it: where a trainer's relative files land.

A trainer that writes ``model.pt``, ``./wandb`` or logs relative to its working directory would
otherwise write into Ray's temporary copy of the project (gone with the worker's runtime
environment) or, several trials at once, into one shared directory. Each trial therefore runs in
``<root>/<sweep id>/trials/<trial number>/`` on the node that runs it, by default under the
project's ``.sweeper/sweeps/``; ``sweeper.outputs`` in the spec names another root.

So that a trainer still reads the project's files by relative paths (``data/train.csv``), the
project's top-level entries are linked into the trial's directory; what the trainer creates there
is its own. Writing *into* a linked project folder writes into the project (on Ray, its copy).

A directory the trainer left nothing of its own in (only the project's links) is not kept: it
would say nothing, and ten thousand of them fill the sweep's folder. A Ray worker keeps it, hidden,
for its next trial instead (:func:`release_trial_dir`): creating a directory and its links is the
largest part of a short trial's cost on a slow filesystem, renaming one is a single system call.
The agent removes the kept ones on its node when its run ends (:func:`remove_kept_dirs`).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# Never linked: our own outputs, version control, caches, and what W&B writes per run.
_NOT_LINKED = frozenset({".sweeper", ".git", "__pycache__", "wandb", ".venv", ".mypy_cache", ".pytest_cache"})


def trial_dir(root: str | os.PathLike[str], sweep_id: str, number: int) -> Path:
    """The working directory of trial ``number`` of a sweep under ``root``.

    >>> trial_dir("/work/.sweeper/sweeps", "abcdefgh", 7).as_posix()
    '/work/.sweeper/sweeps/abcdefgh/trials/7'
    """
    return trials_dir(root, sweep_id) / str(number)


def trials_dir(root: str | os.PathLike[str], sweep_id: str) -> Path:
    """The folder under ``root`` holding a sweep's trial directories."""
    return Path(root) / sweep_id / "trials"


@dataclass(frozen=True)
class _Spare:
    """A released trial directory this process keeps for its next trial: the links it holds point
    into ``project`` (resolved)."""

    path: Path
    project: str


_spare: _Spare | None = None
_KEPT_PREFIX = ".unused-"  # + host and process id: a kept directory's name beside the trials' own


def make_trial_dir(preferred: Path, sweep_id: str, number: int, project: Path | None = None) -> Path:
    """Create the trial's directory: ``preferred`` when this node can write there (the project's
    path exists on the agent's node; another node may lack it), else under ``~/.sweeper/sweeps``.

    A directory this process kept from its last trial (:func:`release_trial_dir`) for the same
    ``project`` is renamed into place instead, its links with it.
    """
    if _reuse_spare(preferred, project):
        return preferred
    try:
        preferred.mkdir(parents=True, exist_ok=True)
        if os.access(preferred, os.W_OK):
            return preferred
    except OSError:
        pass
    fallback = trial_dir(Path.home() / ".sweeper" / "sweeps", sweep_id, number)
    fallback.mkdir(parents=True, exist_ok=True)
    return fallback


def _reuse_spare(preferred: Path, project: Path | None) -> bool:
    global _spare
    spare, _spare = _spare, None
    if spare is None:
        return False
    if project is not None and _resolved(project) == spare.project:
        with contextlib.suppress(OSError):
            try:
                os.rename(spare.path, preferred)
            except FileNotFoundError:  # a new sweep: its trials folder is not there yet
                preferred.parent.mkdir(parents=True, exist_ok=True)
                os.rename(spare.path, preferred)
            _unlink_gone(preferred, spare.project)
            return True
    _remove_links_dir(spare.path)  # another project's links, or it could not move: not kept
    return False


def _unlink_gone(directory: Path, source: str) -> None:
    """Remove the links to entries the project no longer has (link_project adds its new ones)."""
    with os.scandir(source) as entries:
        now = {entry.name for entry in entries}
    with os.scandir(directory) as links:
        for link in links:
            if link.name not in now:
                os.unlink(link.path)


def release_trial_dir(directory: Path, project: Path | None, *, keep: bool) -> bool:
    """Take away a trial's directory if the trainer left nothing of its own in it; True if so.

    Nothing of its own: every entry is one of the project's links as :func:`link_project` made
    it. With ``keep`` (a long-lived worker) this process keeps it, hidden, for its next trial's
    :func:`make_trial_dir`, else it is removed. Call it once the trial's processes have ended.
    """
    global _spare
    source = _resolved(project) if project is not None else None
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                if source is None or not entry.is_symlink():
                    return False
                if os.readlink(entry.path) != os.path.join(source, entry.name):
                    return False  # the trainer put a link of its own there
    except OSError:
        return False
    if keep and _spare is None and source is not None:
        hidden = directory.parent / f"{_KEPT_PREFIX}{socket.gethostname()}-{os.getpid()}"
        with contextlib.suppress(OSError):
            os.rename(directory, hidden)
            _spare = _Spare(hidden, source)
            return True
    return _remove_links_dir(directory)


def _remove_links_dir(directory: Path) -> bool:
    """Remove a directory of links (never what they point to); False if it holds anything else."""
    with contextlib.suppress(OSError), os.scandir(directory) as entries:
        for entry in entries:
            if entry.is_symlink():
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
    try:
        os.rmdir(directory)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True


def remove_kept_dirs(trials: Path) -> None:
    """Remove the directories Ray workers keep hidden in a sweep's ``trials`` folder on this node.

    The agent calls it when its run ends: workers Ray shut down never removed theirs, and one
    still running makes a new directory for its next trial when it finds its own gone.
    """
    kept: list[str] = []
    with contextlib.suppress(OSError), os.scandir(trials) as entries:
        kept = [entry.path for entry in entries if entry.name.startswith(_KEPT_PREFIX)]
    for path in kept:
        _remove_links_dir(Path(path))


@atexit.register
def _drop_spare() -> None:
    if _spare is not None:
        _remove_links_dir(_spare.path)


def link_project(project: Path, directory: Path) -> None:
    """Link the project's top-level entries into ``directory`` (existing names are left alone).

    Every trial pays this: each link names the entry under the project's resolved path (an entry
    that is itself a link is followed from there). The names the directory has already (a kept
    directory's links) are read in one listing and skipped, rather than found by a failing
    ``symlink`` each: one call per project entry, in every worker starting a trial at once (45
    entries held a wave of 16 trials up by tens of milliseconds on 2 cores: BENCHMARKS.md, section 3).
    """
    source = _resolved(project)
    try:
        if os.path.samefile(source, directory):
            return
        with os.scandir(directory) as present:
            there = {entry.name for entry in present}
    except OSError:  # no directory to link into: nothing to do
        return
    with contextlib.suppress(OSError), os.scandir(source) as entries:
        for entry in entries:
            if entry.name in _NOT_LINKED or entry.name in there:
                continue
            with contextlib.suppress(OSError):  # a race with another trial, no links here
                os.symlink(os.path.join(source, entry.name), directory / entry.name)


def _resolved(project: Path) -> str:
    """The project's real path, worked out once per process for an absolute one: a worker serves
    one project, and resolving walks every component of the path (three times a trial). A relative
    one depends on the working directory, which a trial changes."""
    return _resolved_absolute(project) if project.is_absolute() else str(project.resolve())


@functools.lru_cache(maxsize=8)
def _resolved_absolute(project: Path) -> str:
    return str(project.resolve())


@contextlib.contextmanager
def working_in(directory: Path, project: Path | None) -> Iterator[Path]:
    """Run the body in ``directory`` (the project's files linked in), then return to where we were."""
    if project is not None:
        link_project(project, directory)
    previous = os.getcwd()
    os.chdir(directory)
    try:
        yield directory
    finally:
        os.chdir(previous)
