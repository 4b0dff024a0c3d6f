"""The examples in the reliability modules' docstrings run."""

from __future__ import annotations

import doctest
import importlib

import pytest


@pytest.mark.parametrize(
    "module",
    ["sweeper.engine.leases", "sweeper.storage.retry", "sweeper.engine.flapping", "sweeper.redaction"],
)
def test_doctests_pass(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
