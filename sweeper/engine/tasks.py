"""Turning an asked Optuna trial into the worker's :class:`~sweeper.worker.trial.TrialTask`.

The task carries everything a worker needs (config, objectives, trainer, trackers, directories), so
workers never read the storage. Building it sets the trial's config, attempt and agent attrs; a
trial prepared by :mod:`sweeper.storage.queue` keeps them until ``queue.start_trial`` writes them
with its params and lease, in one storage write.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import optuna

from sweeper.search.pruners import verdict_points
from sweeper.search.strategy import SearchPlan
from sweeper.spec import overrides
from sweeper.spec.model import SweepSpec, TrackerSpec
from sweeper.storage import attrs as keys
from sweeper.worker.task import Objective, TrialTask
from sweeper.worker.workdir import trial_dir


@dataclass(frozen=True)
class TaskFactory:
    """Builds each trial's task for one agent of one sweep.

    Args:
        spec: The sweep's spec.
        search: How the sweep searches (a trial's config comes from it: the spec's space, or the
            config a custom scheduler's search-space function returned).
        sweep_id: The sweep's id.
        sweep_name: The sweep's name.
        agent_id: The agent that runs the trials.
        trainer: The trainer function or ``module:function`` path (None: the spec's program).
        trackers: The prepared tracker specs.
        sweep_dir: Where the sweep's files go (tracker logs).
        checkpoints_dir: Each trial lineage gets its own checkpoint directory under it.
        outputs_dir: Each trial gets its working directory under it (``<sweep id>/trials/<n>``).
        workdir: The project directory put on the worker's ``sys.path``; None when the executor
            ships it as the worker's working directory.
    """

    spec: SweepSpec
    search: SearchPlan
    sweep_id: str
    sweep_name: str
    agent_id: str
    trainer: str | Callable[..., Any] | None
    trackers: tuple[TrackerSpec, ...]
    sweep_dir: str
    checkpoints_dir: Path
    outputs_dir: Path
    workdir: str | None

    @cached_property
    def objectives(self) -> tuple[Objective, ...]:
        """The spec's objectives, as the worker computes them."""
        return tuple(Objective(m.name, m.goal) for m in self.spec.objectives)

    def __call__(self, trial: optuna.Trial) -> TrialTask:
        """The task of ``trial``; records its config, attempt and agent on the trial.

        Raises:
            UsageError: the trial's ``config_overrides`` attr is malformed.
        """
        spec = self.spec
        params = dict(trial.params)
        user_attrs = trial.user_attrs
        config = self.search.config(trial)
        if keys.CONFIG_OVERRIDES in user_attrs:
            config = overrides.apply(config, user_attrs[keys.CONFIG_OVERRIDES])
        attempt = int(user_attrs.get(keys.ATTEMPT, 0))
        original = int(user_attrs.get(keys.RETRY_OF, trial.number))
        trial.set_user_attr(keys.CONFIG, config)
        if keys.ATTEMPT not in user_attrs:
            trial.set_user_attr(keys.ATTEMPT, attempt)
        trial.set_user_attr(keys.AGENT, self.agent_id)
        return TrialTask(
            sweep_id=self.sweep_id,
            sweep_name=self.sweep_name,
            trial_id=trial._trial_id,
            number=trial.number,
            params=params,
            config=config,
            objectives=self.objectives,
            checkpoint_dir=str(self.checkpoints_dir / str(original)),
            sweep_dir=self.sweep_dir,
            trainer=self.trainer,
            program=spec.program,
            command=spec.command,
            attempt=attempt,
            timeout=spec.sweeper.timeout,
            trackers=self.trackers,
            tags=spec.sweeper.tags,
            workdir=self.workdir,
            trial_dir=str(trial_dir(self.outputs_dir, self.sweep_id, trial.number)),
            verdict_at=verdict_points(trial.study.pruner),
        )
