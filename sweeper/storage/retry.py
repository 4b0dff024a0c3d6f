"""A storage that rides out database hiccups: dropped connections and server restarts are retried.

:class:`RetryingStorage` wraps any Optuna storage. A call that fails with a *transient* database
error (SQLAlchemy's ``OperationalError``/``InterfaceError``/``DisconnectionError`` anywhere in the
exception chain, which Optuna's RDB storage re-raises as ``StorageInternalError``) is retried with
exponential backoff until it succeeds or ``max_wait_s`` has passed, then the last error is raised.
Meanwhile the caller waits: the agent starts nothing, and the values trials report stay with
the agent's pruning judge (stored by a later write, or with the trial's end) instead of being lost.

Retrying is safe because every call the engine makes is idempotent (attribute and value writes are
upserts, reads are reads) except two, which are made so here:

- ``create_new_trial`` stamps each new trial with a unique ``sweeper:create_token`` system attr;
  after a failure, the retry first looks for a trial with that token (the first try may have
  committed before the connection dropped) and returns it instead of creating a second one.
- ``create_new_study`` that meets ``DuplicatedStudyError`` on a retry returns the study the first
  try created.

A state update whose commit succeeded but whose answer was lost surfaces on the retry as "already
finished" (or, for a popped WAITING trial, as "someone else took it"); the lease reaper
(:mod:`sweeper.engine.leases`) cleans up the rare RUNNING trial this strands.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable, Container, Sequence
from datetime import datetime
from typing import Any, TypeVar

import optuna
from optuna.distributions import BaseDistribution
from optuna.storages import BaseStorage
from optuna.study import StudyDirection
from optuna.study._frozen import FrozenStudy
from optuna.trial import FrozenTrial, TrialState

_logger = logging.getLogger(__name__)

CREATE_TOKEN = "sweeper:create_token"
DEFAULT_MAX_WAIT_S = 60.0
_T = TypeVar("_T")


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is a lost connection or a database that went away.

    Example:
        >>> is_transient(ValueError("bad value"))
        False
    """
    from sqlalchemy import exc as sa_exc

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.DisconnectionError):
            return True
        if isinstance(current, sa_exc.DBAPIError) and current.connection_invalidated:
            return True
        current = current.__cause__ or current.__context__
    return False


class RetryingStorage(BaseStorage):
    """Wraps an Optuna storage; retries transient database errors with exponential backoff.

    Args:
        inner: The storage to wrap (usually Optuna's cached RDB storage).
        max_wait_s: Give up (raise the last error) once a call has been retried this long.
        first_delay_s: The first backoff; each next one doubles, up to ``max_delay_s``.
        max_delay_s: The longest single backoff.
        sleep: Injectable for tests.
    """

    def __init__(
        self,
        inner: BaseStorage,
        *,
        max_wait_s: float = DEFAULT_MAX_WAIT_S,
        first_delay_s: float = 0.1,
        max_delay_s: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.inner = inner
        self.max_wait_s = max_wait_s
        self._first_delay_s = first_delay_s
        self._max_delay_s = max_delay_s
        self._sleep = sleep
        self.retried = 0  # transient errors ridden out so far (for tests and diagnostics)

    def __getattr__(self, name: str) -> Any:
        # Storage-specific extras (RDB's engine, heartbeat methods, ...) pass through unretried.
        if name == "inner":  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    def _call(self, what: str, call: Callable[[], _T], on_retry: Callable[[], _T | None] | None = None) -> _T:
        deadline = time.monotonic() + self.max_wait_s
        delay = self._first_delay_s
        failed = False
        while True:
            try:
                if failed and on_retry is not None:
                    found = on_retry()
                    if found is not None:
                        return found
                return call()
            except Exception as exc:
                if not is_transient(exc) or time.monotonic() + delay > deadline:
                    raise
                failed = True
                self.retried += 1
                _logger.warning(
                    "storage call %s failed (%s); retrying in %.1f s",
                    what,
                    type(exc).__name__,
                    delay,
                )
                self._sleep(delay * (0.5 + random.random() / 2))
                delay = min(delay * 2, self._max_delay_s)

    # -- the two writes that are not idempotent ----------------------------------------------------

    def create_new_study(self, directions: Sequence[StudyDirection], study_name: str | None = None) -> int:
        attempts = 0

        def create() -> int:
            nonlocal attempts
            attempts += 1
            try:
                return self.inner.create_new_study(directions, study_name=study_name)
            except optuna.exceptions.DuplicatedStudyError:
                if attempts > 1 and study_name is not None:
                    return self.inner.get_study_id_from_name(study_name)  # our first try made it
                raise

        return self._call("create_new_study", create)

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        token = uuid.uuid4().hex
        template = _stamped(template_trial, token)

        def find() -> int | None:
            for trial in self.inner.get_all_trials(study_id, deepcopy=False):
                if trial.system_attrs.get(CREATE_TOKEN) == token:
                    return trial._trial_id
            return None

        return self._call(
            "create_new_trial", lambda: self.inner.create_new_trial(study_id, template_trial=template), find
        )

    # -- everything else is idempotent -------------------------------------------------------------

    def delete_study(self, study_id: int) -> None:
        self._call("delete_study", lambda: self.inner.delete_study(study_id))

    def set_study_user_attr(self, study_id: int, key: str, value: Any) -> None:
        self._call("set_study_user_attr", lambda: self.inner.set_study_user_attr(study_id, key, value))

    def set_study_system_attr(self, study_id: int, key: str, value: Any) -> None:
        self._call("set_study_system_attr", lambda: self.inner.set_study_system_attr(study_id, key, value))

    def get_study_id_from_name(self, study_name: str) -> int:
        return self._call("get_study_id_from_name", lambda: self.inner.get_study_id_from_name(study_name))

    def get_study_name_from_id(self, study_id: int) -> str:
        return self._call("get_study_name_from_id", lambda: self.inner.get_study_name_from_id(study_id))

    def get_study_directions(self, study_id: int) -> list[StudyDirection]:
        return self._call("get_study_directions", lambda: self.inner.get_study_directions(study_id))

    def get_study_user_attrs(self, study_id: int) -> dict[str, Any]:
        return self._call("get_study_user_attrs", lambda: self.inner.get_study_user_attrs(study_id))

    def get_study_system_attrs(self, study_id: int) -> dict[str, Any]:
        return self._call("get_study_system_attrs", lambda: self.inner.get_study_system_attrs(study_id))

    def get_all_studies(self) -> list[FrozenStudy]:
        return self._call("get_all_studies", self.inner.get_all_studies)

    def set_trial_param(
        self, trial_id: int, param_name: str, param_value_internal: float, distribution: BaseDistribution
    ) -> None:
        self._call(
            "set_trial_param",
            lambda: self.inner.set_trial_param(trial_id, param_name, param_value_internal, distribution),
        )

    def get_trial_id_from_study_id_trial_number(self, study_id: int, trial_number: int) -> int:
        return self._call(
            "get_trial_id_from_study_id_trial_number",
            lambda: self.inner.get_trial_id_from_study_id_trial_number(study_id, trial_number),
        )

    def get_trial_number_from_id(self, trial_id: int) -> int:
        return self._call("get_trial_number_from_id", lambda: self.inner.get_trial_number_from_id(trial_id))

    def get_trial_param(self, trial_id: int, param_name: str) -> float:
        return self._call("get_trial_param", lambda: self.inner.get_trial_param(trial_id, param_name))

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        return self._call(
            "set_trial_state_values", lambda: self.inner.set_trial_state_values(trial_id, state, values)
        )

    def set_trial_intermediate_value(self, trial_id: int, step: int, intermediate_value: float) -> None:
        self._call(
            "set_trial_intermediate_value",
            lambda: self.inner.set_trial_intermediate_value(trial_id, step, intermediate_value),
        )

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._call("set_trial_user_attr", lambda: self.inner.set_trial_user_attr(trial_id, key, value))

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._call("set_trial_system_attr", lambda: self.inner.set_trial_system_attr(trial_id, key, value))

    def get_trial(self, trial_id: int) -> FrozenTrial:
        return self._call("get_trial", lambda: self.inner.get_trial(trial_id))

    def get_all_trials(
        self, study_id: int, deepcopy: bool = True, states: Container[TrialState] | None = None
    ) -> list[FrozenTrial]:
        return self._call(
            "get_all_trials", lambda: self.inner.get_all_trials(study_id, deepcopy=deepcopy, states=states)
        )

    def get_n_trials(self, study_id: int, state: tuple[TrialState, ...] | TrialState | None = None) -> int:
        return self._call("get_n_trials", lambda: self.inner.get_n_trials(study_id, state))

    def get_best_trial(self, study_id: int) -> FrozenTrial:
        return self._call("get_best_trial", lambda: self.inner.get_best_trial(study_id))

    def get_trial_params(self, trial_id: int) -> dict[str, Any]:
        return self._call("get_trial_params", lambda: self.inner.get_trial_params(trial_id))

    def get_trial_user_attrs(self, trial_id: int) -> dict[str, Any]:
        return self._call("get_trial_user_attrs", lambda: self.inner.get_trial_user_attrs(trial_id))

    def get_trial_system_attrs(self, trial_id: int) -> dict[str, Any]:
        return self._call("get_trial_system_attrs", lambda: self.inner.get_trial_system_attrs(trial_id))

    def remove_session(self) -> None:
        self.inner.remove_session()

    def check_trial_is_updatable(self, trial_id: int, trial_state: TrialState) -> None:
        self.inner.check_trial_is_updatable(trial_id, trial_state)


def _stamped(template: FrozenTrial | None, token: str) -> FrozenTrial:
    """``template`` (or a fresh RUNNING trial, as Optuna creates without one) carrying ``token``."""
    if template is None:
        return FrozenTrial(
            number=-1,
            state=TrialState.RUNNING,
            value=None,
            datetime_start=datetime.now(),
            datetime_complete=None,
            params={},
            distributions={},
            user_attrs={},
            system_attrs={CREATE_TOKEN: token},
            intermediate_values={},
            trial_id=-1,
        )
    stamped = FrozenTrial(
        number=template.number,
        state=template.state,
        value=None,
        values=template.values,
        datetime_start=template.datetime_start,
        datetime_complete=template.datetime_complete,
        params=dict(template.params),
        distributions=dict(template.distributions),
        user_attrs=dict(template.user_attrs),
        system_attrs={**template.system_attrs, CREATE_TOKEN: token},
        intermediate_values=dict(template.intermediate_values),
        trial_id=template._trial_id,
    )
    return stamped
