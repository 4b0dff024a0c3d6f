"""Where sweeps live: an Optuna storage named by a URL.

The embedded default is Optuna's journal file under ``./.sweeper/`` (appends are cheap, so per-trial
overhead stays low); any SQLAlchemy URL works too, PostgreSQL above all for agents on several machines.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweeper.errors import StorageError, UsageError
from sweeper.redaction import STORAGE_ENV_VAR, redact

if TYPE_CHECKING:
    from optuna.storages import BaseStorage, RDBStorage

ENV_VAR = STORAGE_ENV_VAR
DEFAULT_DIR = Path(".sweeper")
JOURNAL_SCHEME = "journal://"
_DEFAULT_URL = f"{JOURNAL_SCHEME}{DEFAULT_DIR / 'journal.log'}"
_SQL_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql", "mariadb", "oracle", "mssql")


def resolve_url(url: str | None = None) -> str:
    """The storage URL to use: the given one, else ``$SWEEPER_STORAGE``, else the embedded journal file.

    Relative journal and SQLite paths are made absolute against the working directory, so an agent
    started elsewhere still names the same file.
    """
    chosen = url or os.environ.get(ENV_VAR) or _DEFAULT_URL
    if chosen.startswith(JOURNAL_SCHEME):
        return JOURNAL_SCHEME + str(Path(chosen[len(JOURNAL_SCHEME) :]).expanduser().resolve())
    if chosen.startswith("sqlite:///") and not chosen.startswith("sqlite:////"):
        relative = chosen[len("sqlite:///") :]
        if relative and relative != ":memory:":
            return "sqlite:///" + str(Path(relative).expanduser().resolve())
    scheme = chosen.split("://", 1)[0].split("+", 1)[0] if "://" in chosen else ""
    if scheme not in _SQL_SCHEMES:
        raise UsageError(
            f"storage URL must be journal://PATH or a database URL ({', '.join(_SQL_SCHEMES)}), "
            f"got {mask_url(chosen)!r}"
        )
    if scheme == "postgres":  # SQLAlchemy only knows the long spelling.
        chosen = "postgresql" + chosen[len("postgres") :]
    return chosen


def mask_url(url: str) -> str:
    """The URL with any password replaced by ``***``, safe to print or log.

    The password runs from the user's ``:`` to the URL's last ``@`` (unencoded ``@`` and ``/``
    included); ``password=``-style query values are masked too.

    Example:
        >>> mask_url("postgres://postgres:se@cret@127.0.0.1:5432/db")
        'postgres://postgres:***@127.0.0.1:5432/db'
        >>> mask_url("postgresql://:p/w@db/x?sslpassword=k3y")
        'postgresql://:***@db/x?sslpassword=***'
    """
    scheme_end = url.find("://")
    at = url.rfind("@")
    if scheme_end >= 0 and at > scheme_end:
        colon = url.find(":", scheme_end + 3, at)
        if colon >= 0:
            url = url[: colon + 1] + "***" + url[at:]
    return redact(url)


def open_storage(url: str | None = None) -> BaseStorage:
    """Open (creating if needed) the Optuna storage named by ``url`` (see :func:`resolve_url`).

    Raises:
        StorageError: the storage cannot be opened; the message names the masked URL.
    """
    # Imported here: naming a storage (resolve_url, while `sweeper run` starts Ray) needs no Optuna.
    import optuna
    from optuna.storages import RDBStorage

    from sweeper.storage.journal_lock import FlockJournalLock
    from sweeper.storage.journal_read import JournalFile, open_journal
    from sweeper.storage.retry import RetryingStorage

    resolved = resolve_url(url)
    try:
        if resolved.startswith(JOURNAL_SCHEME):
            path = Path(resolved[len(JOURNAL_SCHEME) :])
            path.parent.mkdir(parents=True, exist_ok=True)
            # flock: released by the kernel when its holder dies, never broken while it lives.
            return open_journal(JournalFile(str(path), lock_obj=FlockJournalLock(str(path))))
        if resolved.startswith("sqlite:///"):
            Path(resolved[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        rdb = RDBStorage(_with_driver(resolved), engine_kwargs=_engine_kwargs(resolved))
        if resolved.startswith("sqlite"):
            _serialize_sqlite(rdb)
        # Dropped connections and server restarts are retried with backoff, not fatal.
        return RetryingStorage(optuna.storages.get_storage(rdb))
    except (OSError, ImportError, optuna.exceptions.StorageInternalError) as exc:
        raise StorageError(f"cannot open storage {mask_url(resolved)}: {exc}") from exc
    except Exception as exc:  # SQLAlchemy raises its own hierarchy; keep the message, hide the password
        if type(exc).__module__.startswith("sqlalchemy"):
            raise StorageError(f"cannot open storage {mask_url(resolved)}: {exc}") from exc
        raise


def _with_driver(url: str) -> str:
    """Name an installed PostgreSQL driver: SQLAlchemy 2.1 assumes psycopg 3 for a bare URL."""
    import importlib.util

    find = importlib.util.find_spec
    if url.startswith("postgresql://") and find("psycopg") is None and find("psycopg2") is not None:
        return "postgresql+psycopg2://" + url[len("postgresql://") :]
    return url


def _serialize_sqlite(rdb: RDBStorage) -> None:
    """Make each SQLite transaction take the write lock when it begins (``BEGIN IMMEDIATE``).

    pysqlite only starts a transaction at the first write, so Optuna's read-then-update of a
    WAITING trial (``SELECT ... FOR UPDATE``, a no-op in SQLite) lets two agents pop the same
    trial. With the lock taken up front, the pop is atomic, as on PostgreSQL.
    """
    from sqlalchemy import event

    @event.listens_for(rdb.engine, "connect")
    def _no_driver_transactions(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy's "begin" below opens them instead

    @event.listens_for(rdb.engine, "begin")
    def _begin_immediate(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    rdb.engine.dispose()  # connections opened while creating the schema predate the listeners


def _engine_kwargs(url: str) -> dict[str, object]:
    if url.startswith("sqlite"):
        # Several agents and threads write the same file: wait for the lock instead of failing.
        return {"connect_args": {"timeout": 60}}
    # Dropped connections (server restarts, idle timeouts) are detected before use, not mid-query.
    return {"pool_pre_ping": True, "pool_recycle": 300}
