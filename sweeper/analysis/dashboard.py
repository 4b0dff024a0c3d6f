"""The live UI: optuna-dashboard serving the sweeps of a storage.

Each trial's ``config`` user attr (the real, nested values the trainer saw) shows in the dashboard's
trial view next to Optuna's flat params. The dashboard has no authentication, so it binds to the
loopback interface unless told otherwise, and it is read-only unless told otherwise: optuna-dashboard
lets any visitor delete a sweep, create one, tell or skip a trial, set user attrs, edit notes and
migrate a database's schema, so :func:`read_only` refuses every request but GET, HEAD and OPTIONS.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from typing import TYPE_CHECKING, Any

from optuna.storages import BaseStorage

from sweeper.errors import UsageError
from sweeper.storage.urls import open_storage

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
WRITES = (
    "delete or create sweeps, tell, skip or set user attrs of trials, edit notes "
    "and migrate a database's schema"
)
REFUSED = (
    "the dashboard is read-only: start it with `sweeper dashboard --allow-writes` to let it {method} {path} "
    "(visitors can then " + WRITES + ")"
)


def is_loopback(host: str) -> bool:
    """Whether ``host`` names only this machine (``localhost``, ``127.x``, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(
                ipaddress.ip_address(info[4][0]).is_loopback for info in socket.getaddrinfo(host, None)
            )
        except (socket.gaierror, ValueError):
            return False


def exposure_warning(host: str, allow_writes: bool = False) -> str | None:
    """The warning to show before serving on ``host``: ``None`` for a loopback host without writes.

    Example:
        >>> exposure_warning("127.0.0.1") is None
        True
        >>> print(exposure_warning("0.0.0.0"))  # doctest: +NORMALIZE_WHITESPACE
        WARNING: serving the dashboard on 0.0.0.0: it has no login, so anyone who can reach this
        address can read every sweep in the storage (specs, configs, metrics, notes). It is
        read-only: changes are refused unless --allow-writes is given. Use --host 127.0.0.1 and an
        SSH tunnel unless this network is trusted.
    """
    loopback = is_loopback(host)
    if loopback and not allow_writes:
        return None
    who = "any program on this machine" if loopback else "anyone who can reach this address"
    reads = "" if loopback else "can read every sweep in the storage (specs, configs, metrics, notes)"
    if allow_writes:
        writes = f"can {WRITES}, since --allow-writes is given"
        can = f"{reads} and {writes}" if reads else writes
    else:
        can = f"{reads}. It is read-only: changes are refused unless --allow-writes is given"
    advice = "" if loopback else " Use --host 127.0.0.1 and an SSH tunnel unless this network is trusted."
    return f"WARNING: serving the dashboard on {host}: it has no login, so {who} {can}.{advice}"


def read_only(application: WSGIApp) -> WSGIApp:
    """``application`` refusing, with 403 and a JSON ``reason``, every method but GET, HEAD, OPTIONS."""

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        if method in READ_METHODS:
            return application(environ, start_response)
        path = str(environ.get("PATH_INFO", "/"))
        body = json.dumps({"reason": REFUSED.format(method=method, path=path)}).encode()
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        start_response("403 Forbidden", headers)
        return [body]

    return guarded


def app(storage: str | BaseStorage | None = None, *, allow_writes: bool = False) -> WSGIApp:
    """The dashboard as a WSGI application over the storage (a URL or an open Optuna storage).

    Read-only (see :func:`read_only`) unless ``allow_writes``.
    """
    import optuna_dashboard

    store = storage if isinstance(storage, BaseStorage) else open_storage(storage)
    application: WSGIApp = optuna_dashboard.wsgi(store)
    return application if allow_writes else read_only(application)


def serve(
    storage: str | BaseStorage | None = None,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    allow_writes: bool = False,
) -> None:
    """Serve the dashboard until interrupted (Ctrl-C ends it quietly). The storage object is handed
    over as is (journal included).

    The server is the standard library's, quiet: no start-up banner, no access log; the caller says
    where it listens.

    Read-only (see :func:`read_only`) unless ``allow_writes``.

    Raises:
        UsageError: the port is out of range or cannot be bound.
    """
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    if not 0 < port < 65536:
        raise UsageError(f"dashboard port must be in 1..65535, got {port}")

    class Server(WSGIServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    application = app(storage, allow_writes=allow_writes)
    try:
        server = make_server(host, port, application, server_class=Server, handler_class=QuietHandler)
    except OSError as exc:  # port taken, address not on this machine
        raise UsageError(f"dashboard cannot listen on {host}:{port}: {exc}") from exc
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
