"""Every shared fixture: a real local Ray with fake GPUs, fresh PostgreSQL databases, a scratch project,
test trainers shipped to Ray workers, sweeps built as the engine records them, W&B's engine as a
reference, and stand-in trials for the example trainers.

On CI (``CI=true``) the services must be there: a test that needs one fails instead of skipping.
Helper modules live in ``tests/support`` (on ``sys.path`` through the pytest configuration).

The suite runs on every core (pytest-xdist, ``-n auto`` in pyproject.toml; ``-n 0`` runs it in one
process). What tests share is kept apart per worker: each worker starts its own local Ray
(``address="local"``: a fresh instance whose ports are picked free, never another worker's), each
PostgreSQL test gets its own database, each storage lives in the test's ``tmp_path``, and tests
that run an agent change into a directory of their own for its ``./.sweeper/``.
"""

from __future__ import annotations

import os
import sys
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from inspect_sweeps import MULTI_SPEC, SPEC, Built, add_finished, beat, create, finish_trial, start_trial

from sweeper.errors import TrialPruned
from sweeper.storage import sweeps

with warnings.catch_warnings():
    # `sweeps` imports pydantic v1-style config that warns at import time; not our code.
    warnings.simplefilter("ignore")
    from sweeps.grid_search import grid_search_next_runs
    from sweeps.params import HyperParameter

REPO = Path(__file__).resolve().parents[1]
# `trainers.x:train` is imported from the repository root, as a user's would be.
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

POSTGRES_ADMIN_URL = os.environ.get("SWEEPER_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


def pytest_configure(config: pytest.Config) -> None:
    """Before the xdist workers start, make the Ray token a first local Ray would write.

    Ray (2.60 here) turns on token authentication for a new local cluster and writes a token to
    ``~/.ray/auth_token`` when there is none; two workers (or a test's subprocess cluster) starting
    their first Ray at once could each write one and hand their processes different tokens.
    """
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        # Each worker's Rays record themselves under a temp directory of its own: a test cluster
        # (ray.cluster_utils.Cluster writes ray_current_cluster, as `ray start` does) must not be
        # taken by another worker's `sweeper run` for a cluster to reuse.
        run = workerinput["testrunuid"][:8]
        os.environ["RAY_TMPDIR"] = os.path.join("/tmp", f"ray-{run}-{workerinput['workerid']}")
        return  # the controller made the token
    if os.environ.get("RAY_AUTH_MODE"):
        return  # the mode is set by hand
    try:
        from ray._private.authentication.authentication_token_setup import generate_and_save_token
        from ray._raylet import AuthenticationTokenLoader
    except ImportError:  # a Ray without token authentication: nothing to share
        return
    loader = AuthenticationTokenLoader.instance()
    if not loader.has_token(ignore_auth_mode=True):
        generate_and_save_token()
        loader.reset_cache()


def _unavailable(what: str, exc: BaseException) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{what} is required on CI but unavailable: {exc}")
    pytest.skip(f"{what} unavailable: {exc}")


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """A local Ray shared by the session: 4 CPUs and 4 fake GPUs, so placement can be tested anywhere."""
    import ray

    if not ray.is_initialized():
        # "local": a fresh instance even when another cluster on this machine is the "current" one.
        ray.init(address="local", num_cpus=4, num_gpus=4, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres), "journal"])
def any_storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh storage of each kind we support: a SQLite file, a PostgreSQL database, a journal file."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'sweeps.db'}"
    if request.param == "journal":
        return f"journal://{tmp_path / 'journal.log'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """The URL of a fresh, empty PostgreSQL database, dropped after the test."""
    try:
        import psycopg2
    except ImportError as exc:
        _unavailable("psycopg2", exc)
    name = f"sweeper_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg2.connect(POSTGRES_ADMIN_URL, connect_timeout=5)
    except psycopg2.OperationalError as exc:
        _unavailable("PostgreSQL", exc)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


# -- a scratch project --------------------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project directory used as the agent's cwd (checkpoints and tracker files land here)."""
    root = tmp_path / "project"
    root.mkdir()
    monkeypatch.chdir(root)
    monkeypatch.delenv("SWEEPER_STORAGE", raising=False)
    return root


@pytest.fixture
def wandb_offline(project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The scratch project with W&B offline and its own files under it; runs go where sweeper puts
    them (the sweep's directory), not to a WANDB_DIR."""
    from tracker_env import isolate_tracker_env

    isolate_tracker_env(monkeypatch, project)
    monkeypatch.delenv("WANDB_DIR")
    return project


# -- test trainers on Ray workers ---------------------------------------------------------------


@pytest.fixture(scope="session")
def ray_trainers(ray_session: None) -> Iterator[None]:
    """The session's Ray, with the test trainers pickled by value (workers cannot import tests/support)."""
    import engine_trainers
    import ray.cloudpickle
    import search_trainers
    import wandb_trainers

    import trainers.wandb_tutorial

    modules = (engine_trainers, search_trainers, wandb_trainers, trainers.wandb_tutorial)
    for module in modules:
        ray.cloudpickle.register_pickle_by_value(module)
    yield
    for module in modules:
        ray.cloudpickle.unregister_pickle_by_value(module)


@pytest.fixture(scope="session")
def ray_inspect_trainers(ray_session: None) -> Iterator[None]:
    """The session's Ray, with the inspect test trainers pickled by value (workers cannot import them)."""
    import inspect_trainers
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(inspect_trainers)
    yield
    ray.cloudpickle.unregister_pickle_by_value(inspect_trainers)


# -- sweeps built as the engine records them (tests/support/inspect_sweeps.py) -----------------


@pytest.fixture
def journal_url(tmp_path: Path) -> str:
    """A fresh journal storage URL in the test's directory."""
    return f"journal://{tmp_path / 'sweeps.log'}"


@pytest.fixture
def finished(journal_url: str) -> Built:
    """A finished single-objective sweep: 9 complete trials, 1 pruned, 1 failed (9 budget tokens left)."""
    built = create(journal_url, SPEC)
    add_finished(built)
    sweeps.set_state(built.storage, built.sweep_id, "finished")
    return built


@pytest.fixture
def running(journal_url: str) -> Built:
    """A sweep still running: 4 complete trials, 2 running with partial curves, 14 budget tokens waiting,
    one agent beating and one gone."""
    built = create(journal_url, SPEC)
    for _ in range(4):
        finish_trial(built, start_trial(built))
    start_trial(built, {1: 3.0, 2: 2.5})
    start_trial(built, {1: 4.0})
    beat(built, "agent-a", seconds_ago=2)
    beat(built, "agent-old", seconds_ago=3600)
    return built


@pytest.fixture
def multi(journal_url: str) -> Built:
    """A finished two-objective sweep (min loss, max accuracy) of 10 complete trials."""
    built = create(journal_url, MULTI_SPEC)
    for _ in range(10):
        finish_trial(built, start_trial(built))
    sweeps.set_state(built.storage, built.sweep_id, "finished")
    return built


# -- W&B's own sweep engine (the `sweeps` package), the reference the spec is tested against ----


def wandb_grid(parameters: dict[str, Any]) -> list[dict[str, Any]]:
    """Every config W&B's grid search proposes, in order, as plain nested dicts."""
    runs = grid_search_next_runs([], {"method": "grid", "parameters": parameters}, n=100_000)
    return [{k: v["value"] for k, v in run.config.items()} for run in runs if run is not None]


def wandb_parameter(settings: dict[str, Any]) -> HyperParameter:
    """W&B's parameter object, whose ``cdf``/``ppf`` define the law."""
    return HyperParameter("p", dict(settings))


@pytest.fixture(name="wandb_grid")
def wandb_grid_fixture() -> Callable[[dict[str, Any]], list[dict[str, Any]]]:
    """W&B's grid order, as a function of the parameters block."""
    return wandb_grid


@pytest.fixture(name="wandb_parameter")
def wandb_parameter_fixture() -> Callable[[dict[str, Any]], HyperParameter]:
    """W&B's parameter objects (``cdf``/``ppf``), as a function of the settings."""
    return wandb_parameter


# -- stand-in trials for the example trainers ----------------------------------------------------


class RecordingTrial:
    """A stand-in for the trainer-facing trial: records what is logged, prunes at a chosen report."""

    def __init__(self, checkpoint_dir: Path, prune_at_report: int | None = None) -> None:
        self.number = 0
        self.attempt = 0
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        self.rows: list[tuple[int | None, dict[str, float]]] = []
        self._prune_at = prune_at_report

    def log(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        self.rows.append((step, dict(metrics)))
        if self._prune_at is not None and len(self.rows) >= self._prune_at:
            raise TrialPruned(f"pruned at report {len(self.rows)}")

    def steps(self) -> list[int | None]:
        return [step for step, _ in self.rows]

    def series(self, name: str) -> list[float]:
        return [metrics[name] for _, metrics in self.rows]


@pytest.fixture
def recording_trial(tmp_path: Path) -> RecordingTrial:
    return RecordingTrial(tmp_path / "checkpoint")


@pytest.fixture
def make_trial(tmp_path: Path) -> Any:
    """Build stand-in trials: ``make_trial(prune_at_report=None, checkpoint_dir=None)``."""

    def make(prune_at_report: int | None = None, checkpoint_dir: Path | None = None) -> RecordingTrial:
        return RecordingTrial(checkpoint_dir or tmp_path / "checkpoint", prune_at_report)

    return make
