"""The examples in the trackers' and environment's docstrings run as written."""

from __future__ import annotations

import doctest
import importlib

import pytest


@pytest.mark.parametrize(
    "module",
    [
        "sweeper.trackers.base",
        "sweeper.trackers.jsonl",
        "sweeper.trackers.tracker_set",
        "sweeper.trackers.environment",
    ],
)
def test_docstring_examples(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
