"""W&B's ``scheduler: {engine: optuna, source, optimizer, search_space}``: the user's study and space.

``source`` is a Python file, found next to the spec file first, then in the project directory. It is
run once per agent (and once by ``sweeper validate`` / ``preview`` / sweep creation, to check it):

- ``optimizer`` names a zero-argument function returning an :class:`optuna.Study` (usually
  in-memory). Its sampler proposes the trials and its pruner stops them; its directions must be
  the spec's (``metric`` / ``metrics``). Only those three are taken: the sweep's own study, in the
  sweep's storage, holds the trials. Without ``optimizer``, Optuna's default sampler is used
  (seeded by ``sweeper.seed``) with no pruner. Following W&B, a study whose pruner is Optuna's
  implicit default (a ``MedianPruner`` with default settings, which ``create_study`` installs when
  given none) prunes nothing either.
- ``search_space`` names a function of an :class:`optuna.Trial` that calls ``trial.suggest_*``
  (define-by-run: conditionals allowed) and returns the trial's config, a mapping (nested mappings
  allowed; an object with a ``config`` mapping, like the W&B SDK's ``RunSuggestion``, gives that).
  It runs in the agent, when a trial is asked; the worker gets the config, never the function. A
  retried trial has its params fixed, so the function must give the same config again: the check
  below replays a few trials to catch a function that does not.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import inspect
import math
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import optuna
from optuna.pruners import BasePruner, MedianPruner, NopPruner
from optuna.samplers import BaseSampler, NSGAIISampler, RandomSampler, TPESampler
from optuna.study import StudyDirection

from sweeper.errors import SpecError, SpecIssue, UsageError
from sweeper.spec.model import SweepSpec

# Trials the check asks (each replayed with its params fixed) with a seeded random sampler.
CHECK_TRIALS = 4
# Search-space failures in a row after which the agent stops rather than failing trial after trial.
MAX_FAILURES_IN_ROW = 3
_PLACEHOLDER_SOURCES = ("<mapping>", "<stored>")
_MEDIAN_DEFAULTS = {"_percentile": 50.0, "_n_startup_trials": 5, "_n_warmup_steps": 0, "_interval_steps": 1}


@dataclass(frozen=True)
class OptunaScheduler:
    """What an ``engine: optuna`` scheduler gives the agent: who proposes, who prunes, how to ask."""

    sampler: BaseSampler
    pruner: BasePruner | None
    # The define-by-run search space, or None when the spec's ``parameters`` are the space.
    space: DefineByRun | None
    source: Path | None

    def describe(self) -> str:
        """One line for ``sweeper validate``: the sampler, the pruner and where the space comes from."""
        pruner = type(self.pruner).__name__ if self.pruner is not None else "no pruner"
        space = f"define-by-run space {self.space.name}()" if self.space is not None else "parameters"
        return f"engine optuna: {type(self.sampler).__name__}, {pruner}, {space}"


class DefineByRun:
    """The user's ``search_space(trial)``, run on each asked trial; keeps the config it returned.

    Called by the storage queue's ask with the live trial (see :func:`sweeper.storage.queue.ask_trial`);
    :meth:`config` then hands the trial's config to the task. A call that raises, or returns
    something that is not a plain-data mapping, fails that trial (:class:`UsageError` from
    :meth:`config`); :data:`MAX_FAILURES_IN_ROW` such failures in a row stop the agent with a
    located :class:`SpecError` raised from the ask.
    """

    def __init__(self, function: Callable[[optuna.Trial], Any], name: str, origin: str) -> None:
        self._function = function
        self.name = name
        self._origin = origin
        self._configs: dict[int, dict[str, Any]] = {}
        self._errors: dict[int, str] = {}
        self._failures_in_row = 0

    def __call__(self, trial: optuna.Trial) -> None:
        try:
            config = self.run(trial)
        except SpecError as exc:
            self._failures_in_row += 1
            if self._failures_in_row >= MAX_FAILURES_IN_ROW:
                raise SpecError(
                    [
                        SpecIssue(
                            issue.source,
                            issue.path,
                            f"{issue.message} ({self._failures_in_row} trials in a row; stopping)",
                        )
                        for issue in exc.issues
                    ]
                ) from exc
            self._errors[trial._trial_id] = str(exc)
            return
        self._failures_in_row = 0
        self._configs[trial._trial_id] = config

    def run(self, trial: optuna.Trial) -> dict[str, Any]:
        """Run the function on ``trial`` and return its config, checked.

        Raises:
            SpecError: the function raised or returned something that is not a plain-data mapping.
        """
        try:
            result = self._function(trial)
        except Exception as exc:  # the user's code: any failure is reported, located
            raise self._error(f"raised {type(exc).__name__}: {exc}") from exc
        # W&B's SDK has the function return a RunSuggestion(config=..., run_id=...): take its config.
        suggested = getattr(result, "config", None)
        if not isinstance(result, Mapping) and isinstance(suggested, Mapping):
            result = suggested
        if not isinstance(result, Mapping):
            raise self._error(
                f"must return the trial's config as a mapping (e.g. `return trial.params`), "
                f"got {type(result).__name__}"
            )
        problem = _plain_data_problem(result, "")
        if problem is not None:
            raise self._error(f"returned a config that is not plain data: {problem}")
        return {str(key): _plain_copy(value) for key, value in result.items()}

    def config(self, trial: optuna.Trial) -> dict[str, Any]:
        """The config the function returned for ``trial`` when it was asked.

        Raises:
            UsageError: the function failed on this trial (the trial fails, the agent goes on).
        """
        error = self._errors.pop(trial._trial_id, None)
        if error is not None:
            raise UsageError(error)
        config = self._configs.pop(trial._trial_id, None)
        # A trial asked elsewhere (never in practice): its params are set, so the replay is exact.
        return self.run(trial) if config is None else config

    def _error(self, message: str) -> SpecError:
        return SpecError([SpecIssue(self._origin, "scheduler.search_space", f"{self.name}(trial) {message}")])


def resolve_source(spec: SweepSpec, project_dir: Path) -> Path:
    """The file ``scheduler.source`` names: as given when absolute, else next to the spec, else in
    the project directory.

    Raises:
        SpecError: no such file.
    """
    if spec.scheduler is None or spec.scheduler.source is None:
        raise ValueError("resolve_source needs a spec with scheduler.source")
    source = Path(spec.scheduler.source).expanduser()
    if source.is_absolute():
        candidates = [source]
    else:
        candidates = []
        if spec.source not in _PLACEHOLDER_SOURCES:
            candidates.append(Path(spec.source).parent / source)
        candidates.append(project_dir / source)
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    tried = ", ".join(str(c) for c in dict.fromkeys(candidates))
    raise _spec_error(spec, "scheduler.source", f"no file {spec.scheduler.source!r} (looked for {tried})")


def load_scheduler(spec: SweepSpec, project_dir: Path) -> OptunaScheduler:
    """Run the spec's ``scheduler.source`` and build what the agent needs from it, checked.

    Raises:
        SpecError: located at ``scheduler.*``: a missing file or function, a file that fails to
            import, an optimizer that raises or returns no Study or a Study whose directions are not
            the spec's, a search space that fails the check of :func:`check_space`.
    """
    scheduler = spec.scheduler
    if scheduler is None or scheduler.engine != "optuna":
        raise ValueError("load_scheduler needs a spec with scheduler.engine: optuna")
    path = resolve_source(spec, project_dir) if scheduler.source is not None else None
    module = _load_module(spec, path) if path is not None else None
    directions = _directions(spec)
    with _quiet_optuna():
        if scheduler.optimizer is not None and module is not None:
            build = _function(spec, module, path, "optimizer", scheduler.optimizer, arguments=0)
            study = _call_optimizer(spec, build, scheduler.optimizer)
            _check_directions(spec, study, directions, scheduler.optimizer)
            sampler, pruner = study.sampler, _chosen_pruner(study.pruner)
        else:  # Optuna's default sampler for these directions (seeded by sweeper.seed); no pruning, as W&B
            seed = spec.sweeper.seed
            sampler = TPESampler(seed=seed) if len(directions) == 1 else NSGAIISampler(seed=seed)
            pruner = None
    if pruner is not None and len(directions) > 1:
        raise _spec_error(
            spec,
            "scheduler.optimizer",
            f"{scheduler.optimizer}() returned a study with a {type(pruner).__name__}, but Optuna's pruners "
            f"cannot judge a multi-objective study ({len(directions)} metrics): leave the pruner out",
        )
    space = None
    if scheduler.search_space is not None and module is not None:
        function = _function(spec, module, path, "search_space", scheduler.search_space, arguments=1)
        space = DefineByRun(function, scheduler.search_space, spec.source)
        check_space(space, directions)
    return OptunaScheduler(sampler=sampler, pruner=pruner, space=space, source=path)


def check_space(space: DefineByRun, directions: Sequence[str]) -> None:
    """Ask a few trials of a scratch study (seeded random sampler) and replay each with its params
    fixed, as a retry would: the config must come back the same.

    Raises:
        SpecError: the function raised, returned no plain-data mapping, or is not reproducible.
    """
    with _quiet_optuna():
        study = optuna.create_study(directions=_as_optuna(directions), sampler=RandomSampler(seed=0))
        for _ in range(CHECK_TRIALS):
            first = study.ask()
            config = space.run(first)
            study.enqueue_trial(dict(first.params))
            replay = study.ask()
            again = space.run(replay)
            if again != config or replay.params != first.params:
                raise space._error(
                    "must give the same config for the same params (a retried trial replays them): "
                    f"params {first.params} gave {config}, then {again}"
                )


def draw_configs(scheduler: OptunaScheduler, spec: SweepSpec, count: int) -> list[dict[str, Any]]:
    """The first ``count`` configs the user's sampler proposes on a scratch study, nothing reported.

    What ``sweeper preview`` shows: the conditional configs of a define-by-run space as the
    scheduler's sampler draws them before it has any result (its start-up draws).
    """
    with _quiet_optuna():
        study = optuna.create_study(directions=_as_optuna(_directions(spec)), sampler=scheduler.sampler)
        configs = []
        for _ in range(count):
            trial = study.ask()
            if scheduler.space is not None:
                configs.append(scheduler.space.run(trial))
            else:
                for name, distribution in spec.space.distributions().items():
                    trial._suggest(name, distribution)
                configs.append(spec.space.to_config(dict(trial.params)))
    return configs


# -- loading the user's file -------------------------------------------------------------------


def _load_module(spec: SweepSpec, path: Path) -> ModuleType:
    """Import ``path`` as a fresh module (its directory importable while it runs)."""
    digest = hashlib.sha1(str(path).encode("utf-8")).hexdigest()[:12]
    name = f"sweeper_scheduler_{path.stem}_{digest}"
    loader_spec = importlib.util.spec_from_file_location(name, path)
    if loader_spec is None or loader_spec.loader is None:
        raise _spec_error(spec, "scheduler.source", f"cannot import {path} as a Python module")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[name] = module  # dataclasses and pickling inside the file look themselves up here
    directory = str(path.parent)
    added = directory not in sys.path
    if added:
        sys.path.insert(0, directory)
    try:
        with _quiet_optuna():
            loader_spec.loader.exec_module(module)
    except Exception as exc:  # the user's file: report any failure, located
        sys.modules.pop(name, None)
        message = f"{path} failed to import: {type(exc).__name__}: {exc}"
        raise _spec_error(spec, "scheduler.source", message) from exc
    finally:
        if added:
            with contextlib.suppress(ValueError):
                sys.path.remove(directory)
    return module


def _function(
    spec: SweepSpec, module: ModuleType, path: Path | None, key: str, name: str, *, arguments: int
) -> Callable[..., Any]:
    function = getattr(module, name, None)
    if function is None:
        defined = sorted(
            n for n, v in vars(module).items() if inspect.isfunction(v) and v.__module__ == module.__name__
        )
        listing = ", ".join(defined) if defined else "none"
        raise _spec_error(spec, f"scheduler.{key}", f"{path} defines no {name!r} (its functions: {listing})")
    if not callable(function):
        what = type(function).__name__
        raise _spec_error(spec, f"scheduler.{key}", f"{name} in {path} is a {what}, not a function")
    try:
        inspect.signature(function).bind(*([None] * arguments))
    except TypeError:
        takes = "no arguments" if arguments == 0 else "one argument (an optuna.Trial)"
        message = f"{name}() in {path} must take {takes}, not {name}{inspect.signature(function)}"
        raise _spec_error(spec, f"scheduler.{key}", message) from None
    except ValueError:  # no signature to read (a builtin): let the call decide
        pass
    return function  # type: ignore[no-any-return]


def _call_optimizer(spec: SweepSpec, build: Callable[..., Any], name: str) -> optuna.Study:
    try:
        study = build()
    except Exception as exc:  # the user's code: any failure is reported, located
        message = f"{name}() raised {type(exc).__name__}: {exc}"
        raise _spec_error(spec, "scheduler.optimizer", message) from exc
    if not isinstance(study, optuna.Study):
        raise _spec_error(
            spec,
            "scheduler.optimizer",
            f"{name}() must return an optuna.Study (e.g. `return optuna.create_study(sampler=...)`), "
            f"got {type(study).__name__}",
        )
    return study


def _check_directions(spec: SweepSpec, study: optuna.Study, directions: list[str], name: str) -> None:
    theirs = ["maximize" if d == StudyDirection.MAXIMIZE else "minimize" for d in study.directions]
    if theirs != directions:
        where = "metrics" if spec.metrics else "metric"
        raise _spec_error(
            spec,
            "scheduler.optimizer",
            f"{name}() returned a study with directions {theirs}, "
            f"but the spec's {where} asks for {directions}: make them agree "
            "(create_study(direction=...) / directions=[...], or the goal in the spec)",
        )


def _chosen_pruner(pruner: BasePruner) -> BasePruner | None:
    """The study's pruner, or None when it is Optuna's implicit default or prunes nothing."""
    if isinstance(pruner, NopPruner):
        return None
    if type(pruner) is MedianPruner and all(
        getattr(pruner, key, None) == value for key, value in _MEDIAN_DEFAULTS.items()
    ):
        return None
    return pruner


def _directions(spec: SweepSpec) -> list[str]:
    """The spec's goals, as the sweep's study has them (one "minimize" when it names no metric)."""
    return [str(metric.goal) for metric in spec.objectives] or ["minimize"]


def _as_optuna(directions: Sequence[str]) -> list[StudyDirection]:
    return [StudyDirection.MAXIMIZE if d == "maximize" else StudyDirection.MINIMIZE for d in directions]


def _spec_error(spec: SweepSpec, path: str, message: str) -> SpecError:
    return SpecError([SpecIssue(spec.source, path, message)])


@contextlib.contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Hide Optuna's INFO lines ("A new study created in memory ...") while the user's code runs."""
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(max(level, optuna.logging.WARNING))
    try:
        yield
    finally:
        optuna.logging.set_verbosity(level)


def _plain_data_problem(value: Any, path: str) -> str | None:
    """Why ``value`` cannot be a stored config (JSON), or None when it can."""
    where = path or "<config>"
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{where}: keys must be strings, got {key!r}"
            problem = _plain_data_problem(item, f"{path}.{key}" if path else key)
            if problem is not None:
                return problem
        return None
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            problem = _plain_data_problem(item, f"{where}.{i}")
            if problem is not None:
                return problem
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return f"{where}: {value!r} is not a finite number"
    if value is None or isinstance(value, bool | int | float | str):
        return None
    return f"{where}: {type(value).__name__} {value!r} (use str, int, float, bool, None, lists, mappings)"


def _plain_copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _plain_copy(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain_copy(item) for item in value]
    return value


__all__ = [
    "DefineByRun",
    "OptunaScheduler",
    "check_space",
    "draw_configs",
    "load_scheduler",
    "resolve_source",
]
