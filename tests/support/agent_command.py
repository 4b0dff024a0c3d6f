"""``sweeper agent`` as a separate process, as a user starts it from a shell."""

from __future__ import annotations

import os
import sys
from pathlib import Path

SUPPORT = Path(__file__).resolve().parent


def local_agent(sweep_id: str, url: str, trainer: str) -> list[str]:
    """The command line of a local-executor agent running ``trainer`` on the sweep."""
    script = Path(sys.executable).with_name("sweeper")
    return [str(script), "agent", sweep_id, "--storage", url, "--executor", "local", f"--trainer={trainer}"]


def with_support() -> dict[str, str]:
    """This environment, with the test trainers in ``tests/support`` importable."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(SUPPORT), os.environ.get("PYTHONPATH", "")])}
