"""Failure categories of `sweeper`, one base class, each with the CLI exit code it maps to.

User mistakes raise a subclass of :class:`SweeperError`; the CLI prints its message on one line
(``--debug`` shows the traceback) and exits with :attr:`SweeperError.exit_code`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class SweeperError(Exception):
    """Base class of every error `sweeper` raises on purpose."""

    exit_code: int = 1


@dataclass(frozen=True)
class SpecIssue:
    """One located problem in a sweep spec: ``source: path: message``."""

    source: str
    path: str
    message: str

    def __str__(self) -> str:
        where = self.path or "<root>"
        return f"{self.source}: {where}: {self.message}"


class SpecError(SweeperError):
    """A sweep spec is invalid. Carries every issue found, each with its dotted path."""

    exit_code = 2

    def __init__(self, issues: Sequence[SpecIssue]) -> None:
        self.issues = tuple(issues)
        super().__init__("\n".join(str(issue) for issue in self.issues))


class UsageError(SweeperError):
    """A command-line or API argument is wrong (bad flag combination, malformed URL, ...)."""

    exit_code = 2


class StorageError(SweeperError):
    """The storage cannot be reached or holds something we cannot read."""

    exit_code = 3


class SweepNotFoundError(SweeperError):
    """No sweep with the given id (or name) exists in the storage."""

    exit_code = 4


class TrainerError(SweeperError):
    """The trainer cannot be loaded (bad ``module:function`` path, import failure, missing program)."""

    exit_code = 5


class TrackerError(SweeperError):
    """A tracker cannot be found or configured."""

    exit_code = 6


class TrackerNotInstalledError(TrackerError):
    """A tracker exists but its library is not installed here (the message names the extra)."""


class TrialPruned(Exception):  # noqa: N818 - the name W&B and Optuna users know
    """Raised by ``trial.log`` when the pruner stops the trial; let it propagate out of the trainer."""


class AgentExit(SystemExit):
    """The agent process is exiting (a SIGTERM): it passes through a running trainer, never fails it.

    A trainer's own ``sys.exit()`` fails its trial; this one stops the agent, which hands its
    running trials back to the sweep.
    """
