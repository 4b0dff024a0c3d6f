"""The Python API, mirroring W&B's: ``sweep_id = sweeper.sweep(spec)``, ``sweeper.agent(sweep_id, ...)``;
and ``repeat``: re-run a trial's config with other seeds (statistics in :mod:`sweeper.analysis.repeats`)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from optuna.storages import BaseStorage

from sweeper.analysis.priors import load_priors
from sweeper.analysis.records import TrialRecord
from sweeper.analysis.repeats import SEED_KEY, RepeatReport, default_seeds, summarize
from sweeper.analysis.results import SweepResults, load
from sweeper.engine.agent import EXECUTORS, Agent, AgentSummary, ExecutorKind
from sweeper.engine.flapping import FlapPolicy
from sweeper.engine.leases import DEFAULT_GRACE_S, DEFAULT_RENEW_S
from sweeper.engine.progress import Progress
from sweeper.errors import TrainerError, UsageError
from sweeper.search.strategy import plan_search
from sweeper.spec import overrides
from sweeper.spec.model import SweepSpec, WarmStart
from sweeper.spec.reader import load_spec, load_warm_start
from sweeper.storage import attrs as keys
from sweeper.storage import queue, sweeps
from sweeper.storage.sweeps import SweepInfo, create_sweep
from sweeper.storage.urls import open_storage

WarmStartSources = WarmStart | Mapping[str, Any] | str | Sequence[WarmStart | Mapping[str, Any] | str]
"""Warm-start sources: :class:`~sweeper.spec.model.WarmStart` s, mappings as in the spec's
``sweeper.warm_start``, or ``--warm-start`` texts (``sweep:ID``, ``export:FILE``, ...); one or a list."""


def sweep(
    spec: SweepSpec | Mapping[str, Any] | str | Path,
    storage: str | BaseStorage | None = None,
    name: str | None = None,
    *,
    warm_start: WarmStartSources = (),
) -> str:
    """Create a sweep from a spec (a YAML path, a mapping or a parsed spec); returns its id.

    Args:
        spec: The sweep spec.
        storage: A storage URL or open Optuna storage (default: the spec's ``sweeper.storage.urls``,
            then ``$SWEEPER_STORAGE``, then the embedded journal under ``./.sweeper/``).
        name: The sweep's name (default: the spec's ``name``, else its id).
        warm_start: Earlier results to start from, on top of the spec's ``sweeper.warm_start``
            (see :mod:`sweeper.analysis.priors`): they teach the sampler, take none of the budget,
            and what each source gave is logged on the ``sweeper.analysis.priors`` logger.

    Raises:
        SpecError: the spec (or a warm-start source) is invalid.
        StorageError: the storage cannot be opened.
        UsageError: a warm-start source cannot be read.
    """
    return create(spec, storage, name, warm_start=warm_start).id


def create(
    spec: SweepSpec | Mapping[str, Any] | str | Path,
    storage: str | BaseStorage | None = None,
    name: str | None = None,
    *,
    warm_start: WarmStartSources = (),
) -> SweepInfo:
    """:func:`sweep`, returning the new sweep's :class:`~sweeper.storage.sweeps.SweepInfo`."""
    parsed = spec if isinstance(spec, SweepSpec) else load_spec(spec)
    plan_search(parsed, Path.cwd())  # a custom scheduler's file is checked before the sweep exists
    given = list(warm_start) if isinstance(warm_start, list | tuple) else [warm_start] if warm_start else []
    extra = load_warm_start(given, spec=parsed) if given else ()
    if not isinstance(storage, BaseStorage):
        storage = open_storage(storage or parsed.sweeper.storage)
    sources = (*parsed.sweeper.warm_start, *extra)
    priors = load_priors(sources, parsed, storage)[0] if sources else None
    return create_sweep(storage, parsed, name=name, priors=priors)


def extend(
    sweep_id: str,
    *,
    run_cap: int | None = None,
    trials: int | None = None,
    values: Mapping[str, Sequence[Any]] | None = None,
    storage: str | BaseStorage | None = None,
) -> sweeps.Extended:
    """Give a sweep (finished, stopped or running) more budget or more grid values; only new points run.

    Args:
        sweep_id: The sweep's id or name.
        run_cap: Its new ``run_cap`` (larger than the one it has).
        trials: Or this many trials more than its budget (for a sweep without one: than it has run).
        values: New values for its ``values`` parameters, by dotted name: ``{"lr": [1e-4]}``.
        storage: A storage URL or open Optuna storage (default as for :func:`sweep`).

    Returns:
        The sweep as extended, with its budget before and after and the grid points it queued.

    Raises:
        SpecError: the extension is malformed (each problem located).
        UsageError: it would run nothing new, or would reorder a capped grid.
    """
    from sweeper.spec.extension import Extension

    if not isinstance(storage, BaseStorage):
        storage = open_storage(storage)
    return sweeps.extend_sweep(storage, sweep_id, Extension(run_cap, trials, dict(values or {})))


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

    While it runs, the objects this process held before it are frozen (``gc.freeze``, undone when it
    returns; left alone if the process froze some itself): a notebook's data is not walked by every
    garbage collection, which would stall the agent's pruning decisions (see :mod:`sweeper.heap`).

    Args:
        sweep_id: The sweep's id (or unique name).
        function: The trainer, ``def train(config, trial)``, or W&B's ``def train()`` that calls
            ``wandb.init()``/``wandb.log()`` (see :mod:`sweeper.worker.wandb_bridge`); default: the
            spec's trainer/program.
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


def repeat(
    sweep_id: str,
    trial_number: int,
    seeds: int | Sequence[int],
    *,
    storage: str | BaseStorage | None = None,
    function: Callable[..., Any] | None = None,
    trainer: str | None = None,
    executor: str = "ray",
    max_concurrent: int | None = None,
    ray_address: str | None = None,
) -> RepeatReport:
    """Re-run trial ``trial_number``'s config once per seed, as new trials marked ``repeat_of``.

    Each repeat keeps the original's params and overrides the config's ``seed`` key (a trial
    config override), so function and program trainers alike see it. A targeted agent runs
    exactly the repeats: other queued trials stay queued, and a finished sweep stays finished.

    Args:
        sweep_id: The sweep id or unique name.
        trial_number: The trial to repeat (it must have all its params).
        seeds: How many repeats (seeds after the original's), or the seeds themselves.
        storage: The sweep's storage, URL or open storage.
        function: The trainer function (default: the spec's ``sweeper.trainer`` or program).
        trainer: A ``module:function`` trainer instead of ``function``.
        executor: ``ray`` or ``local``, as for :func:`sweeper.agent`.
        max_concurrent: At most this many repeats at once.
        ray_address: The Ray cluster to use.

    Raises:
        UsageError: no such trial, no seeds, the trial has no params yet, or the sweep is
            paused or cancelled.
        TrainerError: the sweep names no trainer and none is given.
    """
    if executor not in EXECUTORS:  # checked before anything is enqueued
        raise UsageError(f"executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    store = storage if isinstance(storage, BaseStorage) else open_storage(storage)
    results = load(sweep_id, store)
    original = results.trial(trial_number)
    chosen = default_seeds(original, seeds) if isinstance(seeds, int) else list(seeds)
    if not chosen:
        raise UsageError(f"repeat needs at least 1 seed, got {seeds!r}")
    _check_runnable(results, original, function is not None or trainer is not None)
    study = sweeps.load_study(store, results.id)
    numbers = [
        queue.enqueue(
            study,
            dict(original.params),
            {
                keys.ATTEMPT: 0,
                keys.REPEAT_OF: original.number,
                keys.CONFIG_OVERRIDES: overrides.check({SEED_KEY: seed}),
            },
        )
        for seed in chosen
    ]
    # Interrupted, the repeats left queued keep their seeds: any later agent runs them as repeats.
    agent(
        results.id,
        function=function,
        trainer=trainer,
        storage=store,
        executor=executor,
        max_concurrent=max_concurrent,
        ray_address=ray_address,
        trials=numbers,
    )
    return summarize(load(results.id, store), original.number)


def _check_runnable(results: SweepResults, original: TrialRecord, trainer_given: bool) -> None:
    """Refuse before anything is enqueued what would leave repeats queued and never run."""
    if results.state in ("paused", "cancelled"):
        hint = "resume it first" if results.state == "paused" else "its trials cannot run"
        raise UsageError(f"sweep {results.id} is {results.state}; {hint}")
    space = results.spec.space
    # A conditional parameter the trial's own choices leave inactive is not missing.
    missing = sorted((set(space.active(original.params)) & set(space.names)) - set(original.params))
    if missing:
        raise UsageError(
            f"trial {original.number} of sweep {results.id} has no params {', '.join(missing)} yet "
            f"(it is {original.state}); repeat a trial that has run"
        )
    spec = results.spec
    if not trainer_given and spec.sweeper.trainer is None and spec.program is None and spec.command is None:
        raise TrainerError(
            f"sweep {results.id} names no trainer: set sweeper.trainer or program in the spec, "
            "or pass a trainer"
        )
