"""`sweeper` commands of the engine layer."""

from __future__ import annotations

from sweeper.cli import main

__all__ = ["main"]
