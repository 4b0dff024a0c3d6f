"""Each trial's own working directory, which outlives it: where a trainer's relative files land.

A trainer that writes ``model.pt``, ``./wandb`` or logs relative to its working directory would
otherwise write into Ray's temporary copy of the project (gone with the worker's runtime
environment) or, several trials at once, into one shared directory. Each trial therefore runs in
``<root>/<sweep id>/trials/<trial number>/`` on the node that runs it, by default under the
project's ``.sweeper/sweeps/``; ``sweeper.outputs`` in the spec names another root.

So that a trainer still reads the project's files by relative paths (``data/train.csv``), the
project's top-level entries are linked into the trial's directory; what the trainer creates there
is its own. Writing *into* a linked project folder writes into the project (on Ray, its copy).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

# Never linked: our own outputs, version control, caches, and what W&B writes per run.
_NOT_LINKED = frozenset({".sweeper", ".git", "__pycache__", "wandb", ".venv", ".mypy_cache", ".pytest_cache"})


def trial_dir(root: str | os.PathLike[str], sweep_id: str, number: int) -> Path:
    """The working directory of trial ``number`` of a sweep under ``root``.

    >>> trial_dir("/work/.sweeper/sweeps", "abcdefgh", 7).as_posix()
    '/work/.sweeper/sweeps/abcdefgh/trials/7'
    """
    return Path(root) / sweep_id / "trials" / str(number)


def make_trial_dir(preferred: Path, sweep_id: str, number: int) -> Path:
    """Create the trial's directory: ``preferred`` when this node can write there (the project's
    path exists on the agent's node; another node may lack it), else under ``~/.sweeper/sweeps``."""
    try:
        preferred.mkdir(parents=True, exist_ok=True)
        if os.access(preferred, os.W_OK):
            return preferred
    except OSError:
        pass
    fallback = trial_dir(Path.home() / ".sweeper" / "sweeps", sweep_id, number)
    fallback.mkdir(parents=True, exist_ok=True)
    return fallback


def link_project(project: Path, directory: Path) -> None:
    """Link the project's top-level entries into ``directory`` (existing names are left alone).

    Every trial pays this, so it makes one system call per entry: each link names the entry under
    the project's resolved path (an entry that is itself a link is followed from there), and a
    name that exists already is left as the failed call finds it.
    """
    source = project.resolve()
    if source == directory.resolve():
        return
    with contextlib.suppress(OSError), os.scandir(source) as entries:
        for entry in entries:
            if entry.name in _NOT_LINKED:
                continue
            with contextlib.suppress(OSError):  # there already, a race with another trial, no links here
                os.symlink(os.path.join(source, entry.name), directory / entry.name)


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
