"""What a sweep found: its trials as frozen records, the best ones, and the agents working on it.

Everything here reads the storage once (all trials at once with :mod:`sweeper.storage.fast_read`, one read
of the study user attrs) and works in memory afterwards, so a sweep of ten thousand trials answers in well
under a second. Records are plain data: the config as the trainer saw it, the objective values, the
learning curve (intermediate values) and where the tracker runs live.

Example:
    >>> import sweeper
    >>> results = sweeper.load("k3v9x2ab", storage="sqlite:///sweeps.db")  # doctest: +SKIP
    >>> results.best()[0].config  # doctest: +SKIP
    {'lr': 0.003, 'model': {'depth': 4}}
"""

from __future__ import annotations

import operator
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeVar

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from sweeper.analysis.records import (
    _STATE_NAMES,
    AgentRecord,
    TrialRecord,
    _agents,
    _duration_of,
    _utcnow,
    flat_record,
    to_record,
)
from sweeper.analysis.states import TRIAL_STATES
from sweeper.errors import UsageError
from sweeper.heap import collection_paused
from sweeper.plain import lookup, strict_json_dict
from sweeper.spec.model import SweepSpec
from sweeper.storage import attrs as keys
from sweeper.storage import sweeps
from sweeper.storage.fast_read import read_trials
from sweeper.storage.urls import open_storage

if TYPE_CHECKING:
    import pandas


_NUMBER = operator.attrgetter("number")

# States whose values mean something: complete, and stopped with the best value it logged.
_VALUED = (TrialState.COMPLETE, TrialState.PRUNED)


@dataclass(frozen=True)
class SweepResults:
    """A snapshot of one sweep: its spec, state, trials and agents, read from the storage at once.

    Build it with :func:`load`. Every method works on the snapshot; call :func:`load` again for news.
    Records are built on demand, so ``best`` or ``counts`` on a sweep of 10,000 trials touch only
    the trials they return.
    """

    info: sweeps.SweepInfo
    frozen_trials: tuple[FrozenTrial, ...] = field(repr=False, compare=False)
    agents: tuple[AgentRecord, ...]
    loaded_at: datetime
    storage: BaseStorage = field(repr=False, compare=False)
    # What each warm-start source gave when the sweep was created (``sweeper:priors``), JSON-ready.
    prior_sources: tuple[Mapping[str, Any], ...] = ()
    _records: dict[int, TrialRecord] = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def id(self) -> str:
        """The sweep id (the Optuna study name)."""
        return self.info.id

    @property
    def name(self) -> str:
        """The sweep's display name."""
        return self.info.name

    @property
    def state(self) -> str:
        """``running``, ``paused``, ``finished`` or ``cancelled``."""
        return self.info.state

    @property
    def spec(self) -> SweepSpec:
        """The sweep spec as recorded when the sweep was created."""
        return self.info.spec

    @property
    def objective_names(self) -> tuple[str, ...]:
        """The objective metric names, in the order of a trial's ``values``."""
        return tuple(m.name for m in self.spec.objectives) or ("value",)

    @property
    def directions(self) -> tuple[str, ...]:
        """``minimize`` or ``maximize`` per objective."""
        return tuple(sweeps.directions(self.spec))

    @property
    def is_multi_objective(self) -> bool:
        """Whether the sweep optimises more than one metric (then :meth:`best` is a Pareto front)."""
        return len(self.directions) > 1

    @property
    def trials(self) -> tuple[TrialRecord, ...]:
        """Every trial, by number."""
        return tuple(self._records_of(self.frozen_trials))

    def trial(self, number: int) -> TrialRecord:
        """The trial with this number.

        Raises:
            UsageError: no such trial in the sweep.
        """
        for t in self.frozen_trials:
            if t.number == number:
                return self._record(t)
        raise UsageError(
            f"trial number must be one of the sweep's trials (0..{len(self.frozen_trials) - 1}), got {number}"
        )

    def counts(self, *, include_priors: bool = False) -> dict[str, int]:
        """The sweep's own trials per state, every state listed (zeros included); with
        ``include_priors``, its priors too (see :meth:`priors`)."""
        counter = Counter(
            _STATE_NAMES[t.state] for t in self.frozen_trials if include_priors or not keys.is_prior(t)
        )
        return {state: counter.get(state, 0) for state in TRIAL_STATES}

    def priors(self) -> list[TrialRecord]:
        """The priors: earlier results a warm start loaded when the sweep was created, by number.

        They teach the sampler and rank in :meth:`best`, but are no runs of this sweep: they take
        none of its budget and are left out of :meth:`counts`.
        """
        return [self._record(t) for t in self.frozen_trials if keys.is_prior(t)]

    def with_state(self, *states: str) -> list[TrialRecord]:
        """The trials in any of ``states`` (``running``, ``complete``, ...), by number."""
        return self._records_of([t for t in self.frozen_trials if _STATE_NAMES[t.state] in states])

    def completed(self) -> list[TrialRecord]:
        """The complete trials (those with objective values)."""
        return self._records_of(self._complete())

    def best(
        self, k: int | None = 1, *, include_stopped: bool = False, priors: bool = True
    ) -> list[TrialRecord]:
        """The best trials, best first.

        Single objective: the ``k`` complete trials with the best value (all of them when ``k`` is
        ``None``). Multi-objective: the Pareto front (Optuna's ``study.best_trials``), ordered by the
        first objective and cut to ``k`` when ``k`` is given. With ``include_stopped``, trials the
        pruner stopped compete too, with the best value they logged (W&B ranks its stopped runs so).
        Priors (a warm start's earlier results) compete unless ``priors`` is False: they are what
        the sweep knows, and their records say they are priors.
        """
        done = self._complete(include_stopped=include_stopped)
        if not priors:
            done = [t for t in done if not keys.is_prior(t)]
        if self.is_multi_objective:
            front = _front([(tuple(t.values), t) for t in done], self.directions)
            return [self._record(t) for t in (front if k is None else front[:k])]
        sign = -1.0 if self.directions[0] == "maximize" else 1.0
        ranked = sorted(done, key=lambda t: (sign * t.values[0], t.number))
        return self._records_of(ranked if k is None else ranked[:k])

    def select(
        self,
        states: Iterable[str] = (),
        sort: str = "number",
        *,
        reverse: bool = False,
        limit: int | None = None,
    ) -> list[TrialRecord]:
        """Trials in ``states`` (all when empty), sorted as :meth:`sorted_by`, at most ``limit``.

        Only the trials returned become records, so a page of a large sweep is cheap.
        """
        wanted = set(states)
        pool = [t for t in self.frozen_trials if not wanted or _STATE_NAMES[t.state] in wanted]
        ordered = self._sort(pool, sort, reverse=reverse)
        return self._records_of(ordered if limit is None else ordered[:limit])

    def sorted_by(self, key: str, *, reverse: bool = False) -> list[TrialRecord]:
        """The trials sorted by ``key``; trials without that key come last.

        ``key`` is ``number``, ``value``, ``duration``, an objective metric name (best first), a
        final metric name, or a dotted config key (ascending).

        Raises:
            UsageError: no trial has that key.
        """
        return self._records_of(self._sort(list(self.frozen_trials), key, reverse=reverse))

    def budget(self) -> int | None:
        """How many trials the sweep will run at most: ``run_cap``, else the grid size, else unknown."""
        return self.spec.budget

    def study(self) -> optuna.Study:
        """The Optuna study of the sweep, for Optuna's own tools (visualization, importance)."""
        return sweeps.load_study(self.storage, self.id)

    def to_frame(self) -> pandas.DataFrame:
        """The trials as a pandas DataFrame, one row per trial, config flattened to ``config.<key>``."""
        import pandas

        return pandas.DataFrame([flat_record(t, self.objective_names) for t in self.trials])

    def _records_of(self, trials: Sequence[FrozenTrial]) -> list[TrialRecord]:
        with collection_paused():  # thousands of records made, none of them garbage
            return [self._record(t) for t in trials]

    def _record(self, trial: FrozenTrial) -> TrialRecord:
        record = self._records.get(trial.number)
        if record is None:
            record = self._records[trial.number] = to_record(trial, self.spec)
        return record

    def _complete(self, *, include_stopped: bool = False) -> list[FrozenTrial]:
        states = (TrialState.COMPLETE, TrialState.PRUNED) if include_stopped else (TrialState.COMPLETE,)
        return [t for t in self.frozen_trials if t.state in states and t.values is not None]

    def _sort(self, pool: list[FrozenTrial], key: str, *, reverse: bool) -> list[FrozenTrial]:
        if key == "number":  # every trial has one, and only one trial each: a plain sort
            return sorted(pool, key=_NUMBER, reverse=reverse)
        getter, sign = self._sort_getter(key)
        present = [(getter(t), t) for t in pool]
        keyed = [(v, t) for v, t in present if v is not None]
        if not keyed and self.frozen_trials and not any(getter(t) is not None for t in self.frozen_trials):
            raise UsageError(
                f"sort key must be number, value, duration, an objective ({', '.join(self.objective_names)}),"
                f" a metric or a config key held by some trial, got {key!r}"
            )
        missing = [t for v, t in present if v is None]
        try:
            keyed.sort(key=lambda pair: (pair[0] * sign, pair[1].number), reverse=reverse)
        except TypeError:  # mixed types under one config key: compare as text
            keyed.sort(key=lambda pair: (str(pair[0]), pair[1].number), reverse=reverse)
        return [t for _, t in keyed] + missing

    def _sort_getter(self, key: str) -> tuple[Callable[[FrozenTrial], Any], float]:
        if key == "number":
            return (lambda t: t.number), 1.0
        if key == "duration":
            return _duration_of, 1.0
        if key in ("value", *self.objective_names):
            i = 0 if key == "value" else self.objective_names.index(key)
            sign = -1.0 if self.directions[i] == "maximize" else 1.0
            return (lambda t: t.values[i] if t.state in _VALUED and t.values else None), sign

        def getter(t: FrozenTrial) -> Any:
            metrics = t.user_attrs.get("metrics")
            if isinstance(metrics, Mapping) and key in metrics:
                value = metrics[key]
                return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
            return lookup(self._record(t).config, key)

        return getter, 1.0


@dataclass(frozen=True)
class SweepSummary:
    """One line of ``sweeper ls``: a sweep with its trial counts and best value(s)."""

    id: str
    name: str
    state: str
    created_at: str
    method: str
    objectives: tuple[str, ...]
    counts: Mapping[str, int]
    best_values: tuple[float, ...] | None
    priors: int = 0  # earlier results a warm start loaded (not in counts)

    @property
    def n_trials(self) -> int:
        """All trials of the sweep, every state (its priors aside)."""
        return sum(self.counts.values())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return strict_json_dict(
            {
                "id": self.id,
                "name": self.name,
                "state": self.state,
                "created_at": self.created_at,
                "method": self.method,
                "objectives": list(self.objectives),
                "n_trials": self.n_trials,
                "counts": dict(self.counts),
                "best_value": self.best_values[0] if self.best_values else None,
                "best_values": list(self.best_values) if self.best_values else None,
                "priors": self.priors,
            }
        )


def load(sweep_id: str, storage: str | BaseStorage | None = None) -> SweepResults:
    """Read a sweep and all its trials from the storage.

    Args:
        sweep_id: The sweep id, or its name when that is unique in the storage.
        storage: A storage URL (see :func:`sweeper.storage.urls.resolve_url`) or an open Optuna storage.

    Raises:
        SweepNotFoundError: no such sweep.
        StorageError: the storage cannot be opened.
    """
    store = storage if isinstance(storage, BaseStorage) else open_storage(storage)
    info = sweeps.get_sweep(store, sweep_id)
    with collection_paused():  # every trial read, none of them garbage
        return _results(store, info)


def summarize(storage: str | BaseStorage | None = None) -> list[SweepSummary]:
    """One :class:`SweepSummary` per sweep in the storage, oldest first."""
    store = storage if isinstance(storage, BaseStorage) else open_storage(storage)
    summaries = []
    for info in sweeps.list_sweeps(store):
        results = _results(store, info, with_agents=False)
        best = results.best(1)
        summaries.append(
            SweepSummary(
                id=info.id,
                name=info.name,
                state=info.state,
                created_at=info.created_at,
                method=info.spec.method,
                objectives=results.objective_names,
                counts=results.counts(),
                best_values=best[0].values if best else None,
                priors=sum(1 for t in results.frozen_trials if keys.is_prior(t)),
            )
        )
    return summaries


def pareto_front(trials: Sequence[TrialRecord], directions: Sequence[str]) -> list[TrialRecord]:
    """The trials no other trial dominates, ordered by the first objective (best first).

    A trial dominates another when it is at least as good on every objective and better on one.
    Trials with identical values are all kept, as Optuna's ``best_trials`` does.
    """
    return _front([(t.values or (), t) for t in trials], directions)


_T = TypeVar("_T", TrialRecord, FrozenTrial)


def _front(scored: Sequence[tuple[Sequence[float], _T]], directions: Sequence[str]) -> list[_T]:
    signs = [-1.0 if d == "maximize" else 1.0 for d in directions]
    points = sorted(
        ((tuple(s * v for s, v in zip(signs, values, strict=True)), item) for values, item in scored),
        key=lambda pair: (pair[0], pair[1].number),
    )
    front: list[tuple[tuple[float, ...], _T]] = []
    # Lexicographic order means no later point can dominate an earlier one: compare with the front only.
    for point, item in points:
        if not any(_dominates(kept, point) for kept, _ in front):
            front.append((point, item))
    return [item for _, item in front]


def _results(store: BaseStorage, info: sweeps.SweepInfo, *, with_agents: bool = True) -> SweepResults:
    now = _utcnow()
    frozen = tuple(read_trials(store, info.study_id))
    agents: tuple[AgentRecord, ...] = ()
    sources: tuple[Mapping[str, Any], ...] = ()
    if with_agents:
        attrs = store.get_study_user_attrs(info.study_id)
        loaded = attrs.get(keys.PRIORS)
        sources = (
            tuple(item for item in loaded if isinstance(item, Mapping)) if isinstance(loaded, list) else ()
        )
        agents = tuple(
            sorted(
                _agents(attrs),
                key=lambda a: a.last_seen or datetime.min.replace(tzinfo=timezone.utc),
                reverse=True,
            )
        )
    return SweepResults(
        info=info, frozen_trials=frozen, agents=agents, loaded_at=now, storage=store, prior_sources=sources
    )


def _dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(x < y for x, y in zip(a, b, strict=True))
