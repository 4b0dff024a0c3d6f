"""Setting an agent up: its trainer, the study with its pruner and sampler, the trackers, the executor.

Each function takes values, not the agent, so each piece can be built and tested on its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import optuna
from optuna.storages import BaseStorage

from sweeper.engine.executor import Executor, RayExecutor
from sweeper.engine.judge import PruningJudge
from sweeper.engine.local import LocalExecutor
from sweeper.engine.ray_start import RayStart
from sweeper.engine.tasks import TaskFactory
from sweeper.errors import TrainerError
from sweeper.search.strategy import SearchPlan
from sweeper.spec.model import SweepSpec, TrackerSpec
from sweeper.storage import attrs as keys
from sweeper.storage import claims, sweeps
from sweeper.storage.sweeps import SweepInfo
from sweeper.storage.urls import DEFAULT_DIR
from sweeper.worker.trial import import_trainer

ExecutorKind = Literal["ray", "local"]
EXECUTORS: tuple[ExecutorKind, ...] = ("ray", "local")
Trainer = str | Callable[..., Any] | None


def trainer_target(
    spec: SweepSpec, sweep_id: str, function: Callable[..., Any] | None, trainer: str | None, project: Path
) -> Trainer:
    """What the workers call: the function, else a ``module:function`` path (imported here once, so
    a typo fails the agent with one line rather than every trial), else None for the spec's program.

    Raises:
        TrainerError: the path cannot be imported, or the sweep names no trainer at all.
    """
    if function is not None:
        return function
    path = trainer or spec.sweeper.trainer
    if path is not None:
        import_trainer(path, project)
        return path
    if spec.program is None and spec.command is None:
        raise TrainerError(
            f"sweep {sweep_id} names no trainer: set sweeper.trainer or program in the spec, "
            "or pass --trainer module:function"
        )
    return None


def make_executor(
    kind: ExecutorKind,
    spec: SweepSpec,
    judge: PruningJudge,
    *,
    ray_address: str | None,
    project: Path,
    max_concurrent: int | None,
    ray_start: RayStart | None = None,
    count: int | None = None,
) -> Executor:
    """One trial at a time in forked processes (``local``), or Ray tasks with the spec's resources (on
    ``ray_start``'s Ray, if given)."""
    if kind == "local":
        return LocalExecutor(judge)
    return RayExecutor(
        spec.sweeper.resources,
        judge,
        address=ray_address,
        ship_dir=project,
        max_concurrent=max_concurrent,
        start=ray_start,
        count=count,
    )


@dataclass(frozen=True)
class Engine:
    """What an agent works with once set up."""

    study: optuna.Study
    executor: Executor
    trackers: tuple[TrackerSpec, ...]
    make_task: TaskFactory
    directions: tuple[str, ...]
    search: SearchPlan
    judge: PruningJudge


def set_up(
    storage: BaseStorage,
    info: SweepInfo,
    *,
    agent_id: str,
    target: Trainer,
    executor_kind: ExecutorKind,
    ray_address: str | None,
    max_concurrent: int | None,
    project: Path,
    ray_start: RayStart | None = None,
    count: int | None = None,
) -> Engine:
    """Load the sweep's study with its pruner and sampler, prepare its trackers, start the executor
    (on ``ray_start``'s Ray, begun earlier, when given) for an agent run of at most ``count`` trials."""
    from sweeper.search.strategy import plan_search
    from sweeper.trackers.tracker_set import prepare_trackers

    spec = info.spec
    directions = tuple(sweeps.directions(spec))
    search = plan_search(spec, project)  # runs a custom scheduler's file, once
    pruner = search.pruner(directions)
    study = sweeps.load_study(
        storage,
        info.id,
        sampler=optuna.samplers.RandomSampler(seed=spec.sweeper.seed),
        pruner=pruner or optuna.pruners.NopPruner(),
    )
    sweep_dir = project / DEFAULT_DIR / "sweeps" / info.id
    trackers = tuple(prepare_trackers(spec.sweeper.trackers, info.id, info.name, str(sweep_dir)))
    judge = PruningJudge(study, study.pruner)
    executor = make_executor(
        executor_kind,
        spec,
        judge,
        ray_address=ray_address,
        project=project,
        max_concurrent=max_concurrent,
        ray_start=ray_start,
        count=count,
    )
    # The sampler's choice (GP or TPE) depends on how many trials run at once, and how many priors
    # (a warm start's earlier results) it models besides the budget.
    study.sampler = search.sampler(
        parallelism=max(1, executor.slots()),
        claim=claims.claim_config,
        priors=prior_count(storage, info.study_id),
        is_prior=keys.is_prior,
    )
    make_task = TaskFactory(
        spec=spec,
        search=search,
        sweep_id=info.id,
        sweep_name=info.name,
        agent_id=agent_id,
        trainer=target,
        trackers=trackers,
        sweep_dir=str(sweep_dir),
        checkpoints_dir=project / DEFAULT_DIR / "checkpoints" / info.id,
        outputs_dir=project / (spec.sweeper.outputs or Path(DEFAULT_DIR) / "sweeps"),
        workdir=None if executor.shipped else str(project),
    )
    return Engine(study, executor, trackers, make_task, directions, search, judge)


def prior_count(storage: BaseStorage, study_id: int) -> int:
    """How many priors the sweep's warm start loaded (its ``sweeper:priors`` record; 0 without one)."""
    loaded = storage.get_study_user_attrs(study_id).get(keys.PRIORS)
    if not isinstance(loaded, list):
        return 0
    return sum(int(item.get("loaded", 0)) for item in loaded if isinstance(item, dict))
