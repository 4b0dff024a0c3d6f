"""The live UI: optuna-dashboard serving the sweeps of a storage.

Each trial's ``config`` user attr (the real, nested values the trainer saw) shows in the dashboard's
trial view next to Optuna's flat params. The dashboard has no authentication, so it binds to the
loopback interface unless told otherwise.
"""

from __future__ import annotations

import ipaddress
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


def exposure_warning(host: str) -> str | None:
    """The warning to show before serving on ``host``, ``None`` for loopback hosts."""
    if is_loopback(host):
        return None
    return (
        f"WARNING: serving the dashboard on {host}: it has no login, so anyone who can reach this "
        "address can read every sweep in the storage and edit its notes. Use --host 127.0.0.1 and an "
        "SSH tunnel unless this network is trusted."
    )


def app(storage: str | BaseStorage | None = None) -> WSGIApp:
    """The dashboard as a WSGI application over the storage (a URL or an open Optuna storage)."""
    import optuna_dashboard

    store = storage if isinstance(storage, BaseStorage) else open_storage(storage)
    application: WSGIApp = optuna_dashboard.wsgi(store)
    return application


def serve(
    storage: str | BaseStorage | None = None, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT
) -> None:
    """Serve the dashboard until interrupted (Ctrl-C ends it quietly). The storage object is handed
    over as is (journal included).

    The server is the standard library's, quiet: no start-up banner, no access log; the caller says
    where it listens.

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

    application = app(storage)
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
