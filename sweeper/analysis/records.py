"""Trial and agent records: plain, frozen views of what the storage holds, built from Optuna's trials."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import orjson
from optuna.trial import FrozenTrial, TrialState

from sweeper.analysis.states import TrialStateName
from sweeper.errors import UsageError
from sweeper.plain import flatten, iso, strict_json_dict
from sweeper.spec.model import SweepSpec
from sweeper.storage import attrs as keys
from sweeper.storage.sweeps import AGENT_STALE_AFTER_S

_STATE_NAMES: dict[TrialState, TrialStateName] = {
    TrialState.RUNNING: "running",
    TrialState.WAITING: "waiting",
    TrialState.COMPLETE: "complete",
    TrialState.PRUNED: "pruned",
    TrialState.FAIL: "fail",
}


@dataclass(frozen=True)
class TrialRecord:
    """One trial of a sweep, as the trainer saw it and as Optuna scored it.

    Attributes:
        number: The trial number (0-based, unique within the sweep).
        state: ``running``, ``waiting``, ``complete``, ``pruned`` or ``fail``.
        values: The objective values (one per objective) of a complete trial, else ``None``.
        config: The nested config the trainer received, real values (not Optuna's encodings).
        params: The flat Optuna params (dotted names).
        intermediate_values: The learning curve of the first objective metric as ``(step, value)``
            pairs in step order.
        metrics: The final metrics the trial reported.
        tracker_runs: Where each tracker recorded the run (tracker name -> reference).
        started_at: When the trial started (``None`` while waiting).
        completed_at: When it ended (``None`` while running or waiting).
        duration_s: Seconds it ran; for a running trial, seconds since it started.
        fail_reason: Why it failed, for failed trials.
        attempt: 0 for the first attempt, n for the n-th retry.
        retry_of: The trial this one retries, if any.
        repeat_of: The trial whose config this one repeats with another seed (``sweeper repeat``).
        tracker_errors: Messages of trackers that failed for this trial.
        agent: The id of the agent that ran it.
        host: The machine it ran on.
        trial_dir: The directory it ran in on ``host``: its relative outputs, a program's logs.
        prior: For a prior (an earlier result a warm start loaded, not run by this sweep): its
            ``source`` and which result of it (``ref``); ``None`` for the sweep's own trials.
    """

    number: int
    state: TrialStateName
    values: tuple[float, ...] | None
    config: Mapping[str, Any]
    params: Mapping[str, Any]
    intermediate_values: tuple[tuple[int, float], ...] = ()
    metrics: Mapping[str, Any] = field(default_factory=dict)
    tracker_runs: Mapping[str, str] = field(default_factory=dict)
    started_at: datetime | None = None
    completed_at: datetime | None = None
    duration_s: float | None = None
    fail_reason: str | None = None
    attempt: int = 0
    retry_of: int | None = None
    repeat_of: int | None = None
    tracker_errors: tuple[str, ...] = ()
    agent: str | None = None
    host: str | None = None
    trial_dir: str | None = None
    prior: Mapping[str, str] | None = None

    @property
    def is_prior(self) -> bool:
        """Whether this is a prior (loaded by a warm start), not a run of this sweep."""
        return self.prior is not None

    @property
    def value(self) -> float | None:
        """The single objective value (the first one of a multi-objective trial)."""
        return self.values[0] if self.values else None

    @property
    def last_intermediate(self) -> tuple[int, float] | None:
        """The latest ``(step, value)`` of the learning curve, if any was reported."""
        return self.intermediate_values[-1] if self.intermediate_values else None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping (datetimes as ISO 8601, non-finite floats as ``None``)."""
        return strict_json_dict(self._fields())

    def to_json(self) -> str:
        """:meth:`to_dict` as strict, compact, ASCII JSON text: one line, the values of
        ``json.dumps(self.to_dict(), allow_nan=False, default=str)``.

        Made without :meth:`to_dict`'s walk over every value when no value needs it: orjson encodes
        the record as it is (a tenth of the standard library's time), non-finite floats as ``null``
        as :meth:`to_dict` makes them; a record it refuses (a key that is not a string, a subclass
        of a JSON type, a datetime, an integer beyond 64 bits, a value JSON has no type for) or
        whose text is not ASCII takes the walk and the standard library's encoder.

        Example:
            >>> record = TrialRecord(0, "fail", values=None, config={"lr": float("nan")}, params={})
            >>> record.to_json()[:60]
            '{"number":0,"state":"fail","value":null,"values":null,"confi'
            >>> json.loads(record.to_json()) == record.to_dict()
            True
        """
        fields = self._fields()
        try:
            encoded = orjson.dumps(fields, option=_PLAIN_ONLY)
        except TypeError:  # orjson.JSONEncodeError: a value it does not write as to_dict would
            encoded = b""
        if encoded and encoded.isascii():
            return encoded.decode("ascii")
        return json.dumps(strict_json_dict(fields), allow_nan=False, default=str, separators=(",", ":"))

    def _fields(self) -> dict[str, Any]:
        """The record's JSON shape, values as they are."""
        return {
            "number": self.number,
            "state": self.state,
            "value": self.value,
            "values": list(self.values) if self.values is not None else None,
            "config": self.config,
            "params": self.params,
            "duration_s": self.duration_s,
            "started_at": iso(self.started_at),
            "completed_at": iso(self.completed_at),
            "metrics": self.metrics,
            "intermediate_values": [[step, value] for step, value in self.intermediate_values],
            "tracker_runs": self.tracker_runs,
            "tracker_errors": list(self.tracker_errors),
            "fail_reason": self.fail_reason,
            "attempt": self.attempt,
            "retry_of": self.retry_of,
            "repeat_of": self.repeat_of,
            "agent": self.agent,
            "host": self.host,
            "trial_dir": self.trial_dir,
            "prior": self.prior,
        }


# orjson writes only what it writes as to_dict() would: dicts, lists and tuples of str keys and
# plain values; anything else (a dict or float subclass, a datetime, a dataclass) raises instead.
_PLAIN_ONLY = (
    orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
)


@dataclass(frozen=True)
class AgentRecord:
    """An agent that has worked on the sweep, from its heartbeat (study user attr ``sweeper:agent:<id>``)."""

    id: str
    host: str | None
    pid: int | None
    started_at: datetime | None
    last_seen: datetime | None
    stopped_at: datetime | None = None

    def seconds_since_seen(self, now: datetime | None = None) -> float | None:
        """Seconds since the last heartbeat, ``None`` if the agent never beat."""
        if self.last_seen is None:
            return None
        return ((now or _utcnow()) - self.last_seen).total_seconds()

    def is_active(self, now: datetime | None = None) -> bool:
        """Whether the agent beat within :data:`AGENT_STALE_AFTER_S` seconds and has not left."""
        age = self.seconds_since_seen(now)
        return self.stopped_at is None and age is not None and age <= AGENT_STALE_AFTER_S

    def to_dict(self, now: datetime | None = None) -> dict[str, Any]:
        """A JSON-ready mapping, with ``seconds_since_seen`` and ``active`` as of ``now``."""
        return strict_json_dict(
            {
                "id": self.id,
                "host": self.host,
                "pid": self.pid,
                "started_at": iso(self.started_at),
                "last_seen": iso(self.last_seen),
                "stopped_at": iso(self.stopped_at),
                "seconds_since_seen": self.seconds_since_seen(now),
                "active": self.is_active(now),
            }
        )


def _overridden(config: Mapping[str, Any], overrides: Mapping[str, Any]) -> Mapping[str, Any]:
    from sweeper.spec import overrides as config_overrides

    try:
        return config_overrides.apply(config, overrides)
    except UsageError:  # a malformed attr: its agent will fail the trial
        return config


def to_record(trial: FrozenTrial, spec: SweepSpec | None = None) -> TrialRecord:
    """The :class:`TrialRecord` of an Optuna trial (the config comes from its ``config`` user attr)."""
    attrs = trial.user_attrs
    state = _STATE_NAMES[trial.state]
    params = trial.params
    if state == "waiting" and not params:  # enqueued (grid point, retry, repeat): params are fixed ahead
        fixed = trial.system_attrs.get("fixed_params")
        params = fixed if isinstance(fixed, dict) else {}
    config = attrs.get(keys.CONFIG)
    if not isinstance(config, Mapping):
        config = _config_from_params(params, spec) if params else {}
        overrides = attrs.get(keys.CONFIG_OVERRIDES)
        if config and isinstance(overrides, Mapping):  # not run yet: the config its agent will build
            config = _overridden(config, overrides)
    started = trial.datetime_start
    completed = trial.datetime_complete
    duration = _duration_of(trial)
    # A stopped (pruned) trial keeps the best value it logged, as W&B's run summary shows it.
    values = tuple(trial.values) if state in ("complete", "pruned") and trial.values is not None else None
    metrics = attrs.get(keys.METRICS)
    tracker_runs = attrs.get(keys.TRACKER_RUNS)
    errors = attrs.get(keys.TRACKER_ERRORS)
    prior = attrs.get(keys.PRIOR)
    return _record(
        number=trial.number,
        state=state,
        values=values,
        config=config,
        params=params,
        intermediate_values=tuple(sorted(trial.intermediate_values.items())),
        metrics=metrics if isinstance(metrics, Mapping) else {},
        tracker_runs=tracker_runs if isinstance(tracker_runs, Mapping) else {},
        started_at=started,
        completed_at=completed,
        duration_s=duration,
        fail_reason=_text(attrs.get(keys.FAIL_REASON)),
        attempt=int(attrs.get(keys.ATTEMPT, 0) or 0),
        retry_of=_int(attrs.get(keys.RETRY_OF)),
        repeat_of=_int(attrs.get(keys.REPEAT_OF)),
        tracker_errors=tuple(str(e) for e in errors) if isinstance(errors, list) else (),
        agent=_text(attrs.get(keys.AGENT)),
        host=_text(attrs.get(keys.HOST)),
        trial_dir=_text(attrs.get(keys.TRIAL_DIR)),
        prior={str(k): str(v) for k, v in prior.items()} if isinstance(prior, Mapping) else None,
    )


def _record(**fields: Any) -> TrialRecord:
    """``TrialRecord(**fields)`` given every field: its ``__dict__`` filled at once.

    A frozen dataclass's ``__init__`` sets each of the 19 fields through ``object.__setattr__``:
    most of the time :func:`to_record` took on a sweep of 10,000 trials.
    """
    record = object.__new__(TrialRecord)
    record.__dict__.update(fields)
    return record


def flat_record(trial: TrialRecord, objective_names: Sequence[str]) -> dict[str, Any]:
    """One flat row for CSV and DataFrames: ``config.<dotted key>`` columns, one column per objective."""
    row: dict[str, Any] = {
        "number": trial.number,
        "state": trial.state,
    }
    for i, name in enumerate(objective_names):
        row[f"value.{name}"] = trial.values[i] if trial.values else None
    row.update(
        {
            "duration_s": trial.duration_s,
            "started_at": iso(trial.started_at),
            "completed_at": iso(trial.completed_at),
            "attempt": trial.attempt,
            "retry_of": trial.retry_of,
            "repeat_of": trial.repeat_of,
            "fail_reason": trial.fail_reason,
            "prior": f"{trial.prior.get('source', '')}: {trial.prior.get('ref', '')}"
            if trial.prior
            else None,
        }
    )
    row.update({f"config.{k}": v for k, v in flatten(trial.config).items()})
    row.update({f"metric.{k}": v for k, v in flatten(trial.metrics).items()})
    row.update({f"tracker.{k}": v for k, v in trial.tracker_runs.items()})
    return strict_json_dict(row)


def _agents(attrs: Mapping[str, Any]) -> Iterable[AgentRecord]:
    for key, beat in attrs.items():
        if not key.startswith(keys.AGENT_PREFIX) or not isinstance(beat, Mapping):
            continue
        yield AgentRecord(
            id=key[len(keys.AGENT_PREFIX) :],
            host=_text(beat.get("host")),
            pid=_int(beat.get("pid")),
            started_at=_timestamp(beat.get("started_at")),
            last_seen=_timestamp(beat.get("last_seen")),
            stopped_at=_timestamp(beat.get("stopped_at")),
        )


def _config_from_params(params: Mapping[str, Any], spec: SweepSpec | None) -> dict[str, Any]:
    # A trial that has not started yet (enqueued, waiting) has no recorded config: rebuild it.
    if spec is not None:
        try:
            return spec.space.to_config(params)
        except Exception:  # params outside the current space; fall back to nesting
            pass
    nested: dict[str, Any] = {}
    for name, value in params.items():
        node = nested
        *parents, leaf = name.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested


def _duration_of(trial: FrozenTrial) -> float | None:
    """Seconds a trial ran (its ``duration_s`` attr, else its timestamps); running: seconds so far."""
    started = trial.datetime_start
    # Optuna stamps trials with naive local datetimes; compare with the same clock.
    if trial.state == TrialState.RUNNING and started is not None:
        return max((datetime.now() - started).total_seconds(), 0.0)
    duration = _number(trial.user_attrs.get("duration_s"))
    if duration is None and started is not None and trial.datetime_complete is not None:
        duration = max((trial.datetime_complete - started).total_seconds(), 0.0)
    return duration


def _timestamp(value: Any) -> datetime | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, tz=timezone.utc)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    return None


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
