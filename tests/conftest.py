"""Shared fixtures: a real local Ray with fake GPUs, and fresh PostgreSQL databases.

On CI (``CI=true``) these services must be there: a test that needs one fails instead of skipping.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

POSTGRES_ADMIN_URL = os.environ.get("SWEEPER_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


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
