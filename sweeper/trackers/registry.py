"""Where tracker classes come from: the ``sweeper.trackers`` entry-point group, loaded lazily.

Built-ins register through the same group as third-party packages (see pyproject.toml);
:func:`register_tracker` adds one at run time (tests, notebooks).
"""

from __future__ import annotations

import difflib
import functools
import sys
from importlib import import_module
from importlib.metadata import entry_points
from importlib.util import find_spec
from typing import Any

from sweeper.errors import TrackerError, TrackerNotInstalledError
from sweeper.extras import install_hint
from sweeper.trackers.base import Tracker

ENTRY_POINT_GROUP = "sweeper.trackers"

# Built-in tracker name -> the extra that installs its library.
BUILTIN_EXTRAS: dict[str, str | None] = {
    "jsonl": None,
    "mlflow": "mlflow",
    "wandb": "wandb",
    "tensorboard": "tensorboard",
}

# Registered at run time: name -> class or "module:Class".
_REGISTERED: dict[str, type[Tracker] | str] = {}


def register_tracker(name: str, tracker: type[Tracker] | str) -> None:
    """Make a tracker available under ``name``, like an entry point of the ``sweeper.trackers`` group.

    Args:
        name: The name specs use (``sweeper.trackers: [name]``).
        tracker: A :class:`Tracker` subclass, or its ``"module:Class"`` path (imported when used).
    """
    _REGISTERED[name] = tracker


def unregister_tracker(name: str) -> None:
    """Forget a tracker added with :func:`register_tracker` (no error if absent)."""
    _REGISTERED.pop(name, None)


def _entry_points() -> dict[str, Any]:
    return dict(scan_entry_points(tuple(sys.path)))


@functools.lru_cache(maxsize=8)
def scan_entry_points(search_path: tuple[str, ...]) -> dict[str, Any]:
    """The trackers' entry points installed where ``sys.path`` looks; call it with ``sys.path``.

    Scanning every installed distribution takes tens of ms and every trial asks; the answer only
    changes with the path (the key), so a worker scans once (and the local executor's zygote
    before forking its trials).
    """
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_trackers() -> list[str]:
    """The names of every tracker that can be asked for, sorted."""
    return sorted(set(_entry_points()) | set(_REGISTERED))


def _import_path(path: str) -> Any:
    module, _, attr = path.partition(":")
    obj: Any = import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def missing_library(tracker: str, package: str, extra: str | None = None) -> TrackerNotInstalledError:
    """The error for a tracker whose library is not installed, naming the extra that installs it."""
    extra = extra or BUILTIN_EXTRAS.get(tracker) or tracker
    return TrackerNotInstalledError(
        f"tracker {tracker!r} needs the {package!r} package, which is not installed; "
        f"install it with: {install_hint(extra)}"
    )


def get_tracker_class(name: str) -> type[Tracker]:
    """The tracker class registered under ``name``.

    Raises:
        TrackerError: no tracker has that name (the message lists those available), or it
            cannot be imported (the message names the extra to install).
    """
    target: Any = _REGISTERED.get(name)
    try:
        if target is None:
            ep = _entry_points().get(name)
            if ep is None:
                raise _unknown(name)
            target = ep.load()
        elif isinstance(target, str):
            target = _import_path(target)
    except ModuleNotFoundError as exc:
        raise missing_library(name, exc.name or str(exc)) from exc
    except (ImportError, AttributeError) as exc:
        raise TrackerError(f"tracker {name!r} cannot be loaded: {exc}") from exc
    if not (isinstance(target, type) and issubclass(target, Tracker)):
        raise TrackerError(f"tracker {name!r} must be a sweeper.trackers.Tracker subclass, got {target!r}")
    if target.requires and find_spec(target.requires) is None:
        raise missing_library(name, target.requires, target.extra)
    return target


def _unknown(name: str) -> TrackerError:
    names = available_trackers()
    close = difflib.get_close_matches(name, names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    extras = [e for e in dict.fromkeys(BUILTIN_EXTRAS.values()) if e]
    return TrackerError(
        f"unknown tracker {name!r}{hint}; available: {', '.join(names) or 'none'}. "
        f"Built-ins come with the extras {', '.join(extras)} ({install_hint(*extras)}); "
        "a third-party tracker registers in the "
        f"{ENTRY_POINT_GROUP!r} entry-point group of the package that provides it"
    )
