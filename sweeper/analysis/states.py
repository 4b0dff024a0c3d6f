"""The names a trial's state goes by in records and on the command line.

A module of its own, importing no Optuna: the command line builds its ``--state`` choice from them
before any command runs (``sweeper run`` starts Ray before it imports Optuna).
"""

from __future__ import annotations

from typing import Literal

TrialStateName = Literal["running", "waiting", "complete", "pruned", "fail"]


TRIAL_STATES: tuple[TrialStateName, ...] = ("running", "waiting", "complete", "pruned", "fail")


FINISHED_STATES: frozenset[str] = frozenset({"complete", "pruned", "fail"})
