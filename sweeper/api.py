"""The Python API, mirroring W&B's: ``sweep_id = sweeper.sweep(spec)``, ``sweeper.agent(sweep_id, ...)``."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

from optuna.storages import BaseStorage

from sweeper.engine.agent import Agent, AgentSummary, ExecutorKind
from sweeper.engine.flapping import FlapPolicy
from sweeper.engine.leases import DEFAULT_GRACE_S, DEFAULT_RENEW_S
from sweeper.engine.progress import Progress
from sweeper.spec.model import SweepSpec
from sweeper.spec.reader import load_spec
from sweeper.storage.sweeps import create_sweep
from sweeper.storage.urls import open_storage


def sweep(
    spec: SweepSpec | Mapping[str, Any] | str | Path,
    storage: str | BaseStorage | None = None,
    name: str | None = None,
) -> str:
    """Create a sweep from a spec (a YAML path, a mapping or a parsed spec); returns its id.

    Args:
        spec: The sweep spec.
        storage: A storage URL or open Optuna storage (default: the spec's ``sweeper.storage.urls``,
            then ``$SWEEPER_STORAGE``, then the embedded journal under ``./.sweeper/``).
        name: The sweep's name (default: the spec's ``name``, else its id).

    Raises:
        SpecError: the spec is invalid.
        StorageError: the storage cannot be opened.
    """
    parsed = spec if isinstance(spec, SweepSpec) else load_spec(spec)
    if not isinstance(storage, BaseStorage):
        storage = open_storage(storage or parsed.sweeper.storage)
    return create_sweep(storage, parsed, name=name).id


def agent(
    sweep_id: str,
    function: Callable[..., Any] | None = None,
    count: int | None = None,
    storage: str | BaseStorage | None = None,
    *,
    trainer: str | None = None,
    max_concurrent: int | None = None,
    executor: ExecutorKind = "ray",
    ray_address: str | None = None,
    progress: Progress | None = None,
    lease_grace_s: float = DEFAULT_GRACE_S,
    lease_renew_s: float = DEFAULT_RENEW_S,
    flap_policy: FlapPolicy | None = None,
    trials: Collection[int] | None = None,
) -> AgentSummary:
    """Run trials of a sweep until it is done, ``count`` trials ran, or it is stopped.

    Args:
        sweep_id: The sweep's id (or unique name).
        function: The trainer, ``def train(config, trial)``; default: the spec's trainer/program.
        count: Run at most this many trials in this agent.
        storage: The sweep's storage (URL or open Optuna storage).
        trainer: A ``module:function`` trainer instead of ``function``.
        max_concurrent: At most this many trials at once.
        executor: ``"ray"`` (default) or ``"local"`` (one at a time, in this process).
        ray_address: Ray to connect to; an already initialized Ray is reused.
        progress: A progress view (default: silent).
        lease_grace_s: Seconds without a lease renewal after which a trial's agent counts as
            lost: any agent then fails the trial and re-queues it (see :mod:`sweeper.engine.leases`).
        lease_renew_s: Seconds between this agent's lease renewals (well below the grace).
        flap_policy: When trials failing fast, in a row, make this agent back off and then stop
            (default :class:`~sweeper.engine.flapping.FlapPolicy`: 5 failures within 10 s each).
        trials: Run only these WAITING trials (by number), and the retries of those that fail,
            then return; the rest of the queue is left alone. A finished sweep still runs them
            and stays finished (see :mod:`sweeper.engine.agent`).

    Returns:
        What the agent did (:class:`~sweeper.engine.agent.AgentSummary`).
    """
    return Agent(
        sweep_id,
        storage=storage,
        function=function,
        trainer=trainer,
        count=count,
        max_concurrent=max_concurrent,
        executor=executor,
        ray_address=ray_address,
        progress=progress,
        lease_grace_s=lease_grace_s,
        lease_renew_s=lease_renew_s,
        flap_policy=flap_policy,
        trials=trials,
    ).run()
