"""`sweeper` commands of the spec layer."""

from __future__ import annotations

from sweeper.cli import main

__all__ = ["main"]
