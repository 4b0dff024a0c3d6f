"""Shared fixtures: a real local Ray with fake GPUs, and fresh PostgreSQL databases.

On CI (``CI=true``) these services must be there: a test that needs one fails instead of skipping.

The suite runs on every core (pytest-xdist, ``-n auto`` in pyproject.toml; ``-n 0`` runs it in one
process). What tests share is kept apart per worker: each worker starts its own local Ray
(``address="local"``: a fresh instance whose ports are picked free, never another worker's), each
PostgreSQL test gets its own database, each storage lives in the test's ``tmp_path``, and tests
that run an agent change into a directory of their own for its ``./.sweeper/``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

POSTGRES_ADMIN_URL = os.environ.get("SWEEPER_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


def pytest_configure(config: pytest.Config) -> None:
    """Before the xdist workers start, make the Ray token a first local Ray would write.

    Ray (2.60 here) turns on token authentication for a new local cluster and writes a token to
    ``~/.ray/auth_token`` when there is none; two workers (or a test's subprocess cluster) starting
    their first Ray at once could each write one and hand their processes different tokens.
    """
    if hasattr(config, "workerinput") or os.environ.get("RAY_AUTH_MODE"):
        return  # an xdist worker (the controller did it), or the mode is set by hand
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
