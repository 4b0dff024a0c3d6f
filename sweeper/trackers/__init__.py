"""Experiment trackers: every trial reports to MLflow, W&B, TensorBoard, jsonl or a plugin the same way.

The agent calls :func:`prepare_trackers` once; each Ray task calls :func:`open_trackers` before the
trainer starts and :meth:`TrackerSet.finish` when it ends, whatever the outcome. Trackers register
in the ``sweeper.trackers`` entry-point group (or with :func:`register_tracker`) and load lazily:
importing this package imports no tracking library.
"""

from __future__ import annotations

from sweeper.trackers.base import STATES, RunInfo, State, Tracker
from sweeper.trackers.registry import (
    ENTRY_POINT_GROUP,
    available_trackers,
    get_tracker_class,
    register_tracker,
    unregister_tracker,
)
from sweeper.trackers.tracker_set import (
    DEFAULT_TRACKERS,
    TrackerSet,
    check_tracker_specs,
    close_trackers,
    open_trackers,
    prepare_trackers,
    tracker_problems,
)

__all__ = [
    "DEFAULT_TRACKERS",
    "ENTRY_POINT_GROUP",
    "STATES",
    "RunInfo",
    "State",
    "Tracker",
    "TrackerSet",
    "available_trackers",
    "check_tracker_specs",
    "close_trackers",
    "get_tracker_class",
    "open_trackers",
    "prepare_trackers",
    "register_tracker",
    "tracker_problems",
    "unregister_tracker",
]
